//! The Rust types of the current version of every event. They mirror the JSON Schema
//! files; a test checks that a sample of each type validates against its schema, so
//! the two cannot drift apart silently.

mod accounts;
mod inventory;
mod orders;

pub use accounts::*;
pub use inventory::*;
pub use orders::*;

use serde::{Deserialize, Serialize};

/// An amount in integer minor units (cents) with its ISO 4217 code. Never a float.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Money {
    pub amount_minor: i64,
    pub currency: String,
}

impl Money {
    pub fn new(amount_minor: i64, currency: impl Into<String>) -> Self {
        Self { amount_minor, currency: currency.into() }
    }
}

/// Why an event could not be turned into a typed event.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("event type {0} does not belong to this topic")]
    UnknownEventType(String),
    #[error("event data of {event_type} does not match its type: {source}")]
    Data {
        event_type: String,
        #[source]
        source: serde_json::Error,
    },
}

/// Generates a topic's event enum with the conversions the event store and the
/// consumers need, from one list of variants.
macro_rules! topic_events {
    ($(#[$meta:meta])* $name:ident, $topic:path, { $($variant:ident),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq)]
        pub enum $name {
            $($variant($variant)),+
        }

        impl $name {
            /// The topic these events are published to.
            pub const TOPIC: &'static $crate::topics::TopicSpec = &$topic;

            /// The `event_type` of this event, as in the envelope and the registry.
            pub fn event_type(&self) -> &'static str {
                match self {
                    $(Self::$variant(_) => stringify!($variant)),+
                }
            }

            /// The schema version producers write for this event type today.
            pub fn schema_version(&self) -> u32 {
                $crate::topics::event_type_spec(self.event_type())
                    .map(|spec| spec.current_version)
                    .unwrap_or(1)
            }

            /// The envelope's `data` object.
            pub fn to_data(&self) -> serde_json::Value {
                // Plain data structs always serialise.
                match self {
                    $(Self::$variant(e) => serde_json::to_value(e).unwrap_or_default()),+
                }
            }

            /// Decodes `data` of the current schema version (upcast older versions first).
            pub fn from_data(event_type: &str, data: serde_json::Value) -> Result<Self, $crate::events::DecodeError> {
                let map_err = |source| $crate::events::DecodeError::Data { event_type: event_type.to_string(), source };
                match event_type {
                    $(stringify!($variant) => serde_json::from_value(data).map(Self::$variant).map_err(map_err),)+
                    other => Err($crate::events::DecodeError::UnknownEventType(other.to_string())),
                }
            }
        }

        $(
            impl From<$variant> for $name {
                fn from(e: $variant) -> Self {
                    Self::$variant(e)
                }
            }
        )+
    };
}
pub(crate) use topic_events;
