//! Lag measured from outside the consumers, as Burrow and kminion measure it: every
//! consumer group's checkpoints in PostgreSQL against the broker's watermarks, by a
//! process that is not the consumer (the relay runs it). A consumer whose process died
//! or hangs exports nothing, so its own lag metrics vanish with it; these stay, and the
//! lag and stuck alerts read them.
//!
//! Per partition it exports the checkpoint and the log's end as well as their
//! difference, so PromQL tells an idle group (lag 0) from a stuck one (lag above 0 and
//! a checkpoint that does not change) without the consumer's help.

use std::{collections::HashMap, sync::atomic::AtomicU64, time::Duration};

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, gauge::Gauge},
    registry::Registry,
};
use sqlx::PgPool;
use vectis_event_store::kafka::KafkaSettings;
use vectis_read_side::{catalog::ProjectionSpec, Target};
use vectis_runtime::{metric_names as names, Shutdown};

use crate::{
    lag::{LagProbe, ProjectionLag, Watermarks},
    settings::group_id,
};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct GroupLabels {
    pub projection: String,
    pub kind: String,
    pub group: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct GroupPartitionLabels {
    pub projection: String,
    pub kind: String,
    pub group: String,
    pub topic: String,
    pub partition: i32,
}

#[derive(Clone, Debug, Default)]
pub struct GroupLagMetrics {
    lag_events: Family<GroupPartitionLabels, Gauge>,
    checkpoint: Family<GroupPartitionLabels, Gauge>,
    log_end: Family<GroupPartitionLabels, Gauge>,
    lag_seconds: Family<GroupLabels, Gauge<f64, AtomicU64>>,
    failures: Counter,
}

impl GroupLagMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self::default();
        registry.register(
            names::CONSUMER_LAG_EVENTS,
            "Events on the broker a consumer group has not applied (log end minus checkpoint), per partition, \
             measured outside the consumer",
            metrics.lag_events.clone(),
        );
        registry.register(
            names::CONSUMER_CHECKPOINT_OFFSET,
            "The consumer group's PostgreSQL checkpoint (next offset to apply), per partition",
            metrics.checkpoint.clone(),
        );
        registry.register(
            names::CONSUMER_LOG_END_OFFSET,
            "The broker's high watermark of the partition the group reads",
            metrics.log_end.clone(),
        );
        registry.register(
            names::CONSUMER_LAG_SECONDS,
            "Age of the oldest event the group has not applied; 0 when caught up",
            metrics.lag_seconds.clone(),
        );
        registry.register(
            names::CONSUMER_LAG_MEASURE_FAILURES,
            "Rounds of outside lag measurement that failed (broker or PostgreSQL unreachable)",
            metrics.failures.clone(),
        );
        metrics
    }

    /// Publishes `lag`; returns the partition series it set.
    fn record(&self, group: &GroupLabels, lag: &ProjectionLag) -> Vec<GroupPartitionLabels> {
        let mut series = Vec::with_capacity(lag.partitions.len());
        for partition in &lag.partitions {
            let labels = GroupPartitionLabels {
                projection: group.projection.clone(),
                kind: group.kind.clone(),
                group: group.group.clone(),
                topic: partition.topic.clone(),
                partition: partition.partition,
            };
            self.lag_events.get_or_create(&labels).set(partition.events());
            self.checkpoint.get_or_create(&labels).set(partition.next_offset);
            self.log_end.get_or_create(&labels).set(partition.high_watermark);
            series.push(labels);
        }
        self.lag_seconds.get_or_create(group).set(lag.seconds());
        series
    }

    /// Drops a group's series: a retired version's would otherwise stay at their last
    /// values, a lag nothing consumes any more (a stuck alert for ever).
    fn forget(&self, group: &GroupLabels, series: &[GroupPartitionLabels]) {
        for labels in series {
            self.lag_events.remove(labels);
            self.checkpoint.remove(labels);
            self.log_end.remove(labels);
        }
        self.lag_seconds.remove(group);
    }
}

/// Measures every installed group of `specs` every `interval`.
pub struct LagMonitor {
    pub pool: PgPool,
    pub kafka: KafkaSettings,
    pub probe: LagProbe,
    pub specs: Vec<&'static ProjectionSpec>,
    pub metrics: GroupLagMetrics,
    pub interval: Duration,
    /// A group whose lag rises past this many events is logged at WARN (and at INFO
    /// when it falls back below it).
    pub warn_above_events: i64,
}

