//! Append and read. An append is one statement: expected-version check, then a
//! set-based insert of the events; after the commit the relay is notified (see
//! `notifier`). Schema validation happens before anything touches the database.

use std::{
    fmt,
    sync::Arc,
    time::{Duration, Instant},
};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::{postgres::PgRow, PgConnection, PgPool, Row};
use uuid::Uuid;
use vectis_schemas::{topics, upcast, EventEnvelope, SchemaCatalog, SchemaMode, SchemaViolation, StreamId};

use crate::{
    error::AppendError, metrics::TopicEventLabels, notifier::CommitNotifier, snapshots::SnapshotPolicy, StoreError,
    StoreMetrics,
};

/// What the writer believes the stream's version is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ExpectedVersion {
    /// Append whatever the version is.
    Any,
    /// The stream must not exist yet.
    NoStream,
    /// The stream must be at exactly this version (`Exact(0)` means no stream).
    Exact(i64),
}

impl fmt::Display for ExpectedVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Any => f.write_str("any"),
            Self::NoStream | Self::Exact(0) => f.write_str("no stream"),
            Self::Exact(n) => write!(f, "{n}"),
        }
    }
}

/// An event to append.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    pub event_type: String,
    pub schema_version: u32,
    pub data: Value,
}

impl NewEvent {
    /// An event at the registry's current schema version of its type.
    pub fn new(event_type: impl Into<String>, data: Value) -> Self {
        let event_type = event_type.into();
        let schema_version = topics::event_type_spec(&event_type).map_or(1, |s| s.current_version);
        Self { event_type, schema_version, data }
    }
}

/// Context every event of one append shares.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventMetadata {
    pub correlation_id: Uuid,
    pub causation_id: Option<Uuid>,
    /// W3C trace context of the command, carried to the record headers.
    pub traceparent: Option<String>,
}

impl Default for EventMetadata {
    fn default() -> Self {
        Self { correlation_id: Uuid::now_v7(), causation_id: None, traceparent: None }
    }
}

#[derive(Debug, Clone)]
pub struct AppendRequest {
    pub stream_id: StreamId,
    pub expected: ExpectedVersion,
    pub events: Vec<NewEvent>,
    pub metadata: EventMetadata,
}

/// An event as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedEvent {
    /// Logical topic (`vectis.orders`); the relay maps it to the broker's name.
    pub topic: String,
    pub envelope: EventEnvelope,
    pub traceparent: Option<String>,
}

impl RecordedEvent {
    /// The envelope at the current schema version of its type, as consumers see it.
    pub fn upcast(&self) -> Result<EventEnvelope, upcast::UpcastError> {
        upcast::upcast_envelope(self.envelope.clone())
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct AppendOutcome {
    pub stream_id: StreamId,
    /// The stream's version after the append (the last event's `stream_version`).
    pub stream_version: i64,
    pub events: Vec<RecordedEvent>,
}

/// The event store. Cheap to clone.
#[derive(Clone)]
pub struct EventStore {
    pool: PgPool,
    schemas: Arc<SchemaCatalog>,
    mode: SchemaMode,
    metrics: StoreMetrics,
    notifier: CommitNotifier,
    idempotency_wait: std::time::Duration,
    snapshot_policy: SnapshotPolicy,
}

/// A fact an aggregate's bounded state no longer keeps, which a command may still ask
/// about: the stream's events that mention it are read through an index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mention {
    /// Events whose `reservation_id` is this (migration `0009_snapshots`).
    ReservationId(Uuid),
}

pub(crate) const SELECT_EVENT: &str =
    "SELECT global_position, event_id, stream_id, stream_version, topic, event_type, \
     schema_version, data, metadata, recorded_at FROM events";

impl EventStore {
    /// Must be called inside a Tokio runtime: it starts the task that wakes the relay.
    pub fn new(pool: PgPool, schemas: Arc<SchemaCatalog>, mode: SchemaMode, metrics: StoreMetrics) -> Self {
        let notifier = CommitNotifier::start(pool.clone());
        let idempotency_wait = crate::idempotency::DEFAULT_IDEMPOTENCY_WAIT;
        Self { pool, schemas, mode, metrics, notifier, idempotency_wait, snapshot_policy: SnapshotPolicy::default() }
    }

