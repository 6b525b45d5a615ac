//! GroupConsumer metrics, labelled by projection (DESIGN.md, "Operability").

use std::sync::atomic::AtomicU64;

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::Registry,
};
use vectis_runtime::metric_names as names;

use crate::{lag::ProjectionLag, stall::Progress};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProjectionLabel {
    pub projection: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PartitionLabel {
    pub projection: String,
    pub topic: String,
    pub partition: i32,
}

#[derive(Clone, Debug)]
pub struct ConsumerMetrics {
    pub lag_events: Family<PartitionLabel, Gauge>,
    pub checkpoint_beyond_log: Family<PartitionLabel, Gauge>,
    pub lag_seconds: Family<ProjectionLabel, Gauge<f64, AtomicU64>>,
    pub seconds_since_progress: Family<PartitionLabel, Gauge<f64, AtomicU64>>,
    pub rejoins: Family<ProjectionLabel, Counter>,
    pub applied: Family<ProjectionLabel, Counter>,
    pub duplicates: Family<ProjectionLabel, Counter>,
    pub parked: Family<ProjectionLabel, Counter>,
    pub retries: Family<ProjectionLabel, Counter>,
    pub batch_duration: Family<ProjectionLabel, Histogram>,
    pub latency: Family<ProjectionLabel, Histogram>,
}

impl Default for ConsumerMetrics {
    fn default() -> Self {
        Self {
            lag_events: Family::default(),
            checkpoint_beyond_log: Family::default(),
            lag_seconds: Family::default(),
            seconds_since_progress: Family::default(),
            rejoins: Family::default(),
            applied: Family::default(),
            duplicates: Family::default(),
            parked: Family::default(),
            retries: Family::default(),
            batch_duration: Family::new_with_constructor(|| {
                Histogram::new([0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0])
            }),
            latency: Family::new_with_constructor(|| {
                Histogram::new([0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0])
            }),
        }
    }
}

impl ConsumerMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self::default();
        registry.register(names::PROJECTION_EVENTS_APPLIED, "Events applied to read models", metrics.applied.clone());
        registry.register(
            names::PROJECTION_EVENTS_DUPLICATE,
            "Events skipped because the read model already reflects them",
            metrics.duplicates.clone(),
        );
        registry.register(names::PROJECTION_EVENTS_PARKED, "Events parked as dead letters", metrics.parked.clone());
        registry.register(
            names::PROJECTION_RETRIES,
            "Batches retried after a transient failure",
            metrics.retries.clone(),
        );
        registry.register(
            names::PROJECTION_BATCH_DURATION_SECONDS,
            "Time to apply one batch and its checkpoints",
            metrics.batch_duration.clone(),
        );
        registry.register(
            names::PROJECTION_LATENCY_SECONDS,
            "From the event's occurrence to its application in the read model",
            metrics.latency.clone(),
        );
        registry.register(
            names::PROJECTION_LAG_EVENTS,
            "Events on the broker not yet applied: high watermark minus checkpoint, per partition",
            metrics.lag_events.clone(),
        );
        registry.register(
            names::PROJECTION_CHECKPOINT_BEYOND_LOG,
            "1 when the checkpoint is past the broker's end of the partition (the topic was recreated; \
             the partition is not consumed until `vectis relay republish`), else 0",
            metrics.checkpoint_beyond_log.clone(),
        );
        registry.register(
            names::PROJECTION_LAG_SECONDS,
            "Age of the oldest event not yet applied; 0 when caught up",
            metrics.lag_seconds.clone(),
        );
        registry.register(
            names::PROJECTION_SECONDS_SINCE_PROGRESS,
            "Seconds since the partition's checkpoint last advanced or it was last caught up: \
             0 while idle (no lag), growing while it has lag and makes no progress (stuck)",
            metrics.seconds_since_progress.clone(),
        );
        registry.register(
            names::PROJECTION_CONSUMER_REJOINS,
            "Times a projector's consumer left its group and joined again because partitions with lag \
             stopped advancing",
            metrics.rejoins.clone(),
        );
        metrics
    }

    /// Publishes a lag measurement of the projection's active version.
    pub fn record_lag(&self, lag: &ProjectionLag) {
        for partition in &lag.partitions {
            let label = PartitionLabel {
                projection: lag.target.projection.to_string(),
                topic: partition.topic.clone(),
                partition: partition.partition,
            };
            self.lag_events.get_or_create(&label).set(partition.events());
            self.checkpoint_beyond_log.get_or_create(&label).set(i64::from(partition.beyond_log()));
        }
        self.lag_seconds.get_or_create(&Self::label(lag.target.projection)).set(lag.seconds());
    }

    /// Publishes each partition's time since progress.
    pub fn record_progress(&self, projection: &str, progress: &Progress) {
        for (topic, partition, since) in &progress.since_progress {
            let label =
                PartitionLabel { projection: projection.to_string(), topic: topic.clone(), partition: *partition };
            self.seconds_since_progress.get_or_create(&label).set(since.as_secs_f64());
        }
    }

    /// Creates the projection's counters at 0, so that a dashboard or an alert reading
    /// `increase()` of one (parked events, rejoins) sees a series before the first.
    pub fn initialise(&self, projection: &str) {
        let label = Self::label(projection);
        for counter in [&self.applied, &self.duplicates, &self.parked, &self.retries, &self.rejoins] {
            let _ = counter.get_or_create(&label);
        }
    }

    pub fn label(projection: &str) -> ProjectionLabel {
        ProjectionLabel { projection: projection.to_string() }
    }
}