impl LagMonitor {
    pub async fn run(self, shutdown: Shutdown) {
        let mut topics: Vec<&str> = self.specs.iter().flat_map(|spec| spec.topics.iter().copied()).collect();
        topics.sort_unstable();
        topics.dedup();
        let mut above: HashMap<&'static str, bool> = HashMap::new();
        // Each projection's group (its active version) and series, as last published.
        let mut published: HashMap<&'static str, (GroupLabels, Vec<GroupPartitionLabels>)> = HashMap::new();
        loop {
            match self.round(&topics).await {
                Ok(measured) => {
                    for (spec, group, lag) in measured {
                        let series = self.metrics.record(&group, &lag);
                        if let Some((before, old)) = published.insert(spec.name, (group.clone(), series)) {
                            if before != group {
                                self.metrics.forget(&before, &old);
                            }
                        }
                        self.report_threshold(spec, &group, &lag, above.entry(spec.name).or_default());
                    }
                }
                Err(error) => {
                    self.metrics.failures.inc();
                    tracing::warn!(%error, "cannot measure consumer lag from outside the consumers");
                }
            }
            tokio::select! {
                () = tokio::time::sleep(self.interval) => {}
                () = shutdown.wait() => return,
            }
        }
    }

    /// One measurement of every installed group's active version.
    async fn round(
        &self,
        topics: &[&str],
    ) -> anyhow::Result<Vec<(&'static ProjectionSpec, GroupLabels, ProjectionLag)>> {
        let watermarks: Watermarks = self.probe.watermarks(topics).await?;
        let states = vectis_read_side::state::states(&self.pool).await?;
        let mut measured = Vec::new();
        for spec in &self.specs {
            // Not installed yet: its process has not started once.
            let Some(state) = states.iter().find(|state| state.name == spec.name) else { continue };
            let target = Target { projection: spec.name, version: state.active_version };
            let lag = self.probe.measure_at(&self.pool, &target, spec.topics, &watermarks).await?;
            let group = GroupLabels {
                projection: spec.name.to_string(),
                kind: spec.kind.as_str().to_string(),
                group: group_id(&self.kafka, spec.kind, &target),
            };
            measured.push((*spec, group, lag));
        }
        Ok(measured)
    }

    /// Logs a crossing of the threshold, not every measurement above it.
    fn report_threshold(&self, spec: &ProjectionSpec, group: &GroupLabels, lag: &ProjectionLag, above: &mut bool) {
        let now_above = lag.events() > self.warn_above_events;
        if now_above == *above {
            return;
        }
        if now_above {
            tracing::warn!(
                projection = spec.name, group = %group.group, lag_events = lag.events(),
                lag_seconds = lag.seconds(), threshold = self.warn_above_events,
                "consumer group lag crossed the threshold"
            );
        } else {
            tracing::info!(
                projection = spec.name, group = %group.group, lag_events = lag.events(),
                "consumer group lag is back below the threshold"
            );
        }
        *above = now_above;
    }
}

#[cfg(test)]
mod tests {
    use chrono::Utc;
    use prometheus_client::{encoding::text::encode, registry::Registry};

    use super::*;
    use crate::lag::PartitionLag;

    fn lag(version: i32, behind: i64) -> ProjectionLag {
        ProjectionLag {
            target: Target { projection: "orders", version },
            partitions: vec![PartitionLag {
                topic: "vectis.orders".into(),
                partition: 0,
                next_offset: 100 - behind,
                high_watermark: 100,
                oldest_unapplied: None,
            }],
            measured_at: Utc::now(),
        }
    }

    fn group(name: &str) -> GroupLabels {
        GroupLabels { projection: "orders".into(), kind: "read_model".into(), group: name.into() }
    }

    #[test]
    fn a_retired_versions_series_are_dropped_not_left_at_their_last_lag() {
        let mut registry = Registry::default();
        let metrics = GroupLagMetrics::register(&mut registry);
        let old = metrics.record(&group("vectis.projection.orders"), &lag(1, 7));
        metrics.record(&group("vectis.projection.orders.v2"), &lag(2, 3));
        metrics.forget(&group("vectis.projection.orders"), &old);
        let mut text = String::new();
        encode(&mut text, &registry).expect("encodes");
        assert!(text.contains(r#"group="vectis.projection.orders.v2""#), "{text}");
        for retired in [r#"group="vectis.projection.orders","#, r#"group="vectis.projection.orders"}"#] {
            assert!(!text.contains(retired), "the retired group is gone: {text}");
        }
        assert!(text.contains("vectis_consumer_lag_events{") && text.contains("} 3"), "{text}");
    }
}
