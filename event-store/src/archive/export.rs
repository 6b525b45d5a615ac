//! `vectis archive export`: every committed event past the archive's cursor into
//! files, incrementally. Each file is stored, then listed in the run's manifest, then
//! the cursor moves past it; a crash anywhere leaves whole files only, and the next run
//! exports the same range again, keeping a stored file that holds exactly its events.

use std::{collections::HashSet, time::Duration};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use uuid::Uuid;

use super::{
    format::{self, ArchivedEvent, WRITER},
    storage::ArchiveStore,
    ArchiveError,
};

/// Events per file unless `ARCHIVE_FILE_EVENTS` says otherwise.
pub const DEFAULT_FILE_EVENTS: usize = 10_000;
/// How long an export waits for the log to settle (see `store::settled_position`).
const SETTLE_WAIT: Duration = Duration::from_secs(5);

/// One file as its run's manifest lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestFile {
    pub name: String,
    pub after: i64,
    pub first: i64,
    pub last: i64,
    pub count: u64,
    pub bytes: u64,
    pub sha256: String,
}

/// One export run: what it wrote.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    pub run: Uuid,
    pub started_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub writer: String,
    pub files: Vec<ManifestFile>,
    pub events: u64,
    pub bytes: u64,
}

impl Manifest {
    pub fn name(&self) -> String {
        format!("manifests/{}.json", self.run)
    }
}

/// Where an export is, after each file.
#[derive(Debug, Clone)]
pub struct Progress {
    pub cursor: i64,
    /// Committed events past the cursor when the run started, and done since.
    pub events_total: u64,
    pub events_done: u64,
    pub bytes_done: u64,
}

/// The archive's cursor (0 for a new archive).
pub async fn cursor(pool: &PgPool, archive: &str) -> Result<i64, ArchiveError> {
    Ok(sqlx::query_scalar("SELECT global_position FROM archive_cursors WHERE archive = $1")
        .bind(archive)
        .fetch_optional(pool)
        .await?
        .unwrap_or(0))
}

/// Exports what is new; returns the run's manifest (no files when nothing was new).
/// One export of an archive runs at a time (a PostgreSQL advisory lock on its name,
/// held on a connection of its own, so a killed exporter's lock goes with it).
pub async fn export(
    pool: &PgPool,
    store: &ArchiveStore,
    file_events: usize,
    on_progress: impl FnMut(&Progress),
) -> Result<Manifest, ArchiveError> {
    let mut lock = pool.acquire().await?.detach();
    let key = format!("vectis.archive:{}", store.location);
    let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock(hashtextextended($1, 0))")
        .bind(&key)
        .fetch_one(&mut lock)
        .await?;
    if !locked {
        return Err(ArchiveError::Busy { location: store.location.clone() });
    }
    let exported = export_locked(pool, store, file_events, on_progress).await;
    let _ = sqlx::Connection::close(lock).await;
    exported
}

