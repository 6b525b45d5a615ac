//! Command handling, shared by every endpoint: load → decide → append.
//!
//! The aggregate is loaded (see `loading`: a cached or snapshotted state and the
//! events after it), the command is decided on that state, and the events are
//! appended with the loaded version as the expected version. A client that pinned a version (`If-Match`) gets a
//! conflict when the stream moved; otherwise a lost race is retried on fresh state,
//! so concurrent commands on a hot stream (50 reservations of one SKU) each get a
//! decision made on the state they really change.

use std::{future::Future, time::Duration};

use rand::Rng;
use serde::{de::DeserializeOwned, Serialize};
use uuid::Uuid;
use vectis_event_store::{
    AppendError, AppendOutcome, AppendRequest, EventMetadata, EventStore, ExpectedVersion, Mention, NewEvent,
    RecordedEvent, Snapshot, StoreError,
};
use vectis_schemas::{
    events::{AccountEvent, DecodeError, InventoryEvent, OrderEvent},
    EventEnvelope, StreamId,
};

use crate::{
    domain::{Account, AccountCommand, DomainError, InventoryCommand, InventoryItem, Order, OrderCommand},
    loading::Loader,
};

/// An aggregate as the handler drives it: the domain's pure functions plus decoding,
/// and what its snapshots need.
pub trait Aggregate: Sized + Clone + Send + Sync + Serialize + DeserializeOwned + 'static {
    type Event: Clone + Into<NewEvent> + Send + Sync;
    type Command: Send;
    /// The aggregate's name in snapshots and metrics (`inventory_item`).
    const NAME: &'static str;
    /// The version of the aggregate's state and `evolve`; a snapshot written under
    /// another is ignored (see the domain types' `STATE_VERSION`).
    const STATE_VERSION: i32;

    fn decode(envelope: EventEnvelope) -> Result<Self::Event, DecodeError>;
    fn evolve(state: Option<Self>, event: &Self::Event) -> Option<Self>;
    fn decide(state: &Option<Self>, command: Self::Command) -> Result<Vec<Self::Event>, DomainError>;

    /// Something `command` is about that the state, kept bounded, no longer holds
    /// (a reservation closed long ago): the stream's events mentioning it are read
    /// and handed to [`Aggregate::recall`] before deciding.
    fn forgotten(_state: &Self, _command: &Self::Command) -> Option<Mention> {
        None
    }

    /// Takes in the stream's events that mention what `forgotten` named.
    fn recall(&mut self, _events: Vec<Self::Event>) {}
}

macro_rules! aggregate {
    ($aggregate:ty, $event:ty, $command:ty, $name:literal $(, { $($more:tt)* })?) => {
        impl Aggregate for $aggregate {
            type Event = $event;
            type Command = $command;
            const NAME: &'static str = $name;
            const STATE_VERSION: i32 = <$aggregate>::STATE_VERSION;

            fn decode(envelope: EventEnvelope) -> Result<Self::Event, DecodeError> {
                <$event>::from_data(&envelope.event_type, envelope.data)
            }

            fn evolve(state: Option<Self>, event: &Self::Event) -> Option<Self> {
                <$aggregate>::evolve(state, event)
            }

            fn decide(state: &Option<Self>, command: Self::Command) -> Result<Vec<Self::Event>, DomainError> {
                <$aggregate>::decide(state, command)
            }

            $($($more)*)?
        }
    };
}
aggregate!(Account, AccountEvent, AccountCommand, "account");
aggregate!(InventoryItem, InventoryEvent, InventoryCommand, "inventory_item", {
    fn forgotten(state: &Self, command: &Self::Command) -> Option<Mention> {
        state.forgotten(command).map(Mention::ReservationId)
    }

    fn recall(&mut self, events: Vec<Self::Event>) {
        InventoryItem::recall(self, &events)
    }
});
aggregate!(Order, OrderEvent, OrderCommand, "order");

