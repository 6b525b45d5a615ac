//! The projector runtime: one consumer group per projection. A batch of records is
//! decoded, filtered by stream version (duplicates skipped, gaps parked), applied with
//! the projection's set-based SQL and checkpointed, all in one PostgreSQL transaction;
//! the Kafka offsets are committed afterwards, only so Kafka tools show progress.
//!
//! The consumer is polled on a blocking thread: its rebalance callback, which runs
//! inside `poll`, reads the checkpoints of newly assigned partitions from PostgreSQL
//! and starts them there.

use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
    time::{Duration, Instant},
};

use chrono::Utc;
use futures::{future::BoxFuture, FutureExt};
use rdkafka::{
    consumer::{BaseConsumer, Consumer, ConsumerContext, RebalanceProtocol},
    error::KafkaError,
    message::Message,
    types::RDKafkaRespErr,
    ClientConfig, ClientContext, Offset, TopicPartitionList,
};
use sqlx::{PgConnection, PgPool};
use tokio::{
    runtime::Handle,
    sync::{mpsc, watch},
    task::JoinHandle,
};
use vectis_event_store::kafka::KafkaSettings;
use vectis_read_side::Target;
use vectis_schemas::StreamId;

use crate::{
    event::{decode, ProjectedEvent},
    lag::TOPIC_RECREATED_FIX,
    metrics::ProjectorMetrics,
    projection::{ApplyError, Projection},
    stall::{describe, StalledPartition},
    store::{self, DeadLetter, RowLock},
};

#[derive(Debug, Clone)]
pub struct ProjectorSettings {
    pub kafka: KafkaSettings,
    /// Static membership (`group.instance.id`): a restart within the session timeout
    /// gets its partitions back without a rebalance.
    pub group_instance_id: Option<String>,
    /// Most records per batch.
    pub max_batch: usize,
    /// How long one poll waits for the first record of a batch. A record ends the wait
    /// at once, so this only paces an idle projector (and bounds how long a stop waits).
    pub poll_wait: Duration,
    /// Partitions with lag whose checkpoint has not moved for this long are stuck: their
    /// consumer leaves and joins again (see [`RejoinRequests`]), at most this often.
    pub stall_after: Duration,
}

impl ProjectorSettings {
    pub fn new(kafka: KafkaSettings) -> Self {
        Self {
            kafka,
            group_instance_id: None,
            max_batch: 5_000,
            poll_wait: Duration::from_secs(1),
            stall_after: DEFAULT_STALL_AFTER,
        }
    }
}

/// See [`ProjectorSettings::stall_after`].
pub const DEFAULT_STALL_AFTER: Duration = Duration::from_secs(30);

/// How long an assignment waits for the ends of its partitions.
const WATERMARK_TIMEOUT: Duration = Duration::from_secs(5);

/// How often an idle projector looks whether a rebuild retired its version.
pub const IDLE_RETIREMENT_CHECK: Duration = Duration::from_secs(2);

/// How often the offsets a projector stored are committed to its group (see
/// [`consumer_config`]).
pub const OFFSET_COMMIT_INTERVAL_MS: &str = "1000";

/// The consumer group of a projection version.
pub fn group_id(kafka: &KafkaSettings, target: &Target) -> String {
    let base = format!("{}vectis.projection.{}", kafka.naming.prefix(), target.projection);
    if target.version == 1 {
        base
    } else {
        format!("{base}.v{}", target.version)
    }
}

/// The client settings of a projector's consumer in `group`: cooperative-sticky
/// assignment, a fresh group starts at the earliest offset. PostgreSQL holds the
/// checkpoints; the group's committed offsets only show Kafka tools how far it got, so
/// librdkafka commits the offsets a projector stored once a second (and when partitions
/// are revoked or the consumer closes), not once per batch: a commit per batch of every
/// group was most of the broker's work at 500 events/s and held up the relay's writes.
pub fn consumer_config(settings: &ProjectorSettings, group: &str) -> ClientConfig {
    let mut config = settings.kafka.client_config();
    config
        .set("group.id", group)
        .set("partition.assignment.strategy", "cooperative-sticky")
        .set("enable.auto.commit", "true")
        .set("auto.commit.interval.ms", OFFSET_COMMIT_INTERVAL_MS)
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", "10000")
        .set("heartbeat.interval.ms", "1000");
    if let Some(instance) = &settings.group_instance_id {
        config.set("group.instance.id", instance);
    }
    config
}

