//! A read model's tables: versioned table sets and the `read` views over the active one.
//! (Checkpoints, stream versions and dead letters are the consumer runtime's:
//! `vectis_consumer::checkpoints`.)

use sqlx::{PgConnection, PgPool};
use vectis_read_side::Target;

use crate::projection::Projection;

/// Creates version 1 of `projection` and points the `read` views at it, unless the
/// projection is already installed; returns the active version.
pub async fn install(pool: &PgPool, projection: &dyn Projection) -> Result<i32, sqlx::Error> {
    let mut tx = pool.begin().await?;
    // Two projector processes starting at once must not both create the views.
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext('vectis.projection.install.' || $1))")
        .bind(projection.name())
        .execute(&mut *tx)
        .await?;
    let active: Option<i32> = sqlx::query_scalar("SELECT active_version FROM projections WHERE name = $1")
        .bind(projection.name())
        .fetch_optional(&mut *tx)
        .await?;
    let version = match active {
        Some(version) => version,
        None => {
            let target = Target { projection: projection.name(), version: 1 };
            create_tables(&mut tx, projection, &target).await?;
            point_views(&mut tx, projection, &target).await?;
            sqlx::query("INSERT INTO projections (name, active_version) VALUES ($1, 1)")
                .bind(projection.name())
                .execute(&mut *tx)
                .await?;
            1
        }
    };
    tx.commit().await?;
    Ok(version)
}

/// Creates the table set of `target` (and its stream-version table) if missing.
pub async fn create_tables(
    conn: &mut PgConnection,
    projection: &dyn Projection,
    target: &Target,
) -> Result<(), sqlx::Error> {
    let schema = target.schema();
    sqlx::raw_sql(&format!(
        "CREATE SCHEMA IF NOT EXISTS {schema};
         CREATE TABLE IF NOT EXISTS {schema}.stream_versions (stream_id text PRIMARY KEY, version bigint NOT NULL);
         {}",
        projection.tables_ddl().replace("{schema}", &schema)
    ))
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Points every `read.<table>` view of the projection at `target`'s tables. Drop and
/// create rather than `CREATE OR REPLACE`, which refuses a new version whose columns
/// differ; within the caller's transaction readers see the old view or the new one.
pub async fn point_views(
    conn: &mut PgConnection,
    projection: &dyn Projection,
    target: &Target,
) -> Result<(), sqlx::Error> {
    let schema = target.schema();
    for table in projection.tables() {
        sqlx::raw_sql(&format!(
            "DROP VIEW IF EXISTS read.{table}; CREATE VIEW read.{table} AS SELECT * FROM {schema}.{table}"
        ))
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}
