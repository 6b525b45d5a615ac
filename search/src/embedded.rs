//! The embedded search engine: one tantivy index per search index, in a directory of
//! its own under the data directory. Used when no Meilisearch is configured; behaves
//! like it where users notice: typo tolerance by word length, prefix matching on the
//! last word (search as you type), every word required, filters, one sort field,
//! highlights.
//!
//! Field layout, from the declaration: `id` (exact, stored); `source` (the document as
//! JSON, stored only); per declared field `t_<name>` (words, when searchable),
//! `k_<name>` (exact lower-cased values, when a filterable keyword), `n_<name>` (i64,
//! indexed and fast, when a filterable or sortable number) and `s_<name>` (lower-cased
//! text, fast, when sortable text).
//!
//! One process writes an index at a time (tantivy's writer lock); any number read it.
//! The writer is opened at the first write and kept until [`SearchBackend::release`].

use std::{
    collections::HashMap,
    ops::Bound,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
};

use futures::{future::BoxFuture, FutureExt};
use serde_json::Value;
use tantivy::{
    collector::{Count, TopDocs},
    directory::{error::LockError, MmapDirectory},
    query::{
        AllQuery, BooleanQuery, ConstScoreQuery, FuzzyTermQuery, Occur, Query, RangeQuery, TermQuery, TermSetQuery,
    },
    schema::{
        document::Value as _, Field, IndexRecordOption, NumericOptions, Schema, TextFieldIndexing, TextOptions, FAST,
        STORED, STRING,
    },
    tokenizer::TextAnalyzer,
    DocAddress, Index, IndexReader, IndexWriter, Order, ReloadPolicy, TantivyDocument, TantivyError, Term,
};

use crate::{
    backend::{EngineError, SearchBackend},
    declaration::{typo_budget, FieldKind, Filter, FilterValue, Hit, IndexDeclaration, SearchRequest, SearchResults},
    document::{Body, DocumentChange},
    highlight::{highlight, QueryWords},
};

/// Memory the writer may buffer before it flushes a segment.
const WRITER_MEMORY: usize = 50_000_000;

pub struct EmbeddedBackend {
    root: PathBuf,
    open: Mutex<HashMap<String, Arc<OpenIndex>>>,
}

struct OpenIndex {
    index: Index,
    fields: Fields,
    reader: IndexReader,
    writer: Mutex<Option<IndexWriter>>,
}

struct Fields {
    id: Field,
    source: Field,
    words: Vec<(&'static str, Field)>,
    keywords: HashMap<&'static str, Field>,
    numbers: HashMap<&'static str, Field>,
    sort_texts: HashMap<&'static str, Field>,
}

fn schema_of(declaration: &IndexDeclaration) -> Schema {
    let mut builder = Schema::builder();
    builder.add_text_field("id", STRING | STORED);
    builder.add_text_field("source", STORED);
    for field in declaration.fields {
        let numeric = matches!(field.kind, FieldKind::Integer | FieldKind::Timestamp);
        if field.searchable {
            let indexing =
                TextFieldIndexing::default().set_tokenizer("default").set_index_option(IndexRecordOption::WithFreqs);
            builder.add_text_field(&format!("t_{}", field.name), TextOptions::default().set_indexing_options(indexing));
        }
        if numeric && (field.filterable || field.sortable) {
            builder.add_i64_field(&format!("n_{}", field.name), NumericOptions::default().set_indexed().set_fast());
        } else if field.filterable {
            builder.add_text_field(&format!("k_{}", field.name), STRING);
        }
        if !numeric && field.sortable {
            builder.add_text_field(&format!("s_{}", field.name), STRING | FAST);
        }
    }
    builder.build()
}

impl Fields {
    fn of(schema: &Schema, declaration: &IndexDeclaration) -> Result<Self, EngineError> {
        let get = |name: String| {
            schema.get_field(&name).map_err(|_| EngineError::Rejected(format!("the index has no field {name}")))
        };
        let mut fields = Self {
            id: get("id".into())?,
            source: get("source".into())?,
            words: Vec::new(),
            keywords: HashMap::new(),
            numbers: HashMap::new(),
            sort_texts: HashMap::new(),
        };
        for field in declaration.fields {
            let name = field.name;
            if let Ok(f) = schema.get_field(&format!("t_{name}")) {
                fields.words.push((name, f));
            }
            if let Ok(f) = schema.get_field(&format!("k_{name}")) {
                fields.keywords.insert(name, f);
            }
            if let Ok(f) = schema.get_field(&format!("n_{name}")) {
                fields.numbers.insert(name, f);
            }
            if let Ok(f) = schema.get_field(&format!("s_{name}")) {
                fields.sort_texts.insert(name, f);
            }
        }
        Ok(fields)
    }
}

fn engine_error(error: TantivyError) -> EngineError {
    match error {
        TantivyError::LockFailure(LockError::LockBusy, _) => {
            EngineError::Unavailable("another process is writing this search index".into())
        }
        TantivyError::IoError(error) => EngineError::Unavailable(format!("search index I/O: {error}")),
        other => EngineError::Rejected(format!("search index: {other}")),
    }
}

/// Runs blocking index work off the async threads.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, EngineError> + Send + 'static,
) -> Result<T, EngineError> {
    tokio::task::spawn_blocking(work)
        .await
        .unwrap_or_else(|error| Err(EngineError::Rejected(format!("search index work panicked: {error}"))))
}

