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

fn latency_buckets() -> impl Iterator<Item = f64> {
    [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0].into_iter()
}

/// Metrics of appends. `Default` gives unregistered metrics (for tests and tools).
#[derive(Clone, Debug)]
pub struct StoreMetrics {
    pub events_appended: Family<TopicEventLabels, Counter>,
    pub schema_violations: Family<TopicEventLabels, Counter>,
    pub append_duration: Histogram,
}

impl Default for StoreMetrics {
    fn default() -> Self {
        Self {
            events_appended: Family::default(),
            schema_violations: Family::default(),
            append_duration: Histogram::new(latency_buckets()),
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
