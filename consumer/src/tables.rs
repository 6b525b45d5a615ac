//! A handler's versioned table set: one schema per version (`proj_<name>_v<n>`) with
//! its stream-version table, and the `read` views over the active version. Read models,
//! search indexes (their documents) and workflows (their instances and timers) all
//! install and switch their tables through here.

use sqlx::{PgConnection, PgPool};
use vectis_read_side::Target;

/// The tables a handler writes.
#[derive(Debug, Clone, Copy)]
pub struct TableSet {
    /// Statements creating them in the schema `{schema}` (written literally; the
    /// versioned schema name is substituted). Idempotent: `IF NOT EXISTS`.
    pub ddl: &'static str,
    /// Those exposed to readers, each as `read.<view_prefix><table>`.
    pub tables: &'static [&'static str],
    /// Tells apart the views of handlers whose tables share names (each workflow's
    /// `instances`): empty for read models.
    pub view_prefix: &'static str,
}

/// Creates version 1 of the handler `name` and points the `read` views at it, unless
/// it is already installed; returns the active version.
pub async fn install(pool: &PgPool, name: &'static str, tables: &TableSet) -> Result<i32, sqlx::Error> {
    let mut tx = vectis_runtime::database::begin(pool).await?;
    // Two processes starting at once must not both create the views.
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext('vectis.projection.install.' || $1))")
        .bind(name)
        .execute(&mut *tx)
        .await?;
    let active: Option<i32> = sqlx::query_scalar("SELECT active_version FROM projections WHERE name = $1")
        .bind(name)
        .fetch_optional(&mut *tx)
        .await?;
    let version = match active {
        Some(version) => version,
        None => {
            let target = Target { projection: name, version: 1 };
            create_tables(&mut tx, tables, &target).await?;
            point_views(&mut tx, tables, &target).await?;
            sqlx::query("INSERT INTO projections (name, active_version) VALUES ($1, 1)")
                .bind(name)
                .execute(&mut *tx)
                .await?;
            1
        }
    };
    tx.commit().await?;
    Ok(version)
}

/// Creates the table set of `target` (and its stream-version table) if missing.
pub async fn create_tables(conn: &mut PgConnection, tables: &TableSet, target: &Target) -> Result<(), sqlx::Error> {
    let schema = target.schema();
    sqlx::raw_sql(&format!(
        "CREATE SCHEMA IF NOT EXISTS {schema};
         CREATE TABLE IF NOT EXISTS {schema}.stream_versions (stream_id text PRIMARY KEY, version bigint NOT NULL);
         {}",
        tables.ddl.replace("{schema}", &schema)
    ))
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Points every `read.<table>` view of the set at `target`'s tables. Drop and create
/// rather than `CREATE OR REPLACE`, which refuses a new version whose columns differ;
/// within the caller's transaction readers see the old view or the new one.
pub async fn point_views(conn: &mut PgConnection, tables: &TableSet, target: &Target) -> Result<(), sqlx::Error> {
    let schema = target.schema();
    for table in tables.tables {
        sqlx::raw_sql(&format!(
            "DROP VIEW IF EXISTS read.{prefix}{table}; CREATE VIEW read.{prefix}{table} AS SELECT * FROM {schema}.{table}",
            prefix = tables.view_prefix
        ))
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}