/// One record as polled.
#[derive(Debug, Clone)]
pub struct Record {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub key: Option<String>,
    pub payload: Vec<u8>,
}

struct RebalanceContext {
    pool: PgPool,
    runtime: Handle,
    target: Target,
}

impl ClientContext for RebalanceContext {}

impl ConsumerContext for RebalanceContext {
    fn rebalance(&self, consumer: &BaseConsumer<Self>, err: RDKafkaRespErr, tpl: &mut TopicPartitionList) {
        let cooperative = matches!(consumer.rebalance_protocol(), RebalanceProtocol::Cooperative);
        let outcome = match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                let checkpoints = self.start_at_checkpoints(tpl);
                tracing::info!(projection = self.target.projection, partitions = tpl.count(), "partitions assigned");
                let assigned = if cooperative { consumer.incremental_assign(tpl) } else { consumer.assign(tpl) };
                if assigned.is_ok() {
                    self.hold_partitions_beyond_log(consumer, &checkpoints);
                }
                assigned
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                tracing::info!(projection = self.target.projection, partitions = tpl.count(), "partitions revoked");
                if cooperative {
                    consumer.incremental_unassign(tpl)
                } else {
                    consumer.unassign()
                }
            }
            other => {
                tracing::error!(projection = self.target.projection, error = ?other, "rebalance failed");
                consumer.unassign()
            }
        };
        if let Err(error) = outcome {
            tracing::error!(projection = self.target.projection, %error, "cannot apply the rebalance");
        }
    }
}

impl RebalanceContext {
    /// Sets each newly assigned partition to start at its PostgreSQL checkpoint (the
    /// beginning when there is none). If the checkpoints cannot be read, the group's
    /// committed Kafka offsets are used: they are committed only after PostgreSQL,
    /// so they are never ahead of it, and what they replay is skipped as duplicates.
    fn start_at_checkpoints(&self, tpl: &mut TopicPartitionList) -> HashMap<(String, i32), i64> {
        let partitions: Vec<(String, i32)> =
            tpl.elements().iter().map(|e| (e.topic().to_string(), e.partition())).collect();
        // `poll` runs on a blocking-pool thread, which is inside the runtime's context
        // and so may not block on it; a thread of its own may.
        let read = std::thread::scope(|scope| {
            scope.spawn(|| self.runtime.block_on(store::checkpoints(&self.pool, &self.target, &partitions))).join()
        });
        let read = read.unwrap_or_else(|_| Err(sqlx::Error::Protocol("reading checkpoints panicked".into())));
        match read {
            Ok(checkpoints) => {
                for (topic, partition) in partitions {
                    let offset =
                        checkpoints.get(&(topic.clone(), partition)).map_or(Offset::Beginning, |o| Offset::Offset(*o));
                    if let Err(error) = tpl.set_partition_offset(&topic, partition, offset) {
                        tracing::error!(%topic, partition, %error, "cannot set the start offset");
                    }
                }
                checkpoints
            }
            Err(error) => {
                tracing::warn!(
                    projection = self.target.projection, %error,
                    "cannot read checkpoints; starting from the committed offsets"
                );
                HashMap::new()
            }
        }
    }

