//! `read.recurring_orders` (one row per recurring order: its account, lines, schedule,
//! status, next run and what its runs did) and `read.recurring_order_runs` (one row
//! per recorded run: placed with its order, or skipped with the reason).

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::PgConnection;
use uuid::Uuid;
use vectis_consumer::event::{DomainEvent, ProjectedEvent};
use vectis_read_side::catalog;
use vectis_schemas::events::{recurring_run_due_at, AccountEvent};

pub struct RecurringOrders;

#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct RecurringOrderRow {
    pub recurring_order_id: Uuid,
    pub account_id: Uuid,
    /// active, paused, cancelled or completed.
    pub status: String,
    /// `[{"sku": ..., "quantity": ...}]`.
    pub lines: Value,
    pub starts_at: DateTime<Utc>,
    pub interval_seconds: i64,
    pub ends_at: Option<DateTime<Utc>>,
    pub max_runs: Option<i64>,
    /// Runs before it are not placed (where the last resumption started).
    pub resume_from: i64,
    /// The highest run recorded (0: none).
    pub last_run: i64,
    pub next_run: Option<i64>,
    pub next_run_at: Option<DateTime<Utc>>,
    pub runs_placed: i64,
    pub runs_skipped: i64,
    pub scheduled_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// The account stream's version it reflects.
    pub version: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RunRow {
    pub recurring_order_id: Uuid,
    pub run: i64,
    pub scheduled_for: DateTime<Utc>,
    pub order_id: Option<Uuid>,
    pub skip_reason: Option<String>,
    pub recorded_at: DateTime<Utc>,
}

const DDL: &str = "
CREATE TABLE IF NOT EXISTS {schema}.recurring_orders (
    recurring_order_id uuid        PRIMARY KEY,
    account_id         uuid        NOT NULL,
    status             text        NOT NULL,
    lines              jsonb       NOT NULL,
    starts_at          timestamptz NOT NULL,
    interval_seconds   bigint      NOT NULL,
    ends_at            timestamptz,
    max_runs           bigint,
    resume_from        bigint      NOT NULL,
    last_run           bigint      NOT NULL,
    next_run           bigint,
    next_run_at        timestamptz,
    runs_placed        bigint      NOT NULL,
    runs_skipped       bigint      NOT NULL,
    scheduled_at       timestamptz NOT NULL,
    updated_at         timestamptz NOT NULL,
    version            bigint      NOT NULL
);
CREATE INDEX IF NOT EXISTS recurring_orders_account ON {schema}.recurring_orders (account_id, recurring_order_id);
CREATE TABLE IF NOT EXISTS {schema}.recurring_order_runs (
    recurring_order_id uuid        NOT NULL,
    run                bigint      NOT NULL,
    scheduled_for      timestamptz NOT NULL,
    order_id           uuid,
    skip_reason        text,
    recorded_at        timestamptz NOT NULL,
    PRIMARY KEY (recurring_order_id, run)
);
";

impl RecurringOrderRow {
    fn due_at(&self, run: i64) -> Option<DateTime<Utc>> {
        recurring_run_due_at(self.starts_at, self.interval_seconds, self.ends_at, self.max_runs, run)
    }

    /// The next run and status, from the schedule and what was recorded.
    fn settle(&mut self) {
        let next = (self.last_run + 1).max(self.resume_from);
        let due = if self.status == "cancelled" { None } else { self.due_at(next) };
        self.next_run = due.map(|_| next);
        self.next_run_at = due;
        if due.is_none() && self.status == "active" {
            self.status = "completed".into();
        }
    }
}

/// Folds one event into the recurring order's row; a recorded run also gives its
/// `read.recurring_order_runs` row.
pub fn evolve(
    row: Option<RecurringOrderRow>,
    event: &AccountEvent,
    version: i64,
    at: DateTime<Utc>,
) -> (Option<RecurringOrderRow>, Option<RunRow>) {
    if let AccountEvent::RecurringOrderScheduled(e) = event {
        let mut row = RecurringOrderRow {
            recurring_order_id: e.recurring_order_id,
            account_id: e.account_id,
            status: "active".into(),
            lines: serde_json::to_value(&e.lines).unwrap_or(Value::Null),
            starts_at: e.starts_at,
            interval_seconds: e.interval_seconds,
            ends_at: e.ends_at,
            max_runs: e.max_runs,
            resume_from: 1,
            last_run: 0,
            next_run: None,
            next_run_at: None,
            runs_placed: 0,
            runs_skipped: 0,
            scheduled_at: at,
            updated_at: at,
            version,
        };
        row.settle();
        return (Some(row), None);
    }
    let Some(mut row) = row else { return (None, None) };
    let mut run = None;
    let mut record = |number: i64, scheduled_for, order_id, skip_reason| {
        run = Some(RunRow {
            recurring_order_id: row.recurring_order_id,
            run: number,
            scheduled_for,
            order_id,
            skip_reason,
            recorded_at: at,
        });
        number
    };
    match event {
        AccountEvent::RecurringOrderPaused(_) => row.status = "paused".into(),
        AccountEvent::RecurringOrderResumed(e) => {
            row.status = "active".into();
            row.resume_from = e.next_run;
        }
        AccountEvent::RecurringOrderCancelled(_) => row.status = "cancelled".into(),
        AccountEvent::RecurringOrderRunPlaced(e) => {
            row.last_run = row.last_run.max(record(e.run, e.scheduled_for, Some(e.order_id), None));
            row.runs_placed += 1;
        }
        AccountEvent::RecurringOrderRunSkipped(e) => {
            row.last_run = row.last_run.max(record(e.run, e.scheduled_for, None, Some(e.reason.clone())));
            row.runs_skipped += 1;
        }
        _ => return (Some(row), None),
    }
    row.settle();
    row.updated_at = at;
    row.version = version;
    (Some(row), run)
}

