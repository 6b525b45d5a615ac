//! What a read model adds to a [`Handler`]: the tables it writes, exposed to readers as
//! `read.<table>` views, and what a retired version leaves outside PostgreSQL.

use futures::{future::BoxFuture, FutureExt};
use vectis_consumer::handler::{ApplyError, Handler};

/// A read model or a search index: a handler of the log whose writes readers see.
pub trait Projection: Handler {
    /// Statements creating its tables in the schema `{schema}` (written literally; the
    /// store substitutes the versioned schema name). Idempotent: `IF NOT EXISTS`.
    fn tables_ddl(&self) -> &'static str;

    /// Its tables, each exposed to readers as `read.<view_prefix><table>`.
    fn tables(&self) -> &'static [&'static str];

    /// What its views' names start with: nothing for a read model (`read.orders`), the
    /// workflow's name for a workflow's state (`read.order_lifecycle_instances`).
    fn view_prefix(&self) -> &'static str {
        ""
    }

    /// Removes what the projection wrote outside PostgreSQL for a retired `version`.
    fn drop_version_outside(&self, version: i32) -> BoxFuture<'_, Result<(), ApplyError>> {
        let _ = version;
        async { Ok(()) }.boxed()
    }
}
