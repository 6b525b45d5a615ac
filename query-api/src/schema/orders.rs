//! Orders: `order(id)`, `orders(filter, first, after)`, and an order's account, lines
//! and status history.

use async_graphql::{dataloader::DataLoader, ComplexObject, Context, Error, InputObject, Object, SimpleObject};
use chrono::{DateTime, Utc};
use sqlx::{Postgres, QueryBuilder};
use uuid::Uuid;
use vectis_read_side::status::OrderStatus;

use super::{
    accounts::Account,
    loaders::{Accounts, OrderLines, StatusHistory},
    Money, StatusFilter,
};
use crate::{
    db::ReadDb,
    pagination::{self, Page},
};

#[derive(SimpleObject, sqlx::FromRow, Debug, Clone)]
#[graphql(complex)]
pub struct Order {
    #[graphql(name = "id")]
    pub order_id: Uuid,
    pub account_id: Uuid,
    #[graphql(skip)]
    pub status: OrderStatus,
    #[graphql(skip)]
    pub currency: String,
    #[graphql(skip)]
    pub total_minor: i64,
    pub line_count: i32,
    pub carrier: Option<String>,
    pub tracking_number: Option<String>,
    pub placed_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// The order stream's version this row reflects.
    pub version: i64,
}

impl Order {
    pub const SELECT: &'static str = "SELECT order_id, account_id, status, currency, total_minor, line_count, carrier,
                                         tracking_number, placed_at, updated_at, version FROM read.orders";
}

#[ComplexObject]
impl Order {
    /// placed, awaiting_approval, approved, rejected, confirmed, cancelled, shipped,
    /// delivered.
    async fn status(&self) -> &'static str {
        self.status.as_str()
    }

    async fn total(&self) -> Money {
        Money::new(self.total_minor, &self.currency)
    }

    /// The ordering account (null only if its registration is not projected yet).
    async fn account(&self, ctx: &Context<'_>) -> Result<Option<Account>, Error> {
        ctx.data_unchecked::<DataLoader<Accounts>>().load_one(self.account_id).await
    }

    async fn lines(&self, ctx: &Context<'_>) -> Result<Vec<OrderLine>, Error> {
        Ok(ctx.data_unchecked::<DataLoader<OrderLines>>().load_one(self.order_id).await?.unwrap_or_default())
    }

    /// Every status the order went through, oldest first.
    async fn status_history(&self, ctx: &Context<'_>) -> Result<Vec<StatusChange>, Error> {
        Ok(ctx.data_unchecked::<DataLoader<StatusHistory>>().load_one(self.order_id).await?.unwrap_or_default())
    }
}

/// Amounts in minor units of the order's currency.
#[derive(SimpleObject, sqlx::FromRow, Debug, Clone)]
pub struct OrderLine {
    #[graphql(skip)]
    pub order_id: Uuid,
    pub line_no: i32,
    pub sku: String,
    pub quantity: i64,
    pub unit_price_minor: i64,
    pub line_total_minor: i64,
}

#[derive(SimpleObject, sqlx::FromRow, Debug, Clone)]
#[graphql(complex)]
pub struct StatusChange {
    #[graphql(skip)]
    pub order_id: Uuid,
    pub stream_version: i64,
    #[graphql(skip)]
    pub status: OrderStatus,
    pub event_type: String,
    pub occurred_at: DateTime<Utc>,
}

#[ComplexObject]
impl StatusChange {
    /// The status the event led to (as `Order.status`).
    async fn status(&self) -> &'static str {
        self.status.as_str()
    }
}

/// Every condition given must hold.
#[derive(InputObject, Debug, Clone, Default)]
pub struct OrderFilter {
    pub account_id: Option<Uuid>,
    pub status: Option<String>,
    /// Placed strictly after this instant.
    pub placed_after: Option<DateTime<Utc>>,
    /// Placed strictly before this instant.
    pub placed_before: Option<DateTime<Utc>>,
}

#[derive(Default)]
pub struct OrderQueries;

#[Object]
impl OrderQueries {
    async fn order(&self, ctx: &Context<'_>, id: Uuid) -> Result<Option<Order>, Error> {
        let db = ctx.data_unchecked::<ReadDb>();
        db.counted(sqlx::query_as(&format!("{} WHERE order_id = $1", Order::SELECT)).bind(id).fetch_optional(&db.pool))
            .await
    }

    /// Newest first.
    #[graphql(complexity = "pagination::complexity(first, child_complexity)")]
    async fn orders(
        &self,
        ctx: &Context<'_>,
        filter: Option<OrderFilter>,
        first: Option<i32>,
        after: Option<String>,
    ) -> Result<Page<Order>, Error> {
        orders_page(ctx.data_unchecked::<ReadDb>(), &filter.unwrap_or_default(), first, after.as_deref()).await
    }
}

/// Appends `filter`'s conditions (only those given, so each query shape gets a plan
/// that can use the matching index: `IS NULL OR` conditions defeat it in generic plans).
fn push_conditions<'a>(query: &mut QueryBuilder<'a, Postgres>, filter: &'a OrderFilter, status: Option<OrderStatus>) {
    query.push(" WHERE TRUE");
    if let Some(account_id) = filter.account_id {
        query.push(" AND account_id = ").push_bind(account_id);
    }
    if let Some(status) = status {
        query.push(" AND status = ").push_bind(status.as_str());
    }
    if let Some(after) = filter.placed_after {
        query.push(" AND placed_at > ").push_bind(after);
    }
    if let Some(before) = filter.placed_before {
        query.push(" AND placed_at < ").push_bind(before);
    }
}

/// The cursor list of orders, newest first (`orders` and `Account.orders`).
pub const ORDERS_LIST: &str = "orders";

/// A page of orders matching `filter`, newest first (placed_at, then id, descending).
pub async fn orders_page(
    db: &ReadDb,
    filter: &OrderFilter,
    first: Option<i32>,
    after: Option<&str>,
) -> Result<Page<Order>, Error> {
    const LIST: &str = ORDERS_LIST;
    let limit = pagination::page_size(first)?;
    let position: Option<(DateTime<Utc>, Uuid)> = pagination::decode(LIST, after)?;
    let status = match StatusFilter::<OrderStatus>::parse(filter.status.as_deref()) {
        StatusFilter::Any => None,
        StatusFilter::Only(status) => Some(status),
        StatusFilter::Unmatchable => {
            return Ok(pagination::page(LIST, Vec::new(), limit, 0, position.is_some(), |o: &Order| {
                (o.placed_at, o.order_id)
            }))
        }
    };
    let mut page = QueryBuilder::new(Order::SELECT);
    push_conditions(&mut page, filter, status);
    if let Some((placed_at, order_id)) = position {
        page.push(" AND (placed_at, order_id) < (").push_bind(placed_at).push(", ").push_bind(order_id).push(")");
    }
    page.push(" ORDER BY placed_at DESC, order_id DESC LIMIT ").push_bind(limit + 1);
    let rows: Vec<Order> = db.counted(page.build_query_as().fetch_all(&db.pool)).await?;
    let mut count = QueryBuilder::new("SELECT count(*) FROM read.orders");
    push_conditions(&mut count, filter, status);
    let total: i64 = db.counted(count.build_query_scalar().fetch_one(&db.pool)).await?;
    Ok(pagination::page(LIST, rows, limit, total, position.is_some(), |o| (o.placed_at, o.order_id)))
}