    /// How often command handlers on this store snapshot aggregates and how much
    /// state they cache (default: every 100 events, 64 MiB).
    pub fn with_snapshot_policy(mut self, policy: SnapshotPolicy) -> Self {
        self.snapshot_policy = policy;
        self
    }

    pub fn snapshot_policy(&self) -> SnapshotPolicy {
        self.snapshot_policy
    }

    pub fn metrics(&self) -> &StoreMetrics {
        &self.metrics
    }

    /// How long a request waits for another request holding the same idempotency key
    /// before it is told the key is in use (default 10 s).
    pub fn with_idempotency_wait(mut self, wait: std::time::Duration) -> Self {
        self.idempotency_wait = wait;
        self
    }

    pub fn idempotency_wait(&self) -> std::time::Duration {
        self.idempotency_wait
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    pub fn schema_mode(&self) -> SchemaMode {
        self.mode
    }

    /// Appends `request` atomically and returns what was stored.
    #[tracing::instrument(skip_all, fields(stream_id = %request.stream_id, events = request.events.len()), err(level = "debug"))]
    pub async fn append(&self, request: AppendRequest) -> Result<AppendOutcome, AppendError> {
        let started = Instant::now();
        // The append's writes are one statement, so it needs no transaction of its own:
        // one round trip instead of four (BEGIN and COMMIT around two statements).
        let outcome = self.append_in(&mut *self.pool.acquire().await?, request).await?;
        self.record_appended(&outcome, started);
        Ok(outcome)
    }

    /// Validation, version check and insert, in one statement on `conn` (on its own, or
    /// inside a transaction the caller commits). Nothing is written when an error is
    /// returned.
    pub(crate) async fn append_in(
        &self,
        conn: &mut PgConnection,
        request: AppendRequest,
    ) -> Result<AppendOutcome, AppendError> {
        let AppendRequest { stream_id, expected, events, metadata } = request;
        if events.is_empty() {
            return Err(AppendError::NoEvents);
        }
        let topic = self.check_events(&stream_id, &events)?;
        let count = events.len() as i64;
        let event_ids: Vec<Uuid> = events.iter().map(|_| Uuid::now_v7()).collect();
        let types: Vec<String> = events.iter().map(|e| e.event_type.clone()).collect();
        let schema_versions: Vec<i32> = events.iter().map(|e| e.schema_version as i32).collect();
        let data: Vec<Value> = events.iter().map(|e| e.data.clone()).collect();
        let metadata_json = serde_json::to_value(&metadata).unwrap_or_default();

        // One statement: the version check and the set-based insert of the events. The
        // events are selected from the stream row the first part returns, so the stream
        // row is written before the events take their positions and the transaction
        // holds an id by then (`settled_position` relies on it); no row back means the
        // expected version did not hold, and nothing was written. WITH ORDINALITY keeps
        // global positions in stream-version order.
        let (stream_statement, exact_version) = advance_stream_version(expected);
        let insert_events = format!(
            "WITH s AS ({})
             INSERT INTO events (event_id, stream_id, stream_version, topic, event_type, schema_version, data, metadata)
             SELECT e.event_id, $2, s.version - $8 + e.n, $3, e.event_type, e.schema_version, e.data, $7
               FROM s, UNNEST($1::uuid[], $4::text[], $5::int[], $6::jsonb[])
                       WITH ORDINALITY AS e(event_id, event_type, schema_version, data, n)
              ORDER BY e.n
             RETURNING global_position, event_id, stream_id, stream_version, topic, event_type,
                       schema_version, data, metadata, recorded_at",
            stream_statement
        );
        let mut insert = sqlx::query(&insert_events)
            .bind(&event_ids)
            .bind(stream_id.as_str())
            .bind(topic.name)
            .bind(&types)
            .bind(&schema_versions)
            .bind(&data)
            .bind(&metadata_json)
            .bind(count);
        if let Some(exact) = exact_version {
            insert = insert.bind(exact);
        }
        let rows =
            insert.fetch_all(&mut *conn).await.map_err(|e| conflict_on_unique_violation(e, &stream_id, expected))?;
        if rows.is_empty() {
            let actual: Option<i64> = sqlx::query_scalar("SELECT version FROM streams WHERE stream_id = $1")
                .bind(stream_id.as_str())
                .fetch_optional(&mut *conn)
                .await?;
            return Err(AppendError::Conflict { stream_id, expected, actual });
        }

        let mut recorded =
            rows.iter().map(recorded_event_from_row).collect::<Result<Vec<_>, _>>().map_err(|e| match e {
                StoreError::Database(e) => AppendError::Database(e),
                // Rows this statement just inserted always decode; a failure is the database's.
                other => AppendError::Database(sqlx::Error::Protocol(other.to_string())),
            })?;
        recorded.sort_by_key(|e| e.envelope.stream_version);
        let stream_version = recorded.last().map_or(0, |e| e.envelope.stream_version);
        Ok(AppendOutcome { stream_id, stream_version, events: recorded })
    }

    /// After the commit of an append: wake the relay, count the events.
    pub(crate) fn record_appended(&self, outcome: &AppendOutcome, started: Instant) {
        self.record_committed(
            started,
            outcome.events.iter().map(|event| (event.topic.as_str(), event.envelope.event_type.as_str(), 1)),
        );
    }

    /// After a commit: wakes the relay and counts what it appended, as
    /// (topic, event type, events).
    pub(crate) fn record_committed<'a>(
        &self,
        started: Instant,
        appended: impl IntoIterator<Item = (&'a str, &'a str, u64)>,
    ) {
        self.notifier.committed();
        self.metrics.append_duration.observe(started.elapsed().as_secs_f64());
        for (topic, event_type, count) in appended {
            self.metrics
                .events_appended
                .get_or_create(&TopicEventLabels { topic: topic.to_string(), event_type: event_type.to_string() })
                .inc_by(count);
        }
    }