    /// Pauses the newly assigned partitions whose checkpoint is past the broker's end
    /// of them (a recreated topic): consuming them would wait silently until the new
    /// log reaches the old offset, then skip what lies below it. The lag measurement
    /// keeps reporting them until they are fixed ([`TOPIC_RECREATED_FIX`]).
    fn hold_partitions_beyond_log(&self, consumer: &BaseConsumer<Self>, checkpoints: &HashMap<(String, i32), i64>) {
        if checkpoints.is_empty() {
            return;
        }
        // The ends of every partition in one request per broker: this runs inside the
        // rebalance callback, where nothing is consumed until it returns (a request
        // per partition held a six-partition assignment up for seconds on a busy broker).
        let mut ends = TopicPartitionList::new();
        for (topic, partition) in checkpoints.keys() {
            let _ = ends.add_partition_offset(topic, *partition, Offset::End);
        }
        let ends = match consumer.offsets_for_times(ends, WATERMARK_TIMEOUT) {
            Ok(ends) => ends,
            // The lag measurement looks again every few seconds.
            Err(error) => {
                tracing::debug!(projection = self.target.projection, %error, "cannot read the partitions' ends");
                return;
            }
        };
        let mut held = TopicPartitionList::new();
        for end in ends.elements() {
            let (topic, partition) = (end.topic(), end.partition());
            let (Offset::Offset(high), Some(checkpoint)) =
                (end.offset(), checkpoints.get(&(topic.to_string(), partition)))
            else {
                continue;
            };
            if *checkpoint > high {
                tracing::error!(
                    projection = self.target.projection, %topic, partition, checkpoint, high_watermark = high,
                    "checkpoint beyond the end of the partition: {TOPIC_RECREATED_FIX}"
                );
                held.add_partition(topic, partition);
            }
        }
        if held.count() > 0 {
            if let Err(error) = consumer.pause(&held) {
                tracing::error!(projection = self.target.projection, %error, "cannot pause the partitions beyond the log");
            }
        }
    }
}

type ProjectorConsumer = BaseConsumer<RebalanceContext>;

/// A running projector.
pub struct RunningProjector {
    stop: watch::Sender<bool>,
    rejoin: RejoinRequests,
    task: JoinHandle<anyhow::Result<()>>,
}

/// Asks a running projector to leave its group and join again with a new consumer,
/// because partitions with lag stopped advancing. It does so if its consumer holds one
/// of them, or holds none (then no member may be consuming them), at most once per
/// stall time.
#[derive(Clone, Debug)]
pub struct RejoinRequests(mpsc::Sender<Vec<StalledPartition>>);

impl RejoinRequests {
    pub fn request(&self, stalled: Vec<StalledPartition>) {
        // A request not yet taken up already stands for this one.
        let _ = self.0.try_send(stalled);
    }
}

impl RunningProjector {
    pub fn rejoin_requests(&self) -> RejoinRequests {
        self.rejoin.clone()
    }

    /// Finishes the batch in hand, commits it, leaves the group.
    pub async fn stop(self) -> anyhow::Result<()> {
        let _ = self.stop.send(true);
        self.task.await?
    }

    /// Stops at once, wherever it is, as a crash would: a transaction in flight is
    /// rolled back, nothing more is committed. (Tests use it.)
    pub async fn kill(self) {
        self.task.abort();
        let _ = self.task.await;
    }
}

/// What one batch did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct BatchReport {
    pub applied: usize,
    pub duplicates: usize,
    pub parked: usize,
}

/// The outcome of one batch transaction.
#[derive(Debug)]
pub enum BatchOutcome {
    /// Applied and checkpointed; the events applied.
    Applied(BatchReport, Vec<ProjectedEvent>),
    /// Nothing done: a rebuild retired this version (its tables are dropped next).
    Retired,
}

pub struct Projector {
    pool: PgPool,
    projection: Arc<dyn Projection>,
    target: Target,
    settings: ProjectorSettings,
    metrics: ProjectorMetrics,
}

impl Projector {
    pub fn new(
        pool: PgPool,
        projection: Arc<dyn Projection>,
        version: i32,
        settings: ProjectorSettings,
        metrics: ProjectorMetrics,
    ) -> Self {
        let target = Target { projection: projection.name(), version };
        Self { pool, projection, target, settings, metrics }
    }

    fn consumer(&self) -> Result<Arc<ProjectorConsumer>, KafkaError> {
        let kafka = &self.settings.kafka;
        let config = consumer_config(&self.settings, &group_id(kafka, &self.target));
        let context =
            RebalanceContext { pool: self.pool.clone(), runtime: Handle::current(), target: self.target.clone() };
        let consumer: ProjectorConsumer = config.create_with_context(context)?;
        let topics: Vec<String> = self.projection.topics().iter().map(|t| kafka.naming.physical(t)).collect();
        consumer.subscribe(&topics.iter().map(String::as_str).collect::<Vec<_>>())?;
        Ok(Arc::new(consumer))
    }

