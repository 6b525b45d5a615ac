//! How far a projection version is behind the log: per topic partition, the broker's
//! high watermark minus the PostgreSQL checkpoint (events), and the age of the oldest
//! event not yet applied (seconds; 0 when caught up, so a quiet topic is not lagging).
//!
//! The projectors process exports these as metrics and stores them in PostgreSQL (for
//! the query API); `vectis projections status` and the rebuild's progress print them. Both measure through [`LagProbe`], a consumer outside
//! any group that reads watermarks and, for a lagging partition, the one record at its
//! checkpoint (the oldest unapplied event) to learn when that event occurred.

use std::{
    collections::HashMap,
    sync::Arc,
    time::{Duration, Instant},
};

use chrono::{DateTime, Utc};
use rdkafka::{
    consumer::{BaseConsumer, Consumer},
    error::KafkaError,
    message::Message,
    Offset, TopicPartitionList,
};
use sqlx::PgPool;
use vectis_event_store::kafka::KafkaSettings;
use vectis_read_side::{
    state::{self, MeasuredLag},
    Target,
};
use vectis_schemas::EventEnvelope;

use crate::checkpoints;

#[derive(Debug, thiserror::Error)]
pub enum LagError {
    #[error("reading checkpoints: {0}")]
    Database(#[from] sqlx::Error),
    #[error("asking the broker: {0}")]
    Broker(#[from] KafkaError),
    #[error("topic {0} is not on the broker")]
    MissingTopic(String),
}

/// One topic partition of a projection version.
#[derive(Debug, Clone, PartialEq)]
pub struct PartitionLag {
    /// Physical topic name.
    pub topic: String,
    pub partition: i32,
    /// Next offset to apply (the low watermark when nothing was applied yet).
    pub next_offset: i64,
    pub high_watermark: i64,
    /// When the oldest unapplied event occurred (None when caught up, or when it could
    /// not be read in time).
    pub oldest_unapplied: Option<DateTime<Utc>>,
}

impl PartitionLag {
    pub fn events(&self) -> i64 {
        (self.high_watermark - self.next_offset).max(0)
    }

    /// The checkpoint is past the broker's end of the partition: the topic was recreated
    /// (a new broker), so the checkpoint counts offsets of a log that is gone. Such a
    /// partition is not consumed (see [`TOPIC_RECREATED_FIX`]).
    pub fn beyond_log(&self) -> bool {
        self.next_offset > self.high_watermark
    }
}

/// What to do about a checkpoint beyond the broker's end of its partition.
pub const TOPIC_RECREATED_FIX: &str = "the topic was recreated (a new broker?) and its offsets no longer mean what \
     the checkpoint says, so the partition is not consumed. Nothing is lost: the event store has every event. \
     Stop the relay and the projectors, run `vectis relay republish` (it republishes the log and discards \
     the checkpoints of the old one), then start them again";

/// The lag of one projection version over all its partitions.
#[derive(Debug, Clone, PartialEq)]
pub struct ProjectionLag {
    pub target: Target,
    pub partitions: Vec<PartitionLag>,
    pub measured_at: DateTime<Utc>,
}

impl ProjectionLag {
    pub fn events(&self) -> i64 {
        self.partitions.iter().map(PartitionLag::events).sum()
    }

    /// Age of the oldest unapplied event over all partitions; 0 when caught up.
    pub fn seconds(&self) -> f64 {
        self.partitions
            .iter()
            .filter(|p| p.events() > 0)
            .filter_map(|p| p.oldest_unapplied)
            .map(|at| (self.measured_at - at).num_milliseconds().max(0) as f64 / 1000.0)
            .fold(0.0, f64::max)
    }

    /// Every partition has applied up to the given high watermarks (from an earlier
    /// measurement): the version has caught up with what was on the log then.
    pub fn reached(&self, watermarks: &HashMap<(String, i32), i64>) -> bool {
        watermarks.iter().all(|(key, high)| {
            self.partitions.iter().any(|p| (&p.topic, p.partition) == (&key.0, key.1) && p.next_offset >= *high)
        })
    }

    /// The partitions whose checkpoint is beyond the broker's end of them.
    pub fn beyond_log(&self) -> Vec<&PartitionLag> {
        self.partitions.iter().filter(|p| p.beyond_log()).collect()
    }

    /// This measurement as the read-side contract stores it: the events and the time
    /// the oldest of them occurred, over all partitions.
    pub fn measured(&self) -> MeasuredLag {
        let oldest_unapplied_at =
            self.partitions.iter().filter(|p| p.events() > 0).filter_map(|p| p.oldest_unapplied).min();
        MeasuredLag { events: self.events(), oldest_unapplied_at, measured_at: self.measured_at }
    }

    /// Stores this measurement for readers without a broker client (the query API).
    pub async fn save(&self, pool: &PgPool) -> Result<(), sqlx::Error> {
        state::save_lag(pool, &self.target, &self.measured()).await
    }

    pub fn high_watermarks(&self) -> HashMap<(String, i32), i64> {
        self.partitions.iter().map(|p| ((p.topic.clone(), p.partition), p.high_watermark)).collect()
    }
}

/// (physical topic, partition, low, high) for each partition read.
#[derive(Debug, Clone, Default)]
pub struct Watermarks(Vec<(String, i32, i64, i64)>);

/// Measures lag; cheap to clone.
#[derive(Clone)]
pub struct LagProbe {
    consumer: Arc<BaseConsumer>,
    kafka: KafkaSettings,
    timeout: Duration,
}

impl LagProbe {
    pub fn new(kafka: &KafkaSettings) -> Result<Self, KafkaError> {
        let mut config = kafka.client_config();
        // Assigned partitions only: the group id is required by the client but never
        // joined or committed to. Fetch little: it reads one record per partition.
        config
            .set("group.id", format!("{}vectis.lag-probe", kafka.naming.prefix()))
            .set("enable.auto.commit", "false")
            .set("enable.partition.eof", "false")
            .set("fetch.message.max.bytes", "65536")
            .set("queued.max.messages.kbytes", "1024");
        Ok(Self { consumer: Arc::new(config.create()?), kafka: kafka.clone(), timeout: Duration::from_secs(5) })
    }

    /// The lag of `target`, which reads the logical `topics`.
    pub async fn measure(&self, pool: &PgPool, target: &Target, topics: &[&str]) -> Result<ProjectionLag, LagError> {
        let watermarks = self.watermarks(topics).await?;
        self.measure_at(pool, target, topics, &watermarks).await
    }

    /// The low and high watermarks of every partition of the logical `topics`: read once
    /// for all the projections measured together (several read the same topics).
    pub async fn watermarks(&self, topics: &[&str]) -> Result<Watermarks, LagError> {
        let physical: Vec<String> = topics.iter().map(|t| self.kafka.naming.physical(t)).collect();
        let consumer = self.consumer.clone();
        let timeout = self.timeout;
        let partitions = tokio::task::spawn_blocking(move || watermarks(&consumer, &physical, timeout))
            .await
            .map_err(|_| KafkaError::Canceled)??;
        Ok(Watermarks(partitions))
    }

    /// The lag of `target` against watermarks read by [`Self::watermarks`] for (at
    /// least) its logical `topics`.
    pub async fn measure_at(
        &self,
        pool: &PgPool,
        target: &Target,
        topics: &[&str],
        watermarks: &Watermarks,
    ) -> Result<ProjectionLag, LagError> {
        let physical: Vec<String> = topics.iter().map(|t| self.kafka.naming.physical(t)).collect();
        let watermarks: Vec<(String, i32, i64, i64)> =
            watermarks.0.iter().filter(|(topic, ..)| physical.contains(topic)).cloned().collect();
        let partitions: Vec<(String, i32)> = watermarks.iter().map(|(t, p, _, _)| (t.clone(), *p)).collect();
        let checkpoints = checkpoints::checkpoints(pool, target, &partitions).await?;
        let mut lags: Vec<PartitionLag> = watermarks
            .into_iter()
            .map(|(topic, partition, low, high)| {
                let next_offset = checkpoints.get(&(topic.clone(), partition)).copied().unwrap_or(low).max(low);
                PartitionLag { topic, partition, next_offset, high_watermark: high, oldest_unapplied: None }
            })
            .collect();
        let timeout = self.timeout;
        let lagging: Vec<(String, i32, i64)> =
            lags.iter().filter(|p| p.events() > 0).map(|p| (p.topic.clone(), p.partition, p.next_offset)).collect();
        if !lagging.is_empty() {
            let consumer = self.consumer.clone();
            let occurred = tokio::task::spawn_blocking(move || first_unapplied(&consumer, &lagging, timeout))
                .await
                .map_err(|_| KafkaError::Canceled)??;
            for lag in &mut lags {
                lag.oldest_unapplied = occurred.get(&(lag.topic.clone(), lag.partition)).copied();
            }
        }
        Ok(ProjectionLag { target: target.clone(), partitions: lags, measured_at: Utc::now() })
    }

    /// Of the partitions `lag` found beyond the end of the log, those that still are
    /// when read in the order that proves it: the checkpoint first, then the broker's
    /// end. A measurement reads the watermarks first, so a consumer that advanced in
    /// between looks beyond a log it is merely keeping up with.
    pub async fn confirm_beyond_log(&self, pool: &PgPool, lag: &ProjectionLag) -> Result<ProjectionLag, LagError> {
        let suspects: Vec<(String, i32)> = lag.beyond_log().iter().map(|p| (p.topic.clone(), p.partition)).collect();
        if suspects.is_empty() {
            return Ok(ProjectionLag { partitions: vec![], ..lag.clone() });
        }
        let checkpoints = checkpoints::checkpoints(pool, &lag.target, &suspects).await?;
        let mut topics: Vec<String> = suspects.iter().map(|(t, _)| t.clone()).collect();
        topics.sort_unstable();
        topics.dedup();
        let consumer = self.consumer.clone();
        let timeout = self.timeout;
        let fresh = tokio::task::spawn_blocking(move || watermarks(&consumer, &topics, timeout))
            .await
            .map_err(|_| KafkaError::Canceled)??;
        let partitions = fresh
            .into_iter()
            .filter_map(|(topic, partition, _, high)| {
                let next_offset = *checkpoints.get(&(topic.clone(), partition))?;
                (next_offset > high).then_some(PartitionLag {
                    topic,
                    partition,
                    next_offset,
                    high_watermark: high,
                    oldest_unapplied: None,
                })
            })
            .collect();
        Ok(ProjectionLag { partitions, measured_at: Utc::now(), target: lag.target.clone() })
    }
}

/// (topic, partition, low, high) for every partition of `topics`.
fn watermarks(
    consumer: &BaseConsumer,
    topics: &[String],
    timeout: Duration,
) -> Result<Vec<(String, i32, i64, i64)>, LagError> {
    let mut out = Vec::new();
    for topic in topics {
        let metadata = consumer.fetch_metadata(Some(topic), timeout)?;
        let partitions: Vec<i32> = metadata
            .topics()
            .iter()
            .filter(|t| t.name() == topic && t.error().is_none())
            .flat_map(|t| t.partitions().iter().map(|p| p.id()))
            .collect();
        if partitions.is_empty() {
            return Err(LagError::MissingTopic(topic.clone()));
        }
        for partition in partitions {
            let (low, high) = consumer.fetch_watermarks(topic, partition, timeout)?;
            out.push((topic.clone(), partition, low, high));
        }
    }
    Ok(out)
}

/// When the record at each given offset occurred (its envelope's `occurred_at`).
/// Partitions whose record does not arrive within `timeout` are left out.
fn first_unapplied(
    consumer: &BaseConsumer,
    partitions: &[(String, i32, i64)],
    timeout: Duration,
) -> Result<HashMap<(String, i32), DateTime<Utc>>, KafkaError> {
    let mut tpl = TopicPartitionList::new();
    for (topic, partition, offset) in partitions {
        tpl.add_partition_offset(topic, *partition, Offset::Offset(*offset))?;
    }
    consumer.assign(&tpl)?;
    let wanted: HashMap<(String, i32), i64> = partitions.iter().map(|(t, p, o)| ((t.clone(), *p), *o)).collect();
    let mut found = HashMap::new();
    let deadline = Instant::now() + timeout;
    while found.len() < partitions.len() && Instant::now() < deadline {
        let Some(Ok(message)) = consumer.poll(Duration::from_millis(100)) else { continue };
        let key = (message.topic().to_string(), message.partition());
        // Only the first record at or after the asked offset counts.
        if found.contains_key(&key) || wanted.get(&key).is_none_or(|offset| message.offset() < *offset) {
            continue;
        }
        let occurred = message
            .payload()
            .and_then(|p| EventEnvelope::from_json_bytes(p).ok())
            .map(|e| e.occurred_at)
            .or_else(|| message.timestamp().to_millis().and_then(DateTime::from_timestamp_millis));
        if let Some(at) = occurred {
            found.insert(key, at);
        }
    }
    consumer.unassign()?;
    Ok(found)
}
