//! Command handling, shared by every endpoint: load → decide → append.
//!
//! The aggregate is loaded by folding its stream (upcast to current schema versions),
//! the command is decided on that state, and the events are appended with the loaded
//! version as the expected version. A client that pinned a version (`If-Match`) gets a
//! conflict when the stream moved; otherwise a lost race is retried on fresh state,
//! so concurrent commands on a hot stream (50 reservations of one SKU) each get a
//! decision made on the state they really change.

use std::{future::Future, time::Duration};

use rand::Rng;
use vectis_event_store::{
    AppendError, AppendOutcome, AppendRequest, EventMetadata, EventStore, ExpectedVersion, IdempotentCommand, NewEvent,
    RecordedEvent, StoreError,
};
use vectis_schemas::{
    events::{AccountEvent, DecodeError, InventoryEvent, OrderEvent},
    upcast::UpcastError,
    EventEnvelope, StreamId,
};

use crate::domain::{Account, AccountCommand, DomainError, InventoryCommand, InventoryItem, Order, OrderCommand};

/// An aggregate as the handler drives it: the domain's pure functions plus decoding.
pub trait Aggregate: Sized + Clone + Send + Sync + 'static {
    type Event: Clone + Into<NewEvent> + Send + Sync;
    type Command: Send;

    fn decode(envelope: EventEnvelope) -> Result<Self::Event, DecodeError>;
    fn evolve(state: Option<Self>, event: &Self::Event) -> Option<Self>;
    fn decide(state: &Option<Self>, command: Self::Command) -> Result<Vec<Self::Event>, DomainError>;
}

macro_rules! aggregate {
    ($aggregate:ty, $event:ty, $command:ty) => {
        impl Aggregate for $aggregate {
            type Event = $event;
            type Command = $command;

            fn decode(envelope: EventEnvelope) -> Result<Self::Event, DecodeError> {
                <$event>::from_data(&envelope.event_type, envelope.data)
            }

            fn evolve(state: Option<Self>, event: &Self::Event) -> Option<Self> {
                <$aggregate>::evolve(state, event)
            }

            fn decide(state: &Option<Self>, command: Self::Command) -> Result<Vec<Self::Event>, DomainError> {
                <$aggregate>::decide(state, command)
            }
        }
    };
}
aggregate!(Account, AccountEvent, AccountCommand);
aggregate!(InventoryItem, InventoryEvent, InventoryCommand);
aggregate!(Order, OrderEvent, OrderCommand);

/// Where a command reads its aggregate and appends its events: the store itself, or
/// a command running under an idempotency key, whose transaction holds the key and
/// serves both (so it never needs a second connection).
pub trait StoreSession: Send {
    fn read_stream(
        &mut self,
        stream_id: &StreamId,
    ) -> impl Future<Output = Result<Vec<RecordedEvent>, StoreError>> + Send;
    fn append(&mut self, request: AppendRequest) -> impl Future<Output = Result<AppendOutcome, AppendError>> + Send;
}

impl StoreSession for EventStore {
    async fn read_stream(&mut self, stream_id: &StreamId) -> Result<Vec<RecordedEvent>, StoreError> {
        EventStore::read_stream(self, stream_id, 1).await
    }

    fn append(&mut self, request: AppendRequest) -> impl Future<Output = Result<AppendOutcome, AppendError>> + Send {
        EventStore::append(self, request)
    }
}

impl StoreSession for IdempotentCommand {
    async fn read_stream(&mut self, stream_id: &StreamId) -> Result<Vec<RecordedEvent>, StoreError> {
        IdempotentCommand::read_stream(self, stream_id, 1).await
    }

    fn append(&mut self, request: AppendRequest) -> impl Future<Output = Result<AppendOutcome, AppendError>> + Send {
        IdempotentCommand::append(self, request)
    }
}

/// An aggregate's state and the stream version it reflects (0: no stream).
#[derive(Debug, Clone)]
pub struct Loaded<A> {
    pub state: Option<A>,
    pub version: i64,
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
    max_attempts: u32,
}

impl CommandHandler {
    pub fn new(store: EventStore) -> Self {
        Self { store, max_attempts: 100 }
    }

    pub fn store(&self) -> &EventStore {
        &self.store
    }

    /// The aggregate's current state, read from the store.
    pub async fn load<A: Aggregate>(&self, stream_id: &StreamId) -> Result<Loaded<A>, CommandError> {
        let mut store = self.store.clone();
        load_from(&mut store, stream_id).await
    }

    /// The aggregate's current state, read in `session` (inside its transaction).
    pub async fn load_in<A: Aggregate>(
        &self,
        session: &mut impl StoreSession,
        stream_id: &StreamId,
    ) -> Result<Loaded<A>, CommandError> {
        load_from(session, stream_id).await
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
                StreamKnown::New => Loaded { state: None, version: 0 },
                StreamKnown::MayExist => load_from::<A>(session, stream_id).await?,
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
            let events = A::decide(&loaded.state, command(&loaded.state))?;
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
                events: events.into_iter().map(Into::into).collect(),
                metadata: metadata.clone(),
            };
            match session.append(request).await {
                Ok(outcome) => {
                    return Ok(CommandOutcome {
                        stream_id: outcome.stream_id,
                        stream_version: outcome.stream_version,
                        events: outcome.events,
                    })
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

/// Folds the stream, upcast to current schema versions, into the aggregate.
async fn load_from<A: Aggregate>(
    session: &mut impl StoreSession,
    stream_id: &StreamId,
) -> Result<Loaded<A>, CommandError> {
    let history = |reason: String| CommandError::History { stream_id: stream_id.clone(), reason };
    let mut state = None;
    let mut version = 0;
    for recorded in session.read_stream(stream_id).await? {
        let envelope = recorded.upcast().map_err(|e: UpcastError| history(e.to_string()))?;
        version = envelope.stream_version;
        let event = A::decode(envelope).map_err(|e| history(e.to_string()))?;
        state = A::evolve(state, &event);
    }
    Ok(Loaded { state, version })
}
