//! Parked events (`projection_dead_letters`) for operators: list, show, retry once the
//! cause is fixed, discard. `vectis dlq` calls into here.
//!
//! A retry applies the parked event and every event parked behind it in the same
//! stream, in order, in one transaction that holds the projection's row exclusively,
//! so no batch can park another event of that stream between the retry's read and its
//! commit.

use std::collections::HashMap;
use vectis_read_side::Target;

use chrono::{DateTime, Utc};
use sqlx::PgPool;

use crate::{
    checkpoints::{self, DeadLetter, RowLock},
    event::{decode, ProjectedEvent},
    handler::Handler,
    sequencing::Sequence,
};

/// A stored dead letter: the record and its error, and what became of it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ParkedEvent {
    pub id: i64,
    pub projection: String,
    pub version: i32,
    #[sqlx(flatten)]
    pub letter: DeadLetter,
    pub status: String,
    pub parked_at: DateTime<Utc>,
    pub resolved_at: Option<DateTime<Utc>>,
}

const COLUMNS: &str = "id, projection, version, topic, partition, \"offset\", stream_id, stream_version, event_type,
                       payload, error, status, parked_at, resolved_at";

#[derive(Debug, thiserror::Error)]
pub enum DeadLetterError {
    #[error("no dead letter {0}")]
    NotFound(i64),
    #[error("dead letter {id} is {status}, not parked")]
    NotParked { id: i64, status: String },
    #[error("dead letter {id} belongs to projection {projection}, which this build does not know")]
    UnknownProjection { id: i64, projection: String },
    #[error("version {version} of {projection} was retired by a rebuild; its dead letters cannot be applied")]
    Retired { projection: String, version: i32 },
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// Dead letters, oldest first; only those still parked unless `include_resolved`.
pub async fn list(
    pool: &PgPool,
    projection: Option<&str>,
    include_resolved: bool,
) -> Result<Vec<ParkedEvent>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM projection_dead_letters
          WHERE ($1::text IS NULL OR projection = $1) AND ($2 OR status = 'parked')
          ORDER BY id"
    ))
    .bind(projection)
    .bind(include_resolved)
    .fetch_all(pool)
    .await
}

pub async fn get(pool: &PgPool, id: i64) -> Result<ParkedEvent, DeadLetterError> {
    sqlx::query_as(&format!("SELECT {COLUMNS} FROM projection_dead_letters WHERE id = $1"))
        .bind(id)
        .fetch_optional(pool)
        .await?
        .ok_or(DeadLetterError::NotFound(id))
}

/// What a retry did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryOutcome {
    /// Events applied to the read model, in stream order.
    pub applied: usize,
    /// Events the read model already reflected (marked applied, nothing written).
    pub already_applied: usize,
    /// Events of the stream still parked, and why the first of them still fails.
    pub still_parked: usize,
    pub error: Option<String>,
}

