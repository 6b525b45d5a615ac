//! A read model's tables: versioned table sets and the `read` views over the active one.
//! (The table-set mechanics are the consumer runtime's, `vectis_consumer::tables`;
//! checkpoints, stream versions and dead letters its `checkpoints`.)

use sqlx::{PgConnection, PgPool};
use vectis_consumer::tables::{self, TableSet};
use vectis_read_side::Target;

use crate::projection::Projection;

fn table_set(projection: &dyn Projection) -> TableSet {
    TableSet { ddl: projection.tables_ddl(), tables: projection.tables(), view_prefix: projection.view_prefix() }
}

/// Creates version 1 of `projection` and points the `read` views at it, unless the
/// projection is already installed; returns the active version.
pub async fn install(pool: &PgPool, projection: &dyn Projection) -> Result<i32, sqlx::Error> {
    tables::install(pool, projection.name(), &table_set(projection)).await
}

/// Creates the table set of `target` (and its stream-version table) if missing.
pub async fn create_tables(
    conn: &mut PgConnection,
    projection: &dyn Projection,
    target: &Target,
) -> Result<(), sqlx::Error> {
    tables::create_tables(conn, &table_set(projection), target).await
}

/// Points every `read.<table>` view of the projection at `target`'s tables.
pub async fn point_views(
    conn: &mut PgConnection,
    projection: &dyn Projection,
    target: &Target,
) -> Result<(), sqlx::Error> {
    tables::point_views(conn, &table_set(projection), target).await
}