    /// Joins the group and projects until stopped.
    pub fn start(self) -> Result<RunningProjector, KafkaError> {
        let consumer = self.consumer()?;
        let (stop, stopped) = watch::channel(false);
        let (rejoin, rejoin_requests) = mpsc::channel(1);
        let task = tokio::spawn(self.run(consumer, stopped, rejoin_requests));
        Ok(RunningProjector { stop, rejoin: RejoinRequests(rejoin), task })
    }

    async fn run(
        mut self,
        mut consumer: Arc<ProjectorConsumer>,
        stopped: watch::Receiver<bool>,
        mut rejoin_requests: mpsc::Receiver<Vec<StalledPartition>>,
    ) -> anyhow::Result<()> {
        tracing::info!(projection = self.target.projection, version = self.target.version, "projector started");
        self.prepare_version().await;
        let mut retirement_checked = Instant::now();
        let mut rejoined: Option<Instant> = None;
        while !*stopped.borrow() {
            let polling = consumer.clone();
            let (max, wait) = (self.settings.max_batch, self.settings.poll_wait);
            let (records, assigned) = tokio::task::spawn_blocking(move || poll_batch(&polling, max, wait)).await?;
            if let Ok(stalled) = rejoin_requests.try_recv() {
                if self.should_rejoin(&assigned, &stalled, rejoined) {
                    rejoined = Some(Instant::now());
                    consumer = self.rejoin(consumer, &stalled).await?;
                    // What the old consumer polled is read again by the new one.
                    continue;
                }
            }
            // Records of a partition revoked while the batch was collected are left to
            // its new owner.
            let records: Vec<Record> =
                records.into_iter().filter(|r| assigned.contains(&(r.topic.clone(), r.partition))).collect();
            if records.is_empty() {
                // Batches notice a retirement; a quiet log has none, so look now and
                // then, leaving the retired version's group promptly (a rebuild then
                // deletes it, and Kafka tools stop showing it).
                if retirement_checked.elapsed() >= IDLE_RETIREMENT_CHECK {
                    retirement_checked = Instant::now();
                    if self.is_retired().await {
                        let retired_version = self.target.version;
                        let retired = std::mem::replace(&mut consumer, self.follow_active_version().await?);
                        leave_group(retired).await?;
                        self.projection.release_version(retired_version);
                    }
                }
                continue;
            }
            if self.apply_until_done(&records, &stopped).await? {
                store_offsets(&consumer, &records);
            } else {
                // A rebuild switched readers to a new version: project that one, in
                // its own group from its own checkpoints.
                let retired_version = self.target.version;
                let retired = std::mem::replace(&mut consumer, self.follow_active_version().await?);
                leave_group(retired).await?;
                self.projection.release_version(retired_version);
            }
        }
        leave_group(consumer).await?;
        self.projection.release_version(self.target.version);
        tracing::info!(projection = self.target.projection, "projector stopped");
        Ok(())
    }

    /// Whether a rejoin request for `stalled` concerns this consumer, holding `assigned`.
    fn should_rejoin(
        &self,
        assigned: &HashSet<(String, i32)>,
        stalled: &[StalledPartition],
        rejoined: Option<Instant>,
    ) -> bool {
        let concerned =
            assigned.is_empty() || stalled.iter().any(|s| assigned.contains(&(s.topic.clone(), s.partition)));
        concerned && rejoined.is_none_or(|at| at.elapsed() >= self.settings.stall_after)
    }

