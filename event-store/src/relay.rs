//! The relay: exactly the committed events, in order, none skipped.
//!
//! Sequence values are taken at insert but become visible at commit, so following
//! `global_position` alone skips events whose transaction commits late. The relay
//! reads only up to a settled position: one at or below which every transaction that
//! took a position has ended (`store::settled_position`), publishes with an idempotent
//! producer, and advances its cursor over the events whose delivery reports have arrived,
//! in order ([`in_flight`]: it reads and sends the next events without waiting for the
//! reports of the last). A crash in between re-publishes a suffix; consumers deduplicate
//! on `(stream_id, stream_version)`.
//!
//! One relay is active at a time: it holds a session-level advisory lock on its own
//! connection, and advances the cursor on that same connection, so a relay that lost
//! its connection (and with it the lock) can no longer move the cursor. Others stand
//! by and retry the lock. `LISTEN/NOTIFY` wakes the active relay; a timer is the
//! fallback (an aborted transaction notifies nobody). Events held back by an older
//! transaction are re-checked on a short, doubling delay, since the end of that
//! transaction notifies nobody either. A transaction left open
//! elsewhere holds `xmin` back: that shows as relay lag, never as a lost event.

use std::time::{Duration, Instant};

use rdkafka::{
    error::KafkaError,
    message::{Header, OwnedHeaders},
};
use sqlx::{postgres::PgListener, Connection, PgConnection, PgPool};
use vectis_runtime::Shutdown;
use vectis_schemas::TOPICS;

mod in_flight;

use in_flight::{Acknowledged, InFlight, Undelivered};

use crate::{
    kafka::{records_on, KafkaSettings},
    metrics::{RelayMetrics, TopicLabels},
    producer::DeliveryProducer,
    store::{oldest_running_xid, read_settled, Horizon, RecordedEvent},
    StoreError, EVENTS_CHANNEL,
};

/// First re-check after finding committed events held back by an older transaction.
const HELD_BACK_FIRST_RETRY: Duration = Duration::from_millis(10);
/// The re-checks of held-back events double up to this (or the poll interval, if shorter).
const HELD_BACK_LAST_RETRY: Duration = Duration::from_millis(500);
/// How often the backlog metrics are counted again while the relay runs.
const BACKLOG_REFRESH: Duration = Duration::from_secs(1);
/// Horizons kept while they wait to settle; past this, the oldest are dropped (that
/// only delays publishing until a later one settles).
const MAX_PENDING_HORIZONS: usize = 1_000;

/// Horizons taken on each read, oldest first; the newest settled one bounds what may
/// be published. Keeping older ones lets events committed before a long-open
/// transaction began go out while it is still open.
#[derive(Debug, Default)]
struct Horizons {
    pending: std::collections::VecDeque<Horizon>,
    settled: i64,
}

impl Horizons {
    /// Takes a new horizon and returns the highest settled position.
    async fn advance(&mut self, conn: &mut PgConnection) -> Result<i64, RelayError> {
        let horizon = Horizon::take(&mut *conn).await?;
        if self.pending.back().is_none_or(|last| last.position != horizon.position) {
            if self.pending.len() == MAX_PENDING_HORIZONS {
                self.pending.pop_front();
            }
            self.pending.push_back(horizon);
        }
        let oldest_running = oldest_running_xid(&mut *conn).await?;
        while let Some(front) = self.pending.front().filter(|h| h.is_settled(oldest_running)) {
            self.settled = self.settled.max(front.position);
            self.pending.pop_front();
        }
        Ok(self.settled)
    }

    /// Whether a horizon past `sent` is still waiting to settle: events committed up to
    /// it may be held back by an older transaction that is still running.
    fn holds_back(&self, sent: i64) -> bool {
        self.pending.back().is_some_and(|newest| newest.position > sent)
    }
}

/// Takes the session-level lock of the relay `name` on `conn` if no relay holds it;
/// true when taken. Closing the connection releases it.
pub async fn try_lock(conn: &mut PgConnection, name: &str) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar("SELECT pg_try_advisory_lock(hashtextextended($1, 0))")
        .bind(format!("vectis.relay:{name}"))
        .fetch_one(conn)
        .await
}

