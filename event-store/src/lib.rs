//! The PostgreSQL event store and the relay that copies it, in commit order, to the
//! Kafka-API broker.
//!
//! * [`store`]: append with an expected version in one transaction; read a stream;
//!   read everything committed by global position.
//! * [`batch`]: many streams' appends in one transaction (bulk imports).
//! * [`idempotency`]: idempotency keys with Stripe's semantics.
//! * [`snapshots`]: aggregate state at a stream version, so loading folds only a tail.
//! * [`relay`]: exactly the committed events, in order, none skipped.
//! * [`kafka`]: client configuration and topic provisioning shared by producers and
//!   consumers.

pub mod archive;
pub mod batch;
mod copy_text;
pub mod error;
pub mod idempotency;
pub mod kafka;
pub mod metrics;
mod notifier;
pub mod placement;
pub mod producer;
pub mod readiness;
pub mod relay;
pub mod settings;
pub mod snapshots;
pub mod store;

pub use batch::{BatchWritten, PlannedAppend};
pub use error::{AppendError, StoreError};
pub use idempotency::{IdempotencyBegin, IdempotencyKey, IdempotentCommand, StoredResponse};
pub use metrics::{RelayMetrics, StoreMetrics};
pub use snapshots::{Snapshot, SnapshotPolicy};
pub use store::{
    AppendOutcome, AppendRequest, EventMetadata, EventStore, ExpectedVersion, Mention, NewEvent, RecordedEvent,
};

/// The event store's migrations. Run them with `MIGRATOR.run(&pool)`.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// The channel appends notify after they commit, so the relay wakes without polling.
pub const EVENTS_CHANNEL: &str = "vectis_events";
