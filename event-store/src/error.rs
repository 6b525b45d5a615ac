//! Typed errors. A rejected append (conflict, schema, misrouted stream) is the
//! caller's problem and maps to 4xx; `Database` is infrastructure and maps to 5xx.

use vectis_schemas::{SchemaViolation, StreamId};

use crate::store::ExpectedVersion;

#[derive(Debug, thiserror::Error)]
pub enum AppendError {
    /// Someone else appended first (HTTP 409).
    #[error("stream {stream_id} is at version {}, expected {expected}", actual.map_or("none (no stream)".to_string(), |v| v.to_string()))]
    Conflict { stream_id: StreamId, expected: ExpectedVersion, actual: Option<i64> },
    /// The event does not match its schema (strict mode), or its type is unknown.
    #[error(transparent)]
    Schema(#[from] SchemaViolation),
    /// Every event of a stream must go to the one topic its id prefix names, or
    /// per-aggregate order would be split across topics.
    #[error("stream {stream_id} cannot hold {event_type}: that event type goes to {topic}, whose streams start with `{prefix}`")]
    StreamTopicMismatch { stream_id: StreamId, event_type: String, topic: &'static str, prefix: &'static str },
    #[error("an append needs at least one event")]
    NoEvents,
    #[error("event store unavailable: {0}")]
    Database(#[from] sqlx::Error),
}

impl AppendError {
    /// True when the caller can fix the request (4xx), false for infrastructure (5xx).
    pub fn is_rejection(&self) -> bool {
        !matches!(self, Self::Database(_))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("event store unavailable: {0}")]
    Database(#[from] sqlx::Error),
    #[error("stored event {global_position} is unreadable: {reason}")]
    Corrupt { global_position: i64, reason: String },
    /// Completed records always carry a response; one without is damage.
    #[error("idempotency record {scope}/{key} has no stored response")]
    IncompleteIdempotencyRecord { scope: String, key: String },
}
