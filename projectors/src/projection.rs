//! What a read model implements. The runtime does the rest: consuming, decoding,
//! skipping duplicates, parking gaps and poison, checkpointing.

use futures::future::BoxFuture;
use sqlx::PgConnection;

use crate::event::ProjectedEvent;

/// A PostgreSQL read model.
pub trait Projection: Send + Sync + 'static {
    /// Also names its consumer group (`vectis.projection.<name>`) and its table sets
    /// (`proj_<name>_v<version>`).
    fn name(&self) -> &'static str;

    /// The logical topics it reads.
    fn topics(&self) -> &'static [&'static str];

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
    ) -> BoxFuture<'a, Result<(), sqlx::Error>>;
}

/// Schema holding version `version` of `projection`'s tables.
pub fn schema_name(projection: &str, version: i32) -> String {
    format!("proj_{projection}_v{version}")
}
