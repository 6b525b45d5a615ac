//! Snapshots of aggregate state, so loading an aggregate folds only the events after
//! its newest snapshot, whatever the stream's length. A snapshot is derived data: it
//! is written after the events it reflects have committed, never inside the command
//! it follows, and anyone may delete it (`vectis snapshots purge`).
//!
//! A loader trusts a snapshot only when it was written by the same aggregate code
//! (`aggregate` and `state_version` match) and the event it ends at is still the
//! stream's event at its version (see the command handler's loading).

use std::time::Duration;

use serde_json::Value;
use sqlx::{PgConnection, PgPool, Row};
use uuid::Uuid;

use crate::{metrics::AggregateLabels, EventStore, StoreError};

/// The default of `SNAPSHOT_EVERY`: a snapshot every 100 events of a stream.
pub const DEFAULT_SNAPSHOT_EVERY: i64 = 100;

/// The default of `STATE_CACHE_BYTES`: 64 MiB of recent aggregate states per process.
pub const DEFAULT_STATE_CACHE_BYTES: usize = 64 << 20;

/// How often snapshots are taken and how much recent state a process keeps in memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnapshotPolicy {
    /// `SNAPSHOT_EVERY`: events of a stream between snapshots; 0 takes none (loading
    /// still uses the ones there are).
    pub every: i64,
    /// `STATE_CACHE_BYTES`: the in-process cache of recent states, in bytes of their
    /// serialised form; 0 turns it off.
    pub cache_bytes: usize,
}

impl Default for SnapshotPolicy {
    fn default() -> Self {
        Self { every: DEFAULT_SNAPSHOT_EVERY, cache_bytes: DEFAULT_STATE_CACHE_BYTES }
    }
}

impl SnapshotPolicy {
    /// Whether a state `since` events past the newest snapshot should be snapshotted.
    pub fn due(&self, since: i64) -> bool {
        self.every > 0 && since >= self.every
    }
}

/// An aggregate's state at a stream version.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    pub stream_id: String,
    /// The aggregate's name (`inventory_item`): one stream id never holds two kinds,
    /// but a snapshot names its writer so `status` can count by aggregate.
    pub aggregate: String,
    /// The writer's state version; see the module comment.
    pub state_version: i32,
    pub stream_version: i64,
    /// The id of the event at `stream_version`.
    pub last_event_id: Uuid,
    pub state: Value,
}

const SELECT_SNAPSHOT: &str =
    "SELECT stream_id, aggregate, state_version, stream_version, last_event_id, state FROM snapshots";

/// The newest snapshot of `stream_id`, on a given connection (or transaction).
pub(crate) async fn read(conn: &mut PgConnection, stream_id: &str) -> Result<Option<Snapshot>, StoreError> {
    let row =
        sqlx::query(&format!("{SELECT_SNAPSHOT} WHERE stream_id = $1")).bind(stream_id).fetch_optional(conn).await?;
    row.as_ref().map(snapshot_from_row).transpose()
}

/// The snapshots of any of `stream_ids`.
pub(crate) async fn read_many(conn: &mut PgConnection, stream_ids: &[&str]) -> Result<Vec<Snapshot>, StoreError> {
    let rows =
        sqlx::query(&format!("{SELECT_SNAPSHOT} WHERE stream_id = ANY($1)")).bind(stream_ids).fetch_all(conn).await?;
    rows.iter().map(snapshot_from_row).collect()
}

fn snapshot_from_row(row: &sqlx::postgres::PgRow) -> Result<Snapshot, StoreError> {
    Ok(Snapshot {
        stream_id: row.try_get("stream_id")?,
        aggregate: row.try_get("aggregate")?,
        state_version: row.try_get("state_version")?,
        stream_version: row.try_get("stream_version")?,
        last_event_id: row.try_get("last_event_id")?,
        state: row.try_get("state")?,
    })
}

