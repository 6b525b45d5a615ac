//! `read.inventory_items` (per SKU: unit price, on hand, reserved, available, version) and
//! `read.inventory_reservations` (status `held`, `released`, `expired`, `committed`
//! or `rejected`, with `expires_at`).

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use uuid::Uuid;
use vectis_consumer::event::{DomainEvent, ProjectedEvent};
use vectis_read_side::{catalog, status::ReservationStatus};
use vectis_schemas::events::InventoryEvent;

pub struct Inventory;

#[derive(Debug, Clone, PartialEq, sqlx::FromRow, serde::Serialize, serde::Deserialize)]
pub struct ItemRow {
    pub sku: String,
    pub name: String,
    pub description: String,
    pub unit_price_minor: i64,
    pub currency: String,
    pub on_hand: i64,
    pub reserved: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub version: i64,
}

#[derive(Debug, Clone, PartialEq, sqlx::FromRow, serde::Serialize, serde::Deserialize)]
pub struct ReservationRow {
    pub reservation_id: Uuid,
    pub sku: String,
    pub order_id: Uuid,
    pub quantity: i64,
    pub status: ReservationStatus,
    pub expires_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl ReservationRow {
    /// A reservation as its first event records it.
    fn opened(
        reservation_id: Uuid,
        sku: &str,
        order_id: Uuid,
        quantity: i64,
        status: ReservationStatus,
        expires_at: Option<DateTime<Utc>>,
        at: DateTime<Utc>,
    ) -> Self {
        let sku = sku.to_string();
        Self { reservation_id, sku, order_id, quantity, status, expires_at, created_at: at, updated_at: at }
    }
}

const DDL: &str = "
CREATE TABLE IF NOT EXISTS {schema}.inventory_items (
    sku              text        PRIMARY KEY,
    name             text        NOT NULL,
    description      text        NOT NULL,
    unit_price_minor bigint      NOT NULL,
    currency         text        NOT NULL,
    on_hand          bigint      NOT NULL,
    reserved         bigint      NOT NULL,
    created_at       timestamptz NOT NULL,
    updated_at       timestamptz NOT NULL,
    version          bigint      NOT NULL,
    available        bigint      GENERATED ALWAYS AS (on_hand - reserved) STORED
);
CREATE INDEX IF NOT EXISTS inventory_items_available ON {schema}.inventory_items (available, sku);
CREATE TABLE IF NOT EXISTS {schema}.inventory_reservations (
    reservation_id uuid        PRIMARY KEY,
    sku            text        NOT NULL,
    order_id       uuid        NOT NULL,
    quantity       bigint      NOT NULL,
    status         text        NOT NULL,
    expires_at     timestamptz,
    created_at     timestamptz NOT NULL,
    updated_at     timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS inventory_reservations_sku ON {schema}.inventory_reservations (sku, status);
CREATE INDEX IF NOT EXISTS inventory_reservations_order ON {schema}.inventory_reservations (order_id);
";

/// The state one batch works on: the items and reservations its events touch.
#[derive(Debug, Default)]
pub struct InventoryState {
    pub items: HashMap<String, ItemRow>,
    pub reservations: HashMap<Uuid, ReservationRow>,
}

impl InventoryState {
    /// Folds one event of `sku`'s stream.
    pub fn evolve(&mut self, event: &InventoryEvent, version: i64, at: DateTime<Utc>) {
        if let InventoryEvent::ItemCreated(e) = event {
            self.items.insert(
                e.sku.clone(),
                ItemRow {
                    sku: e.sku.clone(),
                    name: e.name.clone(),
                    description: e.description.clone(),
                    unit_price_minor: e.unit_price.amount_minor,
                    currency: e.unit_price.currency.clone(),
                    on_hand: 0,
                    reserved: 0,
                    created_at: at,
                    updated_at: at,
                    version,
                },
            );
            return;
        }
        let sku = sku_of(event);
        let Some(item) = self.items.get_mut(sku) else { return };
        let mut settle = |reservation_id: &Uuid, status: ReservationStatus, item: &mut ItemRow| {
            if let Some(reservation) = self.reservations.get_mut(reservation_id) {
                if reservation.status == ReservationStatus::Held {
                    item.reserved -= reservation.quantity;
                }
                reservation.status = status;
                reservation.updated_at = at;
            }
        };
        match event {
            InventoryEvent::ItemCreated(_) => {}
            InventoryEvent::ItemPriceChanged(e) => {
                item.unit_price_minor = e.unit_price.amount_minor;
                item.currency = e.unit_price.currency.clone();
            }
            InventoryEvent::StockReceived(e) => item.on_hand += e.quantity,
            InventoryEvent::StockAdjusted(e) => item.on_hand += e.delta,
            InventoryEvent::StockReserved(e) => {
                item.reserved += e.quantity;
                let held = ReservationRow::opened(
                    e.reservation_id,
                    &e.sku,
                    e.order_id,
                    e.quantity,
                    ReservationStatus::Held,
                    Some(e.expires_at),
                    at,
                );
                self.reservations.insert(e.reservation_id, held);
            }
            InventoryEvent::ReservationRejected(e) => {
                let rejected = ReservationRow::opened(
                    e.reservation_id,
                    &e.sku,
                    e.order_id,
                    e.quantity,
                    ReservationStatus::Rejected,
                    None,
                    at,
                );
                self.reservations.insert(e.reservation_id, rejected);
            }
            InventoryEvent::ReservationReleased(e) => settle(&e.reservation_id, ReservationStatus::Released, item),
            InventoryEvent::ReservationExpired(e) => settle(&e.reservation_id, ReservationStatus::Expired, item),
            InventoryEvent::ReservationCommitted(e) => {
                settle(&e.reservation_id, ReservationStatus::Committed, item);
                // Committed units leave the warehouse.
                item.on_hand -= e.quantity;
            }
        }
        item.updated_at = at;
        item.version = version;
    }
}

pub fn sku_of(event: &InventoryEvent) -> &str {
    match event {
        InventoryEvent::ItemCreated(e) => &e.sku,
        InventoryEvent::ItemPriceChanged(e) => &e.sku,
        InventoryEvent::StockReceived(e) => &e.sku,
        InventoryEvent::StockAdjusted(e) => &e.sku,
        InventoryEvent::StockReserved(e) => &e.sku,
        InventoryEvent::ReservationRejected(e) => &e.sku,
        InventoryEvent::ReservationReleased(e) => &e.sku,
        InventoryEvent::ReservationExpired(e) => &e.sku,
        InventoryEvent::ReservationCommitted(e) => &e.sku,
    }
}

/// The reservation an event settles (released, expired, committed).
pub fn reservation_of(event: &InventoryEvent) -> Option<Uuid> {
    match event {
        InventoryEvent::ReservationReleased(e) => Some(e.reservation_id),
        InventoryEvent::ReservationExpired(e) => Some(e.reservation_id),
        InventoryEvent::ReservationCommitted(e) => Some(e.reservation_id),
        _ => None,
    }
}

async fn apply(conn: &mut PgConnection, schema: &str, events: &[ProjectedEvent]) -> Result<(), sqlx::Error> {
    let inventory_events: Vec<(&InventoryEvent, &ProjectedEvent)> = events
        .iter()
        .filter_map(|e| match &e.event {
            DomainEvent::Inventory(event) => Some((event, e)),
            _ => None,
        })
        .collect();
    let skus: Vec<String> = inventory_events.iter().map(|(e, _)| sku_of(e).to_string()).collect();
    let reservation_ids: Vec<Uuid> = inventory_events.iter().filter_map(|(e, _)| reservation_of(e)).collect();
    let mut state = InventoryState::default();
    let items: Vec<ItemRow> = sqlx::query_as(&format!(
        "SELECT sku, name, description, unit_price_minor, currency, on_hand, reserved, created_at, updated_at, version
           FROM {schema}.inventory_items WHERE sku = ANY($1)"
    ))
    .bind(&skus)
    .fetch_all(&mut *conn)
    .await?;
    state.items = items.into_iter().map(|i| (i.sku.clone(), i)).collect();
    let reservations: Vec<ReservationRow> =
        sqlx::query_as(&format!("SELECT * FROM {schema}.inventory_reservations WHERE reservation_id = ANY($1)"))
            .bind(&reservation_ids)
            .fetch_all(&mut *conn)
            .await?;
    state.reservations = reservations.into_iter().map(|r| (r.reservation_id, r)).collect();
    for (event, projected) in &inventory_events {
        state.evolve(event, projected.stream_version, projected.occurred_at);
    }
    let items: Vec<&ItemRow> = state.items.values().collect();
    if !items.is_empty() {
        sqlx::query(&format!(
            "INSERT INTO {schema}.inventory_items
                 (sku, name, description, unit_price_minor, currency, on_hand, reserved, created_at, updated_at, version)
             SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::bigint[], $5::text[], $6::bigint[],
                                  $7::bigint[], $8::timestamptz[], $9::timestamptz[], $10::bigint[])
             ON CONFLICT (sku) DO UPDATE SET
                unit_price_minor = EXCLUDED.unit_price_minor, currency = EXCLUDED.currency,
                on_hand = EXCLUDED.on_hand, reserved = EXCLUDED.reserved,
                updated_at = EXCLUDED.updated_at, version = EXCLUDED.version"
        ))
        .bind(items.iter().map(|i| i.sku.clone()).collect::<Vec<_>>())
        .bind(items.iter().map(|i| i.name.clone()).collect::<Vec<_>>())
        .bind(items.iter().map(|i| i.description.clone()).collect::<Vec<_>>())
        .bind(items.iter().map(|i| i.unit_price_minor).collect::<Vec<_>>())
        .bind(items.iter().map(|i| i.currency.clone()).collect::<Vec<_>>())
        .bind(items.iter().map(|i| i.on_hand).collect::<Vec<_>>())
        .bind(items.iter().map(|i| i.reserved).collect::<Vec<_>>())
        .bind(items.iter().map(|i| i.created_at).collect::<Vec<_>>())
        .bind(items.iter().map(|i| i.updated_at).collect::<Vec<_>>())
        .bind(items.iter().map(|i| i.version).collect::<Vec<_>>())
        .execute(&mut *conn)
        .await?;
    }
    let reservations: Vec<&ReservationRow> = state.reservations.values().collect();
    if !reservations.is_empty() {
        sqlx::query(&format!(
            "INSERT INTO {schema}.inventory_reservations
             SELECT * FROM UNNEST($1::uuid[], $2::text[], $3::uuid[], $4::bigint[], $5::text[], $6::timestamptz[],
                                  $7::timestamptz[], $8::timestamptz[])
             ON CONFLICT (reservation_id) DO UPDATE SET status = EXCLUDED.status, updated_at = EXCLUDED.updated_at"
        ))
        .bind(reservations.iter().map(|r| r.reservation_id).collect::<Vec<_>>())
        .bind(reservations.iter().map(|r| r.sku.clone()).collect::<Vec<_>>())
        .bind(reservations.iter().map(|r| r.order_id).collect::<Vec<_>>())
        .bind(reservations.iter().map(|r| r.quantity).collect::<Vec<_>>())
        .bind(reservations.iter().map(|r| r.status.as_str()).collect::<Vec<_>>())
        .bind(reservations.iter().map(|r| r.expires_at).collect::<Vec<_>>())
        .bind(reservations.iter().map(|r| r.created_at).collect::<Vec<_>>())
        .bind(reservations.iter().map(|r| r.updated_at).collect::<Vec<_>>())
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

read_model!(Inventory, catalog::INVENTORY, DDL, &["inventory_items", "inventory_reservations"]);