impl EmbeddedBackend {
    /// Indexes live in `root/<index name>/`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into(), open: Mutex::new(HashMap::new()) }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn cached(&self, name: &str) -> Option<Arc<OpenIndex>> {
        self.open.lock().ok().and_then(|open| open.get(name).cloned())
    }

    /// Opens (creating when `create`) the index `name`; `None` when it does not exist
    /// and `create` is false.
    fn open_index(
        &self,
        name: &str,
        declaration: &'static IndexDeclaration,
        create: bool,
    ) -> Result<Option<Arc<OpenIndex>>, EngineError> {
        if let Some(open) = self.cached(name) {
            return Ok(Some(open));
        }
        let dir = self.root.join(name);
        if !create && !dir.join("meta.json").exists() {
            return Ok(None);
        }
        std::fs::create_dir_all(&dir)
            .map_err(|error| EngineError::Unavailable(format!("cannot create {}: {error}", dir.display())))?;
        let directory = MmapDirectory::open(&dir)
            .map_err(|error| EngineError::Unavailable(format!("cannot open {}: {error}", dir.display())))?;
        let index = Index::open_or_create(directory, schema_of(declaration)).map_err(|error| match error {
            // Built by a build whose declaration differed: never parked (every event
            // would be), retried until a reindex has built a version with these fields.
            TantivyError::SchemaError(_) => EngineError::Unavailable(format!(
                "search index {name} was built with other fields than this build declares; \
                 run `vectis search reindex {}`",
                declaration.name
            )),
            other => engine_error(other),
        })?;
        let fields = Fields::of(&index.schema(), declaration)?;
        // Other processes' commits show up within a few hundred milliseconds; this
        // process's own writes reload explicitly after each commit.
        let reader =
            index.reader_builder().reload_policy(ReloadPolicy::OnCommitWithDelay).try_into().map_err(engine_error)?;
        let open = Arc::new(OpenIndex { index, fields, reader, writer: Mutex::new(None) });
        let mut cache = self.open.lock().map_err(|_| EngineError::Rejected("search index cache poisoned".into()))?;
        Ok(Some(cache.entry(name.to_string()).or_insert(open).clone()))
    }
}

