//! Search (DESIGN.md, "Projectors"): three indexes — orders, accounts, products — in
//! Meilisearch when `MEILI_URL` is set, else in an embedded tantivy index under the data
//! directory. The search projections (in `projectors`) write them; the query API reads
//! them through [`SearchEngine::search`]. No broker client and no consumer runtime here.
//!
//! - [`declaration`]: each index's fields (searchable, filterable, sortable) and the
//!   engine-independent request and result shapes; [`indexes`]: the three declarations.
//! - [`document`]: a document and the change a projection asks for.
//! - [`backend`]: the interface both engines implement; [`meili`], [`embedded`].
//! - [`SearchEngine`]: the configured engine, for writers and readers.
//!
//! Each projection version writes its own engine index (`<namespace><index>_v<n>`);
//! readers search the version `projections.active_version` names, so a reindex builds
//! the next version beside the live one and the switch is the same PostgreSQL
//! transaction that switches read models.

pub mod backend;
pub mod declaration;
pub mod document;
pub mod embedded;
pub mod highlight;
pub mod indexes;
pub mod meili;
pub mod metrics;

use std::{path::PathBuf, sync::Arc, time::Duration};

use sqlx::PgPool;
use vectis_read_side::state;
use vectis_runtime::{env_or, health::ReadinessCheck};

pub use self::indexes::declarations;
use self::{
    backend::SearchBackend,
    declaration::{IndexDeclaration, SearchError, SearchRequest, SearchResults},
    embedded::EmbeddedBackend,
    meili::MeiliBackend,
    metrics::SearchMetrics,
};

/// The engine's name for `version` of `index`: engine-wide, so namespaced by the
/// deployment's topic prefix (tests and environments sharing one Meilisearch never
/// meet), reduced to the characters Meilisearch allows in index names.
pub fn engine_index_name(namespace: &str, index: &str, version: i32) -> String {
    format!("{namespace}{index}_v{version}")
}

/// A topic prefix as an index-name namespace: `staging.` → `staging_`.
pub fn namespace_of(topic_prefix: &str) -> String {
    topic_prefix.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' }).collect()
}

/// Which engine, from the environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SearchSettings {
    /// `MEILI_URL`, with `MEILI_MASTER_KEY` when set.
    Meilisearch { url: String, master_key: Option<String> },
    /// `$VECTIS_DATA_DIR/search` (default `/var/lib/vectis/search`).
    Embedded { root: PathBuf },
}

impl SearchSettings {
    pub fn from_env() -> Self {
        let set = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        match set("MEILI_URL") {
            Some(url) => Self::Meilisearch { url, master_key: set("MEILI_MASTER_KEY") },
            None => Self::Embedded { root: PathBuf::from(env_or("VECTIS_DATA_DIR", "/var/lib/vectis")).join("search") },
        }
    }
}

/// The configured engine and everything that uses it.
#[derive(Clone)]
pub struct SearchEngine {
    backend: Arc<dyn SearchBackend>,
    namespace: String,
    metrics: SearchMetrics,
}

impl SearchEngine {
    pub fn new(settings: &SearchSettings, topic_prefix: &str, metrics: SearchMetrics) -> Result<Self, SearchError> {
        let backend: Arc<dyn SearchBackend> = match settings {
            SearchSettings::Meilisearch { url, master_key } => Arc::new(
                MeiliBackend::new(url, master_key.as_deref()).map_err(|e| SearchError::Unavailable(e.to_string()))?,
            ),
            SearchSettings::Embedded { root } => Arc::new(EmbeddedBackend::new(root.clone())),
        };
        Ok(Self { backend, namespace: namespace_of(topic_prefix), metrics })
    }

    pub fn backend(&self) -> &Arc<dyn SearchBackend> {
        &self.backend
    }

    pub fn metrics(&self) -> &SearchMetrics {
        &self.metrics
    }

    /// What this deployment's index names start with (see [`engine_index_name`]).
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// The declaration of the index a projection builds, if it is a search projection.
    pub fn index_of(projection: &str) -> Option<&'static IndexDeclaration> {
        declarations().into_iter().find(|d| d.projection.name == projection)
    }

    /// `/ready` for Meilisearch; nothing for the embedded engine (it is this process).
    pub fn readiness_check(&self) -> Option<ReadinessCheck> {
        if self.backend.kind() != "meilisearch" {
            return None;
        }
        let backend = self.backend.clone();
        Some(ReadinessCheck::new("meilisearch", Duration::from_secs(2), move || {
            let backend = backend.clone();
            async move { backend.check().await.map_err(|e| e.to_string()) }
        }))
    }

    /// The engine index readers of `declaration` use now, if the projection exists.
    pub async fn active_index(
        &self,
        pool: &PgPool,
        declaration: &IndexDeclaration,
    ) -> Result<Option<String>, SearchError> {
        let mut conn = pool.acquire().await?;
        let state = state::state(&mut conn, declaration.projection.name).await?;
        Ok(state.map(|s| engine_index_name(&self.namespace, declaration.name, s.active_version)))
    }

    /// Searches `index` (`orders`, `accounts`, `products`): the query side's one search
    /// interface, whichever engine is configured.
    pub async fn search(
        &self,
        pool: &PgPool,
        index: &str,
        request: &SearchRequest,
    ) -> Result<SearchResults, SearchError> {
        let declaration = declaration(index)?;
        declaration.validate(request)?;
        let Some(engine_index) = self.active_index(pool, declaration).await? else {
            // No search projector has run yet: nothing is indexed.
            return Ok(SearchResults::default());
        };
        self.backend.search(&engine_index, declaration, request).await.map_err(|error| {
            tracing::error!(index, %error, "search failed");
            SearchError::Unavailable(error.to_string())
        })
    }

    /// Documents in the index readers use.
    pub async fn document_count(
        &self,
        pool: &PgPool,
        declaration: &'static IndexDeclaration,
    ) -> Result<u64, SearchError> {
        let Some(engine_index) = self.active_index(pool, declaration).await? else { return Ok(0) };
        self.backend
            .document_count(&engine_index, declaration)
            .await
            .map_err(|e| SearchError::Unavailable(e.to_string()))
    }
}

/// The declaration of the index named `index`.
pub fn declaration(index: &str) -> Result<&'static IndexDeclaration, SearchError> {
    declarations().into_iter().find(|d| d.name == index).ok_or_else(|| SearchError::UnknownIndex(index.to_string()))
}