/// Stores `snapshot` unless the stored one is newer and from the same code. Written
/// out of order (two commands' snapshots racing), the older one changes nothing.
async fn write(pool: &PgPool, snapshot: &Snapshot) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO snapshots (stream_id, aggregate, state_version, stream_version, last_event_id, state)
         VALUES ($1, $2, $3, $4, $5, $6)
         ON CONFLICT (stream_id) DO UPDATE
            SET aggregate = EXCLUDED.aggregate, state_version = EXCLUDED.state_version,
                stream_version = EXCLUDED.stream_version, last_event_id = EXCLUDED.last_event_id,
                state = EXCLUDED.state, taken_at = now()
          WHERE snapshots.stream_version < EXCLUDED.stream_version
             OR snapshots.state_version <> EXCLUDED.state_version
             OR snapshots.aggregate <> EXCLUDED.aggregate",
    )
    .bind(&snapshot.stream_id)
    .bind(&snapshot.aggregate)
    .bind(snapshot.state_version)
    .bind(snapshot.stream_version)
    .bind(snapshot.last_event_id)
    .bind(&snapshot.state)
    .execute(pool)
    .await?;
    Ok(())
}

impl EventStore {
    /// The newest snapshot of `stream_id`, whoever wrote it.
    pub async fn read_snapshot(&self, stream_id: &str) -> Result<Option<Snapshot>, StoreError> {
        read(&mut *self.pool().acquire().await?, stream_id).await
    }

    /// Writes `snapshot` off the command's path: the events it reflects have committed,
    /// so the command answers without waiting, and a failed write only costs a longer
    /// fold next time (counted in `vectis_snapshot_write_failures_total`).
    pub fn save_snapshot_after_commit(&self, snapshot: Snapshot) {
        let store = self.clone();
        tokio::spawn(async move {
            let labels = AggregateLabels { aggregate: snapshot.aggregate.clone() };
            match tokio::time::timeout(Duration::from_secs(30), write(store.pool(), &snapshot)).await {
                Ok(Ok(())) => {
                    store.metrics().snapshots_written.get_or_create(&labels).inc();
                }
                outcome => {
                    let error = match outcome {
                        Ok(Err(e)) => e.to_string(),
                        _ => "timed out after 30 s".to_string(),
                    };
                    tracing::warn!(stream_id = %snapshot.stream_id, %error, "could not write a snapshot; loading folds more events until the next one");
                    store.metrics().snapshot_write_failures.get_or_create(&labels).inc();
                }
            }
        });
    }
}

/// Snapshots of one aggregate, for `vectis snapshots status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotStatus {
    pub aggregate: String,
    pub state_version: i32,
    pub snapshots: i64,
    /// Bytes of their JSON state.
    pub bytes: i64,
    /// The most events any of these streams has past its snapshot.
    pub max_events_behind: i64,
}

/// Snapshots by aggregate and state version.
pub async fn status(pool: &PgPool) -> Result<Vec<SnapshotStatus>, StoreError> {
    let rows = sqlx::query(
        "SELECT s.aggregate, s.state_version, count(*) AS snapshots,
                coalesce(sum(pg_column_size(s.state)), 0)::bigint AS bytes,
                coalesce(max(st.version - s.stream_version), 0)::bigint AS max_events_behind
           FROM snapshots s LEFT JOIN streams st USING (stream_id)
          GROUP BY s.aggregate, s.state_version ORDER BY s.aggregate, s.state_version",
    )
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|row| {
            Ok(SnapshotStatus {
                aggregate: row.try_get("aggregate")?,
                state_version: row.try_get("state_version")?,
                snapshots: row.try_get("snapshots")?,
                bytes: row.try_get("bytes")?,
                max_events_behind: row.try_get("max_events_behind")?,
            })
        })
        .collect()
}

/// Which snapshots `purge` deletes.
#[derive(Debug, Clone, Default)]
pub struct PurgeFilter {
    /// Only this aggregate's.
    pub aggregate: Option<String>,
    /// Only those whose state version is not this one (the running code's).
    pub state_version_not: Option<i32>,
}

/// Deletes snapshots; loading folds their streams in full until new ones are taken.
pub async fn purge(pool: &PgPool, filter: &PurgeFilter) -> Result<u64, StoreError> {
    Ok(sqlx::query(
        "DELETE FROM snapshots WHERE ($1::text IS NULL OR aggregate = $1)
            AND ($2::integer IS NULL OR state_version <> $2)",
    )
    .bind(&filter.aggregate)
    .bind(filter.state_version_not)
    .execute(pool)
    .await?
    .rows_affected())
}
