//! `vectis archive restore`: an empty event store rebuilt from an archive, with the
//! same event ids, streams, versions and global positions, so the relay can publish it
//! to fresh topics and the projections rebuild everything from them: the
//! disaster-recovery and environment-cloning path.
//!
//! All of it is one transaction: a restore that fails or is killed part-way leaves the
//! store as empty as it was, and can simply run again. Each file is checked on the way
//! (its manifest's checksum, the range following the one before), and any damage
//! refuses the restore before it commits.

use chrono::SecondsFormat;
use sqlx::PgPool;

use super::{
    storage::ArchiveStore,
    verify::{check_file, listed_files},
    ArchiveError,
};
use crate::copy_text::{copy_in, CopyText};

/// What a restore wrote.
#[derive(Debug, Clone, Default)]
pub struct Restored {
    pub files: u64,
    pub events: u64,
    pub streams: u64,
    /// The last global position restored: the sequence continues after it.
    pub last: i64,
}

/// After each file: events written so far of `events_total` (the manifests' count).
#[derive(Debug, Clone)]
pub struct RestoreProgress {
    pub events_done: u64,
    pub events_total: u64,
}

const COPY_EVENTS: &str = "COPY events (global_position, event_id, stream_id, stream_version, topic, event_type,
                                       schema_version, data, metadata, recorded_at) FROM STDIN";

/// Restores `store` into the event store at `target` (migrated, empty).
pub async fn restore(
    store: &ArchiveStore,
    target: &PgPool,
    mut on_progress: impl FnMut(&RestoreProgress),
) -> Result<Restored, ArchiveError> {
    let mut problems = Vec::new();
    let (listed, _) = listed_files(store, &mut problems).await?;
    let damaged = |problem: String| ArchiveError::Damaged { location: store.location.clone(), problem };
    if let Some(problem) = problems.into_iter().next() {
        return Err(damaged(problem));
    }
    let files = store.list("events").await?;
    if files.is_empty() {
        return Err(damaged("it holds no event files".into()));
    }
    let events_total = files.iter().filter_map(|name| listed.get(name)).map(|file| file.count).sum();

    let mut tx = vectis_runtime::database::begin(target).await?;
    // Nobody appends while the store is being rebuilt, and what was checked stays true.
    sqlx::query("LOCK TABLE events, streams IN EXCLUSIVE MODE").execute(&mut *tx).await?;
    let (events, streams): (i64, i64) =
        sqlx::query_as("SELECT (SELECT count(*) FROM events), (SELECT count(*) FROM streams)")
            .fetch_one(&mut *tx)
            .await?;
    if events > 0 || streams > 0 {
        return Err(ArchiveError::NotEmpty { events, streams });
    }

    let mut restored = Restored::default();
    for name in &files {
        let bytes = store.get(name).await?.ok_or_else(|| damaged(format!("{name}: removed while being restored")))?;
        let mut problems = Vec::new();
        let decoded = check_file(name, &bytes, listed.get(name), restored.last, &mut problems);
        if let Some(problem) = problems.into_iter().next() {
            return Err(damaged(problem));
        }
        let (metadata, events) = decoded.ok_or_else(|| damaged(format!("{name}: unreadable")))?;
        let mut rows = CopyText(Vec::with_capacity(bytes.len() * 4));
        for event in &events {
            rows.field(&event.global_position.to_string());
            rows.field(&event.event_id.to_string());
            rows.field(&event.stream_id);
            rows.field(&event.stream_version.to_string());
            rows.field(&event.topic);
            rows.field(&event.event_type);
            rows.field(&event.schema_version.to_string());
            rows.field(&event.data);
            rows.field(&event.metadata);
            rows.field(&event.recorded_at.to_rfc3339_opts(SecondsFormat::Micros, true));
            rows.end_row();
        }
        // COPY writes the identity column's values as given (as OVERRIDING SYSTEM VALUE).
        copy_in(&mut tx, COPY_EVENTS, &rows).await?;
        restored.files += 1;
        restored.events += events.len() as u64;
        restored.last = metadata.last;
        on_progress(&RestoreProgress { events_done: restored.events, events_total });
    }

    // A stream's row is its last version; its times are its first and last events'.
    restored.streams = sqlx::query(
        "INSERT INTO streams (stream_id, version, created_at, updated_at)
         SELECT stream_id, max(stream_version), min(recorded_at), max(recorded_at) FROM events GROUP BY stream_id",
    )
    .execute(&mut *tx)
    .await?
    .rows_affected();
    // The next append takes the position after the last restored one, and the relay's
    // horizon (which reads the sequence) sees every restored event as allocated.
    sqlx::query("SELECT setval(pg_get_serial_sequence('events', 'global_position'), $1)")
        .bind(restored.last)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(restored)
}
