//! Schema evolution: each new version of an event type comes with an upcaster from
//! the previous version, so consumers only ever see the current version.

use serde_json::{json, Value};

use crate::{envelope::EventEnvelope, topics};

/// Rewrites `data` of `event_type` at `from_version` into `from_version + 1`.
pub struct Upcaster {
    pub event_type: &'static str,
    pub from_version: u32,
    pub upcast: fn(Value) -> Result<Value, String>,
}

/// Every upcaster. Adding version n+1 of a type means adding its n → n+1 entry here;
/// a test fails when a registered version has no path from version 1.
pub const UPCASTERS: &[Upcaster] =
    &[Upcaster { event_type: "StockAdjusted", from_version: 1, upcast: stock_adjusted_v1_to_v2 }];

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UpcastError {
    #[error("unknown event type {0}")]
    UnknownEventType(String),
    #[error("{event_type} v{version} is newer than this build knows (v{current})")]
    FromTheFuture { event_type: String, version: u32, current: u32 },
    #[error("no upcaster for {event_type} v{version} → v{}", .version + 1)]
    MissingUpcaster { event_type: String, version: u32 },
    #[error("cannot upcast {event_type} v{version}: {reason}")]
    Failed { event_type: String, version: u32, reason: String },
}

/// Brings `data` of `event_type` at `version` to the registry's current version.
///
/// ```
/// use serde_json::json;
/// let v1 = json!({"sku": "BOLT-M8", "delta": -2, "reason": "water damage"});
/// let (version, current) = vectis_schemas::upcast::upcast_to_current("StockAdjusted", 1, v1).unwrap();
/// assert_eq!(version, 2);
/// assert_eq!(current, json!({"sku": "BOLT-M8", "delta": -2, "reason": "other", "note": "water damage"}));
/// ```
pub fn upcast_to_current(event_type: &str, mut version: u32, mut data: Value) -> Result<(u32, Value), UpcastError> {
    let current = topics::event_type_spec(event_type)
        .ok_or_else(|| UpcastError::UnknownEventType(event_type.to_string()))?
        .current_version;
    if version > current {
        return Err(UpcastError::FromTheFuture { event_type: event_type.to_string(), version, current });
    }
    while version < current {
        let step = UPCASTERS
            .iter()
            .find(|u| u.event_type == event_type && u.from_version == version)
            .ok_or_else(|| UpcastError::MissingUpcaster { event_type: event_type.to_string(), version })?;
        data = (step.upcast)(data).map_err(|reason| UpcastError::Failed {
            event_type: event_type.to_string(),
            version,
            reason,
        })?;
        version += 1;
    }
    Ok((version, data))
}

/// The envelope with its `data` and `schema_version` at the current version.
pub fn upcast_envelope(mut envelope: EventEnvelope) -> Result<EventEnvelope, UpcastError> {
    let data = std::mem::take(&mut envelope.data);
    let (version, data) = upcast_to_current(&envelope.event_type, envelope.schema_version, data)?;
    envelope.schema_version = version;
    envelope.data = data;
    Ok(envelope)
}

/// v1 carried a free-text `reason`; v2 has a reason code and an optional note. Text
/// that names a code exactly becomes that code; anything else becomes `other` with
/// the original text kept as the note, so no information is lost.
fn stock_adjusted_v1_to_v2(data: Value) -> Result<Value, String> {
    let Value::Object(mut fields) = data else {
        return Err("data is not an object".into());
    };
    let reason = match fields.remove("reason") {
        Some(Value::String(text)) => text,
        _ => return Err("v1 `reason` must be a string".into()),
    };
    let normalised = reason.trim().to_ascii_lowercase().replace([' ', '-'], "_");
    let code = ["cycle_count", "damaged", "lost", "found", "returned", "correction"]
        .into_iter()
        .find(|code| *code == normalised);
    match code {
        Some(code) => {
            fields.insert("reason".into(), json!(code));
        }
        None => {
            fields.insert("reason".into(), json!("other"));
            fields.insert("note".into(), json!(reason));
        }
    }
    Ok(Value::Object(fields))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topics::TOPICS;

    #[test]
    fn every_registered_version_has_a_path_from_version_one() {
        for spec in TOPICS.iter().flat_map(|t| t.event_types.iter()) {
            for from in 1..spec.current_version {
                assert!(
                    UPCASTERS.iter().any(|u| u.event_type == spec.name && u.from_version == from),
                    "{} has no upcaster v{from} → v{}",
                    spec.name,
                    from + 1
                );
            }
        }
    }

    #[test]
    fn free_text_reason_becomes_other_with_the_text_as_note() {
        let v1 = json!({"sku": "BOLT-M8", "delta": -3, "reason": "forklift ran over a box"});
        let (version, v2) = upcast_to_current("StockAdjusted", 1, v1).expect("upcasts");
        assert_eq!(version, 2);
        assert_eq!(v2, json!({"sku": "BOLT-M8", "delta": -3, "reason": "other", "note": "forklift ran over a box"}));
    }

    #[test]
    fn reason_text_that_names_a_code_becomes_that_code() {
        let v1 = json!({"sku": "BOLT-M8", "delta": 5, "reason": "Cycle count"});
        let (_, v2) = upcast_to_current("StockAdjusted", 1, v1).expect("upcasts");
        assert_eq!(v2, json!({"sku": "BOLT-M8", "delta": 5, "reason": "cycle_count"}));
    }

    #[test]
    fn current_versions_pass_through_and_future_versions_are_refused() {
        let data = json!({"order_id": "0190a5b2-0000-7000-8000-000000000000"});
        assert_eq!(upcast_to_current("OrderConfirmed", 1, data.clone()), Ok((1, data.clone())));
        assert!(matches!(upcast_to_current("OrderConfirmed", 2, data.clone()), Err(UpcastError::FromTheFuture { .. })));
        assert!(matches!(upcast_to_current("Nope", 1, data), Err(UpcastError::UnknownEventType(_))));
    }
}
