//! `read.orders` (one row per order: account, status, currency, total, line count,
//! placed and updated times, version), `read.order_lines` and
//! `read.order_status_history` (one row per event, with the status it led to).

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use uuid::Uuid;
use vectis_consumer::event::{DomainEvent, ProjectedEvent};
use vectis_read_side::{catalog, status::OrderStatus};
use vectis_schemas::events::OrderEvent;

pub struct Orders;

#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct OrderRow {
    pub order_id: Uuid,
    pub account_id: Uuid,
    pub status: OrderStatus,
    pub currency: String,
    pub total_minor: i64,
    pub line_count: i32,
    pub carrier: Option<String>,
    pub tracking_number: Option<String>,
    pub placed_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub version: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct OrderLineRow {
    pub order_id: Uuid,
    pub line_no: i32,
    pub sku: String,
    pub quantity: i64,
    pub unit_price_minor: i64,
    pub line_total_minor: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct StatusChange {
    pub order_id: Uuid,
    pub stream_version: i64,
    pub status: OrderStatus,
    pub event_type: &'static str,
    pub occurred_at: DateTime<Utc>,
}

const DDL: &str = "
CREATE TABLE IF NOT EXISTS {schema}.orders (
    order_id        uuid        PRIMARY KEY,
    account_id      uuid        NOT NULL,
    status          text        NOT NULL,
    currency        text        NOT NULL,
    total_minor     bigint      NOT NULL,
    line_count      integer     NOT NULL,
    carrier         text,
    tracking_number text,
    placed_at       timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL,
    version         bigint      NOT NULL
);
CREATE INDEX IF NOT EXISTS orders_account ON {schema}.orders (account_id, placed_at, order_id);
CREATE INDEX IF NOT EXISTS orders_status ON {schema}.orders (status, placed_at, order_id);
CREATE INDEX IF NOT EXISTS orders_placed ON {schema}.orders (placed_at, order_id);
CREATE TABLE IF NOT EXISTS {schema}.order_lines (
    order_id         uuid    NOT NULL,
    line_no          integer NOT NULL,
    sku              text    NOT NULL,
    quantity         bigint  NOT NULL,
    unit_price_minor bigint  NOT NULL,
    line_total_minor bigint  NOT NULL,
    PRIMARY KEY (order_id, line_no)
);
CREATE TABLE IF NOT EXISTS {schema}.order_status_history (
    order_id       uuid        NOT NULL,
    stream_version bigint      NOT NULL,
    status         text        NOT NULL,
    event_type     text        NOT NULL,
    occurred_at    timestamptz NOT NULL,
    PRIMARY KEY (order_id, stream_version)
);
";

/// The status an order is in after `event`.
pub fn status_after(event: &OrderEvent) -> OrderStatus {
    match event {
        OrderEvent::OrderPlaced(_) => OrderStatus::Placed,
        OrderEvent::OrderApprovalRequested(_) => OrderStatus::AwaitingApproval,
        OrderEvent::OrderApproved(_) => OrderStatus::Approved,
        OrderEvent::OrderRejected(_) => OrderStatus::Rejected,
        OrderEvent::OrderStockHeld(_) => OrderStatus::Confirmable,
        OrderEvent::OrderConfirmed(_) => OrderStatus::Confirmed,
        OrderEvent::OrderCancelled(_) => OrderStatus::Cancelled,
        OrderEvent::OrderShipped(_) => OrderStatus::Shipped,
        OrderEvent::OrderDelivered(_) => OrderStatus::Delivered,
    }
}

/// Folds one event into the order's row (`None` before it was placed).
pub fn evolve(row: Option<OrderRow>, event: &OrderEvent, version: i64, at: DateTime<Utc>) -> Option<OrderRow> {
    let mut row = match (row, event) {
        (_, OrderEvent::OrderPlaced(e)) => {
            return Some(OrderRow {
                order_id: e.order_id,
                account_id: e.account_id,
                status: status_after(event),
                currency: e.currency.clone(),
                total_minor: e.total.amount_minor,
                line_count: i32::try_from(e.lines.len()).unwrap_or(i32::MAX),
                carrier: None,
                tracking_number: None,
                placed_at: at,
                updated_at: at,
                version,
            })
        }
        (None, _) => return None,
        (Some(row), _) => row,
    };
    if let OrderEvent::OrderShipped(e) = event {
        row.carrier = Some(e.carrier.clone());
        row.tracking_number = Some(e.tracking_number.clone());
    }
    row.status = status_after(event);
    row.updated_at = at;
    row.version = version;
    Some(row)
}

async fn apply(conn: &mut PgConnection, schema: &str, events: &[ProjectedEvent]) -> Result<(), sqlx::Error> {
    let ids: Vec<Uuid> = events.iter().filter_map(|e| e.stream_id.uuid()).collect();
    let existing: Vec<OrderRow> = sqlx::query_as(&format!("SELECT * FROM {schema}.orders WHERE order_id = ANY($1)"))
        .bind(&ids)
        .fetch_all(&mut *conn)
        .await?;
    let mut rows: HashMap<Uuid, OrderRow> = existing.into_iter().map(|r| (r.order_id, r)).collect();
    let mut lines = Vec::new();
    let mut history = Vec::new();
    for event in events {
        let (DomainEvent::Order(order_event), Some(id)) = (&event.event, event.stream_id.uuid()) else { continue };
        if let OrderEvent::OrderPlaced(placed) = order_event {
            lines.extend(placed.lines.iter().enumerate().map(|(n, line)| OrderLineRow {
                order_id: id,
                line_no: i32::try_from(n + 1).unwrap_or(i32::MAX),
                sku: line.sku.clone(),
                quantity: line.quantity,
                unit_price_minor: line.unit_price.amount_minor,
                line_total_minor: line.line_total.amount_minor,
            }));
        }
        if let Some(row) = evolve(rows.remove(&id), order_event, event.stream_version, event.occurred_at) {
            history.push(StatusChange {
                order_id: id,
                stream_version: event.stream_version,
                status: row.status,
                event_type: order_event.event_type(),
                occurred_at: event.occurred_at,
            });
            rows.insert(id, row);
        }
    }
    // Every row here was read for, or created by, an event of the batch.
    let changed: Vec<OrderRow> = rows.into_values().collect();
    if !changed.is_empty() {
        sqlx::query(&format!(
            "INSERT INTO {schema}.orders
             SELECT * FROM UNNEST($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::bigint[], $6::int[],
                                  $7::text[], $8::text[], $9::timestamptz[], $10::timestamptz[], $11::bigint[])
             ON CONFLICT (order_id) DO UPDATE SET
                status = EXCLUDED.status, carrier = EXCLUDED.carrier, tracking_number = EXCLUDED.tracking_number,
                updated_at = EXCLUDED.updated_at, version = EXCLUDED.version"
        ))
        .bind(changed.iter().map(|r| r.order_id).collect::<Vec<_>>())
        .bind(changed.iter().map(|r| r.account_id).collect::<Vec<_>>())
        .bind(changed.iter().map(|r| r.status.as_str()).collect::<Vec<_>>())
        .bind(changed.iter().map(|r| r.currency.clone()).collect::<Vec<_>>())
        .bind(changed.iter().map(|r| r.total_minor).collect::<Vec<_>>())
        .bind(changed.iter().map(|r| r.line_count).collect::<Vec<_>>())
        .bind(changed.iter().map(|r| r.carrier.clone()).collect::<Vec<_>>())
        .bind(changed.iter().map(|r| r.tracking_number.clone()).collect::<Vec<_>>())
        .bind(changed.iter().map(|r| r.placed_at).collect::<Vec<_>>())
        .bind(changed.iter().map(|r| r.updated_at).collect::<Vec<_>>())
        .bind(changed.iter().map(|r| r.version).collect::<Vec<_>>())
        .execute(&mut *conn)
        .await?;
    }
    if !lines.is_empty() {
        sqlx::query(&format!(
            "INSERT INTO {schema}.order_lines
             SELECT * FROM UNNEST($1::uuid[], $2::int[], $3::text[], $4::bigint[], $5::bigint[], $6::bigint[])
             ON CONFLICT DO NOTHING"
        ))
        .bind(lines.iter().map(|l| l.order_id).collect::<Vec<_>>())
        .bind(lines.iter().map(|l| l.line_no).collect::<Vec<_>>())
        .bind(lines.iter().map(|l| l.sku.clone()).collect::<Vec<_>>())
        .bind(lines.iter().map(|l| l.quantity).collect::<Vec<_>>())
        .bind(lines.iter().map(|l| l.unit_price_minor).collect::<Vec<_>>())
        .bind(lines.iter().map(|l| l.line_total_minor).collect::<Vec<_>>())
        .execute(&mut *conn)
        .await?;
    }
    if !history.is_empty() {
        sqlx::query(&format!(
            "INSERT INTO {schema}.order_status_history
             SELECT * FROM UNNEST($1::uuid[], $2::bigint[], $3::text[], $4::text[], $5::timestamptz[])
             ON CONFLICT DO NOTHING"
        ))
        .bind(history.iter().map(|h| h.order_id).collect::<Vec<_>>())
        .bind(history.iter().map(|h| h.stream_version).collect::<Vec<_>>())
        .bind(history.iter().map(|h| h.status.as_str()).collect::<Vec<_>>())
        .bind(history.iter().map(|h| h.event_type.to_string()).collect::<Vec<_>>())
        .bind(history.iter().map(|h| h.occurred_at).collect::<Vec<_>>())
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

read_model!(Orders, catalog::ORDERS, DDL, &["orders", "order_lines", "order_status_history"]);
