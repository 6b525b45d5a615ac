use super::{topic_events, Money};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrderLine {
    pub sku: String,
    pub quantity: i64,
    pub unit_price: Money,
    pub line_total: Money,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrderPlaced {
    pub order_id: Uuid,
    pub account_id: Uuid,
    pub currency: String,
    pub lines: Vec<OrderLine>,
    pub total: Money,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrderApprovalRequested {
    pub order_id: Uuid,
    pub account_id: Uuid,
    pub total: Money,
    pub approval_threshold: Money,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrderApproved {
    pub order_id: Uuid,
    pub approved_by: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrderRejected {
    pub order_id: Uuid,
    pub rejected_by: String,
    pub reason: String,
}

/// One line's reservation, as the order records it once stock is held.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeldLine {
    pub sku: String,
    pub reservation_id: Uuid,
    pub quantity: i64,
}

/// Every line is held: the order can be confirmed (the order lifecycle decides it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrderStockHeld {
    pub order_id: Uuid,
    pub reservations: Vec<HeldLine>,
    pub expires_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrderConfirmed {
    pub order_id: Uuid,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrderCancelled {
    pub order_id: Uuid,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrderShipped {
    pub order_id: Uuid,
    pub carrier: String,
    pub tracking_number: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrderDelivered {
    pub order_id: Uuid,
}

topic_events!(
    /// Events of the `vectis.orders` topic.
    OrderEvent, crate::topics::ORDERS, {
    OrderPlaced,
    OrderApprovalRequested,
    OrderApproved,
    OrderRejected,
    OrderStockHeld,
    OrderConfirmed,
    OrderCancelled,
    OrderShipped,
    OrderDelivered,
});

impl OrderEvent {
    /// The order the event belongs to (its stream is `order-<id>`).
    pub fn order_id(&self) -> Uuid {
        match self {
            Self::OrderPlaced(e) => e.order_id,
            Self::OrderApprovalRequested(e) => e.order_id,
            Self::OrderApproved(e) => e.order_id,
            Self::OrderRejected(e) => e.order_id,
            Self::OrderStockHeld(e) => e.order_id,
            Self::OrderConfirmed(e) => e.order_id,
            Self::OrderCancelled(e) => e.order_id,
            Self::OrderShipped(e) => e.order_id,
            Self::OrderDelivered(e) => e.order_id,
        }
    }
}
