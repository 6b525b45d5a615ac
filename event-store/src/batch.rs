//! Many streams in one transaction: what a bulk import writes. Each stream's appends
//! are planned first (validated, ids assigned, versions checked against what the
//! planner read), then every stream's version check and every event go to the
//! database as two set-based statements, so a batch of a thousand rows costs a few
//! round trips, not a thousand.
//!
//! The rules are the single append's: a stream's version must still be the one its
//! events were decided on, or nothing of the batch is written (the caller re-reads and
//! decides again); the stream rows are written before the events take their global
//! positions, so the relay's horizon holds (see `store::settled_position`).

use std::{collections::HashMap, time::Instant};

use chrono::Utc;
use sqlx::PgConnection;
use uuid::Uuid;
use vectis_schemas::{EventEnvelope, StreamId};

use crate::{
    copy_text::{copy_in, CopyText},
    error::AppendError,
    snapshots::{self, Snapshot},
    store::{recorded_event_from_row, EventMetadata, NewEvent, RecordedEvent, SELECT_EVENT},
    AppendOutcome, EventStore, StoreError,
};

/// What a batch's planner reads of its streams up front, in three statements.
#[derive(Debug, Default)]
pub struct Prefetched {
    /// Each existing stream's version.
    pub versions: HashMap<String, i64>,
    pub snapshots: HashMap<String, Snapshot>,
    /// Each stream's events from its snapshot's version on (from version 1 without
    /// one), with that first version.
    pub events: HashMap<String, (i64, Vec<RecordedEvent>)>,
}

/// One stream's events of a batch, validated, with their ids and versions assigned.
#[derive(Debug, Clone)]
pub struct PlannedAppend {
    stream_id: StreamId,
    topic: &'static str,
    /// The stream's version the events were decided on (0: no stream).
    expected: i64,
    event_ids: Vec<Uuid>,
    events: Vec<NewEvent>,
    metadata: EventMetadata,
}

impl PlannedAppend {
    pub fn stream_id(&self) -> &StreamId {
        &self.stream_id
    }

    /// The stream's version once the batch commits.
    pub fn stream_version(&self) -> i64 {
        self.expected + self.events.len() as i64
    }

    /// More events for the same stream, decided on the version the planned ones
    /// leave (validated like the first).
    pub fn extend(&mut self, more: PlannedAppend) -> Result<(), AppendError> {
        if more.stream_id != self.stream_id || more.expected != self.stream_version() {
            return Err(AppendError::Conflict {
                stream_id: more.stream_id,
                expected: crate::ExpectedVersion::Exact(more.expected),
                actual: Some(self.stream_version()),
            });
        }
        self.event_ids.extend(more.event_ids);
        self.events.extend(more.events);
        Ok(())
    }

    /// The events as they will be recorded (global positions are assigned at commit:
    /// 0 here), for the caller's answer and its state cache.
    pub fn outcome(&self) -> AppendOutcome {
        let now = Utc::now();
        let events = self
            .events
            .iter()
            .zip(&self.event_ids)
            .enumerate()
            .map(|(i, (event, id))| RecordedEvent {
                topic: self.topic.to_string(),
                traceparent: self.metadata.traceparent.clone(),
                envelope: EventEnvelope {
                    event_id: *id,
                    event_type: event.event_type.clone(),
                    schema_version: event.schema_version,
                    stream_id: self.stream_id.to_string(),
                    stream_version: self.expected + i as i64 + 1,
                    global_position: 0,
                    occurred_at: now,
                    correlation_id: self.metadata.correlation_id,
                    causation_id: self.metadata.causation_id,
                    data: event.data.clone(),
                },
            })
            .collect();
        AppendOutcome { stream_id: self.stream_id.clone(), stream_version: self.stream_version(), events }
    }
}

