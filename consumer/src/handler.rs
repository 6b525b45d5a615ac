//! What a handler of the log implements; the runtime does the rest: consuming,
//! decoding, skipping duplicates, parking gaps and poison, checkpointing.

use futures::{future::BoxFuture, FutureExt};
use sqlx::PgConnection;
use vectis_read_side::ProjectionSpec;

use crate::event::ProjectedEvent;

/// Why applying a batch failed.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    /// The search engine refused or failed the write (a search projection).
    #[error("search engine: {message}")]
    Engine { message: String, transient: bool },
}

impl ApplyError {
    /// Failures that go away by themselves: retried for as long as it takes, never
    /// parked. Others are retried a few times, then the failing streams park.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Database(error) => is_transient_database_error(error),
            Self::Engine { transient, .. } => *transient,
        }
    }
}

/// Lost connections, an exhausted pool, serialization failures and deadlocks, a
/// server shutting down.
pub fn is_transient_database_error(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => {
            let code = db.code().unwrap_or_default();
            matches!(code.as_ref(), "40001" | "40P01" | "57P01" | "57P02" | "57P03" | "53300") || code.starts_with("08")
        }
        _ => false,
    }
}

/// A handler: one consumer group, its writes in PostgreSQL (and perhaps beyond, as a
/// search index's), versioned so that a rebuild can fill a new version beside the live one.
pub trait Handler: Send + Sync + 'static {
    /// Its name and topics, from the read-side contract.
    fn spec(&self) -> &'static ProjectionSpec;

    /// Also names its consumer group (`vectis.projection.<name>`) and its schemas
    /// (`proj_<name>_v<version>`).
    fn name(&self) -> &'static str {
        self.spec().name
    }

    /// The logical topics it reads.
    fn topics(&self) -> &'static [&'static str] {
        self.spec().topics
    }

    /// Applies events in one statement set per table, within the caller's transaction,
    /// in the schema `schema` of the version being built. The runtime guarantees that,
    /// per stream, `events` continue the stream exactly (no duplicates, no gaps) and are
    /// in stream order.
    fn apply<'a>(
        &'a self,
        conn: &'a mut PgConnection,
        schema: &'a str,
        events: &'a [ProjectedEvent],
    ) -> BoxFuture<'a, Result<(), ApplyError>>;

    /// Makes what the handler writes outside PostgreSQL ready for `version` (a search
    /// index with its settings). Idempotent; called when its consumer starts.
    fn prepare_version(&self, version: i32) -> BoxFuture<'_, Result<(), ApplyError>> {
        let _ = version;
        async { Ok(()) }.boxed()
    }

    /// Called after a batch the handler applied has committed: a handler whose writes
    /// others act on (a workflow's outbox and timers) wakes them here, not before the
    /// commit, when they could not see the writes yet.
    fn committed(&self) {}

    /// Lets go of what this process holds open for `version` outside PostgreSQL (the
    /// embedded search index's writer lock): its consumer stopped or moved on.
    fn release_version(&self, version: i32) {
        let _ = version;
    }
}
