//! Search metrics, labelled by index (DESIGN.md, "Operability").

use std::sync::atomic::AtomicU64;

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, gauge::Gauge},
    registry::Registry,
};
use vectis_runtime::metric_names as names;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct IndexLabel {
    pub index: String,
}

#[derive(Clone, Debug, Default)]
pub struct SearchMetrics {
    pub indexed: Family<IndexLabel, Counter>,
    pub freshness: Family<IndexLabel, Gauge<f64, AtomicU64>>,
    pub documents: Family<IndexLabel, Gauge>,
}

impl SearchMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self::default();
        registry.register(
            names::SEARCH_DOCUMENTS_INDEXED,
            "Documents written to the search engine (upserts and deletions)",
            metrics.indexed.clone(),
        );
        registry.register(
            names::SEARCH_FRESHNESS_SECONDS,
            "Age of the oldest event not yet searchable; 0 when caught up",
            metrics.freshness.clone(),
        );
        registry.register(
            names::SEARCH_DOCUMENTS,
            "Documents in the search index readers use",
            metrics.documents.clone(),
        );
        metrics
    }

    pub fn label(index: &str) -> IndexLabel {
        IndexLabel { index: index.to_string() }
    }
}
