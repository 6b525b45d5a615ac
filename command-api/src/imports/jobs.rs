//! Import records (migration `0010_imports`): what was imported, by whom, how far it
//! got, and the rows it refused.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{PgPool, Row};
use uuid::Uuid;

use super::{
    kinds::ImportKind,
    rows::{Format, Mapping},
    ImportError,
};

/// An import to start, or to find again if its file was imported before.
#[derive(Debug, Clone)]
pub struct NewImport {
    pub kind: ImportKind,
    pub file_name: String,
    pub file_sha256: String,
    pub format: Format,
    pub mapping: Mapping,
    pub actor: String,
    pub total_rows: i64,
    /// The file itself, for an upload the process works on later.
    pub content: Option<Vec<u8>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ImportState {
    Queued,
    Running,
    Finished,
    Failed,
}

impl ImportState {
    fn parse(text: &str) -> ImportState {
        match text {
            "queued" => ImportState::Queued,
            "running" => ImportState::Running,
            "finished" => ImportState::Finished,
            _ => ImportState::Failed,
        }
    }
}

/// A refused row and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct RejectedRow {
    /// The row's number (see `rows`).
    pub row: i64,
    pub reason: String,
    /// The row as the file has it.
    pub record: String,
}

/// Where an import stands.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ImportStatus {
    pub import_id: Uuid,
    pub kind: ImportKind,
    pub file_name: String,
    pub file_sha256: String,
    #[schema(value_type = String)]
    pub format: Format,
    pub actor: String,
    pub status: ImportState,
    pub total_rows: i64,
    /// Rows that ran as commands (including those that changed nothing).
    pub done: i64,
    /// Rows refused; see `rejected`.
    pub failed: i64,
    pub remaining: i64,
    /// Every row up to this one has its outcome committed.
    pub rows_through: i64,
    /// Why the last run stopped, if it failed.
    pub error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    /// The refused rows, in row order (the first `rejected_limit`).
    pub rejected: Vec<RejectedRow>,
    #[serde(skip)]
    pub mapping: Mapping,
}

/// A new import, or the one this file already is.
pub enum Begun {
    New(ImportStatus),
    Existing(ImportStatus),
}

const SELECT_IMPORT: &str = "SELECT import_id, kind, file_name, file_sha256, format, mapping, actor, status,
        total_rows, done, failed, rows_through, error, created_at, updated_at, finished_at FROM imports";

/// Records the import, unless its file was imported (or is importing) already: then
/// that one is answered, and must be asked for with the same mapping.
pub async fn begin(pool: &PgPool, new: &NewImport) -> Result<Begun, ImportError> {
    let mapping = serde_json::to_value(&new.mapping).unwrap_or_default();
    let inserted: Option<Uuid> = sqlx::query_scalar(
        "INSERT INTO imports (import_id, kind, file_name, file_sha256, format, mapping, actor, status, total_rows, content)
         VALUES ($1, $2, $3, $4, $5, $6, $7, 'queued', $8, $9)
         ON CONFLICT (kind, file_sha256) DO NOTHING RETURNING import_id",
    )
    .bind(Uuid::now_v7())
    .bind(new.kind.as_str())
    .bind(&new.file_name)
    .bind(&new.file_sha256)
    .bind(new.format.as_str())
    .bind(&mapping)
    .bind(&new.actor)
    .bind(new.total_rows)
    .bind(&new.content)
    .fetch_optional(pool)
    .await?;
    if let Some(id) = inserted {
        let status = find(pool, id, 0).await?.ok_or(ImportError::Vanished(id))?;
        return Ok(Begun::New(status));
    }
    let row = sqlx::query(&format!("{SELECT_IMPORT} WHERE kind = $1 AND file_sha256 = $2"))
        .bind(new.kind.as_str())
        .bind(&new.file_sha256)
        .fetch_one(pool)
        .await?;
    let existing = status_from_row(&row)?;
    if existing.mapping != new.mapping {
        return Err(ImportError::MappingDiffers { import_id: existing.import_id, mapping: existing.mapping });
    }
    Ok(Begun::Existing(existing))
}

/// The import and its first `rejected_limit` refused rows.
pub async fn find(pool: &PgPool, import_id: Uuid, rejected_limit: i64) -> Result<Option<ImportStatus>, ImportError> {
    let Some(row) =
        sqlx::query(&format!("{SELECT_IMPORT} WHERE import_id = $1")).bind(import_id).fetch_optional(pool).await?
    else {
        return Ok(None);
    };
    let mut status = status_from_row(&row)?;
    status.rejected = rejected(pool, import_id, 0, rejected_limit).await?;
    Ok(Some(status))
}

