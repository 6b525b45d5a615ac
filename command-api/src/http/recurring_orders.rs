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
    json::{problem, CommandBody, Validate},
    orders::{check_lines, Line},
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

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct ScheduleRecurringOrder {
    /// What every run orders; each run is priced from that day's catalogue.
    lines: Vec<Line>,
    /// The interval between runs: "3 days", "1 week", "2weeks", "12h". At least
    /// `RECURRING_ORDER_MIN_INTERVAL` (1 h by default).
    #[schema(example = "1 week")]
    every: String,
    /// Weekly on this day ("monday" ... "sunday"): the first run is the first such day at
    /// or after `starts_at`, at its time of day (UTC); `every` must be whole weeks.
    weekday: Option<String>,
    /// When the first run is due (default: now).
    starts_at: Option<DateTime<Utc>>,
    /// No run is due after it.
    ends_at: Option<DateTime<Utc>>,
    /// No run after this many.
    max_runs: Option<i64>,
}

impl ScheduleRecurringOrder {
    fn interval(&self) -> Option<std::time::Duration> {
        humantime::parse_duration(self.every.trim()).ok()
    }

    fn weekday(&self) -> Option<Result<Weekday, ()>> {
        self.weekday.as_deref().map(|day| day.trim().parse::<Weekday>().map_err(|_| ()))
    }

    /// The schedule, with the first run moved to the requested weekday.
    fn schedule(&self, now: DateTime<Utc>) -> Schedule {
        let mut starts_at = self.starts_at.unwrap_or(now);
        if let Some(Ok(day)) = self.weekday() {
            let ahead = (7 + day.num_days_from_monday() - starts_at.weekday().num_days_from_monday()) % 7;
            starts_at += chrono::Duration::days(i64::from(ahead));
        }
        let interval_seconds = self.interval().map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
        Schedule { starts_at, interval_seconds, ends_at: self.ends_at, max_runs: self.max_runs }
    }
}

impl Validate for ScheduleRecurringOrder {
    fn validate(&self, problems: &mut Vec<FieldProblem>) {
        check_lines(problems, &self.lines);
        match self.interval() {
            None => problem(problems, "every", "must be a duration such as \"3 days\", \"1 week\" or \"12h\""),
            Some(interval) if interval.subsec_nanos() != 0 => problem(problems, "every", "must be whole seconds"),
            Some(_) => {}
        }
        match (self.weekday(), self.interval()) {
            (Some(Err(())), _) => problem(problems, "weekday", "must be a day of the week such as \"monday\""),
            (Some(Ok(_)), Some(interval)) if interval.as_secs() as i64 % WEEK_SECONDS != 0 => {
                problem(problems, "every", "must be whole weeks when a weekday is given")
            }
            _ => {}
        }
        if self.max_runs.is_some_and(|max| max < 1) {
            problem(problems, "max_runs", "must be at least 1");
        }
        if let (Some(start), Some(end)) = (self.starts_at, self.ends_at) {
            if end < start {
                problem(problems, "ends_at", "must not be before starts_at");
            }
        }
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
    // These depend on the server (its minimum, its clock), so they are checked here.
    let minimum = state.recurring_min_interval;
    let now = Utc::now();
    let mut problems = Vec::new();
    if request.interval().is_some_and(|interval| interval < minimum) {
        problem(&mut problems, "every", format!("must be at least {}", humantime::format_duration(minimum)));
    }
    // A start in the past would place every run since at once.
    if request.starts_at.is_some_and(|start| start < now - chrono::Duration::minutes(1)) {
        problem(&mut problems, "starts_at", "must not be in the past");
    }
    if !problems.is_empty() {
        return ApiError::Validation(problems).into_response();
    }
    let command = AccountCommand::Recurring(RecurringOrderCommand::Schedule {
        recurring_order_id: Uuid::now_v7(),
        lines: request.lines.iter().map(|l| RecurringLine { sku: l.sku.clone(), quantity: l.quantity }).collect(),
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