/// What a committed batch wrote, for [`EventStore::batch_committed`].
#[derive(Debug, Default)]
pub struct BatchWritten {
    /// Events written by (topic, event type), for the metrics.
    appended: HashMap<(&'static str, String), u64>,
    started: Option<Instant>,
}

impl EventStore {
    /// Reads the versions, snapshots and snapshot-onward events of `stream_ids`.
    pub async fn prefetch(&self, stream_ids: &[&str]) -> Result<Prefetched, StoreError> {
        // One snapshot of the database for all three reads: a batch committed between
        // them would leave versions that the events read after them contradict.
        let mut conn = vectis_runtime::database::begin(self.pool()).await?;
        sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY").execute(&mut *conn).await?;
        let versions: Vec<(String, i64)> =
            sqlx::query_as("SELECT stream_id, version FROM streams WHERE stream_id = ANY($1)")
                .bind(stream_ids)
                .fetch_all(&mut *conn)
                .await?;
        let versions: HashMap<String, i64> = versions.into_iter().collect();
        let existing: Vec<&str> = stream_ids.iter().copied().filter(|s| versions.contains_key(*s)).collect();
        let snapshots: HashMap<String, Snapshot> =
            snapshots::read_many(&mut conn, &existing).await?.into_iter().map(|s| (s.stream_id.clone(), s)).collect();
        let from: Vec<i64> =
            existing.iter().map(|s| snapshots.get(*s).map_or(1, |snap| snap.stream_version.max(1))).collect();
        let mut events: HashMap<String, (i64, Vec<RecordedEvent>)> =
            existing.iter().zip(&from).map(|(s, from)| (s.to_string(), (*from, Vec::new()))).collect();
        if !existing.is_empty() {
            let rows = sqlx::query(&format!(
                "{SELECT_EVENT} JOIN UNNEST($1::text[], $2::bigint[]) AS wanted(stream_id, from_version)
                   USING (stream_id)
                  WHERE stream_version >= wanted.from_version
                  ORDER BY stream_id, stream_version"
            ))
            .bind(&existing)
            .bind(&from)
            .fetch_all(&mut *conn)
            .await?;
            for row in &rows {
                let event = recorded_event_from_row(row)?;
                if let Some((_, stream_events)) = events.get_mut(&event.envelope.stream_id) {
                    stream_events.push(event);
                }
            }
        }
        conn.commit().await?;
        Ok(Prefetched { versions, snapshots, events })
    }

    /// Validates `events` for `stream_id` (as [`EventStore::append`] does) and plans
    /// them after version `expected`.
    pub fn plan_append(
        &self,
        stream_id: StreamId,
        expected: i64,
        events: Vec<NewEvent>,
        metadata: EventMetadata,
    ) -> Result<PlannedAppend, AppendError> {
        if events.is_empty() {
            return Err(AppendError::NoEvents);
        }
        let topic = self.check_events(&stream_id, &events)?.name;
        let event_ids = events.iter().map(|_| Uuid::now_v7()).collect();
        Ok(PlannedAppend { stream_id, topic, expected, event_ids, events, metadata })
    }