    /// Routes every event to its topic and validates it. All events of one stream
    /// must share a topic.
    pub(crate) fn check_events(
        &self,
        stream_id: &StreamId,
        events: &[NewEvent],
    ) -> Result<&'static topics::TopicSpec, AppendError> {
        let mut stream_topic = None;
        for event in events {
            let topic =
                topics::topic_for_event_type(&event.event_type).ok_or_else(|| SchemaViolation::UnknownEventType {
                    event_type: event.event_type.clone(),
                    version: event.schema_version,
                })?;
            if stream_id.topic().name != topic.name {
                return Err(AppendError::StreamTopicMismatch {
                    stream_id: stream_id.clone(),
                    event_type: event.event_type.clone(),
                    topic: topic.name,
                    prefix: topic.stream_prefix,
                });
            }
            stream_topic = Some(topic);
            if let Err(violation) = self.schemas.validate(&event.event_type, event.schema_version, &event.data) {
                self.metrics.count_violation(topic.name, &event.event_type);
                match (self.mode, &violation) {
                    (SchemaMode::Warn, SchemaViolation::Invalid { .. }) => {
                        tracing::warn!(
                            %stream_id,
                            topic = topic.name,
                            event_type = %event.event_type,
                            schema_version = event.schema_version,
                            violation = %violation,
                            "event violates its schema; appended because EVENT_SCHEMA_MODE=warn"
                        );
                    }
                    // Strict mode refuses; an unknown type or version is refused in
                    // every mode, since nothing could route or read it.
                    _ => return Err(violation.into()),
                }
            }
        }
        stream_topic.ok_or(AppendError::NoEvents)
    }

    /// The stream's current version, or `None` when it does not exist.
    pub async fn stream_version(&self, stream_id: &StreamId) -> Result<Option<i64>, StoreError> {
        Ok(sqlx::query_scalar("SELECT version FROM streams WHERE stream_id = $1")
            .bind(stream_id.as_str())
            .fetch_optional(&self.pool)
            .await?)
    }

