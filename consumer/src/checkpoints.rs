//! The consumer runtime's PostgreSQL bookkeeping, written in the handler's own
//! transaction: the checkpoint of each topic partition, the version each stream is at,
//! parked records (dead letters), and the lock on the handler's row in `projections`
//! that a rebuild's version switch takes.

use std::collections::{HashMap, HashSet};

use futures::{future::BoxFuture, FutureExt};
use sqlx::{PgConnection, PgPool};
use vectis_read_side::Target;

use crate::{event::ProjectedEvent, runtime::Record};

/// Checkpoints of `target` for the given physical topic partitions.
pub async fn checkpoints(
    pool: &PgPool,
    target: &Target,
    partitions: &[(String, i32)],
) -> Result<HashMap<(String, i32), i64>, sqlx::Error> {
    let topics: Vec<String> = partitions.iter().map(|(t, _)| t.clone()).collect();
    let numbers: Vec<i32> = partitions.iter().map(|(_, p)| *p).collect();
    let rows: Vec<(String, i32, i64)> = sqlx::query_as(
        "SELECT c.topic, c.partition, c.next_offset
           FROM projection_checkpoints c
           JOIN UNNEST($3::text[], $4::int[]) AS wanted(topic, partition) USING (topic, partition)
          WHERE c.projection = $1 AND c.version = $2",
    )
    .bind(target.projection)
    .bind(target.version)
    .bind(&topics)
    .bind(&numbers)
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().map(|(topic, partition, offset)| ((topic, partition), offset)).collect())
}

/// Advances the checkpoints `$3`/`$4`/`$5` (topics, partitions, next offsets) of
/// projection `$1` at version `$2`, never backwards: an instance that lost a partition
/// in a rebalance cannot undo the progress of the one that took it over.
const SAVE_CHECKPOINTS: &str = "INSERT INTO projection_checkpoints (projection, version, topic, partition, next_offset)
     SELECT $1, $2, topic, partition, next_offset FROM UNNEST($3::text[], $4::int[], $5::bigint[])
         AS p(topic, partition, next_offset)
     ON CONFLICT (projection, version, topic, partition) DO UPDATE
        SET next_offset = EXCLUDED.next_offset, updated_at = now()
      WHERE projection_checkpoints.next_offset < EXCLUDED.next_offset";

/// Upserts the versions `$<first>`/`$<first + 1>` (streams, versions) into `schema`.
fn save_stream_versions_statement(schema: &str, first: usize) -> String {
    format!(
        "INSERT INTO {schema}.stream_versions (stream_id, version)
         SELECT * FROM UNNEST(${first}::text[], ${}::bigint[])
         ON CONFLICT (stream_id) DO UPDATE SET version = EXCLUDED.version",
        first + 1
    )
}

/// `positions` as the bind arrays of [`SAVE_CHECKPOINTS`]: topics, partitions, offsets.
fn checkpoint_arrays(positions: &HashMap<(String, i32), i64>) -> (Vec<String>, Vec<i32>, Vec<i64>) {
    positions.iter().map(|((topic, partition), offset)| (topic.clone(), *partition, *offset)).collect()
}

/// `versions` as the bind arrays of [`save_stream_versions_statement`]: streams, versions.
fn version_arrays(versions: &HashMap<String, i64>) -> (Vec<String>, Vec<i64>) {
    versions.iter().map(|(stream, version)| (stream.clone(), *version)).unzip()
}

/// See [`SAVE_CHECKPOINTS`].
pub fn save_checkpoints<'a>(
    conn: &'a mut PgConnection,
    target: &'a Target,
    positions: &'a HashMap<(String, i32), i64>,
) -> BoxFuture<'a, Result<(), sqlx::Error>> {
    async move {
        let (topics, partitions, offsets) = checkpoint_arrays(positions);
        sqlx::query(SAVE_CHECKPOINTS)
            .bind(target.projection)
            .bind(target.version)
            .bind(&topics)
            .bind(&partitions)
            .bind(&offsets)
            .execute(&mut *conn)
            .await?;
        Ok(())
    }
    .boxed()
}

/// The version each of `streams` is at in `target` (absent: nothing applied yet).
pub fn stream_versions<'a>(
    conn: &'a mut PgConnection,
    target: &'a Target,
    streams: &'a [String],
) -> BoxFuture<'a, Result<HashMap<String, i64>, sqlx::Error>> {
    async move {
        let rows: Vec<(String, i64)> = sqlx::query_as(&format!(
            "SELECT stream_id, version FROM {}.stream_versions WHERE stream_id = ANY($1)",
            target.schema()
        ))
        .bind(streams)
        .fetch_all(&mut *conn)
        .await?;
        Ok(rows.into_iter().collect())
    }
    .boxed()
}

pub fn save_stream_versions<'a>(
    conn: &'a mut PgConnection,
    target: &'a Target,
    versions: &'a HashMap<String, i64>,
) -> BoxFuture<'a, Result<(), sqlx::Error>> {
    async move {
        let (streams, numbers) = version_arrays(versions);
        sqlx::query(&save_stream_versions_statement(&target.schema(), 1))
            .bind(&streams)
            .bind(&numbers)
            .execute(&mut *conn)
            .await?;
        Ok(())
    }
    .boxed()
}