/// Sets the cursor of the relay `name` back to the start, so it publishes every event
/// again; returns where it was. The caller holds the relay's lock ([`try_lock`]).
pub async fn rewind(conn: &mut PgConnection, name: &str) -> Result<i64, sqlx::Error> {
    let previous: Option<i64> = sqlx::query_scalar(
        "UPDATE relay_cursors new SET global_position = 0, updated_at = now()
           FROM relay_cursors old WHERE new.relay_name = old.relay_name AND new.relay_name = $1
         RETURNING old.global_position",
    )
    .bind(name)
    .fetch_optional(conn)
    .await?;
    Ok(previous.unwrap_or(0))
}

#[derive(Debug, Clone)]
pub struct RelaySettings {
    /// Names the cursor and the lock: relays with the same name are one relay.
    pub name: String,
    pub batch_size: i64,
    /// Fallback wake-up when no notification arrives: commits notify the relay, so this
    /// only bounds how late it notices one whose notification was lost (while its
    /// listener reconnected).
    pub poll_interval: Duration,
    /// The shortest time between two reads of the event store while events keep
    /// arriving: the appends committed within it go out together, in one read and one
    /// produce request, where reading on every commit's notification cost the database
    /// three statements per append or two under load, and every consumer a fetch.
    pub read_interval: Duration,
    /// How often a standby relay retries the lock.
    pub standby_retry: Duration,
    /// Pause after a failed term (broker or database trouble) before trying again.
    pub retry_backoff: Duration,
    pub kafka: KafkaSettings,
}

impl RelaySettings {
    pub fn new(kafka: KafkaSettings) -> Self {
        Self {
            name: "default".into(),
            batch_size: 1000,
            poll_interval: Duration::from_secs(5),
            read_interval: Duration::from_millis(5),
            standby_retry: Duration::from_secs(1),
            retry_backoff: Duration::from_secs(1),
            kafka,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error("event store unavailable: {0}")]
    Database(#[from] sqlx::Error),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("broker client failed: {0}")]
    Kafka(#[from] KafkaError),
    #[error("broker did not acknowledge event at global position {global_position}: {error}")]
    Delivery { global_position: i64, error: KafkaError },
    #[error(
        "the broker's event log topics have taken {on_broker} records, yet this relay already \
         published {published} events (every event up to global position {cursor}): it is a new \
         broker, or the topics were recreated. Nothing is lost (the event store has every \
         event), but relaying on would start the log mid-way. Stop the projectors, run \
         `vectis relay republish`, then start the relay and the projectors again"
    )]
    LogMissing { cursor: i64, published: i64, on_broker: i64 },
}

impl RelayError {
    /// Errors that another term cannot fix: the relay stops and says why.
    pub fn is_fatal(&self) -> bool {
        matches!(self, Self::LogMissing { .. })
    }
}

pub struct Relay {
    pool: PgPool,
    settings: RelaySettings,
    metrics: RelayMetrics,
}

impl Relay {
    pub fn new(pool: PgPool, settings: RelaySettings, metrics: RelayMetrics) -> Self {
        Self { pool, settings, metrics }
    }

    pub fn metrics(&self) -> &RelayMetrics {
        &self.metrics
    }

    /// Runs until `shutdown`: stands by for the lock, relays while holding it, and
    /// after any failure backs off and starts a new term (re-reading the cursor, so
    /// nothing is skipped). Returns early only with a fatal error
    /// ([`RelayError::is_fatal`]).
    pub async fn run(self, shutdown: Shutdown) -> Result<(), RelayError> {
        while !shutdown.is_triggered() {
            match self.term(&shutdown).await {
                Ok(()) => break,
                Err(error) if error.is_fatal() => {
                    tracing::error!(relay = %self.settings.name, %error, "relay stopped");
                    return Err(error);
                }
                Err(error) => {
                    tracing::error!(relay = %self.settings.name, %error, "relay term failed; retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(self.settings.retry_backoff) => {}
                        _ = shutdown.wait() => {}
                    }
                }
            }
        }
        tracing::info!(relay = %self.settings.name, "relay stopped");
        Ok(())
    }

    /// One term: a fresh connection, standby until the lock is ours, then relay.
    async fn term(&self, shutdown: &Shutdown) -> Result<(), RelayError> {
        let mut conn = PgConnection::connect_with(&self.pool.connect_options()).await?;
        // The relay's own commits need not wait for the WAL to reach the disk: a horizon
        // takes a transaction id and writes nothing else, and a cursor update lost in a
        // crash of the database only re-publishes a suffix, which consumers deduplicate.
        // Waiting cost a disk flush on every pass of the loop.
        sqlx::query("SET synchronous_commit = off").execute(&mut conn).await?;
        loop {
            if try_lock(&mut conn, &self.settings.name).await? {
                break;
            }
            tokio::select! {
                _ = tokio::time::sleep(self.settings.standby_retry) => {}
                _ = shutdown.wait() => return Ok(()),
            }
        }
        tracing::info!(relay = %self.settings.name, "relay lock acquired; relaying");
        self.metrics.is_leader.set(1);
        let result = self.lead(&mut conn, shutdown).await;
        self.metrics.is_leader.set(0);
        // Closing the session releases the advisory lock for a standby.
        let _ = conn.close().await;
        result
    }