    /// The stream's events from `from_version` (inclusive), in order, as stored. Call
    /// [`RecordedEvent::upcast`] to see them at the current schema versions.
    pub async fn read_stream(&self, stream_id: &StreamId, from_version: i64) -> Result<Vec<RecordedEvent>, StoreError> {
        read_stream(&mut *self.pool.acquire().await?, stream_id.as_str(), from_version).await
    }

    /// The event with this id, as stored; `None` when there is none.
    pub async fn find_event(&self, event_id: Uuid) -> Result<Option<RecordedEvent>, StoreError> {
        let row = sqlx::query(&format!("{SELECT_EVENT} WHERE event_id = $1"))
            .bind(event_id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(recorded_event_from_row).transpose()
    }

    /// The event at `stream_version` of `stream_id`, as stored.
    pub async fn find_stream_event(
        &self,
        stream_id: &StreamId,
        stream_version: i64,
    ) -> Result<Option<RecordedEvent>, StoreError> {
        let row = sqlx::query(&format!("{SELECT_EVENT} WHERE stream_id = $1 AND stream_version = $2"))
            .bind(stream_id.as_str())
            .bind(stream_version)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(recorded_event_from_row).transpose()
    }

    /// The stream's events that mention `mention`, in order, as stored.
    pub async fn read_stream_mentioning(
        &self,
        stream_id: &StreamId,
        mention: Mention,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        read_stream_mentioning(&mut *self.pool.acquire().await?, stream_id.as_str(), mention).await
    }

    /// Up to `limit` events after `after_position`, in global order, up to a settled
    /// position (see [`settled_position`]). Following `global_position` alone would
    /// skip events whose transaction commits after a later one; this never does: an
    /// event still being written holds back everything after it. Empty when no
    /// position settles within a short wait.
    pub async fn read_all_committed(&self, after_position: i64, limit: i64) -> Result<Vec<RecordedEvent>, StoreError> {
        read_all_committed(&mut *self.pool.acquire().await?, after_position, limit, Duration::from_millis(200)).await
    }

    /// Deletes idempotency records past their expiry; returns how many.
    pub async fn purge_expired_idempotency_records(&self) -> Result<u64, StoreError> {
        Ok(sqlx::query("DELETE FROM idempotency_records WHERE expires_at < now()")
            .execute(&self.pool)
            .await?
            .rows_affected())
    }
}

/// Up to `limit` events of `topics` (logical names) after global position `after` and
/// at most `up_to`, in global order, as stored: a settled stretch of the log (a reset
/// reads only below a position the relay has published).
pub async fn read_between(
    pool: &PgPool,
    after: i64,
    up_to: i64,
    topics: &[String],
    limit: i64,
) -> Result<Vec<RecordedEvent>, StoreError> {
    let rows = sqlx::query(&format!(
        "{SELECT_EVENT} WHERE global_position > $1 AND global_position <= $2 AND topic = ANY($3)
          ORDER BY global_position LIMIT $4"
    ))
    .bind(after)
    .bind(up_to)
    .bind(topics)
    .bind(limit)
    .fetch_all(pool)
    .await?;
    rows.iter().map(recorded_event_from_row).collect()
}

/// See [`EventStore::read_stream`]; on a given connection (or transaction).
pub(crate) async fn read_stream(
    conn: &mut PgConnection,
    stream_id: &str,
    from_version: i64,
) -> Result<Vec<RecordedEvent>, StoreError> {
    let rows =
        sqlx::query(&format!("{SELECT_EVENT} WHERE stream_id = $1 AND stream_version >= $2 ORDER BY stream_version"))
            .bind(stream_id)
            .bind(from_version)
            .fetch_all(conn)
            .await?;
    rows.iter().map(recorded_event_from_row).collect()
}

/// See [`EventStore::read_stream_mentioning`]; on a given connection (or transaction).
pub(crate) async fn read_stream_mentioning(
    conn: &mut PgConnection,
    stream_id: &str,
    mention: Mention,
) -> Result<Vec<RecordedEvent>, StoreError> {
    let Mention::ReservationId(reservation_id) = mention;
    // `data ? 'reservation_id'` lets the planner use the partial index.
    let rows = sqlx::query(&format!(
        "{SELECT_EVENT} WHERE data ? 'reservation_id' AND data->>'reservation_id' = $2 AND stream_id = $1
          ORDER BY stream_version"
    ))
    .bind(stream_id)
    .bind(reservation_id.to_string())
    .fetch_all(conn)
    .await?;
    rows.iter().map(recorded_event_from_row).collect()
}

/// A point in the allocation of global positions: the sequence's last value, read
/// before `next_xid`, a transaction id assigned afterwards. Positions are taken by
/// transactions that already hold an id (an append writes its stream row first), so
/// once every transaction below `next_xid` has ended, every position up to `position`
/// belongs to an ended transaction: the horizon is settled, and every event at or below
/// it that will ever be visible is visible.
///
/// `next_xid` comes from `pg_current_xact_id()` in a statement of its own (so a
/// transaction of its own, which takes an id and ends at once), after the sequence was
/// read in that same statement (migration `0006_relay_horizon`). A snapshot's `xmax`
/// would not do: it is one past the latest *completed* id, and transactions running
/// with higher ids are in no snapshot field at all.
///
/// (Filtering rows by `tx_id < xmin` alone is not enough: a transaction with an older id
/// can commit a higher position while a younger one still holds a lower position, which
/// would then be skipped.) Holds only if the sequence does not cache values per session
/// (CACHE 1, the default).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Horizon {
    pub position: i64,
    pub next_xid: i64,
}