/// A batch's progress in one statement: the streams' new versions (as
/// [`save_stream_versions`]) and the checkpoints (as [`save_checkpoints`]).
pub fn save_progress<'a>(
    conn: &'a mut PgConnection,
    target: &'a Target,
    versions: &'a HashMap<String, i64>,
    positions: &'a HashMap<(String, i32), i64>,
) -> BoxFuture<'a, Result<(), sqlx::Error>> {
    async move {
        let (streams, numbers) = version_arrays(versions);
        let (topics, partitions, offsets) = checkpoint_arrays(positions);
        // A data-modifying WITH runs to completion whether or not anything reads it.
        sqlx::query(&format!(
            "WITH versions AS ({}) {SAVE_CHECKPOINTS}",
            save_stream_versions_statement(&target.schema(), 6)
        ))
        .bind(target.projection)
        .bind(target.version)
        .bind(&topics)
        .bind(&partitions)
        .bind(&offsets)
        .bind(&streams)
        .bind(&numbers)
        .execute(&mut *conn)
        .await?;
        Ok(())
    }
    .boxed()
}

/// A record that cannot be applied, or waits behind one that could not.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct DeadLetter {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub stream_id: Option<String>,
    pub stream_version: Option<i64>,
    pub event_type: Option<String>,
    pub payload: Vec<u8>,
    pub error: String,
}

impl DeadLetter {
    /// `record` parked with `error`; `event` is what it decoded to, if anything.
    pub fn new(record: &Record, event: Option<&ProjectedEvent>, error: String) -> Self {
        Self {
            topic: record.topic.clone(),
            partition: record.partition,
            offset: record.offset,
            stream_id: record.key.clone(),
            stream_version: event.map(|e| e.stream_version),
            event_type: event.map(|e| e.event.event_type().to_string()),
            payload: record.payload.clone(),
            error,
        }
    }
}

pub fn park<'a>(
    conn: &'a mut PgConnection,
    target: &'a Target,
    letters: &'a [DeadLetter],
) -> BoxFuture<'a, Result<(), sqlx::Error>> {
    async move {
        for letter in letters {
            sqlx::query(
                "INSERT INTO projection_dead_letters
                     (projection, version, topic, partition, \"offset\", stream_id, stream_version, event_type, payload, error)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
                 ON CONFLICT (projection, version, topic, partition, \"offset\") DO NOTHING",
            )
            .bind(target.projection)
            .bind(target.version)
            .bind(&letter.topic)
            .bind(letter.partition)
            .bind(letter.offset)
            .bind(&letter.stream_id)
            .bind(letter.stream_version)
            .bind(&letter.event_type)
            .bind(&letter.payload)
            .bind(&letter.error)
            .execute(&mut *conn)
            .await?;
        }
        Ok(())
    }
    .boxed()
}
/// What a batch needs to know of its streams before it applies anything.
#[derive(Debug, Default)]
pub struct StreamStates {
    /// The version each stream is at (absent: nothing applied yet).
    pub versions: HashMap<String, i64>,
    /// The streams with parked events: their later events must park behind.
    pub parked: HashSet<String>,
}

/// The [`StreamStates`] of `streams` in `target`, in one statement.
pub fn stream_states<'a>(
    conn: &'a mut PgConnection,
    target: &'a Target,
    streams: &'a [String],
) -> BoxFuture<'a, Result<StreamStates, sqlx::Error>> {
    async move {
        let rows: Vec<(String, Option<i64>, bool)> = sqlx::query_as(&format!(
            "SELECT k.stream_id, v.version,
                    EXISTS (SELECT 1 FROM projection_dead_letters d
                             WHERE d.projection = $2 AND d.version = $3 AND d.status = 'parked'
                               AND d.stream_id = k.stream_id) AS parked
               FROM UNNEST($1::text[]) AS k(stream_id)
               LEFT JOIN {}.stream_versions v USING (stream_id)",
            target.schema()
        ))
        .bind(streams)
        .bind(target.projection)
        .bind(target.version)
        .fetch_all(&mut *conn)
        .await?;
        let mut states = StreamStates::default();
        for (stream, version, parked) in rows {
            if let Some(version) = version {
                states.versions.insert(stream.clone(), version);
            }
            if parked {
                states.parked.insert(stream);
            }
        }
        Ok(states)
    }
    .boxed()
}

/// How a transaction holds a projection's row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowLock {
    /// Every batch: batches of several instances and versions go on side by side.
    Share,
    /// A version switch or a dead-letter retry: waits for batches in flight and holds
    /// new ones back until it commits.
    Exclusive,
}

/// Locks the projection's row and tells whether `target` is still one of its versions
/// (active or being built). A version that is neither was retired by a rebuild: its
/// tables are about to be dropped and its projector must move to the active version.
pub fn lock_current<'a>(
    conn: &'a mut PgConnection,
    target: &'a Target,
    lock: RowLock,
) -> BoxFuture<'a, Result<bool, sqlx::Error>> {
    async move {
        let mode = match lock {
            RowLock::Share => "SHARE",
            RowLock::Exclusive => "UPDATE",
        };
        let current: Option<bool> = sqlx::query_scalar(&format!(
            "SELECT active_version = $2 OR building_version IS NOT DISTINCT FROM $2
               FROM projections WHERE name = $1 FOR {mode}"
        ))
        .bind(target.projection)
        .bind(target.version)
        .fetch_optional(&mut *conn)
        .await?;
        Ok(current.unwrap_or(false))
    }
    .boxed()
}