    async fn lead(&self, conn: &mut PgConnection, shutdown: &Shutdown) -> Result<(), RelayError> {
        let producer = self.settings.kafka.relay_producer()?;
        let mut listener = PgListener::connect_with(&self.pool).await?;
        listener.listen(EVENTS_CHANNEL).await?;
        sqlx::query("INSERT INTO relay_cursors (relay_name) VALUES ($1) ON CONFLICT DO NOTHING")
            .bind(&self.settings.name)
            .execute(&mut *conn)
            .await?;
        let mut cursor: i64 = sqlx::query_scalar("SELECT global_position FROM relay_cursors WHERE relay_name = $1")
            .bind(&self.settings.name)
            .fetch_one(&mut *conn)
            .await?;
        tracing::info!(relay = %self.settings.name, cursor, "relaying from cursor");
        if cursor > 0 {
            self.check_the_broker_has_the_log(conn, cursor).await?;
        }
        let mut backlog_refreshed = Instant::now() - Duration::from_secs(60);
        let mut held_back_delay = HELD_BACK_FIRST_RETRY;
        let mut horizons = Horizons::default();
        let mut in_flight = InFlight::default();
        // The last event handed to the producer: at or past the cursor.
        let mut sent = cursor;
        let window = usize::try_from(self.settings.batch_size).unwrap_or(1).max(1);
        let mut last_read = Instant::now() - self.settings.read_interval;
        // A read is due after a notification, a timer or a full batch, not after every
        // delivery report: most of those would find nothing new.
        let mut read_due = true;
        while !shutdown.is_triggered() {
            let mut read_some = false;
            if read_due && in_flight.len() < window {
                tokio::time::sleep_until((last_read + self.settings.read_interval).into()).await;
                let read_at = Instant::now();
                last_read = read_at;
                let settled = horizons.advance(conn).await?;
                let room = (window - in_flight.len()) as i64;
                let batch = read_settled(conn, sent, settled, room).await?;
                // Everything settled fitted: what commits later notifies. A full batch
                // may have left more behind.
                read_due = batch.len() as i64 == room;
                if let Some(last) = batch.last() {
                    sent = last.envelope.global_position;
                    read_some = true;
                    self.send(&producer, &batch, read_at, &mut in_flight)?;
                }
            }
            cursor = self.advance_cursor(conn, &mut in_flight, cursor).await?;
            // The backlog is a metric: counting it on every wake-up (one for nearly every
            // append under load) cost more than reading the events.
            if backlog_refreshed.elapsed() >= BACKLOG_REFRESH {
                self.refresh_backlog(conn, cursor).await?;
                backlog_refreshed = Instant::now();
            }
            if read_some {
                held_back_delay = HELD_BACK_FIRST_RETRY;
            }
            if read_due && in_flight.len() < window {
                continue;
            }
            // Committed events that an older, still-running transaction holds back
            // (xmin is cluster-wide) become publishable the moment it ends, and nobody
            // notifies us then: look again soon, backing off to the timer.
            let wait = if horizons.holds_back(sent) {
                let wait = held_back_delay;
                held_back_delay = (held_back_delay * 2).min(HELD_BACK_LAST_RETRY.min(self.settings.poll_interval));
                wait
            } else {
                self.settings.poll_interval
            };
            tokio::select! {
                notification = listener.recv() => { notification?; read_due = true; }
                // Moves the cursor; makes room in a full window for a read still due.
                _ = in_flight.oldest_reported() => {}
                _ = tokio::time::sleep(wait) => { read_due = true; }
                _ = shutdown.wait() => {}
            }
        }
        // A shutdown still lets what was sent finish: every delivery report, then the
        // cursor.
        while !in_flight.is_empty() {
            in_flight.oldest_reported().await;
            cursor = self.advance_cursor(conn, &mut in_flight, cursor).await?;
        }
        Ok(())
    }