    /// Leaves the group with `consumer` and joins it again with a new one (under the same
    /// static identity, if any, which fences the old one).
    async fn rejoin(
        &self,
        consumer: Arc<ProjectorConsumer>,
        stalled: &[StalledPartition],
    ) -> anyhow::Result<Arc<ProjectorConsumer>> {
        let group = group_id(&self.settings.kafka, &self.target);
        let assigned = consumer.assignment().map(|tpl| tpl.count()).unwrap_or(0);
        tracing::warn!(
            projection = self.target.projection, %group, assigned, partitions = %describe(stalled),
            "partitions with lag stopped advancing: leaving the group and joining again with a new consumer"
        );
        self.metrics.rejoins.get_or_create(&ProjectorMetrics::label(self.target.projection)).inc();
        leave_group(consumer).await?;
        Ok(self.consumer()?)
    }

    /// Readies what the projection writes outside PostgreSQL (a search index's
    /// settings). A failure is only logged: the first batch prepares again, and its
    /// failure is retried like any other.
    async fn prepare_version(&self) {
        if let Err(error) = self.projection.prepare_version(self.target.version).await {
            tracing::warn!(projection = self.target.projection, version = self.target.version, %error, "cannot prepare the version; the first batch tries again");
        }
    }

    /// Whether a rebuild retired this version. A failed look counts as not retired:
    /// the next batch looks again, under its lock.
    async fn is_retired(&self) -> bool {
        let state = async {
            let mut conn = self.pool.acquire().await?;
            vectis_read_side::state::state(&mut conn, self.target.projection).await
        };
        match state.await {
            Ok(state) => !state.is_some_and(|s| s.has_version(self.target.version)),
            Err(error) => {
                tracing::warn!(projection = self.target.projection, %error, "cannot read the projection's state");
                false
            }
        }
    }

    async fn follow_active_version(&mut self) -> anyhow::Result<Arc<ProjectorConsumer>> {
        let mut conn = self.pool.acquire().await?;
        let state = vectis_read_side::state::state(&mut conn, self.target.projection)
            .await?
            .ok_or_else(|| anyhow::anyhow!("projection {} is no longer installed", self.target.projection))?;
        tracing::info!(
            projection = self.target.projection,
            retired = self.target.version,
            active = state.active_version,
            "version retired by a rebuild; following the active version"
        );
        self.target.version = state.active_version;
        self.prepare_version().await;
        Ok(self.consumer()?)
    }