    /// Writes every planned append on `conn`, which must be inside a transaction the
    /// caller commits (with whatever else belongs to the batch), then calls
    /// [`EventStore::batch_committed`]. One plan per stream. A stream that moved since
    /// its plan was made fails the whole batch with [`AppendError::Conflict`] naming
    /// one such stream; the transaction must then be rolled back.
    pub async fn append_planned(
        &self,
        conn: &mut PgConnection,
        plans: Vec<PlannedAppend>,
    ) -> Result<BatchWritten, AppendError> {
        let started = Instant::now();
        if plans.is_empty() {
            return Ok(BatchWritten::default());
        }
        // The version check of every stream at once: existing streams advance only from
        // the version their events were decided on; new ones are inserted, and one
        // that exists by now violates the key (COPY, as the events below).
        let (new, existing): (Vec<&PlannedAppend>, Vec<&PlannedAppend>) = plans.iter().partition(|p| p.expected == 0);
        if !existing.is_empty() {
            let moved: Vec<String> = sqlx::query_scalar(
                "WITH planned AS (
                     SELECT * FROM UNNEST($1::text[], $2::bigint[], $3::bigint[]) AS p(stream_id, expected, n)
                 ), advanced AS (
                     UPDATE streams s SET version = s.version + p.n, updated_at = now()
                       FROM planned p
                      WHERE s.stream_id = p.stream_id AND s.version = p.expected
                     RETURNING s.stream_id
                 )
                 SELECT stream_id FROM planned WHERE stream_id NOT IN (SELECT stream_id FROM advanced)",
            )
            .bind(existing.iter().map(|p| p.stream_id.as_str()).collect::<Vec<_>>())
            .bind(existing.iter().map(|p| p.expected).collect::<Vec<_>>())
            .bind(existing.iter().map(|p| p.events.len() as i64).collect::<Vec<_>>())
            .fetch_all(&mut *conn)
            .await?;
            if let Some(stream) = moved.first() {
                let plan = existing.iter().find(|p| p.stream_id.as_str() == stream).unwrap_or(&existing[0]);
                return Err(conflict(plan));
            }
        }
        if !new.is_empty() {
            let mut rows = CopyText(Vec::with_capacity(new.len() * 64));
            for plan in &new {
                rows.field(plan.stream_id.as_str());
                rows.field(&(plan.events.len() as i64).to_string());
                rows.end_row();
            }
            if let Err(error) = copy_in(conn, "COPY streams (stream_id, version) FROM STDIN", &rows).await {
                return Err(match &error {
                    sqlx::Error::Database(db) if db.is_unique_violation() => {
                        // "Key (stream_id)=(…) already exists."
                        let detail = db.try_downcast_ref::<sqlx::postgres::PgDatabaseError>().and_then(|e| e.detail());
                        let plan = new
                            .iter()
                            .find(|p| detail.is_some_and(|d| d.contains(&format!("=({})", p.stream_id.as_str()))))
                            .unwrap_or(&new[0]);
                        conflict(plan)
                    }
                    _ => AppendError::Database(error),
                });
            }
        }

        // The events go in by COPY, in the plans' order: the identity column takes its
        // values row by row, so each stream's events are positioned in version order.
        // COPY skips the array parameters and their unnesting, about half an UNNEST
        // insert's cost for a thousand events.
        let mut rows = CopyText(Vec::with_capacity(plans.iter().map(|p| p.events.len()).sum::<usize>() * 512));
        for plan in &plans {
            let plan_metadata = serde_json::to_string(&plan.metadata).unwrap_or_else(|_| "{}".into());
            for (i, (event, id)) in plan.events.iter().zip(&plan.event_ids).enumerate() {
                let version = plan.expected + i as i64 + 1;
                rows.field(&id.to_string());
                rows.field(plan.stream_id.as_str());
                rows.field(&version.to_string());
                rows.field(plan.topic);
                rows.field(event.event_type.as_str());
                rows.field(&event.schema_version.to_string());
                rows.json_field(&event.data).map_err(|e| AppendError::Database(sqlx::Error::Encode(e.into())))?;
                rows.field(&plan_metadata);
                rows.end_row();
            }
        }
        copy_in(
            conn,
            "COPY events (event_id, stream_id, stream_version, topic, event_type, schema_version, data, metadata)
             FROM STDIN",
            &rows,
        )
        .await?;
        let mut appended: HashMap<(&'static str, String), u64> = HashMap::new();
        for plan in &plans {
            for event in &plan.events {
                *appended.entry((plan.topic, event.event_type.clone())).or_default() += 1;
            }
        }
        Ok(BatchWritten { appended, started: Some(started) })
    }

    /// After the caller committed a batch: wake the relay, count the events.
    pub fn batch_committed(&self, written: &BatchWritten) {
        if written.appended.is_empty() {
            return;
        }
        self.record_committed(
            written.started.unwrap_or_else(Instant::now),
            written.appended.iter().map(|((topic, event_type), count)| (*topic, event_type.as_str(), *count)),
        );
    }
}

fn conflict(plan: &PlannedAppend) -> AppendError {
    AppendError::Conflict {
        stream_id: plan.stream_id.clone(),
        expected: crate::ExpectedVersion::Exact(plan.expected),
        actual: None,
    }
}
