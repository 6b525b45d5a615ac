//! The read models compared with the fold of the event store: the expected state of
//! every row comes from the write model's own aggregates (independent code), loaded
//! from the event store.

use std::collections::BTreeSet;

use sqlx::PgPool;
use uuid::Uuid;
use vectis_command_api::{
    domain::{Account, AccountStatus, InventoryItem, Order, OrderStatus, ReservationStatus},
    handling::CommandHandler,
};
use vectis_projectors::read_models::accounts::AccountRow;
use vectis_schemas::{events::InventoryEvent, StreamId};

fn status_name(status: &AccountStatus) -> &'static str {
    match status {
        AccountStatus::PendingApproval => "pending_approval",
        AccountStatus::Approved => "approved",
        AccountStatus::Rejected => "rejected",
        AccountStatus::Suspended => "suspended",
    }
}

/// Every account row equals the write model's state at the same version.
pub async fn accounts_match_the_event_store(
    pool: &PgPool,
    handler: &CommandHandler,
    ids: &[Uuid],
) -> Result<(), String> {
    let rows: Vec<AccountRow> = sqlx::query_as("SELECT * FROM read.accounts ORDER BY account_id")
        .fetch_all(pool)
        .await
        .map_err(|e| e.to_string())?;
    if rows.len() != ids.len() {
        return Err(format!("{} rows for {} accounts", rows.len(), ids.len()));
    }
    for row in rows {
        let loaded = handler.load::<Account>(&StreamId::account(row.account_id)).await.map_err(|e| e.to_string())?;
        let account = loaded.state.ok_or("row without account")?;
        let expected = (
            status_name(&account.status),
            account.name.as_str(),
            account.email.as_str(),
            account.credit_limit.amount_minor,
            account.approval_threshold.amount_minor,
            loaded.version,
        );
        let actual = (
            row.status.as_str(),
            row.name.as_str(),
            row.email.as_str(),
            row.credit_limit_minor,
            row.approval_threshold_minor,
            row.version,
        );
        if expected != actual {
            return Err(format!("account {}: expected {expected:?}, read model has {actual:?}", row.account_id));
        }
    }
    Ok(())
}

fn order_status_name(status: &OrderStatus) -> &'static str {
    match status {
        OrderStatus::AwaitingApproval => "awaiting_approval",
        OrderStatus::Placed => "placed",
        OrderStatus::Approved => "approved",
        OrderStatus::Confirmable => "confirmable",
        OrderStatus::Rejected => "rejected",
        OrderStatus::Confirmed => "confirmed",
        OrderStatus::Cancelled => "cancelled",
        OrderStatus::Shipped => "shipped",
        OrderStatus::Delivered => "delivered",
    }
}

fn reservation_status_name(status: &ReservationStatus) -> &'static str {
    match status {
        ReservationStatus::Held => "held",
        ReservationStatus::Released => "released",
        ReservationStatus::Committed => "committed",
        ReservationStatus::Expired => "expired",
        ReservationStatus::Rejected => "rejected",
    }
}

fn reservation_id(event: &InventoryEvent) -> Option<Uuid> {
    Some(match event {
        InventoryEvent::StockReserved(e) => e.reservation_id,
        InventoryEvent::ReservationRejected(e) => e.reservation_id,
        InventoryEvent::ReservationReleased(e) => e.reservation_id,
        InventoryEvent::ReservationCommitted(e) => e.reservation_id,
        InventoryEvent::ReservationExpired(e) => e.reservation_id,
        _ => return None,
    })
}

/// Inventory and order rows equal the write model's state.
pub async fn commerce_matches_the_event_store(
    pool: &PgPool,
    handler: &CommandHandler,
    skus: &[String],
    orders: &[Uuid],
) -> Result<(), String> {
    let fail = |e: sqlx::Error| e.to_string();
    for sku in skus {
        let loaded = handler
            .load::<InventoryItem>(&StreamId::inventory_item(sku).expect("a SKU"))
            .await
            .map_err(|e| e.to_string())?;
        let item = loaded.state.ok_or("no item")?;
        let row: Option<(i64, i64, i64, i64)> =
            sqlx::query_as("SELECT on_hand, reserved, available, version FROM read.inventory_items WHERE sku = $1")
                .bind(sku)
                .fetch_optional(pool)
                .await
                .map_err(fail)?;
        let expected = (item.on_hand, item.reserved(), item.available(), loaded.version);
        if row != Some(expected) {
            return Err(format!("{sku}: expected {expected:?}, read model has {row:?}"));
        }
        // The state holds only held reservations; what became of the others is what the
        // store recalls of them, as a command naming one would see it.
        let stream = StreamId::inventory_item(sku).expect("a SKU");
        let mut history = Vec::new();
        for recorded in handler.store().read_stream(&stream, 1).await.map_err(|e| e.to_string())? {
            let envelope = recorded.upcast().map_err(|e| e.to_string())?;
            history.push(InventoryEvent::from_data(&envelope.event_type, envelope.data).map_err(|e| e.to_string())?);
        }
        let mut recalling = item.clone();
        recalling.recall(&history);
        let ids: BTreeSet<Uuid> = history.iter().filter_map(reservation_id).collect();
        let mut expected: Vec<(Uuid, String)> = ids
            .into_iter()
            .filter_map(|id| recalling.status_of(id).map(|s| (id, reservation_status_name(&s).to_string())))
            .collect();
        expected.sort();
        let mut reservations: Vec<(Uuid, String)> = sqlx::query_as(
            "SELECT reservation_id, status FROM read.inventory_reservations WHERE sku = $1 ORDER BY reservation_id",
        )
        .bind(sku)
        .fetch_all(pool)
        .await
        .map_err(fail)?;
        reservations.sort();
        if reservations != expected {
            return Err(format!("{sku} reservations: expected {expected:?}, read model has {reservations:?}"));
        }
    }
    for order_id in orders {
        let loaded = handler.load::<Order>(&StreamId::order(*order_id)).await.map_err(|e| e.to_string())?;
        let order = loaded.state.ok_or("no order")?;
        let row: Option<(String, i64, i32, i64, Uuid)> = sqlx::query_as(
            "SELECT status, total_minor, line_count, version, account_id FROM read.orders WHERE order_id = $1",
        )
        .bind(order_id)
        .fetch_optional(pool)
        .await
        .map_err(fail)?;
        let expected = (
            order_status_name(&order.status).to_string(),
            order.total.amount_minor,
            order.lines.len() as i32,
            loaded.version,
            order.account_id,
        );
        if row.as_ref() != Some(&expected) {
            return Err(format!("order {order_id}: expected {expected:?}, read model has {row:?}"));
        }
        let lines: Vec<(String, i64)> =
            sqlx::query_as("SELECT sku, quantity FROM read.order_lines WHERE order_id = $1 ORDER BY line_no")
                .bind(order_id)
                .fetch_all(pool)
                .await
                .map_err(fail)?;
        let expected_lines: Vec<(String, i64)> = order.lines.iter().map(|l| (l.sku.clone(), l.quantity)).collect();
        if lines != expected_lines {
            return Err(format!("order {order_id} lines: expected {expected_lines:?}, read model has {lines:?}"));
        }
        let history: i64 = sqlx::query_scalar("SELECT count(*) FROM read.order_status_history WHERE order_id = $1")
            .bind(order_id)
            .fetch_one(pool)
            .await
            .map_err(fail)?;
        if history != loaded.version {
            return Err(format!("order {order_id}: {history} history rows for {} events", loaded.version));
        }
    }
    Ok(())
}
