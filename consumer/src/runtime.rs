//! One consumer group per handler version. A batch of records is decoded, sequenced
//! per stream (duplicates skipped, gaps parked), applied with the handler's set-based
//! SQL and checkpointed, all in one PostgreSQL transaction ([`crate::runtime`]'s batch
//! half is in `batch.rs`); the Kafka offsets are committed afterwards, only so Kafka
//! tools show progress.
//!
//! The consumer is polled on a blocking thread: its rebalance callback, which runs
//! inside `poll`, reads the checkpoints of newly assigned partitions from PostgreSQL
//! and starts them there.

use std::{
    collections::HashSet,
    sync::Arc,
    time::{Duration, Instant},
};

use chrono::Utc;
use rdkafka::{
    consumer::{BaseConsumer, Consumer},
    error::KafkaError,
    message::Message,
    Offset, TopicPartitionList,
};
use sqlx::PgPool;
use tokio::{
    runtime::Handle,
    sync::{mpsc, watch},
    task::JoinHandle,
};
use vectis_read_side::Target;

use crate::{
    batch::next_offsets,
    event::ProjectedEvent,
    handler::Handler,
    metrics::ConsumerMetrics,
    rebalance::RebalanceContext,
    settings::{consumer_config, group_id, ConsumerSettings},
    stall::{describe, StalledPartition},
};

/// One record as polled.
#[derive(Debug, Clone)]
pub struct Record {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub key: Option<String>,
    pub payload: Vec<u8>,
}

type KafkaGroupConsumer = BaseConsumer<RebalanceContext>;

/// The consumer as the poll loop holds it. Dropping the last handle closes the
/// consumer, and closing runs the rebalance callback, which reads checkpoints through
/// the runtime: on a runtime thread that blocks the very runtime the callback waits
/// for. (A killed projector's task, aborted and dropped where it ran, deadlocked a
/// current-thread runtime this way: the test process hung with a batch transaction
/// left open.) So a handle dropped without leaving the group closes its consumer on a
/// thread of its own; [`leave_group`] does it on the blocking pool.
struct HeldConsumer(Option<Arc<KafkaGroupConsumer>>);

impl HeldConsumer {
    fn new(consumer: Arc<KafkaGroupConsumer>) -> Self {
        Self(Some(consumer))
    }

    fn shared(&self) -> Arc<KafkaGroupConsumer> {
        self.0.clone().unwrap_or_else(|| unreachable!("a held consumer is taken only when it is consumed"))
    }

    fn take(mut self) -> Arc<KafkaGroupConsumer> {
        self.0.take().unwrap_or_else(|| unreachable!("a held consumer is taken once"))
    }
}

impl Drop for HeldConsumer {
    fn drop(&mut self) {
        if let Some(consumer) = self.0.take() {
            std::thread::spawn(move || drop(consumer));
        }
    }
}

/// A running projector.
pub struct RunningConsumer {
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

impl RunningConsumer {
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

/// One handler version's member of its consumer group (the batch transaction is in
/// `batch.rs`).
pub struct GroupConsumer {
    pub(crate) pool: PgPool,
    pub(crate) handler: Arc<dyn Handler>,
    pub(crate) target: Target,
    pub(crate) settings: ConsumerSettings,
    pub(crate) metrics: ConsumerMetrics,
}

impl GroupConsumer {
    pub fn new(
        pool: PgPool,
        handler: Arc<dyn Handler>,
        version: i32,
        settings: ConsumerSettings,
        metrics: ConsumerMetrics,
    ) -> Self {
        let target = Target { projection: handler.name(), version };
        metrics.initialise(target.projection);
        Self { pool, handler, target, settings, metrics }
    }

    fn consumer(&self) -> Result<Arc<KafkaGroupConsumer>, KafkaError> {
        let kafka = &self.settings.kafka;
        let config = consumer_config(&self.settings, &group_id(kafka, self.handler.spec().kind, &self.target));
        let context = RebalanceContext {
            pool: self.pool.clone(),
            runtime: Handle::current(),
            target: self.target.clone(),
            watermark_timeout: self.settings.watermark_timeout,
        };
        let consumer: KafkaGroupConsumer = config.create_with_context(context)?;
        let topics: Vec<String> = self.handler.topics().iter().map(|t| kafka.naming.physical(t)).collect();
        consumer.subscribe(&topics.iter().map(String::as_str).collect::<Vec<_>>())?;
        Ok(Arc::new(consumer))
    }

    /// Joins the group and projects until stopped.
    pub fn start(self) -> Result<RunningConsumer, KafkaError> {
        let consumer = self.consumer()?;
        let (stop, stopped) = watch::channel(false);
        let (rejoin, rejoin_requests) = mpsc::channel(1);
        let task = tokio::spawn(self.run(consumer, stopped, rejoin_requests));
        Ok(RunningConsumer { stop, rejoin: RejoinRequests(rejoin), task })
    }