async fn apply(conn: &mut PgConnection, schema: &str, events: &[ProjectedEvent]) -> Result<(), sqlx::Error> {
    let account_events: Vec<(&ProjectedEvent, &AccountEvent, Uuid)> = events
        .iter()
        .filter_map(|e| match &e.event {
            DomainEvent::Account(a) => a.recurring_order_id().map(|id| (e, a, id)),
            _ => None,
        })
        .collect();
    if account_events.is_empty() {
        return Ok(());
    }
    let ids: Vec<Uuid> = account_events.iter().map(|(_, _, id)| *id).collect();
    let existing: Vec<RecurringOrderRow> =
        sqlx::query_as(&format!("SELECT * FROM {schema}.recurring_orders WHERE recurring_order_id = ANY($1)"))
            .bind(&ids)
            .fetch_all(&mut *conn)
            .await?;
    let mut rows: HashMap<Uuid, RecurringOrderRow> = existing.into_iter().map(|r| (r.recurring_order_id, r)).collect();
    let mut runs = Vec::new();
    for (event, account_event, id) in account_events {
        let (row, run) = evolve(rows.remove(&id), account_event, event.stream_version, event.occurred_at);
        runs.extend(run);
        if let Some(row) = row {
            rows.insert(id, row);
        }
    }
    let changed: Vec<RecurringOrderRow> = rows.into_values().collect();
    if !changed.is_empty() {
        let column = |f: fn(&RecurringOrderRow) -> Option<DateTime<Utc>>| changed.iter().map(f).collect::<Vec<_>>();
        let number = |f: fn(&RecurringOrderRow) -> i64| changed.iter().map(f).collect::<Vec<_>>();
        let optional = |f: fn(&RecurringOrderRow) -> Option<i64>| changed.iter().map(f).collect::<Vec<_>>();
        sqlx::query(&format!(
            "INSERT INTO {schema}.recurring_orders
             SELECT * FROM UNNEST($1::uuid[], $2::uuid[], $3::text[], $4::jsonb[], $5::timestamptz[], $6::bigint[],
                                  $7::timestamptz[], $8::bigint[], $9::bigint[], $10::bigint[], $11::bigint[],
                                  $12::timestamptz[], $13::bigint[], $14::bigint[], $15::timestamptz[],
                                  $16::timestamptz[], $17::bigint[])
             ON CONFLICT (recurring_order_id) DO UPDATE SET
                status = EXCLUDED.status, resume_from = EXCLUDED.resume_from, last_run = EXCLUDED.last_run,
                next_run = EXCLUDED.next_run, next_run_at = EXCLUDED.next_run_at,
                runs_placed = EXCLUDED.runs_placed, runs_skipped = EXCLUDED.runs_skipped,
                updated_at = EXCLUDED.updated_at, version = EXCLUDED.version"
        ))
        .bind(changed.iter().map(|r| r.recurring_order_id).collect::<Vec<_>>())
        .bind(changed.iter().map(|r| r.account_id).collect::<Vec<_>>())
        .bind(changed.iter().map(|r| r.status.clone()).collect::<Vec<_>>())
        .bind(changed.iter().map(|r| r.lines.clone()).collect::<Vec<_>>())
        .bind(changed.iter().map(|r| r.starts_at).collect::<Vec<_>>())
        .bind(number(|r| r.interval_seconds))
        .bind(column(|r| r.ends_at))
        .bind(optional(|r| r.max_runs))
        .bind(number(|r| r.resume_from))
        .bind(number(|r| r.last_run))
        .bind(optional(|r| r.next_run))
        .bind(column(|r| r.next_run_at))
        .bind(number(|r| r.runs_placed))
        .bind(number(|r| r.runs_skipped))
        .bind(changed.iter().map(|r| r.scheduled_at).collect::<Vec<_>>())
        .bind(changed.iter().map(|r| r.updated_at).collect::<Vec<_>>())
        .bind(number(|r| r.version))
        .execute(&mut *conn)
        .await?;
    }
    if !runs.is_empty() {
        sqlx::query(&format!(
            "INSERT INTO {schema}.recurring_order_runs
             SELECT * FROM UNNEST($1::uuid[], $2::bigint[], $3::timestamptz[], $4::uuid[], $5::text[],
                                  $6::timestamptz[])
             ON CONFLICT DO NOTHING"
        ))
        .bind(runs.iter().map(|r| r.recurring_order_id).collect::<Vec<_>>())
        .bind(runs.iter().map(|r| r.run).collect::<Vec<_>>())
        .bind(runs.iter().map(|r| r.scheduled_for).collect::<Vec<_>>())
        .bind(runs.iter().map(|r| r.order_id).collect::<Vec<_>>())
        .bind(runs.iter().map(|r| r.skip_reason.clone()).collect::<Vec<_>>())
        .bind(runs.iter().map(|r| r.recorded_at).collect::<Vec<_>>())
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

read_model!(RecurringOrders, catalog::RECURRING_ORDERS, DDL, &["recurring_orders", "recurring_order_runs"]);