impl Horizon {
    /// One statement, whose transaction ends with it: `relay_horizon()` reads the
    /// sequence, then takes the id.
    pub async fn take(conn: &mut PgConnection) -> Result<Self, StoreError> {
        let (position, next_xid) =
            sqlx::query_as("SELECT last_position, next_xid FROM relay_horizon()").fetch_one(&mut *conn).await?;
        Ok(Self { position, next_xid })
    }

    /// Settled when the oldest running transaction (taken from a snapshot started after
    /// `next_xid` ended, so every older running id is in it) is not older than `next_xid`.
    pub fn is_settled(&self, oldest_running: i64) -> bool {
        self.next_xid <= oldest_running
    }
}

/// The oldest transaction id still running anywhere on the server.
pub(crate) async fn oldest_running_xid(conn: &mut PgConnection) -> Result<i64, StoreError> {
    Ok(sqlx::query_scalar("SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint").fetch_one(conn).await?)
}

/// A position settled now: takes a horizon and waits, up to `wait`, for it to settle.
pub(crate) async fn settled_position(conn: &mut PgConnection, wait: Duration) -> Result<Option<i64>, StoreError> {
    let horizon = Horizon::take(&mut *conn).await?;
    let started = Instant::now();
    let mut pause = Duration::from_millis(1);
    while !horizon.is_settled(oldest_running_xid(&mut *conn).await?) {
        if started.elapsed() >= wait {
            return Ok(None);
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(20));
    }
    Ok(Some(horizon.position))
}

/// See [`EventStore::read_all_committed`].
async fn read_all_committed(
    conn: &mut PgConnection,
    after_position: i64,
    limit: i64,
    settle_wait: Duration,
) -> Result<Vec<RecordedEvent>, StoreError> {
    match settled_position(&mut *conn, settle_wait).await? {
        Some(settled) => read_settled(conn, after_position, settled, limit).await,
        None => Ok(Vec::new()),
    }
}

