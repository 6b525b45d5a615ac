//! Producer-side and relay metrics, registered under the names in
//! `vectis_runtime::metric_names`.

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::Registry,
};
use std::sync::atomic::AtomicU64;
use vectis_runtime::metric_names as names;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TopicEventLabels {
    pub topic: String,
    pub event_type: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TopicLabels {
    pub topic: String,
}

/// The aggregate a snapshot or a load is about (`inventory_item`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AggregateLabels {
    pub aggregate: String,
}

/// Where a load found the state it folded the tail onto: `cache` (this process's
/// recent states) or `store` (a snapshot).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SnapshotHitLabels {
    pub aggregate: String,
    pub source: &'static str,
}

/// Why a load folded the whole stream: `none` (no snapshot), `state_version` (written by
/// other aggregate code), `unreadable` (did not deserialise), `diverged` (its last event
/// is not the stream's event at its version).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SnapshotMissLabels {
    pub aggregate: String,
    pub reason: &'static str,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn folded_histogram() -> Histogram {
    Histogram::new([0.0, 1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 10000.0, 100000.0])
}

fn latency_buckets() -> impl Iterator<Item = f64> {
    [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0].into_iter()
}

/// Metrics of appends. `Default` gives unregistered metrics (for tests and tools).
#[derive(Clone, Debug)]
pub struct StoreMetrics {
    pub events_appended: Family<TopicEventLabels, Counter>,
    pub schema_violations: Family<TopicEventLabels, Counter>,
    pub append_duration: Histogram,
    pub snapshot_hits: Family<SnapshotHitLabels, Counter>,
    pub snapshot_misses: Family<SnapshotMissLabels, Counter>,
    pub snapshots_written: Family<AggregateLabels, Counter>,
    pub snapshot_write_failures: Family<AggregateLabels, Counter>,
    /// Events folded onto the cached, snapshotted or empty state per load.
    pub events_folded: HistogramFamily<AggregateLabels>,
    pub state_cache_bytes: Gauge,
}

impl Default for StoreMetrics {
    fn default() -> Self {
        Self {
            events_appended: Family::default(),
            schema_violations: Family::default(),
            append_duration: Histogram::new(latency_buckets()),
            snapshot_hits: Family::default(),
            snapshot_misses: Family::default(),
            snapshots_written: Family::default(),
            snapshot_write_failures: Family::default(),
            events_folded: Family::new_with_constructor(folded_histogram),
            state_cache_bytes: Gauge::default(),
        }
    }
}

impl StoreMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self::default();
        registry.register(
            names::EVENTS_APPENDED,
            "Events appended to the event store",
            metrics.events_appended.clone(),
        );
        registry.register(
            names::EVENT_SCHEMA_VIOLATIONS,
            "Events that violated their JSON Schema (appended in warn mode, refused in strict mode)",
            metrics.schema_violations.clone(),
        );
        registry.register(
            names::APPEND_DURATION_SECONDS,
            "Time to append one batch of events, transaction included",
            metrics.append_duration.clone(),
        );
        registry.register(
            names::SNAPSHOT_HITS,
            "Aggregate loads that folded only a tail: onto a state cached in this process or a stored snapshot",
            metrics.snapshot_hits.clone(),
        );
        registry.register(
            names::SNAPSHOT_MISSES,
            "Aggregate loads that folded the whole stream, by reason",
            metrics.snapshot_misses.clone(),
        );
        registry.register(names::SNAPSHOTS_WRITTEN, "Snapshots written", metrics.snapshots_written.clone());
        registry.register(
            names::SNAPSHOT_WRITE_FAILURES,
            "Snapshots that could not be written (loading folds more events until the next one)",
            metrics.snapshot_write_failures.clone(),
        );
        registry.register(
            names::AGGREGATE_EVENTS_FOLDED,
            "Events folded per aggregate load",
            metrics.events_folded.clone(),
        );
        registry.register(
            names::STATE_CACHE_BYTES,
            "Serialised size of the aggregate states this process caches",
            metrics.state_cache_bytes.clone(),
        );
        metrics
    }

    pub(crate) fn count_violation(&self, topic: &str, event_type: &str) {
        self.schema_violations
            .get_or_create(&TopicEventLabels { topic: topic.to_string(), event_type: event_type.to_string() })
            .inc();
    }
}

/// Metrics of one relay process.
#[derive(Clone, Debug)]
pub struct RelayMetrics {
    pub events_published: Family<TopicLabels, Counter>,
    pub publish_failures: Counter,
    pub backlog_events: Gauge,
    pub lag_seconds: Gauge<f64, AtomicU64>,
    pub is_leader: Gauge,
    pub batch_duration: Histogram,
}

impl Default for RelayMetrics {
    fn default() -> Self {
        Self {
            events_published: Family::default(),
            publish_failures: Counter::default(),
            backlog_events: Gauge::default(),
            lag_seconds: Gauge::default(),
            is_leader: Gauge::default(),
            batch_duration: Histogram::new(latency_buckets()),
        }
    }
}

impl RelayMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self::default();
        registry.register(
            names::RELAY_EVENTS_PUBLISHED,
            "Events the broker acknowledged from the relay",
            m.events_published.clone(),
        );
        registry.register(
            names::RELAY_PUBLISH_FAILURES,
            "Batches whose publishing failed (the batch is retried, nothing is skipped)",
            m.publish_failures.clone(),
        );
        registry.register(
            names::RELAY_BACKLOG_EVENTS,
            "Committed events not yet acknowledged by the broker",
            m.backlog_events.clone(),
        );
        registry.register(
            names::RELAY_LAG_SECONDS,
            "Age of the oldest committed event not yet acknowledged by the broker (0 when caught up)",
            m.lag_seconds.clone(),
        );
        registry.register(names::RELAY_IS_LEADER, "1 while this relay holds the relay lock", m.is_leader.clone());
        registry.register(
            names::RELAY_BATCH_DURATION_SECONDS,
            "Time from reading a batch to every delivery report and the cursor update",
            m.batch_duration.clone(),
        );
        m
    }

    /// Total events this relay published, over all topics.
    pub fn published_total(&self) -> u64 {
        vectis_schemas::TOPICS
            .iter()
            .map(|t| self.events_published.get_or_create(&TopicLabels { topic: t.name.to_string() }).get())
            .sum()
    }
}
