//! The Vectis event contract.
//!
//! * [`topics`]: the topic registry (partitions, retention, event types per topic).
//! * [`envelope`]: the JSON record value and its headers.
//! * [`events`]: Rust types of the current version of every event.
//! * [`ids`]: typed stream ids and consistency tokens.
//! * [`catalog`]: the JSON Schemas (draft 2020-12), compiled, and the validator.
//! * [`upcast`]: version n → n+1 upcasters so consumers see only current versions.

pub mod catalog;
pub mod envelope;
pub mod events;
pub mod ids;
pub mod samples;
pub mod topics;
pub mod upcast;

pub use catalog::{FieldError, SchemaCatalog, SchemaLoadError, SchemaMode, SchemaViolation};
pub use envelope::EventEnvelope;
pub use ids::{ConsistencyToken, IdError, StreamId};
pub use topics::{TopicNaming, TopicSpec, TOPICS};
