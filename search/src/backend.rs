//! The one interface both search engines implement: Meilisearch ([`crate::meili`]) and
//! the embedded tantivy index ([`crate::embedded`]). Projectors write through it;
//! the query side searches through it.

use futures::future::BoxFuture;

use crate::{
    declaration::{IndexDeclaration, SearchRequest, SearchResults},
    document::DocumentChange,
};

/// Why the engine did not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// Unreachable, timed out, busy: worth retrying as is.
    #[error("{0}")]
    Unavailable(String),
    /// The engine refused or failed the work (a failed Meilisearch task, a corrupt
    /// index): retrying the same work a few times, then parking it.
    #[error("{0}")]
    Rejected(String),
}

impl EngineError {
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Unavailable(_))
    }
}

/// A search engine holding named indexes. Index names are engine-wide, so callers
/// namespace them (see [`crate::engine_index_name`]).
pub trait SearchBackend: Send + Sync + 'static {
    /// `meilisearch` or `embedded`, for logs and benchmarks.
    fn kind(&self) -> &'static str;

    /// Creates `index` if missing and applies the declaration's settings. Idempotent.
    fn prepare<'a>(
        &'a self,
        index: &'a str,
        declaration: &'static IndexDeclaration,
    ) -> BoxFuture<'a, Result<(), EngineError>>;

    /// Applies `changes` in order and returns once they are searchable (Meilisearch:
    /// the task succeeded; embedded: committed and the reader reloaded).
    fn write<'a>(
        &'a self,
        index: &'a str,
        declaration: &'static IndexDeclaration,
        changes: &'a [DocumentChange],
    ) -> BoxFuture<'a, Result<(), EngineError>>;

    /// Answers `request`, already validated against `declaration`. An index that does
    /// not exist yet has no documents: empty results.
    fn search<'a>(
        &'a self,
        index: &'a str,
        declaration: &'static IndexDeclaration,
        request: &'a SearchRequest,
    ) -> BoxFuture<'a, Result<SearchResults, EngineError>>;

    /// Documents in `index` (0 when it does not exist).
    fn document_count<'a>(
        &'a self,
        index: &'a str,
        declaration: &'static IndexDeclaration,
    ) -> BoxFuture<'a, Result<u64, EngineError>>;

    /// Removes `index` and its documents. Removing a missing index succeeds.
    fn delete_index<'a>(&'a self, index: &'a str) -> BoxFuture<'a, Result<(), EngineError>>;

    /// Lets go of what this process holds open for `index` (the embedded writer's
    /// lock), so another process may write it next.
    fn release(&self, index: &str) {
        let _ = index;
    }

    /// Whether the engine answers (for `/ready`).
    fn check(&self) -> BoxFuture<'_, Result<(), EngineError>>;
}
