//! Recurring orders: `recurringOrder(id)`, an account's `recurringOrders`, and each
//! one's recorded runs (placed with their order, or skipped and why).

use async_graphql::{ComplexObject, Context, Error, Object, SimpleObject};
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::orders::Order;
use crate::db::ReadDb;

/// Most runs one `runs` selection returns.
const MAX_RUNS: i32 = 100;

#[derive(SimpleObject, sqlx::FromRow, Debug, Clone)]
#[graphql(complex)]
pub struct RecurringOrder {
    #[graphql(name = "id")]
    pub recurring_order_id: Uuid,
    pub account_id: Uuid,
    /// active, paused, cancelled or completed.
    pub status: String,
    #[graphql(skip)]
    pub lines: sqlx::types::Json<Vec<RecurringLine>>,
    /// When the first run was due.
    pub starts_at: DateTime<Utc>,
    /// Between one run and the next.
    pub interval_seconds: i64,
    pub ends_at: Option<DateTime<Utc>>,
    pub max_runs: Option<i64>,
    /// The next run's number and time; none once cancelled or completed.
    pub next_run: Option<i64>,
    pub next_run_at: Option<DateTime<Utc>>,
    pub runs_placed: i64,
    pub runs_skipped: i64,
    pub scheduled_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// The account stream's version this row reflects.
    pub version: i64,
}

/// What each run orders (priced from the catalogue on the day it runs).
#[derive(SimpleObject, serde::Deserialize, Debug, Clone)]
pub struct RecurringLine {
    pub sku: String,
    pub quantity: i64,
}

/// A recorded run.
#[derive(SimpleObject, sqlx::FromRow, Debug, Clone)]
#[graphql(complex)]
pub struct RecurringRun {
    pub run: i64,
    pub scheduled_for: DateTime<Utc>,
    /// The order it placed; none when skipped.
    pub order_id: Option<Uuid>,
    /// Why it placed nothing.
    pub skip_reason: Option<String>,
    pub recorded_at: DateTime<Utc>,
}

impl RecurringOrder {
    const SELECT: &'static str =
        "SELECT recurring_order_id, account_id, status, lines, starts_at, interval_seconds, ends_at, max_runs,
                next_run, next_run_at, runs_placed, runs_skipped, scheduled_at, updated_at, version
           FROM read.recurring_orders";

    /// An account's recurring orders, oldest first.
    pub async fn of_account(db: &ReadDb, account_id: Uuid) -> Result<Vec<RecurringOrder>, Error> {
        db.counted(
            sqlx::query_as(&format!("{} WHERE account_id = $1 ORDER BY recurring_order_id", Self::SELECT))
                .bind(account_id)
                .fetch_all(&db.pool),
        )
        .await
    }
}

#[ComplexObject]
impl RecurringOrder {
    async fn lines(&self) -> &[RecurringLine] {
        &self.lines.0
    }

    /// The latest `last` recorded runs (20 unless given, at most 100), newest first.
    async fn runs(&self, ctx: &Context<'_>, last: Option<i32>) -> Result<Vec<RecurringRun>, Error> {
        let limit = last.unwrap_or(20);
        if !(1..=MAX_RUNS).contains(&limit) {
            return Err(Error::new(format!("last must be between 1 and {MAX_RUNS}")));
        }
        let db = ctx.data_unchecked::<ReadDb>();
        db.counted(
            sqlx::query_as(
                "SELECT run, scheduled_for, order_id, skip_reason, recorded_at FROM read.recurring_order_runs
                  WHERE recurring_order_id = $1 ORDER BY run DESC LIMIT $2",
            )
            .bind(self.recurring_order_id)
            .bind(i64::from(limit))
            .fetch_all(&db.pool),
        )
        .await
    }
}

#[ComplexObject]
impl RecurringRun {
    /// The order the run placed, as `read.orders` shows it (none until projected).
    async fn order(&self, ctx: &Context<'_>) -> Result<Option<Order>, Error> {
        let Some(order_id) = self.order_id else { return Ok(None) };
        let db = ctx.data_unchecked::<ReadDb>();
        db.counted(
            sqlx::query_as(&format!("{} WHERE order_id = $1", Order::SELECT)).bind(order_id).fetch_optional(&db.pool),
        )
        .await
    }
}

#[derive(Default)]
pub struct RecurringOrderQueries;

#[Object]
impl RecurringOrderQueries {
    async fn recurring_order(&self, ctx: &Context<'_>, id: Uuid) -> Result<Option<RecurringOrder>, Error> {
        let db = ctx.data_unchecked::<ReadDb>();
        db.counted(
            sqlx::query_as(&format!("{} WHERE recurring_order_id = $1", RecurringOrder::SELECT))
                .bind(id)
                .fetch_optional(&db.pool),
        )
        .await
    }
}
