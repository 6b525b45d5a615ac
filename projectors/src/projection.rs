//! What a read model implements. The runtime does the rest: consuming, decoding,
//! skipping duplicates, parking gaps and poison, checkpointing.

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

/// A PostgreSQL read model.
pub trait Projection: Send + Sync + 'static {
    /// Its name and topics, from the read-side contract.
    fn spec(&self) -> &'static ProjectionSpec;

    /// Also names its consumer group (`vectis.projection.<name>`) and its table sets
    /// (`proj_<name>_v<version>`).
    fn name(&self) -> &'static str {
        self.spec().name
    }

    /// The logical topics it reads.
    fn topics(&self) -> &'static [&'static str] {
        self.spec().topics
    }

    /// Statements creating its tables in the schema `{schema}` (written literally; the
    /// store substitutes the versioned schema name). Idempotent: `IF NOT EXISTS`.
    fn tables_ddl(&self) -> &'static str;

    /// Its tables, each exposed to readers as `read.<table>`.
    fn tables(&self) -> &'static [&'static str];

    /// Applies events in one statement set per table, within the caller's transaction.
    /// The runtime guarantees that, per stream, `events` continue the stream exactly
    /// (no duplicates, no gaps) and are in stream order.
    fn apply<'a>(
        &'a self,
        conn: &'a mut PgConnection,
        schema: &'a str,
        events: &'a [ProjectedEvent],
    ) -> BoxFuture<'a, Result<(), ApplyError>>;

    /// Makes what the projection writes outside PostgreSQL ready for `version` (a
    /// search index with its settings). Idempotent; called when a projector starts.
    fn prepare_version(&self, version: i32) -> BoxFuture<'_, Result<(), ApplyError>> {
        let _ = version;
        async { Ok(()) }.boxed()
    }

    /// Lets go of what this process holds open for `version` outside PostgreSQL (the
    /// embedded search index's writer lock): its projector stopped or moved on.
    fn release_version(&self, version: i32) {
        let _ = version;
    }

    /// Removes what the projection wrote outside PostgreSQL for a retired `version`.
    fn drop_version_outside(&self, version: i32) -> BoxFuture<'_, Result<(), ApplyError>> {
        let _ = version;
        async { Ok(()) }.boxed()
    }
}
