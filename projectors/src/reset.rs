//! Reset of a projection to a position of the log (`vectis projections reset`): a new
//! version, blue/green like a rebuild, that replays the topics from that position on.
//!
//! A projection skips what it has applied (per stream, DESIGN.md "Sequencing"), so
//! moving the active version's offsets back would replay nothing, and moving them on
//! would leave gaps. The new version therefore starts with the state the log had at
//! the position, folded from the event store (the source of truth, in global order,
//! through the projection's own handler), takes its checkpoints from the first record
//! past the position on every partition, and replays the topics from there. Once it has
//! caught up, readers switch to it and the old version is dropped, as after a rebuild.
//! Interrupted, it resumes when run again: what it applied is skipped.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use vectis_consumer::{
    checkpoints,
    event::{decode, ProjectedEvent},
    sequencing::Sequence,
};
use vectis_event_store::{
    placement::{self, PlacementError},
    store::read_between,
    RecordedEvent, StoreError,
};
use vectis_read_side::Target;

use crate::{
    projection::Projection,
    rebuild::{self, RebuildError},
};

/// Where the replay starts: after a global position, or after the last event
/// recorded at or before a time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResetPoint {
    Position(i64),
    Time(DateTime<Utc>),
}

#[derive(Debug, thiserror::Error)]
pub enum ResetError {
    #[error(transparent)]
    Rebuild(#[from] RebuildError),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    #[error("reading the event store: {0}")]
    Store(#[from] StoreError),
    #[error("finding the offsets past the position: {0}")]
    Placement(#[from] PlacementError),
    #[error("position {requested} is past the log, which ends at {last}")]
    PastTheLog { requested: i64, last: i64 },
    #[error("folding the event store up to the position: event {event_id} ({stream} v{version}) {reason}")]
    Seed { event_id: String, stream: String, version: i64, reason: String },
}

/// What a reset did before it replays the topics ([`rebuild::catch_up_and_switch`]
/// does that, as for a rebuild).
#[derive(Debug, Clone)]
pub struct Seeded {
    pub target: Target,
    /// The replay starts after this global position.
    pub position: i64,
    /// Events folded from the event store (skipped ones not counted).
    pub events: i64,
    /// Per partition, where the replay starts.
    pub offsets: Vec<(String, i32, i64)>,
}

/// The global position `point` names: checked against the log's end.
pub async fn resolve(pool: &PgPool, point: ResetPoint) -> Result<i64, ResetError> {
    let last: i64 = sqlx::query_scalar("SELECT coalesce(max(global_position), 0) FROM events").fetch_one(pool).await?;
    match point {
        ResetPoint::Position(position) if position > last => Err(ResetError::PastTheLog { requested: position, last }),
        ResetPoint::Position(position) => Ok(position.max(0)),
        ResetPoint::Time(at) => {
            Ok(sqlx::query_scalar("SELECT coalesce(max(global_position), 0) FROM events WHERE recorded_at <= $1")
                .bind(at)
                .fetch_one(pool)
                .await?)
        }
    }
}

/// Starts (or resumes) the new version and gives it the log's state at `position`
/// and checkpoints past it. Returns what it did; [`rebuild::catch_up_and_switch`]
/// goes on from there.
pub async fn seed(
    pool: &PgPool,
    projection: &dyn Projection,
    kafka: &vectis_event_store::kafka::KafkaSettings,
    position: i64,
    max_batch: usize,
) -> Result<Seeded, ResetError> {
    let target = rebuild::begin(pool, projection).await.map_err(RebuildError::from)?;
    if let Err(error) = projection.prepare_version(target.version).await {
        return Err(seed_error("", "", 0, format!("the new version cannot be prepared: {error}")));
    }
    let topics: Vec<String> = projection.topics().iter().map(|t| t.to_string()).collect();
    let mut after = 0;
    let mut events = 0;
    loop {
        let rows = read_between(pool, after, position, &topics, max_batch as i64).await?;
        let Some(last) = rows.last() else { break };
        after = last.envelope.global_position;
        events += fold(pool, projection, &target, &rows).await?;
    }
    let mut offsets = Vec::new();
    for topic in projection.topics() {
        offsets.extend(placement::offsets_after(kafka, topic, position).await?);
    }
    // A resumed reset keeps the checkpoints its replay has reached.
    let positions: HashMap<(String, i32), i64> = offsets.iter().map(|(t, p, o)| ((t.clone(), *p), *o)).collect();
    let mut tx = vectis_runtime::database::begin(pool).await?;
    let existing: i64 =
        sqlx::query_scalar("SELECT count(*) FROM projection_checkpoints WHERE projection = $1 AND version = $2")
            .bind(target.projection)
            .bind(target.version)
            .fetch_one(&mut *tx)
            .await?;
    if existing == 0 {
        checkpoints::save_checkpoints(&mut tx, &target, &positions).await?;
    }
    tx.commit().await?;
    Ok(Seeded { target, position, events, offsets })
}

fn seed_error(event_id: &str, stream: &str, version: i64, reason: String) -> ResetError {
    ResetError::Seed { event_id: event_id.into(), stream: stream.into(), version, reason }
}

/// Applies one batch of stored events to the new version, in one transaction with the
/// streams' versions; returns how many it applied.
async fn fold(
    pool: &PgPool,
    projection: &dyn Projection,
    target: &Target,
    rows: &[RecordedEvent],
) -> Result<i64, ResetError> {
    let mut decoded: Vec<ProjectedEvent> = Vec::with_capacity(rows.len());
    for row in rows {
        let envelope = &row.envelope;
        let event = decode(&row.topic, Some(&envelope.stream_id), &envelope.to_json_bytes()).map_err(|error| {
            seed_error(
                &envelope.event_id.to_string(),
                &envelope.stream_id,
                envelope.stream_version,
                format!("cannot be decoded: {error}"),
            )
        })?;
        decoded.push(event);
    }
    let mut tx = vectis_runtime::database::begin(pool).await?;
    let streams: Vec<String> = decoded.iter().map(|e| e.stream_id.to_string()).collect();
    let mut versions = checkpoints::stream_versions(&mut tx, target, &streams).await?;
    let mut to_apply = Vec::new();
    for event in decoded {
        let current = versions.get(event.stream_id.as_str()).copied().unwrap_or(0);
        match Sequence::of(current, event.stream_version) {
            Sequence::Duplicate => {}
            Sequence::Next => {
                versions.insert(event.stream_id.to_string(), event.stream_version);
                to_apply.push(event);
            }
            Sequence::Gap { .. } => {
                return Err(seed_error(
                    &event.event_id.to_string(),
                    event.stream_id.as_str(),
                    event.stream_version,
                    format!("follows version {current}: the store has a gap"),
                ))
            }
        }
    }
    let schema = target.schema();
    projection.apply(&mut tx, &schema, &to_apply).await.map_err(|error| {
        let first = to_apply.first();
        seed_error(
            &first.map(|e| e.event_id.to_string()).unwrap_or_default(),
            first.map(|e| e.stream_id.as_str()).unwrap_or_default(),
            first.map_or(0, |e| e.stream_version),
            format!("(or one after it in the batch) cannot be applied: {error}"),
        )
    })?;
    let applied: HashMap<String, i64> = to_apply.iter().map(|e| (e.stream_id.to_string(), e.stream_version)).collect();
    checkpoints::save_stream_versions(&mut tx, target, &applied).await?;
    tx.commit().await?;
    projection.committed();
    Ok(to_apply.len() as i64)
}