/// Refused rows after row `after`, at most `limit`, in row order.
pub async fn rejected(pool: &PgPool, import_id: Uuid, after: i64, limit: i64) -> Result<Vec<RejectedRow>, ImportError> {
    let rows: Vec<(i64, String, String)> = sqlx::query_as(
        "SELECT row_number, reason, record FROM import_rejections
          WHERE import_id = $1 AND row_number > $2 ORDER BY row_number LIMIT $3",
    )
    .bind(import_id)
    .bind(after)
    .bind(limit)
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().map(|(row, reason, record)| RejectedRow { row, reason, record }).collect())
}

/// The uploaded file of an import, while it is kept.
pub async fn content(pool: &PgPool, import_id: Uuid) -> Result<Option<Vec<u8>>, ImportError> {
    Ok(sqlx::query_scalar("SELECT content FROM imports WHERE import_id = $1")
        .bind(import_id)
        .fetch_optional(pool)
        .await?
        .flatten())
}

/// Keeps `content` as the import's file unless it has one (an import the CLI began,
/// uploaded to resume it).
pub async fn keep_content(pool: &PgPool, import_id: Uuid, content: &[u8]) -> Result<(), ImportError> {
    sqlx::query("UPDATE imports SET content = $2 WHERE import_id = $1 AND content IS NULL AND status <> 'finished'")
        .bind(import_id)
        .bind(content)
        .execute(pool)
        .await?;
    Ok(())
}

/// Uploads not finished: a process that starts resumes them.
pub async fn unfinished_uploads(pool: &PgPool) -> Result<Vec<Uuid>, ImportError> {
    Ok(sqlx::query_scalar(
        "SELECT import_id FROM imports WHERE status IN ('queued', 'running', 'failed') AND content IS NOT NULL
          ORDER BY created_at",
    )
    .fetch_all(pool)
    .await?)
}

/// Marks a run started.
pub async fn running(pool: &PgPool, import_id: Uuid) -> Result<(), ImportError> {
    sqlx::query("UPDATE imports SET status = 'running', error = NULL, updated_at = now() WHERE import_id = $1")
        .bind(import_id)
        .execute(pool)
        .await?;
    Ok(())
}

/// Marks the import finished (its upload is no longer needed).
pub async fn finished(pool: &PgPool, import_id: Uuid) -> Result<(), ImportError> {
    sqlx::query(
        "UPDATE imports SET status = 'finished', content = NULL, updated_at = now(), finished_at = now()
          WHERE import_id = $1",
    )
    .bind(import_id)
    .execute(pool)
    .await?;
    Ok(())
}

/// Marks a run stopped by `error`; running the import again resumes it.
pub async fn failed(pool: &PgPool, import_id: Uuid, error: &str) -> Result<(), ImportError> {
    sqlx::query("UPDATE imports SET status = 'failed', error = $2, updated_at = now() WHERE import_id = $1")
        .bind(import_id)
        .bind(error)
        .execute(pool)
        .await?;
    Ok(())
}

fn status_from_row(row: &sqlx::postgres::PgRow) -> Result<ImportStatus, ImportError> {
    let kind: String = row.try_get("kind")?;
    let format: String = row.try_get("format")?;
    let status: String = row.try_get("status")?;
    let mapping: serde_json::Value = row.try_get("mapping")?;
    let total_rows: i64 = row.try_get("total_rows")?;
    let done: i64 = row.try_get("done")?;
    let failed: i64 = row.try_get("failed")?;
    Ok(ImportStatus {
        import_id: row.try_get("import_id")?,
        kind: ImportKind::parse(&kind).unwrap_or(ImportKind::Items),
        file_name: row.try_get("file_name")?,
        file_sha256: row.try_get("file_sha256")?,
        format: if format == "ndjson" { Format::Ndjson } else { Format::Csv },
        actor: row.try_get("actor")?,
        status: ImportState::parse(&status),
        total_rows,
        done,
        failed,
        remaining: (total_rows - done - failed).max(0),
        rows_through: row.try_get("rows_through")?,
        error: row.try_get("error")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
        finished_at: row.try_get("finished_at")?,
        rejected: Vec::new(),
        mapping: serde_json::from_value(mapping).unwrap_or_default(),
    })
}
