//! `/v1/accounts/{id}/recurring-orders`: an approved account schedules an order placed
//! again at an interval (every N days, weekly on a weekday, ...), and pauses, resumes
//! or cancels it. The `recurring_order` workflow places each run.

use axum::{
    extract::State,
    http::StatusCode,
    response::{IntoResponse, Response},
};
use chrono::{DateTime, Datelike, Utc, Weekday};
use serde::Deserialize;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;
use vectis_runtime::auth::{ApiKeys, Scope};
use vectis_schemas::{events::RecurringLine, StreamId};

use super::path::ApiPath;
use super::{
    command::{CommandContext, CommandResponse},
    fields::{Bounded, Field, Interval},
    json::{problem, CommandBody, Validate},
    orders::Lines,
    problem::{ApiError, FieldProblem},
    AppState,
};
use crate::domain::{Account, AccountCommand, RecurringOrderCommand, Schedule};

pub fn router(keys: &ApiKeys) -> OpenApiRouter<AppState> {
    let routes = OpenApiRouter::new()
        .routes(routes!(schedule))
        .routes(routes!(pause))
        .routes(routes!(resume))
        .routes(routes!(cancel));
    super::scoped(routes, keys, Scope::OrdersWrite)
}

const WEEK_SECONDS: i64 = 7 * 24 * 3600;

/// A day of the week, in lower case.
#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
enum Day {
    Monday,
    Tuesday,
    Wednesday,
    Thursday,
    Friday,
    Saturday,
    Sunday,
}

impl From<Day> for Weekday {
    fn from(day: Day) -> Self {
        match day {
            Day::Monday => Weekday::Mon,
            Day::Tuesday => Weekday::Tue,
            Day::Wednesday => Weekday::Wed,
            Day::Thursday => Weekday::Thu,
            Day::Friday => Weekday::Fri,
            Day::Saturday => Weekday::Sat,
            Day::Sunday => Weekday::Sun,
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"lines": [{"sku": "HEX-M8-40", "quantity": 100}], "every": "1 week", "weekday": "monday"}))]
struct ScheduleRecurringOrder {
    /// What every run orders; each run is priced from that day's catalogue.
    lines: Lines,
    /// The interval between runs: "3 days", "1 week", "2weeks", "12h". At least
    /// `RECURRING_ORDER_MIN_INTERVAL` (1 h by default), and whole weeks when `weekday`
    /// is given.
    #[schema(inline)]
    every: Interval,
    /// Weekly on this day: the first run is the first such day at or after
    /// `starts_at`, at its time of day (UTC).
    weekday: Option<Day>,
    /// When the first run is due (default: now); not in the past.
    starts_at: Option<DateTime<Utc>>,
    /// No run is due after it; not before `starts_at`.
    ends_at: Option<DateTime<Utc>>,
    /// No run after this many.
    #[schema(inline)]
    max_runs: Option<Bounded<1, { i64::MAX }>>,
}

impl ScheduleRecurringOrder {
    /// The schedule, with the first run moved to the requested weekday.
    fn schedule(&self, now: DateTime<Utc>) -> Schedule {
        let mut starts_at = self.starts_at.unwrap_or(now);
        if let Some(day) = self.weekday {
            let day = Weekday::from(day);
            let ahead = (7 + day.num_days_from_monday() - starts_at.weekday().num_days_from_monday()) % 7;
            starts_at += chrono::Duration::days(i64::from(ahead));
        }
        let interval_seconds = self.every.duration().map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
        Schedule { starts_at, interval_seconds, ends_at: self.ends_at, max_runs: self.max_runs.map(Bounded::get) }
    }

    /// The rules no schema states: between fields, against the server's minimum and
    /// its clock.
    fn check_together(&self, minimum: std::time::Duration, now: DateTime<Utc>) -> Vec<FieldProblem> {
        let mut problems = Vec::new();
        match self.every.duration() {
            None => problem(&mut problems, "every", "is longer than any schedule can hold"),
            Some(interval) if interval < minimum => {
                problem(&mut problems, "every", format!("must be at least {}", humantime::format_duration(minimum)))
            }
            Some(interval) if self.weekday.is_some() && interval.as_secs() as i64 % WEEK_SECONDS != 0 => {
                problem(&mut problems, "every", "must be whole weeks when a weekday is given")
            }
            Some(_) => {}
        }
        // A start in the past would place every run since at once.
        if self.starts_at.is_some_and(|start| start < now - chrono::Duration::minutes(1)) {
            problem(&mut problems, "starts_at", "must not be in the past");
        }
        if let (Some(start), Some(end)) = (self.starts_at, self.ends_at) {
            if end < start {
                problem(&mut problems, "ends_at", "must not be before starts_at");
            }
        }
        problems
    }
}