impl OpenIndex {
    fn write(&self, declaration: &IndexDeclaration, changes: &[DocumentChange]) -> Result<(), EngineError> {
        let mut writer =
            self.writer.lock().map_err(|_| EngineError::Rejected("search index writer poisoned".into()))?;
        if writer.is_none() {
            *writer = Some(self.index.writer_with_num_threads(1, WRITER_MEMORY).map_err(engine_error)?);
        }
        let Some(open) = writer.as_mut() else { return Ok(()) };
        let outcome = (|| {
            for change in changes {
                match change {
                    DocumentChange::Delete { id } => {
                        open.delete_term(Term::from_field_text(self.fields.id, id));
                    }
                    DocumentChange::Upsert { id, full, .. } => {
                        open.delete_term(Term::from_field_text(self.fields.id, id));
                        open.add_document(self.document(declaration, id, full))?;
                    }
                }
            }
            open.commit()?;
            Ok(())
        })();
        if let Err(error) = outcome {
            // Drop what was not committed; the caller retries the whole batch.
            let _ = open.rollback();
            return Err(engine_error(error));
        }
        self.reader.reload().map_err(engine_error)
    }

    fn document(&self, declaration: &IndexDeclaration, id: &str, body: &Body) -> TantivyDocument {
        let mut document = TantivyDocument::default();
        document.add_text(self.fields.id, id);
        document.add_text(self.fields.source, Value::Object(body.clone()).to_string());
        for spec in declaration.fields {
            let Some(value) = body.get(spec.name) else { continue };
            let texts: Vec<&str> = match value {
                Value::String(text) => vec![text.as_str()],
                Value::Array(items) => items.iter().filter_map(Value::as_str).collect(),
                _ => Vec::new(),
            };
            if let Some((_, field)) = self.fields.words.iter().find(|(name, _)| *name == spec.name) {
                for text in &texts {
                    document.add_text(*field, text);
                }
            }
            if let Some(field) = self.fields.keywords.get(spec.name) {
                for text in &texts {
                    document.add_text(*field, text.to_lowercase());
                }
            }
            if let (Some(field), Some(number)) = (self.fields.numbers.get(spec.name), value.as_i64()) {
                document.add_i64(*field, number);
            }
            if let (Some(field), Some(text)) = (self.fields.sort_texts.get(spec.name), texts.first()) {
                document.add_text(*field, text.to_lowercase());
            }
        }
        document
    }

    fn analyzer(&self) -> Result<TextAnalyzer, EngineError> {
        self.index.tokenizers().get("default").ok_or_else(|| EngineError::Rejected("no default tokenizer".into()))
    }

    fn search(&self, declaration: &IndexDeclaration, request: &SearchRequest) -> Result<SearchResults, EngineError> {
        let words = QueryWords::parse(&request.query, &mut self.analyzer()?);
        let mut clauses: Vec<(Occur, Box<dyn Query>)> = Vec::new();
        for (position, word) in words.words.iter().enumerate() {
            let last = position + 1 == words.words.len();
            clauses.push((Occur::Must, self.word_query(word, last)));
        }
        for filter in &request.filters {
            clauses.push((Occur::Must, Box::new(ConstScoreQuery::new(self.filter_query(filter)?, 0.0))));
        }
        let query: Box<dyn Query> =
            if clauses.is_empty() { Box::new(AllQuery) } else { Box::new(BooleanQuery::new(clauses)) };
        let searcher = self.reader.searcher();
        let top = TopDocs::with_limit(request.limit).and_offset(request.offset);
        let (addresses, total): (Vec<DocAddress>, usize) = match request.sort.first() {
            None => {
                let (hits, total) = searcher.search(&query, &(top.order_by_score(), Count)).map_err(engine_error)?;
                (hits.into_iter().map(|(_, address)| address).collect(), total)
            }
            Some(sort) => {
                let order = if sort.descending { Order::Desc } else { Order::Asc };
                if self.fields.numbers.contains_key(sort.field.as_str()) {
                    let collector = top.order_by_fast_field::<i64>(format!("n_{}", sort.field), order);
                    let (hits, total) = searcher.search(&query, &(collector, Count)).map_err(engine_error)?;
                    (hits.into_iter().map(|(_, address)| address).collect(), total)
                } else {
                    let collector = top.order_by_string_fast_field(format!("s_{}", sort.field), order);
                    let (hits, total) = searcher.search(&query, &(collector, Count)).map_err(engine_error)?;
                    (hits.into_iter().map(|(_, address)| address).collect(), total)
                }
            }
        };
        let mut hits = Vec::with_capacity(addresses.len());
        for address in addresses {
            let stored: TantivyDocument = searcher.doc(address).map_err(engine_error)?;
            let source = stored.get_first(self.fields.source).and_then(|v| v.as_str()).unwrap_or("{}");
            let document: Body = serde_json::from_str(source)
                .map_err(|error| EngineError::Rejected(format!("a stored document is not JSON: {error}")))?;
            hits.push(hit(declaration, document, &words));
        }
        Ok(SearchResults { hits, total })
    }