/// Applies dead letter `id` and the events parked behind it in its stream, in order,
/// as far as they go: up to the first that still cannot be applied (which keeps its
/// place, with the new error). `handlers` are the ones this build knows.
pub async fn retry<H: Handler + ?Sized>(
    pool: &PgPool,
    handlers: &[std::sync::Arc<H>],
    id: i64,
) -> Result<RetryOutcome, DeadLetterError> {
    let letter = get(pool, id).await?;
    if letter.status != "parked" {
        return Err(DeadLetterError::NotParked { id, status: letter.status });
    }
    let projection = handlers
        .iter()
        .find(|p| p.name() == letter.projection)
        .ok_or_else(|| DeadLetterError::UnknownProjection { id, projection: letter.projection.clone() })?;
    let target = Target { projection: projection.name(), version: letter.version };
    let mut tx = vectis_runtime::database::begin(pool).await?;
    if !checkpoints::lock_current(&mut tx, &target, RowLock::Exclusive).await? {
        return Err(DeadLetterError::Retired { projection: letter.projection, version: letter.version });
    }
    // The whole stream's parked events, head first: a later one cannot go before it.
    let queue: Vec<ParkedEvent> = match &letter.letter.stream_id {
        Some(stream) => {
            sqlx::query_as(&format!(
                "SELECT {COLUMNS} FROM projection_dead_letters
                  WHERE projection = $1 AND version = $2 AND stream_id = $3 AND status = 'parked'
                  ORDER BY topic, partition, \"offset\" FOR UPDATE"
            ))
            .bind(&letter.projection)
            .bind(letter.version)
            .bind(stream)
            .fetch_all(&mut *tx)
            .await?
        }
        None => vec![letter.clone()],
    };
    let streams: Vec<String> = letter.letter.stream_id.iter().cloned().collect();
    let mut versions = checkpoints::stream_versions(&mut tx, &target, &streams).await?;
    let mut to_apply: Vec<ProjectedEvent> = Vec::new();
    let mut resolved: Vec<i64> = Vec::new();
    let mut already_applied = 0;
    let mut blocked: Option<(i64, String)> = None;
    for parked in &queue {
        let parked_letter = &parked.letter;
        let logical = projection.topics().iter().find(|t| parked_letter.topic.ends_with(**t)).copied().unwrap_or("");
        let event = match decode(logical, parked_letter.stream_id.as_deref(), &parked_letter.payload) {
            Ok(event) => event,
            Err(error) => {
                blocked = Some((parked.id, format!("undecodable: {error}")));
                break;
            }
        };
        let current = versions.get(event.stream_id.as_str()).copied().unwrap_or(0);
        match Sequence::of(current, event.stream_version) {
            Sequence::Duplicate => already_applied += 1,
            Sequence::Next => {
                versions.insert(event.stream_id.to_string(), event.stream_version);
                to_apply.push(event);
            }
            gap @ Sequence::Gap { .. } => {
                blocked = Some((parked.id, gap.gap_error().unwrap_or_default()));
                break;
            }
        }
        resolved.push(parked.id);
    }
    if !to_apply.is_empty() {
        sqlx::query("SAVEPOINT retry").execute(&mut *tx).await?;
        if let Err(error) = projection.apply(&mut tx, &target.schema(), &to_apply).await {
            sqlx::query("ROLLBACK TO SAVEPOINT retry").execute(&mut *tx).await?;
            to_apply.clear();
            resolved.clear();
            already_applied = 0;
            blocked = Some((queue[0].id, format!("apply failed: {error}")));
        }
    }
    let applied: HashMap<String, i64> = to_apply.iter().map(|e| (e.stream_id.to_string(), e.stream_version)).collect();
    checkpoints::save_stream_versions(&mut tx, &target, &applied).await?;
    sqlx::query("UPDATE projection_dead_letters SET status = 'applied', resolved_at = now() WHERE id = ANY($1)")
        .bind(&resolved)
        .execute(&mut *tx)
        .await?;
    if let Some((blocked_id, error)) = &blocked {
        sqlx::query("UPDATE projection_dead_letters SET error = $2 WHERE id = $1")
            .bind(blocked_id)
            .bind(error)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    Ok(RetryOutcome {
        applied: to_apply.len(),
        already_applied,
        still_parked: queue.len() - resolved.len(),
        error: blocked.map(|(_, error)| error),
    })
}

/// Gives up on dead letter `id`: it will never be applied. Returns how many events of
/// its stream are still parked (each needs a retry or a discard of its own; a retry of
/// the next one reports the gap this leaves, if any).
pub async fn discard(pool: &PgPool, id: i64) -> Result<i64, DeadLetterError> {
    let letter = get(pool, id).await?;
    let updated = sqlx::query(
        "UPDATE projection_dead_letters SET status = 'discarded', resolved_at = now() WHERE id = $1 AND status = 'parked'",
    )
    .bind(id)
    .execute(pool)
    .await?;
    if updated.rows_affected() == 0 {
        return Err(DeadLetterError::NotParked { id, status: letter.status });
    }
    Ok(sqlx::query_scalar(
        "SELECT count(*) FROM projection_dead_letters
          WHERE projection = $1 AND version = $2 AND stream_id = $3 AND status = 'parked'",
    )
    .bind(&letter.projection)
    .bind(letter.version)
    .bind(&letter.letter.stream_id)
    .fetch_one(pool)
    .await?)
}
