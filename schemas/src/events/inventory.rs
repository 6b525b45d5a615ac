use super::{topic_events, Money};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ItemCreated {
    pub sku: String,
    pub name: String,
    pub description: String,
    pub unit_price: Money,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ItemPriceChanged {
    pub sku: String,
    pub previous_unit_price: Money,
    pub unit_price: Money,
    /// `staff:<key name>`, or the import that changed it.
    pub changed_by: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StockReceived {
    pub sku: String,
    pub quantity: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
}

/// Why stock was adjusted (schema v2; v1's free text is upcast to `Other` + note).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AdjustmentReason {
    CycleCount,
    Damaged,
    Lost,
    Found,
    Returned,
    Correction,
    Other,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StockAdjusted {
    pub sku: String,
    /// Signed change of on-hand stock; never zero.
    pub delta: i64,
    pub reason: AdjustmentReason,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StockReserved {
    pub sku: String,
    pub reservation_id: Uuid,
    pub order_id: Uuid,
    pub quantity: i64,
    pub expires_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReservationRejected {
    pub sku: String,
    pub reservation_id: Uuid,
    pub order_id: Uuid,
    pub quantity: i64,
    pub available: i64,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReservationReleased {
    pub sku: String,
    pub reservation_id: Uuid,
    pub order_id: Uuid,
    pub quantity: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReservationExpired {
    pub sku: String,
    pub reservation_id: Uuid,
    pub order_id: Uuid,
    pub quantity: i64,
    pub expired_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReservationCommitted {
    pub sku: String,
    pub reservation_id: Uuid,
    pub order_id: Uuid,
    pub quantity: i64,
}

topic_events!(
    /// Events of the `vectis.inventory` topic.
    InventoryEvent, crate::topics::INVENTORY, {
    ItemCreated,
    ItemPriceChanged,
    StockReceived,
    StockAdjusted,
    StockReserved,
    ReservationRejected,
    ReservationReleased,
    ReservationExpired,
    ReservationCommitted,
});