    /// A word matches a searchable field exactly, or (last word) as a prefix, or
    /// within its typo budget. Exact matches score highest, then prefixes, then typos,
    /// and earlier fields more than later ones, as Meilisearch ranks.
    fn word_query(&self, word: &str, last: bool) -> Box<dyn Query> {
        let budget = typo_budget(word);
        let count = self.fields.words.len() as f32;
        let mut alternatives: Vec<(Occur, Box<dyn Query>)> = Vec::new();
        for (rank, (_, field)) in self.fields.words.iter().enumerate() {
            let weight = 1.0 + (count - rank as f32) / (10.0 * count);
            let term = Term::from_field_text(*field, word);
            let scored = |query: Box<dyn Query>, score: f32| -> (Occur, Box<dyn Query>) {
                (Occur::Should, Box::new(ConstScoreQuery::new(query, score * weight)))
            };
            alternatives.push(scored(Box::new(TermQuery::new(term.clone(), IndexRecordOption::Basic)), 4.0));
            if last {
                alternatives.push(scored(Box::new(FuzzyTermQuery::new_prefix(term.clone(), 0, true)), 2.0));
            }
            if budget > 0 {
                alternatives.push(scored(Box::new(FuzzyTermQuery::new(term.clone(), budget, true)), 1.0));
                if last {
                    alternatives.push(scored(Box::new(FuzzyTermQuery::new_prefix(term, budget, true)), 0.5));
                }
            }
        }
        Box::new(BooleanQuery::new(alternatives))
    }

    fn filter_query(&self, filter: &Filter) -> Result<Box<dyn Query>, EngineError> {
        let field_of = |name: &str| -> Result<(Field, bool), EngineError> {
            if let Some(field) = self.fields.numbers.get(name) {
                Ok((*field, true))
            } else if let Some(field) = self.fields.keywords.get(name) {
                Ok((*field, false))
            } else {
                Err(EngineError::Rejected(format!("{name:?} is not filterable in this index")))
            }
        };
        let term = |field: Field, numeric: bool, value: &FilterValue| -> Term {
            match (value, numeric) {
                (FilterValue::Integer(number), true) => Term::from_field_i64(field, *number),
                (FilterValue::Integer(number), false) => Term::from_field_text(field, &number.to_string()),
                (FilterValue::Text(text), _) => Term::from_field_text(field, &text.to_lowercase()),
            }
        };
        Ok(match filter {
            Filter::Equals { field, value } => {
                let (field, numeric) = field_of(field)?;
                Box::new(TermQuery::new(term(field, numeric, value), IndexRecordOption::Basic))
            }
            Filter::AnyOf { field, values } => {
                let (field, numeric) = field_of(field)?;
                Box::new(TermSetQuery::new(values.iter().map(|v| term(field, numeric, v))))
            }
            Filter::Range { field, min, max } => {
                let (field, _) = field_of(field)?;
                let bound = |value: &Option<i64>| match value {
                    Some(value) => Bound::Included(Term::from_field_i64(field, *value)),
                    None => Bound::Unbounded,
                };
                Box::new(RangeQuery::new(bound(min), bound(max)))
            }
        })
    }

    fn count(&self) -> u64 {
        self.reader.searcher().num_docs()
    }
}

