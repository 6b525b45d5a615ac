//! Valid sample events, for tests, benchmarks and demos (their streams:
//! [`crate::StreamId`]'s builders).

use uuid::Uuid;

use crate::events::*;

pub fn account_registered(account_id: Uuid, name: &str) -> AccountEvent {
    AccountRegistered {
        account_id,
        name: name.to_string(),
        email: "buyer@example.com".into(),
        credit_limit: Money::new(10_000_000, "EUR"),
        approval_threshold: Money::new(1_000_000, "EUR"),
    }
    .into()
}

pub fn account_approved(account_id: Uuid) -> AccountEvent {
    AccountApproved { account_id, approved_by: "staff:sample".into() }.into()
}

pub fn item_created(sku: &str) -> InventoryEvent {
    ItemCreated {
        sku: sku.to_string(),
        name: format!("Sample item {sku}"),
        description: "A sample stock keeping unit".into(),
        unit_price: Money::new(1_250, "EUR"),
    }
    .into()
}

pub fn item_price_changed(sku: &str, previous_minor: i64, minor: i64) -> InventoryEvent {
    ItemPriceChanged {
        sku: sku.to_string(),
        previous_unit_price: Money::new(previous_minor, "EUR"),
        unit_price: Money::new(minor, "EUR"),
        changed_by: "staff:sample".into(),
        reason: None,
    }
    .into()
}

pub fn stock_received(sku: &str, quantity: i64) -> InventoryEvent {
    StockReceived { sku: sku.to_string(), quantity, reference: None }.into()
}

pub fn order_placed(order_id: Uuid, account_id: Uuid, sku: &str, quantity: i64) -> OrderEvent {
    let unit_price = Money::new(1_250, "EUR");
    let line_total = Money::new(1_250 * quantity, "EUR");
    OrderPlaced {
        order_id,
        account_id,
        currency: "EUR".into(),
        lines: vec![OrderLine { sku: sku.to_string(), quantity, unit_price, line_total: line_total.clone() }],
        total: line_total,
    }
    .into()
}

pub fn order_confirmed(order_id: Uuid) -> OrderEvent {
    OrderConfirmed { order_id }.into()
}
