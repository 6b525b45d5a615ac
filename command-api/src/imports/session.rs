//! The store as a batch of import rows sees it: every stream the batch touches read
//! up front in three statements, appends collected in memory (checked against what
//! was read, and against each other: two rows on one SKU decide in order), then
//! written together in one transaction. Rows run through the ordinary command handler
//! on this session, so they are loaded, decided and appended exactly as requests are.

use std::collections::HashMap;

use vectis_event_store::{
    batch::Prefetched, AppendError, AppendOutcome, AppendRequest, BatchWritten, EventStore, ExpectedVersion, Mention,
    PlannedAppend, RecordedEvent, Snapshot, StoreError,
};
use vectis_schemas::StreamId;

use crate::handling::StoreSession;

pub(crate) struct BatchSession {
    store: EventStore,
    prefetched: Prefetched,
    /// The streams read up front: for these, "not in `prefetched.versions`" means no
    /// stream yet.
    known: std::collections::HashSet<String>,
    plans: Vec<PlannedAppend>,
    plan_of: HashMap<String, usize>,
    snapshots: Vec<Snapshot>,
}

impl BatchSession {
    pub async fn open(store: &EventStore, stream_ids: &[&str]) -> Result<Self, StoreError> {
        Ok(Self {
            prefetched: store.prefetch(stream_ids).await?,
            store: store.clone(),
            known: stream_ids.iter().map(|s| s.to_string()).collect(),
            plans: Vec::new(),
            plan_of: HashMap::new(),
            snapshots: Vec::new(),
        })
    }

    /// The stream's version as this batch leaves it so far.
    async fn current_version(&self, stream_id: &StreamId) -> Result<i64, StoreError> {
        if let Some(&i) = self.plan_of.get(stream_id.as_str()) {
            return Ok(self.plans[i].stream_version());
        }
        if self.known.contains(stream_id.as_str()) {
            return Ok(self.prefetched.versions.get(stream_id.as_str()).copied().unwrap_or(0));
        }
        Ok(self.store.stream_version(stream_id).await?.unwrap_or(0))
    }

    fn planned_events(&self, stream_id: &str) -> Vec<RecordedEvent> {
        self.plan_of.get(stream_id).map(|&i| self.plans[i].outcome().events).unwrap_or_default()
    }

    /// Writes what the batch appended, on `conn` inside the caller's transaction.
    pub async fn write(&mut self, conn: &mut sqlx::PgConnection) -> Result<BatchWritten, AppendError> {
        self.store.append_planned(conn, std::mem::take(&mut self.plans)).await
    }

    /// After the caller's commit: the relay is woken and the snapshots taken.
    pub fn committed(&mut self, written: &BatchWritten) {
        self.store.batch_committed(written);
        for snapshot in std::mem::take(&mut self.snapshots) {
            self.store.save_snapshot_after_commit(snapshot);
        }
    }
}

impl StoreSession for BatchSession {
    async fn read_stream(&mut self, stream_id: &StreamId, from_version: i64) -> Result<Vec<RecordedEvent>, StoreError> {
        let mut events = match self.prefetched.events.get(stream_id.as_str()) {
            Some((first, events)) if from_version >= *first => {
                events.iter().filter(|e| e.envelope.stream_version >= from_version).cloned().collect()
            }
            None if self.known.contains(stream_id.as_str()) => Vec::new(),
            _ => self.store.read_stream(stream_id, from_version).await?,
        };
        events.extend(
            self.planned_events(stream_id.as_str()).into_iter().filter(|e| e.envelope.stream_version >= from_version),
        );
        Ok(events)
    }

    async fn read_stream_mentioning(
        &mut self,
        stream_id: &StreamId,
        mention: Mention,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let mut events = self.store.read_stream_mentioning(stream_id, mention).await?;
        let Mention::ReservationId(id) = mention;
        let id = id.to_string();
        events.extend(
            self.planned_events(stream_id.as_str())
                .into_iter()
                .filter(|e| e.envelope.data.get("reservation_id").and_then(|v| v.as_str()) == Some(id.as_str())),
        );
        Ok(events)
    }

    async fn read_snapshot(&mut self, stream_id: &str) -> Result<Option<Snapshot>, StoreError> {
        if self.known.contains(stream_id) {
            return Ok(self.prefetched.snapshots.get(stream_id).cloned());
        }
        self.store.read_snapshot(stream_id).await
    }

    fn save_snapshot_after_commit(&mut self, snapshot: Snapshot) {
        self.snapshots.push(snapshot);
    }

    fn caches_states(&self) -> bool {
        false
    }

    async fn append(&mut self, request: AppendRequest) -> Result<AppendOutcome, AppendError> {
        let current = self.current_version(&request.stream_id).await.map_err(|e| match e {
            StoreError::Database(e) => AppendError::Database(e),
            other => AppendError::Database(sqlx::Error::Protocol(other.to_string())),
        })?;
        let holds = match request.expected {
            ExpectedVersion::Any => true,
            ExpectedVersion::NoStream => current == 0,
            ExpectedVersion::Exact(n) => n == current,
        };
        if !holds {
            return Err(AppendError::Conflict {
                stream_id: request.stream_id,
                expected: request.expected,
                actual: (current > 0).then_some(current),
            });
        }
        let plan = self.store.plan_append(request.stream_id.clone(), current, request.events, request.metadata)?;
        let outcome = plan.outcome();
        match self.plan_of.get(request.stream_id.as_str()) {
            Some(&i) => self.plans[i].extend(plan)?,
            None => {
                self.plan_of.insert(request.stream_id.to_string(), self.plans.len());
                self.plans.push(plan);
            }
        }
        Ok(outcome)
    }
}