/// Up to `limit` events after `after_position` and at or below the settled position
/// `settled`, in global order.
pub(crate) async fn read_settled(
    conn: &mut PgConnection,
    after_position: i64,
    settled: i64,
    limit: i64,
) -> Result<Vec<RecordedEvent>, StoreError> {
    let rows = sqlx::query(&format!(
        "{SELECT_EVENT} WHERE global_position > $1 AND global_position <= $2 ORDER BY global_position LIMIT $3"
    ))
    .bind(after_position)
    .bind(settled)
    .bind(limit)
    .fetch_all(conn)
    .await?;
    rows.iter().map(recorded_event_from_row).collect()
}

/// The statement that moves the stream's version by `$8` (the number of events) if
/// `expected` holds (`$9` is the exact version expected), returning the new version;
/// no row when it does not hold. The row lock this takes serialises concurrent
/// appends to one stream.
fn advance_stream_version(expected: ExpectedVersion) -> (&'static str, Option<i64>) {
    match expected {
        ExpectedVersion::Any => (
            "INSERT INTO streams (stream_id, version) VALUES ($2, $8)
             ON CONFLICT (stream_id) DO UPDATE SET version = streams.version + EXCLUDED.version, updated_at = now()
             RETURNING version",
            None,
        ),
        ExpectedVersion::NoStream | ExpectedVersion::Exact(0) => (
            "INSERT INTO streams (stream_id, version) VALUES ($2, $8) ON CONFLICT (stream_id) DO NOTHING RETURNING version",
            None,
        ),
        ExpectedVersion::Exact(n) => (
            "UPDATE streams SET version = version + $8, updated_at = now()
              WHERE stream_id = $2 AND version = $9 RETURNING version",
            Some(n),
        ),
    }
}

/// A unique violation on `(stream_id, stream_version)` is a lost race, not a failure.
fn conflict_on_unique_violation(error: sqlx::Error, stream_id: &StreamId, expected: ExpectedVersion) -> AppendError {
    match &error {
        sqlx::Error::Database(db) if db.constraint() == Some("events_stream_version_unique") => {
            AppendError::Conflict { stream_id: stream_id.clone(), expected, actual: None }
        }
        _ => AppendError::Database(error),
    }
}

#[derive(Deserialize)]
struct StoredMetadata {
    correlation_id: Uuid,
    causation_id: Option<Uuid>,
    traceparent: Option<String>,
}

pub(crate) fn recorded_event_from_row(row: &PgRow) -> Result<RecordedEvent, StoreError> {
    let global_position: i64 = row.try_get("global_position")?;
    let metadata: Value = row.try_get("metadata")?;
    let metadata: StoredMetadata = serde_json::from_value(metadata)
        .map_err(|e| StoreError::Corrupt { global_position, reason: format!("metadata: {e}") })?;
    let schema_version: i32 = row.try_get("schema_version")?;
    let recorded_at: DateTime<Utc> = row.try_get("recorded_at")?;
    Ok(RecordedEvent {
        topic: row.try_get("topic")?,
        traceparent: metadata.traceparent,
        envelope: EventEnvelope {
            event_id: row.try_get("event_id")?,
            event_type: row.try_get("event_type")?,
            schema_version: u32::try_from(schema_version)
                .map_err(|_| StoreError::Corrupt { global_position, reason: "negative schema_version".into() })?,
            stream_id: row.try_get("stream_id")?,
            stream_version: row.try_get("stream_version")?,
            global_position,
            occurred_at: recorded_at,
            correlation_id: metadata.correlation_id,
            causation_id: metadata.causation_id,
            data: row.try_get("data")?,
        },
    })
}

impl NewEvent {
    /// A typed event of any topic, at its current schema version.
    pub fn from_parts(event_type: &str, schema_version: u32, data: Value) -> Self {
        Self { event_type: event_type.to_string(), schema_version, data }
    }
}

macro_rules! new_event_from_typed {
    ($($t:ty),+) => {$(
        impl From<$t> for NewEvent {
            fn from(event: $t) -> Self {
                Self::from_parts(event.event_type(), event.schema_version(), event.to_data())
            }
        }
    )+};
}
new_event_from_typed!(
    vectis_schemas::events::AccountEvent,
    vectis_schemas::events::InventoryEvent,
    vectis_schemas::events::OrderEvent
);