    /// The log's topics have taken fewer records (the sum of their high watermarks, which
    /// neither retention nor compaction lowers) than the events behind the cursor: a new
    /// broker, or recreated topics, even if something has written to them since. Relaying
    /// on from the cursor would hand consumers a log that starts mid-way, so the relay
    /// stops and says how to republish.
    async fn check_the_broker_has_the_log(&self, conn: &mut PgConnection, cursor: i64) -> Result<(), RelayError> {
        let kafka = &self.settings.kafka;
        let topics = TOPICS.iter().map(|spec| kafka.naming.physical(spec.name)).collect();
        let on_broker = records_on(kafka, topics, Duration::from_secs(10)).await?;
        let published: i64 = sqlx::query_scalar("SELECT count(*) FROM events WHERE global_position <= $1")
            .bind(cursor)
            .fetch_one(conn)
            .await?;
        if on_broker < published {
            return Err(RelayError::LogMissing { cursor, published, on_broker });
        }
        Ok(())
    }

    /// Hands every event of the batch to the producer, into the window of events in
    /// flight.
    fn send(
        &self,
        producer: &DeliveryProducer,
        batch: &[RecordedEvent],
        read_at: Instant,
        in_flight: &mut InFlight,
    ) -> Result<(), RelayError> {
        for (n, event) in batch.iter().enumerate() {
            let topic = self.settings.kafka.naming.physical(&event.topic);
            let payload = event.envelope.to_json_bytes();
            let headers = event
                .envelope
                .headers(event.traceparent.as_deref())
                .iter()
                .fold(OwnedHeaders::new_with_capacity(5), |headers, (key, value)| {
                    headers.insert(Header { key, value: Some(value.as_bytes()) })
                });
            let delivery = producer.send(&topic, &event.envelope.stream_id, &payload, headers).map_err(|error| {
                self.metrics.publish_failures.inc();
                RelayError::Delivery { global_position: event.envelope.global_position, error }
            })?;
            let last_of_batch = (n + 1 == batch.len()).then_some(read_at);
            in_flight.push(event.envelope.global_position, event.topic.clone(), delivery, last_of_batch);
        }
        Ok(())
    }

    /// Moves the cursor over the acknowledged prefix of the window and returns it. A
    /// record that was not delivered ends the term after the cursor has moved up to it,
    /// so the next term publishes again from there.
    async fn advance_cursor(
        &self,
        conn: &mut PgConnection,
        in_flight: &mut InFlight,
        cursor: i64,
    ) -> Result<i64, RelayError> {
        let mut acknowledged = Vec::new();
        let undelivered = in_flight.take_acknowledged(&mut acknowledged).err();
        let mut cursor = cursor;
        if let Some(last) = acknowledged.last().map(|event| event.position) {
            sqlx::query("UPDATE relay_cursors SET global_position = $2, updated_at = now() WHERE relay_name = $1")
                .bind(&self.settings.name)
                .bind(last)
                .execute(&mut *conn)
                .await?;
            cursor = last;
            for Acknowledged { topic, batch_read_at, .. } in &acknowledged {
                self.metrics.events_published.get_or_create(&TopicLabels { topic: topic.clone() }).inc();
                if let Some(read_at) = batch_read_at {
                    self.metrics.batch_duration.observe(read_at.elapsed().as_secs_f64());
                }
            }
            tracing::debug!(relay = %self.settings.name, events = acknowledged.len(), cursor, "events relayed");
        }
        match undelivered {
            Some(Undelivered { position, error }) => {
                self.metrics.publish_failures.inc();
                Err(RelayError::Delivery { global_position: position, error })
            }
            None => Ok(cursor),
        }
    }

    /// Backlog in events and in seconds: committed events past the cursor, including
    /// those a long-open transaction elsewhere is holding back.
    async fn refresh_backlog(&self, conn: &mut PgConnection, cursor: i64) -> Result<(), RelayError> {
        let (count, age): (i64, Option<f64>) = sqlx::query_as(
            "SELECT count(*), EXTRACT(EPOCH FROM (clock_timestamp() - min(recorded_at)))::float8
               FROM events WHERE global_position > $1",
        )
        .bind(cursor)
        .fetch_one(conn)
        .await?;
        self.metrics.backlog_events.set(count);
        self.metrics.lag_seconds.set(age.unwrap_or(0.0).max(0.0));
        if count > 0 && age.unwrap_or(0.0) > 30.0 {
            tracing::warn!(
                relay = %self.settings.name, backlog = count, lag_seconds = age,
                "relay is behind: a long-open transaction may be holding back xmin"
            );
        }
        Ok(())
    }
}