impl Validate for ScheduleRecurringOrder {
    fn validate(&self, problems: &mut Vec<FieldProblem>) {
        self.lines.check("lines", problems);
        self.every.check("every", problems);
        self.max_runs.check("max_runs", problems);
    }
}

#[utoipa::path(post, path = "/v1/accounts/{id}/recurring-orders", tag = "recurring orders",
    params(("id" = Uuid, Path, description = "The account id")), request_body = ScheduleRecurringOrder,
    responses((status = 201, description = "Scheduled: RecurringOrderScheduled, whose recurring_order_id names it; the account must be approved", body = CommandResponse)),
    security(("api_key" = ["orders:write"])))]
async fn schedule(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<Uuid>,
    context: CommandContext,
    body: CommandBody<ScheduleRecurringOrder>,
) -> Response {
    let request = &body.value;
    let now = Utc::now();
    let problems = request.check_together(state.recurring_min_interval, now);
    if !problems.is_empty() {
        return ApiError::FieldRules(problems).into_response();
    }
    let command = AccountCommand::Recurring(RecurringOrderCommand::Schedule {
        recurring_order_id: Uuid::now_v7(),
        lines: request
            .lines
            .iter()
            .map(|l| RecurringLine { sku: l.sku.as_str().to_string(), quantity: l.quantity.get() })
            .collect(),
        schedule: request.schedule(now),
        by: context.principal.actor(),
    });
    let stream = StreamId::account(id);
    context.run::<Account, _>(&state, &body.raw, stream, StatusCode::CREATED, |_| command.clone()).await
}

#[utoipa::path(post, path = "/v1/accounts/{id}/recurring-orders/{recurring_order_id}/pause", tag = "recurring orders",
    params(("id" = Uuid, Path, description = "The account id"), ("recurring_order_id" = Uuid, Path, description = "The recurring order")),
    responses((status = 200, description = "Paused: runs due while paused are not placed", body = CommandResponse)),
    security(("api_key" = ["orders:write"])))]
async fn pause(
    State(state): State<AppState>,
    ApiPath((id, recurring_order_id)): ApiPath<(Uuid, Uuid)>,
    context: CommandContext,
) -> Response {
    let by = context.principal.actor();
    on_recurring(&state, context, id, RecurringOrderCommand::Pause { recurring_order_id, by }).await
}

#[utoipa::path(post, path = "/v1/accounts/{id}/recurring-orders/{recurring_order_id}/resume", tag = "recurring orders",
    params(("id" = Uuid, Path, description = "The account id"), ("recurring_order_id" = Uuid, Path, description = "The recurring order")),
    responses((status = 200, description = "Resumed from the first run due from now (RecurringOrderResumed.next_run)", body = CommandResponse)),
    security(("api_key" = ["orders:write"])))]
async fn resume(
    State(state): State<AppState>,
    ApiPath((id, recurring_order_id)): ApiPath<(Uuid, Uuid)>,
    context: CommandContext,
) -> Response {
    let by = context.principal.actor();
    let now = Utc::now();
    on_recurring(&state, context, id, RecurringOrderCommand::Resume { recurring_order_id, by, now }).await
}

#[utoipa::path(post, path = "/v1/accounts/{id}/recurring-orders/{recurring_order_id}/cancel", tag = "recurring orders",
    params(("id" = Uuid, Path, description = "The account id"), ("recurring_order_id" = Uuid, Path, description = "The recurring order")),
    responses((status = 200, description = "Cancelled: no further run is placed", body = CommandResponse)),
    security(("api_key" = ["orders:write"])))]
async fn cancel(
    State(state): State<AppState>,
    ApiPath((id, recurring_order_id)): ApiPath<(Uuid, Uuid)>,
    context: CommandContext,
) -> Response {
    let by = context.principal.actor();
    on_recurring(&state, context, id, RecurringOrderCommand::Cancel { recurring_order_id, by }).await
}

async fn on_recurring(state: &AppState, context: CommandContext, id: Uuid, command: RecurringOrderCommand) -> Response {
    let command = AccountCommand::Recurring(command);
    context.run::<Account, _>(state, &[], StreamId::account(id), StatusCode::OK, |_| command.clone()).await
}