/// A hit as both backends shape it: the entity id, highlighted matches, the document.
pub(super) fn hit(declaration: &IndexDeclaration, document: Body, words: &QueryWords) -> Hit {
    let id = document
        .get(declaration.entity_field)
        .or_else(|| document.get("id"))
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let mut highlights = std::collections::BTreeMap::new();
    for field in declaration.searchable() {
        let marked: Vec<String> = match document.get(field.name) {
            Some(Value::String(text)) => highlight(text, words).into_iter().collect(),
            Some(Value::Array(items)) => {
                items.iter().filter_map(Value::as_str).filter_map(|t| highlight(t, words)).collect()
            }
            _ => Vec::new(),
        };
        if !marked.is_empty() {
            highlights.insert(field.name.to_string(), marked.join(", "));
        }
    }
    Hit { id, highlights, document }
}

impl SearchBackend for EmbeddedBackend {
    fn kind(&self) -> &'static str {
        "embedded"
    }

    fn prepare<'a>(
        &'a self,
        index: &'a str,
        declaration: &'static IndexDeclaration,
    ) -> BoxFuture<'a, Result<(), EngineError>> {
        async move { self.open_index(index, declaration, true).map(|_| ()) }.boxed()
    }

    fn write<'a>(
        &'a self,
        index: &'a str,
        declaration: &'static IndexDeclaration,
        changes: &'a [DocumentChange],
    ) -> BoxFuture<'a, Result<(), EngineError>> {
        async move {
            if changes.is_empty() {
                return Ok(());
            }
            let open = self
                .open_index(index, declaration, true)?
                .ok_or_else(|| EngineError::Rejected(format!("cannot create search index {index}")))?;
            let changes = changes.to_vec();
            blocking(move || open.write(declaration, &changes)).await
        }
        .boxed()
    }

    fn search<'a>(
        &'a self,
        index: &'a str,
        declaration: &'static IndexDeclaration,
        request: &'a SearchRequest,
    ) -> BoxFuture<'a, Result<SearchResults, EngineError>> {
        async move {
            let Some(open) = self.open_index(index, declaration, false)? else {
                return Ok(SearchResults::default());
            };
            let request = request.clone();
            blocking(move || open.search(declaration, &request)).await
        }
        .boxed()
    }

    fn document_count<'a>(
        &'a self,
        index: &'a str,
        declaration: &'static IndexDeclaration,
    ) -> BoxFuture<'a, Result<u64, EngineError>> {
        async move { Ok(self.open_index(index, declaration, false)?.map_or(0, |open| open.count())) }.boxed()
    }

    fn delete_index<'a>(&'a self, index: &'a str) -> BoxFuture<'a, Result<(), EngineError>> {
        async move {
            self.release(index);
            if let Ok(mut open) = self.open.lock() {
                open.remove(index);
            }
            let dir = self.root.join(index);
            match tokio::fs::remove_dir_all(&dir).await {
                Ok(()) => Ok(()),
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
                Err(error) => Err(EngineError::Unavailable(format!("cannot remove {}: {error}", dir.display()))),
            }
        }
        .boxed()
    }

    fn release(&self, index: &str) {
        if let Some(open) = self.cached(index) {
            if let Ok(mut writer) = open.writer.lock() {
                // Dropping the writer waits for its merges and frees the lock.
                writer.take();
            }
        }
    }

    fn check(&self) -> BoxFuture<'_, Result<(), EngineError>> {
        async move {
            tokio::fs::create_dir_all(&self.root)
                .await
                .map_err(|error| EngineError::Unavailable(format!("cannot use {}: {error}", self.root.display())))
        }
        .boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::indexes::{ACCOUNTS, PRODUCTS};

    #[tokio::test]
    async fn an_index_built_with_other_fields_asks_for_a_reindex_and_parks_nothing() {
        let root = std::env::temp_dir().join(format!("vectis-embedded-test-{}", uuid::Uuid::now_v7().simple()));
        EmbeddedBackend::new(&root).prepare("catalogue_v1", &ACCOUNTS).await.expect("created");
        let error = EmbeddedBackend::new(&root).prepare("catalogue_v1", &PRODUCTS).await.expect_err("other fields");
        assert!(error.is_transient(), "retried, not parked: {error}");
        assert!(error.to_string().contains("run `vectis search reindex products`"), "{error}");
        let _ = std::fs::remove_dir_all(root);
    }
}