    /// Applies a batch; transient failures are retried with backoff for as long as it
    /// takes (they never park anything), other failures a few times, then the batch is
    /// applied stream by stream so only the failing streams park. False when the
    /// version was retired instead.
    async fn apply_until_done(&self, records: &[Record], stopped: &watch::Receiver<bool>) -> anyhow::Result<bool> {
        let label = ProjectorMetrics::label(self.target.projection);
        let mut backoff = Duration::from_millis(100);
        let mut failures = 0;
        loop {
            let started = Instant::now();
            let isolate = failures >= 3;
            match self.apply_batch(records, isolate).await {
                Ok(BatchOutcome::Retired) => return Ok(false),
                Ok(BatchOutcome::Applied(report, applied)) => {
                    self.metrics.batch_duration.get_or_create(&label).observe(started.elapsed().as_secs_f64());
                    self.metrics.applied.get_or_create(&label).inc_by(report.applied as u64);
                    self.metrics.duplicates.get_or_create(&label).inc_by(report.duplicates as u64);
                    self.metrics.parked.get_or_create(&label).inc_by(report.parked as u64);
                    let now = Utc::now();
                    let latency = self.metrics.latency.get_or_create(&label);
                    for event in &applied {
                        latency.observe((now - event.occurred_at).num_microseconds().unwrap_or(0).max(0) as f64 / 1e6);
                    }
                    tracing::debug!(projection = self.target.projection, ?report, "batch applied");
                    return Ok(true);
                }
                Err(error) => {
                    self.metrics.retries.get_or_create(&label).inc();
                    if !error.is_transient() {
                        failures += 1;
                    }
                    tracing::warn!(projection = self.target.projection, %error, failures, "batch failed; retrying");
                    if *stopped.borrow() && error.is_transient() {
                        anyhow::bail!("stopped while PostgreSQL was unavailable: {error}");
                    }
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
    }

    /// One transaction: decode, skip duplicates, park gaps and poison (and what waits
    /// behind them), apply, record stream versions and checkpoints.
    ///
    /// (Boxed: spawning a future that holds sqlx futures over borrowed data otherwise
    /// trips the compiler's `Send` inference.)
    pub fn apply_batch<'a>(
        &'a self,
        records: &'a [Record],
        isolate: bool,
    ) -> BoxFuture<'a, Result<BatchOutcome, ApplyError>> {
        self.apply_batch_inner(records, isolate).boxed()
    }

    async fn apply_batch_inner(&self, records: &[Record], isolate: bool) -> Result<BatchOutcome, ApplyError> {
        let naming = &self.settings.kafka.naming;
        let mut tx = self.pool.begin().await?;
        if !store::lock_current(&mut tx, &self.target, RowLock::Share).await? {
            return Ok(BatchOutcome::Retired);
        }
        let decoded: Vec<_> = records
            .iter()
            .map(|r| decode(r.topic.strip_prefix(naming.prefix()).unwrap_or(&r.topic), r.key.as_deref(), &r.payload))
            .collect();
        let keys: Vec<String> =
            records.iter().filter_map(|r| r.key.clone()).collect::<HashSet<_>>().into_iter().collect();
        let store::StreamStates { mut versions, mut parked } =
            store::stream_states(&mut tx, &self.target, &keys).await?;
        let mut report = BatchReport::default();
        let mut letters = Vec::new();
        let mut to_apply: Vec<(usize, ProjectedEvent)> = Vec::new();
        for (index, (record, decoded)) in records.iter().zip(decoded).enumerate() {
            let letter = |error: String, event: Option<&ProjectedEvent>| DeadLetter::new(record, event, error);
            let event = match decoded {
                Err(error) => {
                    letters.push(letter(format!("undecodable: {error}"), None));
                    if let Some(key) = &record.key {
                        parked.insert(key.clone());
                    }
                    continue;
                }
                Ok(event) => event,
            };
            if parked.contains(event.stream_id.as_str()) {
                letters.push(letter("waiting behind an earlier parked event of this stream".into(), Some(&event)));
                continue;
            }
            let current = versions.get(event.stream_id.as_str()).copied().unwrap_or(0);
            if event.stream_version <= current {
                report.duplicates += 1;
            } else if event.stream_version == current + 1 {
                versions.insert(event.stream_id.to_string(), event.stream_version);
                to_apply.push((index, event));
            } else {
                tracing::error!(
                    projection = self.target.projection, stream = %event.stream_id,
                    applied = current, received = event.stream_version, "gap in a stream's versions"
                );
                letters.push(letter(
                    format!(
                        "gap: the read model is at version {current}, the event has version {}",
                        event.stream_version
                    ),
                    Some(&event),
                ));
                parked.insert(event.stream_id.to_string());
            }
        }
        let schema = self.target.schema();
        let applied: Vec<ProjectedEvent> = if isolate {
            self.apply_stream_by_stream(&mut tx, &schema, records, to_apply, &mut letters).await?
        } else {
            let events: Vec<ProjectedEvent> = to_apply.into_iter().map(|(_, e)| e).collect();
            self.projection.apply(&mut tx, &schema, &events).await?;
            events
        };
        let mut new_versions: HashMap<String, i64> = HashMap::new();
        for event in &applied {
            new_versions.insert(event.stream_id.to_string(), event.stream_version);
        }
        report.applied = applied.len();
        report.parked = letters.len();
        store::park(&mut tx, &self.target, &letters).await?;
        store::save_progress(&mut tx, &self.target, &new_versions, &next_offsets(records)).await?;
        tx.commit().await?;
        Ok(BatchOutcome::Applied(report, applied))
    }

    /// The slow path after repeated failures: each stream in its own savepoint, so a
    /// stream whose events cannot be applied parks and the others go on.
    fn apply_stream_by_stream<'a>(
        &'a self,
        conn: &'a mut PgConnection,
        schema: &'a str,
        records: &'a [Record],
        to_apply: Vec<(usize, ProjectedEvent)>,
        letters: &'a mut Vec<DeadLetter>,
    ) -> BoxFuture<'a, Result<Vec<ProjectedEvent>, ApplyError>> {
        async move {
            let mut by_stream: Vec<(StreamId, Vec<(usize, ProjectedEvent)>)> = Vec::new();
            for (index, event) in to_apply {
                match by_stream.iter_mut().find(|(stream, _)| *stream == event.stream_id) {
                    Some((_, events)) => events.push((index, event)),
                    None => by_stream.push((event.stream_id.clone(), vec![(index, event)])),
                }
            }
            let mut applied = Vec::new();
            for (stream, events) in by_stream {
                sqlx::query("SAVEPOINT stream").execute(&mut *conn).await?;
                let plain: Vec<ProjectedEvent> = events.iter().map(|(_, e)| e.clone()).collect();
                match self.projection.apply(&mut *conn, schema, &plain).await {
                    Ok(()) => {
                        sqlx::query("RELEASE SAVEPOINT stream").execute(&mut *conn).await?;
                        applied.extend(plain);
                    }
                    Err(error) if error.is_transient() => return Err(error),
                    Err(error) => {
                        sqlx::query("ROLLBACK TO SAVEPOINT stream").execute(&mut *conn).await?;
                        tracing::error!(projection = self.target.projection, %stream, %error, "apply keeps failing: parked");
                        for (position, (index, event)) in events.iter().enumerate() {
                            let error = if position == 0 {
                                format!("apply failed: {error}")
                            } else {
                                "waiting behind an earlier parked event of this stream".into()
                            };
                            letters.push(DeadLetter::new(&records[*index], Some(event), error));
                        }
                    }
                }
            }
            Ok(applied)
        }
        .boxed()
    }
}