/// Every aggregate's name and the state version this code writes and trusts.
pub fn state_versions() -> [(&'static str, i32); 3] {
    [
        (Account::NAME, <Account as Aggregate>::STATE_VERSION),
        (InventoryItem::NAME, <InventoryItem as Aggregate>::STATE_VERSION),
        (Order::NAME, <Order as Aggregate>::STATE_VERSION),
    ]
}

/// Where a command reads its aggregate and appends its events: the store itself, or
/// a command running under an idempotency key, whose transaction holds the key and
/// serves both (so it never needs a second connection).
pub trait StoreSession: Send {
    /// The stream's events from `from_version` on.
    fn read_stream(
        &mut self,
        stream_id: &StreamId,
        from_version: i64,
    ) -> impl Future<Output = Result<Vec<RecordedEvent>, StoreError>> + Send;
    fn read_stream_mentioning(
        &mut self,
        stream_id: &StreamId,
        mention: Mention,
    ) -> impl Future<Output = Result<Vec<RecordedEvent>, StoreError>> + Send;
    fn read_snapshot(&mut self, stream_id: &str) -> impl Future<Output = Result<Option<Snapshot>, StoreError>> + Send;
    /// Writes `snapshot` once what the session appended has committed.
    fn save_snapshot_after_commit(&mut self, snapshot: Snapshot);
    fn append(&mut self, request: AppendRequest) -> impl Future<Output = Result<AppendOutcome, AppendError>> + Send;
    /// Whether the states this session's commands leave belong in the state cache. A
    /// bulk import's do not: a file of a hundred thousand new items would evict the
    /// states of the streams commands keep coming back to.
    fn caches_states(&self) -> bool {
        true
    }
}

/// An aggregate's state and the stream version it reflects (0: no stream).
#[derive(Debug, Clone)]
pub struct Loaded<A> {
    pub state: Option<A>,
    pub version: i64,
    /// The id of the event at `version`.
    pub last_event_id: Option<Uuid>,
    /// The version of the stream's newest snapshot (0: none).
    pub snapshot_version: i64,
}

impl<A> Loaded<A> {
    fn no_stream() -> Self {
        Self { state: None, version: 0, last_event_id: None, snapshot_version: 0 }
    }
}

/// What a handled command did.
#[derive(Debug, Clone)]
pub struct CommandOutcome {
    pub stream_id: StreamId,
    /// The stream's version after the command (unchanged when nothing was decided).
    pub stream_version: i64,
    /// The events appended; empty when the command changed nothing.
    pub events: Vec<RecordedEvent>,
}

#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// The domain refused the command (4xx).
    #[error(transparent)]
    Domain(#[from] DomainError),
    /// The client pinned a version (`If-Match`) and the stream is elsewhere (409).
    #[error("stream {stream_id} is at version {actual}, not {expected}")]
    VersionMismatch { stream_id: StreamId, expected: i64, actual: i64 },
    /// Lost the race on a hot stream too many times in a row (409, retry later).
    #[error("stream {stream_id} changed on every one of {attempts} attempts; retry later")]
    Contended { stream_id: StreamId, attempts: u32 },
    /// The stored history could not be read back (5xx: needs an operator).
    #[error("history of {stream_id} is unreadable: {reason}")]
    History { stream_id: StreamId, reason: String },
    /// Appending failed for a reason that is not the client's (5xx).
    #[error(transparent)]
    Append(AppendError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl CommandError {
    /// True for a refusal the client can act on (4xx), false for a server failure.
    pub fn is_rejection(&self) -> bool {
        matches!(self, Self::Domain(_) | Self::VersionMismatch { .. } | Self::Contended { .. })
    }
}

/// Whether the stream must be read before deciding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamKnown {
    /// An existing aggregate, or a creation under a client-chosen id (a SKU).
    MayExist,
    /// A creation under an id the server just generated: it cannot exist yet.
    New,
}

/// Loads, decides and appends commands.
#[derive(Clone)]
pub struct CommandHandler {
    store: EventStore,
    loader: Loader,
    max_attempts: u32,
}

impl CommandHandler {
    /// A handler with the store's snapshot policy and a state cache of its own, which
    /// its clones share.
    pub fn new(store: EventStore) -> Self {
        Self { loader: Loader::new(&store), store, max_attempts: 100 }
    }

    pub fn store(&self) -> &EventStore {
        &self.store
    }

    /// The aggregate's current state, read from the store.
    pub async fn load<A: Aggregate>(&self, stream_id: &StreamId) -> Result<Loaded<A>, CommandError> {
        let mut store = self.store.clone();
        self.loader.load(&mut store, stream_id).await
    }

    /// The aggregate's current state, read in `session` (inside its transaction).
    pub async fn load_in<A: Aggregate>(
        &self,
        session: &mut impl StoreSession,
        stream_id: &StreamId,
    ) -> Result<Loaded<A>, CommandError> {
        self.loader.load(session, stream_id).await
    }

    /// Handles one command on `stream_id`. `command` builds the command from the
    /// loaded state each attempt. `if_match` pins the version the client saw.
    pub async fn execute<A, F>(
        &self,
        session: &mut impl StoreSession,
        stream_id: &StreamId,
        if_match: Option<i64>,
        metadata: &EventMetadata,
        command: F,
    ) -> Result<CommandOutcome, CommandError>
    where
        A: Aggregate,
        F: Fn(&Option<A>) -> A::Command + Send,
    {
        self.execute_on::<A, F>(session, StreamKnown::MayExist, stream_id, if_match, metadata, command).await
    }

    /// `execute`, told whether the stream can exist. A stream whose id the server has
    /// just generated (a UUIDv7) cannot: it is not read, and appending still expects
    /// no stream.
    pub async fn execute_on<A, F>(
        &self,
        session: &mut impl StoreSession,
        known: StreamKnown,
        stream_id: &StreamId,
        if_match: Option<i64>,
        metadata: &EventMetadata,
        command: F,
    ) -> Result<CommandOutcome, CommandError>
    where
        A: Aggregate,
        F: Fn(&Option<A>) -> A::Command + Send,
    {
        for attempt in 1..=self.max_attempts {
            let loaded = match known {
                StreamKnown::New => Loaded::no_stream(),
                StreamKnown::MayExist => self.loader.load::<A>(session, stream_id).await?,
            };
            if let Some(expected) = if_match {
                if expected != loaded.version {
                    return Err(CommandError::VersionMismatch {
                        stream_id: stream_id.clone(),
                        expected,
                        actual: loaded.version,
                    });
                }
            }
            let command = command(&loaded.state);
            let events = match loaded.state.as_ref().and_then(|state| A::forgotten(state, &command)) {
                None => A::decide(&loaded.state, command)?,
                Some(mention) => {
                    let recalled = self.loader.recall::<A>(session, stream_id, mention).await?;
                    let mut deciding = loaded.state.clone();
                    if let Some(state) = deciding.as_mut() {
                        state.recall(recalled);
                    }
                    A::decide(&deciding, command)?
                }
            };
            if events.is_empty() {
                return Ok(CommandOutcome {
                    stream_id: stream_id.clone(),
                    stream_version: loaded.version,
                    events: vec![],
                });
            }
            let request = AppendRequest {
                stream_id: stream_id.clone(),
                expected: ExpectedVersion::Exact(loaded.version),
                events: events.iter().cloned().map(Into::into).collect(),
                metadata: metadata.clone(),
            };
            match session.append(request).await {
                Ok(outcome) => {
                    self.loader.appended(session, stream_id, loaded, &events, &outcome);
                    return Ok(CommandOutcome {
                        stream_id: outcome.stream_id,
                        stream_version: outcome.stream_version,
                        events: outcome.events,
                    });
                }
                Err(AppendError::Conflict { actual, .. }) if if_match.is_some() => {
                    return Err(CommandError::VersionMismatch {
                        stream_id: stream_id.clone(),
                        expected: loaded.version,
                        actual: actual.unwrap_or(0),
                    });
                }
                Err(AppendError::Conflict { .. }) if known == StreamKnown::New => {
                    // Re-deciding would see the same (assumed empty) state: report it.
                    return Err(DomainError::AlreadyExists(format!("stream {stream_id} already exists")).into());
                }
                Err(AppendError::Conflict { .. }) => {
                    tracing::debug!(%stream_id, attempt, "lost a race on the stream; deciding again on fresh state");
                    // A little jitter so contenders do not collide in lockstep.
                    let pause = rand::thread_rng().gen_range(0..=attempt.min(20));
                    tokio::time::sleep(Duration::from_millis(u64::from(pause))).await;
                }
                Err(other) => return Err(CommandError::Append(other)),
            }
        }
        Err(CommandError::Contended { stream_id: stream_id.clone(), attempts: self.max_attempts })
    }
}