async fn export_locked(
    pool: &PgPool,
    store: &ArchiveStore,
    file_events: usize,
    mut on_progress: impl FnMut(&Progress),
) -> Result<Manifest, ArchiveError> {
    let archive = store.location.as_str();
    sqlx::query("INSERT INTO archive_cursors (archive) VALUES ($1) ON CONFLICT DO NOTHING")
        .bind(archive)
        .execute(pool)
        .await?;
    let mut after = cursor(pool, archive).await?;
    // The store is read on every run, so refused keys are found even when nothing is
    // new; and an archive that lost files after its cursor was recorded (a bucket
    // emptied, a directory restored from an older copy) is filled again from where
    // its files end.
    let stored: HashSet<String> = store.list("events").await?.into_iter().collect();
    let stored_through = stored.iter().filter_map(|name| format::last_position_in_name(name)).max().unwrap_or(0);
    if stored_through < after {
        tracing::warn!(
            archive,
            cursor = after,
            stored_through,
            "the archive's files end before its cursor: exporting again from where they end"
        );
        after = stored_through;
    }
    let settled = crate::store::settled_position(&mut *pool.acquire().await?, SETTLE_WAIT).await?;
    let Some(settled) = settled else {
        return Err(ArchiveError::Format("the log did not settle: a transaction has been writing for too long".into()));
    };
    let total: i64 =
        sqlx::query_scalar("SELECT count(*) FROM events WHERE global_position > $1 AND global_position <= $2")
            .bind(after)
            .bind(settled)
            .fetch_one(pool)
            .await?;
    let now = Utc::now();
    let mut manifest = Manifest {
        run: Uuid::now_v7(),
        started_at: now,
        updated_at: now,
        writer: WRITER.into(),
        files: Vec::new(),
        events: 0,
        bytes: 0,
    };
    let batch = file_events.max(1);
    let mut next = read_batch(pool, after, settled, batch).await?;
    loop {
        let events = std::mem::take(&mut next);
        let Some(last_event) = events.last().map(|e| e.global_position) else {
            break;
        };
        let full = events.len() == batch;
        // Encoding and compressing are CPU work: off the async workers (the relay's
        // publishing shares them), and meanwhile the next file's events are read.
        let encoding = tokio::task::spawn_blocking(move || format::encode(after, &events).map(|e| (e, events)));
        let (encoded, read) = tokio::join!(encoding, async {
            if full {
                read_batch(pool, last_event, settled, batch).await
            } else {
                Ok(Vec::new())
            }
        });
        let ((metadata, bytes), events) =
            encoded.map_err(|e| ArchiveError::Format(format!("encoding a file: {e}")))??;
        next = read?;
        let name = format::file_name(after, metadata.last);
        // Only a name the listing holds is fetched: the others cannot be stored.
        let kept = if stored.contains(&name) { store.get(&name).await? } else { None };
        let bytes = match kept {
            // A run that crashed after storing this file: keep it, its manifest may list it.
            Some(stored) if format::decode(&stored).is_ok_and(|(m, e)| m == metadata && e == events) => stored.to_vec(),
            _ => {
                store.put(&name, bytes.clone()).await?;
                bytes
            }
        };
        let size = bytes.len() as u64;
        let sha256 = format::sha256(&bytes);
        manifest.files.push(ManifestFile {
            name,
            after,
            first: metadata.first,
            last: metadata.last,
            count: metadata.count,
            bytes: size,
            sha256,
        });
        manifest.events += metadata.count;
        manifest.bytes += size;
        manifest.updated_at = Utc::now();
        let listing = serde_json::to_vec_pretty(&manifest).map_err(|e| ArchiveError::Format(e.to_string()))?;
        store.put(&manifest.name(), listing).await?;
        sqlx::query(
            "UPDATE archive_cursors SET global_position = $2, files = files + 1, events = events + $3,
                    bytes = bytes + $4, updated_at = now()
              WHERE archive = $1",
        )
        .bind(archive)
        .bind(metadata.last)
        .bind(metadata.count as i64)
        .bind(size as i64)
        .execute(pool)
        .await?;
        after = metadata.last;
        on_progress(&Progress {
            cursor: after,
            events_total: total as u64,
            events_done: manifest.events,
            bytes_done: manifest.bytes,
        });
    }
    Ok(manifest)
}

/// The committed events after `after`, through `settled`, at most `limit`.
async fn read_batch(pool: &PgPool, after: i64, settled: i64, limit: usize) -> Result<Vec<ArchivedEvent>, ArchiveError> {
    Ok(sqlx::query_as(
        "SELECT global_position, event_id, stream_id, stream_version, topic, event_type, schema_version,
                data::text AS data, metadata::text AS metadata, recorded_at
           FROM events WHERE global_position > $1 AND global_position <= $2
          ORDER BY global_position LIMIT $3",
    )
    .bind(after)
    .bind(settled)
    .bind(limit as i64)
    .fetch_all(pool)
    .await?)
}