    async fn run(
        mut self,
        consumer: Arc<KafkaGroupConsumer>,
        stopped: watch::Receiver<bool>,
        mut rejoin_requests: mpsc::Receiver<Vec<StalledPartition>>,
    ) -> anyhow::Result<()> {
        let mut consumer = HeldConsumer::new(consumer);
        tracing::info!(projection = self.target.projection, version = self.target.version, "projector started");
        self.prepare_version().await;
        let mut retirement_checked = Instant::now();
        let mut rejoined: Option<Instant> = None;
        while !*stopped.borrow() {
            let polling = consumer.shared();
            let (max, wait) = (self.settings.max_batch, self.settings.poll_wait);
            let (records, assigned) = tokio::task::spawn_blocking(move || poll_batch(&polling, max, wait)).await?;
            if let Ok(stalled) = rejoin_requests.try_recv() {
                if self.should_rejoin(&assigned, &stalled, rejoined) {
                    rejoined = Some(Instant::now());
                    consumer = HeldConsumer::new(self.rejoin(consumer.take(), &stalled).await?);
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
                if retirement_checked.elapsed() >= self.settings.idle_retirement_check {
                    retirement_checked = Instant::now();
                    if self.is_retired().await {
                        let retired_version = self.target.version;
                        let active = HeldConsumer::new(self.follow_active_version().await?);
                        leave_group(std::mem::replace(&mut consumer, active).take()).await?;
                        self.handler.release_version(retired_version);
                    }
                }
                continue;
            }
            if self.apply_until_done(&records, &stopped).await? {
                store_offsets(&consumer.shared(), &records);
            } else {
                // A rebuild switched readers to a new version: project that one, in
                // its own group from its own checkpoints.
                let retired_version = self.target.version;
                let active = HeldConsumer::new(self.follow_active_version().await?);
                leave_group(std::mem::replace(&mut consumer, active).take()).await?;
                self.handler.release_version(retired_version);
            }
        }
        leave_group(consumer.take()).await?;
        self.handler.release_version(self.target.version);
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
        consumer: Arc<KafkaGroupConsumer>,
        stalled: &[StalledPartition],
    ) -> anyhow::Result<Arc<KafkaGroupConsumer>> {
        let group = group_id(&self.settings.kafka, self.handler.spec().kind, &self.target);
        let assigned = consumer.assignment().map(|tpl| tpl.count()).unwrap_or(0);
        tracing::warn!(
            projection = self.target.projection, %group, assigned, partitions = %describe(stalled),
            "partitions with lag stopped advancing: leaving the group and joining again with a new consumer"
        );
        self.metrics.rejoins.get_or_create(&ConsumerMetrics::label(self.target.projection)).inc();
        leave_group(consumer).await?;
        Ok(self.consumer()?)
    }

    /// Readies what the handler writes outside PostgreSQL (a search index's
    /// settings). A failure is only logged: the first batch prepares again, and its
    /// failure is retried like any other.
    async fn prepare_version(&self) {
        if let Err(error) = self.handler.prepare_version(self.target.version).await {
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

    async fn follow_active_version(&mut self) -> anyhow::Result<Arc<KafkaGroupConsumer>> {
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
        let label = ConsumerMetrics::label(self.target.projection);
        let mut backoff = self.settings.retry_backoff;
        let mut failures = 0;
        loop {
            let started = Instant::now();
            let isolate = failures >= self.settings.isolate_after_failures;
            match self.apply_batch(records, isolate).await {
                Ok(BatchOutcome::Retired) => return Ok(false),
                Ok(BatchOutcome::Applied(report, applied)) => {
                    self.handler.committed();
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
                    backoff = (backoff * 2).min(self.settings.max_retry_backoff);
                }
            }
        }
    }
}

/// Polls up to `max` records: waits up to `wait` for the first, then takes what is
/// already fetched. Returns them with the partitions assigned after the poll.
fn poll_batch(consumer: &KafkaGroupConsumer, max: usize, wait: Duration) -> (Vec<Record>, HashSet<(String, i32)>) {
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

/// Leaves the group now, so its partitions move at once, not after a session timeout.
async fn leave_group(consumer: Arc<KafkaGroupConsumer>) -> anyhow::Result<()> {
    tokio::task::spawn_blocking(move || {
        consumer.unsubscribe();
        drop(consumer);
    })
    .await?;
    Ok(())
}

/// Stores the batch's offsets for the next commit to the group, for Kafka tools only:
/// restarts read the PostgreSQL checkpoints.
fn store_offsets(consumer: &KafkaGroupConsumer, records: &[Record]) {
    let mut tpl = TopicPartitionList::new();
    for ((topic, partition), offset) in next_offsets(records) {
        let _ = tpl.add_partition_offset(&topic, partition, Offset::Offset(offset));
    }
    if let Err(error) = consumer.store_offsets(&tpl) {
        tracing::debug!(%error, "storing Kafka offsets failed (PostgreSQL holds the checkpoints)");
    }
}
