//! Projector metrics, labelled by projection (DESIGN.md, "Operability").

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, histogram::Histogram},
    registry::Registry,
};
use vectis_runtime::metric_names as names;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProjectionLabel {
    pub projection: String,
}

#[derive(Clone, Debug)]
pub struct ProjectorMetrics {
    pub applied: Family<ProjectionLabel, Counter>,
    pub duplicates: Family<ProjectionLabel, Counter>,
    pub parked: Family<ProjectionLabel, Counter>,
    pub retries: Family<ProjectionLabel, Counter>,
    pub batch_duration: Family<ProjectionLabel, Histogram>,
    pub latency: Family<ProjectionLabel, Histogram>,
}

impl Default for ProjectorMetrics {
    fn default() -> Self {
        Self {
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

impl ProjectorMetrics {
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
        metrics
    }

    pub fn label(projection: &str) -> ProjectionLabel {
        ProjectionLabel { projection: projection.to_string() }
    }
}
