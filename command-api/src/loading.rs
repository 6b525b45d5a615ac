//! How a command finds its aggregate's state: the newest of a state this process
//! cached and the stream's stored snapshot, then the events after it (upcast to
//! current schema versions) folded on top. So a command's cost does not grow with its
//! stream: a hot stream folds the events since this process last saw it, a cold one at
//! most `SNAPSHOT_EVERY` events.
//!
//! A base state (cached or snapshotted) is used only when it was written by this
//! aggregate code (same name and state version) and the event it ends at is still the
//! stream's event at its version; anything else is a miss, counted by reason, and the
//! stream is folded from its start.

use std::future::Future;

use vectis_event_store::{
    metrics::{AggregateLabels, SnapshotHitLabels, SnapshotMissLabels},
    AppendOutcome, EventStore, IdempotentCommand, Mention, RecordedEvent, Snapshot, SnapshotPolicy, StoreError,
    StoreMetrics,
};
use vectis_schemas::StreamId;

use crate::{
    handling::{Aggregate, CommandError, Loaded, StoreSession},
    state_cache::{StateCache, StreamPosition},
};

/// Loads aggregates, caches what commands leave behind and takes snapshots.
#[derive(Clone)]
pub(crate) struct Loader {
    cache: StateCache,
    policy: SnapshotPolicy,
    metrics: StoreMetrics,
}

impl Loader {
    pub fn new(store: &EventStore) -> Self {
        let policy = store.snapshot_policy();
        let metrics = store.metrics().clone();
        Self { cache: StateCache::new(policy.cache_bytes, metrics.state_cache_bytes.clone()), policy, metrics }
    }

    pub async fn load<A: Aggregate>(
        &self,
        session: &mut impl StoreSession,
        stream_id: &StreamId,
    ) -> Result<Loaded<A>, CommandError> {
        if let Some((position, state)) = self.cache.get::<A>(stream_id.as_str()) {
            if let Some(loaded) = self.fold_onto(session, stream_id, position, state).await? {
                self.hit::<A>("cache");
                return Ok(loaded);
            }
            self.cache.forget(stream_id.as_str());
        }
        let miss = match session.read_snapshot(stream_id.as_str()).await? {
            None => "none",
            Some(snapshot) if snapshot.aggregate != A::NAME || snapshot.state_version != A::STATE_VERSION => {
                "state_version"
            }
            Some(snapshot) => match serde_json::from_value::<A>(snapshot.state) {
                Err(error) => {
                    tracing::warn!(%stream_id, %error, "a snapshot does not deserialise; folding the stream instead");
                    "unreadable"
                }
                Ok(state) => {
                    let position = StreamPosition {
                        version: snapshot.stream_version,
                        last_event_id: snapshot.last_event_id,
                        snapshot_version: snapshot.stream_version,
                    };
                    match self.fold_onto(session, stream_id, position, state).await? {
                        Some(loaded) => {
                            self.hit::<A>("store");
                            return Ok(loaded);
                        }
                        None => "diverged",
                    }
                }
            },
        };
        self.metrics
            .snapshot_misses
            .get_or_create(&SnapshotMissLabels { aggregate: A::NAME.into(), reason: miss })
            .inc();
        let (loaded, folded) = fold::<A>(stream_id, None, None, &session.read_stream(stream_id, 1).await?)?;
        self.observe_folded::<A>(folded);
        Ok(loaded)
    }

    /// `state` at `position` with the stream's later events folded on, or `None` when
    /// the stream's event at `position.version` is not the one the state ends at.
    async fn fold_onto<A: Aggregate>(
        &self,
        session: &mut impl StoreSession,
        stream_id: &StreamId,
        position: StreamPosition,
        state: A,
    ) -> Result<Option<Loaded<A>>, CommandError> {
        let events = session.read_stream(stream_id, position.version).await?;
        let Some((first, tail)) = events.split_first() else { return Ok(None) };
        if first.envelope.stream_version != position.version || first.envelope.event_id != position.last_event_id {
            return Ok(None);
        }
        let (loaded, folded) = fold(stream_id, Some(state), Some(position), tail)?;
        self.observe_folded::<A>(folded);
        Ok(Some(loaded))
    }

    fn hit<A: Aggregate>(&self, source: &'static str) {
        self.metrics.snapshot_hits.get_or_create(&SnapshotHitLabels { aggregate: A::NAME.into(), source }).inc();
    }

    fn observe_folded<A: Aggregate>(&self, folded: usize) {
        self.metrics.events_folded.get_or_create(&AggregateLabels { aggregate: A::NAME.into() }).observe(folded as f64);
    }

    /// The stream's events that mention what the state let go of (see
    /// [`Aggregate::forgotten`]), decoded.
    pub async fn recall<A: Aggregate>(
        &self,
        session: &mut impl StoreSession,
        stream_id: &StreamId,
        mention: Mention,
    ) -> Result<Vec<A::Event>, CommandError> {
        session.read_stream_mentioning(stream_id, mention).await?.iter().map(|e| decode::<A>(stream_id, e)).collect()
    }

