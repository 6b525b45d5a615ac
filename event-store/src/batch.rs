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
use serde_json::Value;
use sqlx::PgConnection;
use uuid::Uuid;
use vectis_schemas::{EventEnvelope, StreamId};

use crate::{
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
    outcomes: Vec<AppendOutcome>,
    started: Option<Instant>,
}

impl EventStore {
    /// Reads the versions, snapshots and snapshot-onward events of `stream_ids`.
    pub async fn prefetch(&self, stream_ids: &[&str]) -> Result<Prefetched, StoreError> {
        let mut conn = self.pool().acquire().await?;
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
        let stream_ids: Vec<&str> = plans.iter().map(|p| p.stream_id.as_str()).collect();
        let expected: Vec<i64> = plans.iter().map(|p| p.expected).collect();
        let counts: Vec<i64> = plans.iter().map(|p| p.events.len() as i64).collect();
        // The version check of every stream at once: new streams are inserted, existing
        // ones advanced only from the version their events were decided on; the
        // streams that did neither come back.
        let moved: Vec<String> = sqlx::query_scalar(
            "WITH planned AS (
                 SELECT * FROM UNNEST($1::text[], $2::bigint[], $3::bigint[]) AS p(stream_id, expected, n)
             ), created AS (
                 INSERT INTO streams (stream_id, version)
                 SELECT stream_id, n FROM planned WHERE expected = 0
                 ON CONFLICT (stream_id) DO NOTHING RETURNING stream_id
             ), advanced AS (
                 UPDATE streams s SET version = s.version + p.n, updated_at = now()
                   FROM planned p
                  WHERE p.expected > 0 AND s.stream_id = p.stream_id AND s.version = p.expected
                 RETURNING s.stream_id
             )
             SELECT stream_id FROM planned
              WHERE stream_id NOT IN (SELECT stream_id FROM created UNION ALL SELECT stream_id FROM advanced)",
        )
        .bind(&stream_ids)
        .bind(&expected)
        .bind(&counts)
        .fetch_all(&mut *conn)
        .await?;
        if let Some(stream) = moved.first() {
            let plan = plans.iter().find(|p| p.stream_id.as_str() == stream).unwrap_or(&plans[0]);
            return Err(AppendError::Conflict {
                stream_id: plan.stream_id.clone(),
                expected: crate::ExpectedVersion::Exact(plan.expected),
                actual: None,
            });
        }

        let mut ids = Vec::new();
        let mut streams = Vec::new();
        let mut versions = Vec::new();
        let mut topics = Vec::new();
        let mut types = Vec::new();
        let mut schema_versions = Vec::new();
        let mut data: Vec<&Value> = Vec::new();
        let mut metadata = Vec::new();
        for plan in &plans {
            let plan_metadata = serde_json::to_value(&plan.metadata).unwrap_or_default();
            for (i, (event, id)) in plan.events.iter().zip(&plan.event_ids).enumerate() {
                ids.push(*id);
                streams.push(plan.stream_id.as_str());
                versions.push(plan.expected + i as i64 + 1);
                topics.push(plan.topic);
                types.push(event.event_type.as_str());
                schema_versions.push(event.schema_version as i32);
                data.push(&event.data);
                metadata.push(plan_metadata.clone());
            }
        }
        // WITH ORDINALITY keeps global positions in the plans' order, so each stream's
        // events are positioned in version order.
        sqlx::query(
            "INSERT INTO events (event_id, stream_id, stream_version, topic, event_type, schema_version, data, metadata)
             SELECT e.event_id, e.stream_id, e.stream_version, e.topic, e.event_type, e.schema_version, e.data, e.metadata
               FROM UNNEST($1::uuid[], $2::text[], $3::bigint[], $4::text[], $5::text[], $6::int[], $7::jsonb[], $8::jsonb[])
                    WITH ORDINALITY AS e(event_id, stream_id, stream_version, topic, event_type, schema_version, data, metadata, n)
              ORDER BY e.n",
        )
        .bind(&ids)
        .bind(&streams)
        .bind(&versions)
        .bind(&topics)
        .bind(&types)
        .bind(&schema_versions)
        .bind(&data)
        .bind(&metadata)
        .execute(&mut *conn)
        .await?;
        Ok(BatchWritten { outcomes: plans.iter().map(PlannedAppend::outcome).collect(), started: Some(started) })
    }

    /// After the caller committed a batch: wake the relay, count the events.
    pub fn batch_committed(&self, written: &BatchWritten) {
        let started = written.started.unwrap_or_else(Instant::now);
        for outcome in &written.outcomes {
            self.record_appended(outcome, started);
        }
    }
}
