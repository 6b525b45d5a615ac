//! The search projections (DESIGN.md, "Projectors"): consumer groups like the read
//! models, each filling one index of the engine `vectis-search` configures.
//!
//! - [`documents`]: how events become documents.
//! - [`projection`]: a search index as a [`crate::projection::Projection`].

pub mod documents;
pub mod projection;

use std::sync::Arc;

pub use vectis_search::{
    backend, declaration, declarations, document, embedded, engine_index_name, indexes, metrics, SearchEngine,
    SearchSettings,
};

use self::projection::SearchProjection;
use crate::projection::Projection;

/// A search projection per index, writing through `engine`.
pub fn projections(engine: &SearchEngine) -> Vec<Arc<dyn Projection>> {
    documents::all()
        .into_iter()
        .map(|model| {
            Arc::new(SearchProjection::new(
                model,
                engine.backend().clone(),
                engine.namespace().to_string(),
                engine.metrics().clone(),
            )) as Arc<dyn Projection>
        })
        .collect()
}
