//! The record value every topic carries, and the headers that repeat its routing
//! fields so any Kafka console can filter without decoding JSON.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Header names. `content-type` is always [`CONTENT_TYPE_JSON`].
pub mod header {
    pub const EVENT_TYPE: &str = "event_type";
    pub const SCHEMA_VERSION: &str = "schema_version";
    pub const EVENT_ID: &str = "event_id";
    pub const CONTENT_TYPE: &str = "content-type";
    /// W3C trace context, present when the command that caused the event had one.
    pub const TRACEPARENT: &str = "traceparent";
}

pub const CONTENT_TYPE_JSON: &str = "application/json";

/// The JSON envelope of one event, exactly as stored and published.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EventEnvelope {
    /// UUIDv7: unique, and sortable by creation time.
    pub event_id: Uuid,
    pub event_type: String,
    pub schema_version: u32,
    /// The aggregate instance, also the record key.
    pub stream_id: String,
    /// 1-based position of the event within its stream.
    pub stream_version: i64,
    /// Position in the whole store; increases with insert order, which is not commit
    /// order (the relay accounts for that).
    pub global_position: i64,
    pub occurred_at: DateTime<Utc>,
    pub correlation_id: Uuid,
    pub causation_id: Option<Uuid>,
    /// The event itself, as the JSON Schema of its type and version describes it.
    pub data: serde_json::Value,
}

impl EventEnvelope {
    /// Headers of the record that carries this envelope, in publishing order.
    pub fn headers<'a>(&'a self, traceparent: Option<&'a str>) -> Vec<(&'static str, String)> {
        let mut headers = vec![
            (header::EVENT_TYPE, self.event_type.clone()),
            (header::SCHEMA_VERSION, self.schema_version.to_string()),
            (header::EVENT_ID, self.event_id.to_string()),
            (header::CONTENT_TYPE, CONTENT_TYPE_JSON.to_string()),
        ];
        if let Some(tp) = traceparent {
            headers.push((header::TRACEPARENT, tp.to_string()));
        }
        headers
    }

    /// The record value.
    pub fn to_json_bytes(&self) -> Vec<u8> {
        // Serialising a struct of plain fields and a `Value` cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    pub fn from_json_bytes(bytes: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use proptest::prelude::*;

    fn json_value() -> impl Strategy<Value = serde_json::Value> {
        let leaf = prop_oneof![
            Just(serde_json::Value::Null),
            any::<bool>().prop_map(serde_json::Value::Bool),
            any::<i64>().prop_map(|n| serde_json::json!(n)),
            ".{0,20}".prop_map(serde_json::Value::String),
        ];
        leaf.prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::Array),
                prop::collection::btree_map("[a-z_]{1,8}", inner, 0..4)
                    .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
            ]
        })
    }

    prop_compose! {
        fn envelope()(
            id in any::<u128>(),
            event_type in "[A-Z][A-Za-z]{0,30}",
            schema_version in 1u32..100,
            stream_id in "[a-z]{1,10}-[0-9a-f-]{1,36}",
            stream_version in 1i64..i64::MAX,
            global_position in 1i64..i64::MAX,
            millis in 0i64..4_102_444_800_000,
            correlation in any::<u128>(),
            causation in proptest::option::of(any::<u128>()),
            data in json_value(),
        ) -> EventEnvelope {
            EventEnvelope {
                event_id: Uuid::from_u128(id),
                event_type,
                schema_version,
                stream_id,
                stream_version,
                global_position,
                occurred_at: Utc.timestamp_millis_opt(millis).single().unwrap_or_default(),
                correlation_id: Uuid::from_u128(correlation),
                causation_id: causation.map(Uuid::from_u128),
                data,
            }
        }
    }

    proptest! {
        #[test]
        fn envelope_survives_serialise_then_parse(env in envelope()) {
            let parsed = EventEnvelope::from_json_bytes(&env.to_json_bytes()).expect("parses");
            prop_assert_eq!(parsed, env);
        }
    }

    #[test]
    fn envelope_json_has_exactly_the_designed_fields() {
        let env = EventEnvelope {
            event_id: Uuid::now_v7(),
            event_type: "OrderConfirmed".into(),
            schema_version: 1,
            stream_id: "order-1".into(),
            stream_version: 3,
            global_position: 42,
            occurred_at: Utc::now(),
            correlation_id: Uuid::now_v7(),
            causation_id: None,
            data: serde_json::json!({"order_id": "x"}),
        };
        let value: serde_json::Value = serde_json::from_slice(&env.to_json_bytes()).expect("json");
        let mut keys: Vec<_> = value.as_object().expect("object").keys().cloned().collect();
        keys.sort();
        assert_eq!(
            keys,
            [
                "causation_id",
                "correlation_id",
                "data",
                "event_id",
                "event_type",
                "global_position",
                "occurred_at",
                "schema_version",
                "stream_id",
                "stream_version"
            ]
        );
        let headers = env.headers(Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"));
        let names: Vec<_> = headers.iter().map(|(k, _)| *k).collect();
        assert_eq!(names, ["event_type", "schema_version", "event_id", "content-type", "traceparent"]);
    }
}
