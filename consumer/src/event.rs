//! Records as projections see them: the envelope, upcast to the current schema
//! version, with the typed event of its topic.

use chrono::{DateTime, Utc};
use uuid::Uuid;
use vectis_schemas::{
    events::{AccountEvent, InventoryEvent, OrderEvent},
    upcast::upcast_envelope,
    EventEnvelope, IdError, StreamId,
};

/// Any event of the log.
#[derive(Debug, Clone, PartialEq)]
pub enum DomainEvent {
    Account(AccountEvent),
    Inventory(InventoryEvent),
    Order(OrderEvent),
}

impl DomainEvent {
    pub fn event_type(&self) -> &'static str {
        match self {
            Self::Account(e) => e.event_type(),
            Self::Inventory(e) => e.event_type(),
            Self::Order(e) => e.event_type(),
        }
    }
}

/// One event ready to apply.
#[derive(Debug, Clone, PartialEq)]
pub struct ProjectedEvent {
    pub event_id: Uuid,
    /// The business conversation the event belongs to (an order's, from its placement).
    pub correlation_id: Uuid,
    pub stream_id: StreamId,
    pub stream_version: i64,
    pub global_position: i64,
    pub occurred_at: DateTime<Utc>,
    pub event: DomainEvent,
}

/// Why a record cannot be applied at all: it is parked, never retried by itself.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("the value is not an event envelope: {0}")]
    Envelope(String),
    #[error("cannot upcast: {0}")]
    Upcast(String),
    #[error("{0}")]
    Data(String),
    #[error("the envelope's stream {envelope} differs from the record key {key:?}")]
    KeyMismatch { envelope: String, key: Option<String> },
}

/// Decodes a record's value. The topic is the logical one (`vectis.orders`).
pub fn decode(logical_topic: &str, key: Option<&str>, value: &[u8]) -> Result<ProjectedEvent, DecodeError> {
    let envelope = EventEnvelope::from_json_bytes(value).map_err(|e| DecodeError::Envelope(e.to_string()))?;
    if key != Some(envelope.stream_id.as_str()) {
        return Err(DecodeError::KeyMismatch { envelope: envelope.stream_id, key: key.map(str::to_string) });
    }
    let envelope = upcast_envelope(envelope).map_err(|e| DecodeError::Upcast(e.to_string()))?;
    let stream_id: StreamId = envelope.stream_id.parse().map_err(|e: IdError| DecodeError::Data(e.to_string()))?;
    let data = envelope.data;
    let event_type = envelope.event_type.as_str();
    let event = match logical_topic {
        t if t == vectis_schemas::topics::ACCOUNTS.name => {
            AccountEvent::from_data(event_type, data).map(DomainEvent::Account)
        }
        t if t == vectis_schemas::topics::INVENTORY.name => {
            InventoryEvent::from_data(event_type, data).map(DomainEvent::Inventory)
        }
        t if t == vectis_schemas::topics::ORDERS.name => {
            OrderEvent::from_data(event_type, data).map(DomainEvent::Order)
        }
        other => return Err(DecodeError::Data(format!("topic {other} carries no events this projector knows"))),
    }
    .map_err(|e| DecodeError::Data(e.to_string()))?;
    Ok(ProjectedEvent {
        event_id: envelope.event_id,
        correlation_id: envelope.correlation_id,
        stream_id,
        stream_version: envelope.stream_version,
        global_position: envelope.global_position,
        occurred_at: envelope.occurred_at,
        event,
    })
}