    /// After an append: caches the state the command left and, every `SNAPSHOT_EVERY`
    /// events, snapshots it (written once the append has committed).
    pub fn appended<A: Aggregate>(
        &self,
        session: &mut impl StoreSession,
        stream_id: &StreamId,
        loaded: Loaded<A>,
        events: &[A::Event],
        outcome: &AppendOutcome,
    ) {
        let Some(last) = outcome.events.last() else { return };
        let Some(state) = events.iter().fold(loaded.state, |state, event| A::evolve(state, event)) else { return };
        let mut position = StreamPosition {
            version: outcome.stream_version,
            last_event_id: last.envelope.event_id,
            snapshot_version: loaded.snapshot_version,
        };
        if self.policy.due(position.version - position.snapshot_version) {
            match serde_json::to_value(&state) {
                Ok(json) => {
                    session.save_snapshot_after_commit(Snapshot {
                        stream_id: stream_id.to_string(),
                        aggregate: A::NAME.to_string(),
                        state_version: A::STATE_VERSION,
                        stream_version: position.version,
                        last_event_id: position.last_event_id,
                        state: json,
                    });
                    position.snapshot_version = position.version;
                }
                Err(error) => tracing::warn!(%stream_id, %error, "a state does not serialise; no snapshot taken"),
            }
        }
        if session.caches_states() {
            self.cache.put(stream_id.as_str(), position, state);
        }
    }
}

/// Folds `events` onto `state` (at `position`, or the empty state); returns the loaded
/// aggregate and how many events were folded.
fn fold<A: Aggregate>(
    stream_id: &StreamId,
    mut state: Option<A>,
    position: Option<StreamPosition>,
    events: &[RecordedEvent],
) -> Result<(Loaded<A>, usize), CommandError> {
    let mut version = position.map_or(0, |p| p.version);
    let mut last_event_id = position.map(|p| p.last_event_id);
    for recorded in events {
        let event = decode::<A>(stream_id, recorded)?;
        version = recorded.envelope.stream_version;
        last_event_id = Some(recorded.envelope.event_id);
        state = A::evolve(state, &event);
    }
    let snapshot_version = position.map_or(0, |p| p.snapshot_version);
    Ok((Loaded { state, version, last_event_id, snapshot_version }, events.len()))
}

fn decode<A: Aggregate>(stream_id: &StreamId, recorded: &RecordedEvent) -> Result<A::Event, CommandError> {
    let history = |reason: String| CommandError::History { stream_id: stream_id.clone(), reason };
    let envelope = recorded.upcast().map_err(|e| history(e.to_string()))?;
    A::decode(envelope).map_err(|e| history(e.to_string()))
}

impl StoreSession for EventStore {
    async fn read_stream(&mut self, stream_id: &StreamId, from_version: i64) -> Result<Vec<RecordedEvent>, StoreError> {
        EventStore::read_stream(self, stream_id, from_version).await
    }

    async fn read_stream_mentioning(
        &mut self,
        stream_id: &StreamId,
        mention: Mention,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        EventStore::read_stream_mentioning(self, stream_id, mention).await
    }

    async fn read_snapshot(&mut self, stream_id: &str) -> Result<Option<Snapshot>, StoreError> {
        EventStore::read_snapshot(self, stream_id).await
    }

    fn save_snapshot_after_commit(&mut self, snapshot: Snapshot) {
        // Appends on the store commit as they return.
        EventStore::save_snapshot_after_commit(self, snapshot)
    }

    fn append(
        &mut self,
        request: vectis_event_store::AppendRequest,
    ) -> impl Future<Output = Result<AppendOutcome, vectis_event_store::AppendError>> + Send {
        EventStore::append(self, request)
    }
}

impl StoreSession for IdempotentCommand {
    async fn read_stream(&mut self, stream_id: &StreamId, from_version: i64) -> Result<Vec<RecordedEvent>, StoreError> {
        IdempotentCommand::read_stream(self, stream_id, from_version).await
    }

    async fn read_stream_mentioning(
        &mut self,
        stream_id: &StreamId,
        mention: Mention,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        IdempotentCommand::read_stream_mentioning(self, stream_id, mention).await
    }

    async fn read_snapshot(&mut self, stream_id: &str) -> Result<Option<Snapshot>, StoreError> {
        IdempotentCommand::read_snapshot(self, stream_id).await
    }

    fn save_snapshot_after_commit(&mut self, snapshot: Snapshot) {
        IdempotentCommand::save_snapshot_after_commit(self, snapshot)
    }

    fn append(
        &mut self,
        request: vectis_event_store::AppendRequest,
    ) -> impl Future<Output = Result<AppendOutcome, vectis_event_store::AppendError>> + Send {
        IdempotentCommand::append(self, request)
    }
}