/// Polls up to `max` records: waits up to `wait` for the first, then takes what is
/// already fetched. Returns them with the partitions assigned after the poll.
fn poll_batch(consumer: &ProjectorConsumer, max: usize, wait: Duration) -> (Vec<Record>, HashSet<(String, i32)>) {
    let mut records = Vec::new();
    let mut timeout = wait;
    while records.len() < max {
        match consumer.poll(timeout) {
            None => break,
            Some(Err(error)) => {
                tracing::warn!(%error, "consumer error");
                break;
            }
            Some(Ok(message)) => records.push(Record {
                topic: message.topic().to_string(),
                partition: message.partition(),
                offset: message.offset(),
                key: message.key().map(|k| String::from_utf8_lossy(k).into_owned()),
                payload: message.payload().unwrap_or_default().to_vec(),
            }),
        }
        timeout = Duration::ZERO;
    }
    let assigned = consumer
        .assignment()
        .map(|tpl| tpl.elements().iter().map(|e| (e.topic().to_string(), e.partition())).collect())
        .unwrap_or_default();
    (records, assigned)
}

/// Per topic partition, the offset after the last of `records`: the checkpoint.
fn next_offsets(records: &[Record]) -> HashMap<(String, i32), i64> {
    let mut next: HashMap<(String, i32), i64> = HashMap::new();
    for record in records {
        let entry = next.entry((record.topic.clone(), record.partition)).or_insert(0);
        *entry = (*entry).max(record.offset + 1);
    }
    next
}

/// Leaves the group now, so its partitions move at once, not after a session timeout.
async fn leave_group(consumer: Arc<ProjectorConsumer>) -> anyhow::Result<()> {
    tokio::task::spawn_blocking(move || {
        consumer.unsubscribe();
        drop(consumer);
    })
    .await?;
    Ok(())
}

/// Stores the batch's offsets for the next commit to the group, for Kafka tools only:
/// restarts read the PostgreSQL checkpoints.
fn store_offsets(consumer: &ProjectorConsumer, records: &[Record]) {
    let mut tpl = TopicPartitionList::new();
    for ((topic, partition), offset) in next_offsets(records) {
        let _ = tpl.add_partition_offset(&topic, partition, Offset::Offset(offset));
    }
    if let Err(error) = consumer.store_offsets(&tpl) {
        tracing::debug!(%error, "storing Kafka offsets failed (PostgreSQL holds the checkpoints)");
    }
}
