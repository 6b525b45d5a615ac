//! Meilisearch through meilisearch-sdk: settings from the declaration, partial updates
//! for documents that changed in a few fields, every write awaited until its task
//! succeeded (a failed task is an error carrying Meilisearch's message).

use std::time::Duration;

use futures::{future::BoxFuture, FutureExt};
use meilisearch_sdk::{
    client::Client,
    errors::{Error as MeiliError, ErrorCode},
    search::{MatchingStrategies, Selectors},
    settings::Settings,
    task_info::TaskInfo,
};
use serde_json::Value;

use crate::{
    backend::{EngineError, SearchBackend},
    declaration::{Filter, FilterValue, IndexDeclaration, SearchRequest, SearchResults},
    document::{Body, DocumentChange},
    embedded::hit,
    highlight::QueryWords,
};

/// How long one write may take before it counts as failed (and is retried).
const TASK_TIMEOUT: Duration = Duration::from_secs(60);
const TASK_POLL: Duration = Duration::from_millis(20);

pub struct MeiliBackend {
    client: Client,
    url: String,
}

impl MeiliBackend {
    pub fn new(url: &str, master_key: Option<&str>) -> Result<Self, EngineError> {
        let client = Client::new(url, master_key)
            .map_err(|error| EngineError::Rejected(format!("cannot create the Meilisearch client: {error}")))?;
        Ok(Self { client, url: url.to_string() })
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    async fn wait(&self, task: Result<TaskInfo, MeiliError>, what: &str) -> Result<(), EngineError> {
        let task = task
            .map_err(|error| classify(error, what))?
            .wait_for_completion(&self.client, Some(TASK_POLL), Some(TASK_TIMEOUT))
            .await
            .map_err(|error| classify(error, what))?;
        if task.is_failure() {
            let failure = task.unwrap_failure();
            return Err(EngineError::Rejected(format!(
                "Meilisearch task {what} failed: {} ({:?})",
                failure.error_message, failure.error_code
            )));
        }
        Ok(())
    }
}

/// Communication problems and timeouts are transient; what Meilisearch refused is not.
fn classify(error: MeiliError, what: &str) -> EngineError {
    let message = format!("Meilisearch {what}: {error}");
    match error {
        MeiliError::Meilisearch(_) | MeiliError::ParseError(_) | MeiliError::InvalidRequest => {
            EngineError::Rejected(message)
        }
        _ => EngineError::Unavailable(message),
    }
}

fn is_missing_index(error: &MeiliError) -> bool {
    matches!(error, MeiliError::Meilisearch(e) if e.error_code == ErrorCode::IndexNotFound)
}

/// A filter in Meilisearch's syntax: `status IN ["placed", "confirmed"] AND total_minor >= 100`.
pub fn filter_expression(filters: &[Filter]) -> String {
    let value = |v: &FilterValue| match v {
        FilterValue::Integer(n) => n.to_string(),
        FilterValue::Text(text) => format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\"")),
    };
    let mut parts = Vec::new();
    for filter in filters {
        match filter {
            Filter::Equals { field, value: v } => parts.push(format!("{field} = {}", value(v))),
            Filter::AnyOf { field, values } => {
                parts.push(format!("{field} IN [{}]", values.iter().map(value).collect::<Vec<_>>().join(", ")))
            }
            Filter::Range { field, min, max } => {
                if let Some(min) = min {
                    parts.push(format!("{field} >= {min}"));
                }
                if let Some(max) = max {
                    parts.push(format!("{field} <= {max}"));
                }
            }
        }
    }
    parts.join(" AND ")
}

impl SearchBackend for MeiliBackend {
    fn kind(&self) -> &'static str {
        "meilisearch"
    }

    fn prepare<'a>(
        &'a self,
        index: &'a str,
        declaration: &'static IndexDeclaration,
    ) -> BoxFuture<'a, Result<(), EngineError>> {
        async move {
            match self.client.get_index(index).await {
                Ok(_) => {}
                Err(error) if is_missing_index(&error) => {
                    self.wait(self.client.create_index(index, Some("id")).await, "create index").await?;
                }
                Err(error) => return Err(classify(error, "get index")),
            }
            let names = |fields: Vec<&'static str>| fields;
            let settings = Settings::new()
                .with_searchable_attributes(names(declaration.searchable().map(|f| f.name).collect()))
                .with_filterable_attributes(names(declaration.filterable().map(|f| f.name).collect()))
                .with_sortable_attributes(names(declaration.sortable().map(|f| f.name).collect()));
            self.wait(self.client.index(index).set_settings(&settings).await, "settings").await
        }
        .boxed()
    }

    fn write<'a>(
        &'a self,
        index: &'a str,
        _declaration: &'static IndexDeclaration,
        changes: &'a [DocumentChange],
    ) -> BoxFuture<'a, Result<(), EngineError>> {
        async move {
            let target = self.client.index(index);
            let mut upserts: Vec<&Body> = Vec::new();
            let mut deletes: Vec<&str> = Vec::new();
            for change in changes {
                match change {
                    // Partial: Meilisearch merges the fields into the stored document.
                    DocumentChange::Upsert { changed, .. } => upserts.push(changed),
                    DocumentChange::Delete { id } => deletes.push(id),
                }
            }
            // Each id appears once per batch, so the two tasks never race on a document;
            // Meilisearch runs an index's tasks in order anyway.
            if !upserts.is_empty() {
                self.wait(target.add_or_update(&upserts, Some("id")).await, "document update").await?;
            }
            if !deletes.is_empty() {
                self.wait(target.delete_documents(&deletes).await, "document deletion").await?;
            }
            Ok(())
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
            let target = self.client.index(index);
            let filter = filter_expression(&request.filters);
            let sort: Vec<String> = request
                .sort
                .iter()
                .map(|s| format!("{}:{}", s.field, if s.descending { "desc" } else { "asc" }))
                .collect();
            let sort: Vec<&str> = sort.iter().map(String::as_str).collect();
            let highlighted: Vec<&str> = declaration.searchable().map(|f| f.name).collect();
            let mut query = target.search();
            query
                .with_query(&request.query)
                .with_offset(request.offset)
                .with_limit(request.limit)
                .with_matching_strategy(MatchingStrategies::ALL)
                .with_attributes_to_highlight(Selectors::Some(&highlighted))
                .with_highlight_pre_tag("<em>")
                .with_highlight_post_tag("</em>");
            if !filter.is_empty() {
                query.with_filter(&filter);
            }
            if !sort.is_empty() {
                query.with_sort(&sort);
            }
            let results = match query.execute::<Body>().await {
                Ok(results) => results,
                Err(error) if is_missing_index(&error) => return Ok(SearchResults::default()),
                Err(error) => return Err(classify(error, "search")),
            };
            let total = results.estimated_total_hits.or(results.total_hits).unwrap_or(results.hits.len());
            let hits = results
                .hits
                .into_iter()
                .map(|found| {
                    // The same shape as the embedded engine: only fields with a match.
                    let mut shaped = hit(declaration, found.result, &QueryWords::default());
                    for (field, value) in found.formatted_result.unwrap_or_default() {
                        if !declaration.searchable().any(|f| f.name == field) {
                            continue;
                        }
                        let marked: Vec<String> = match value {
                            Value::String(text) => vec![text],
                            Value::Array(items) => {
                                items.into_iter().filter_map(|v| v.as_str().map(String::from)).collect()
                            }
                            _ => Vec::new(),
                        };
                        let marked: Vec<String> = marked.into_iter().filter(|t| t.contains("<em>")).collect();
                        if !marked.is_empty() {
                            shaped.highlights.insert(field, marked.join(", "));
                        }
                    }
                    shaped
                })
                .collect();
            Ok(SearchResults { hits, total })
        }
        .boxed()
    }

    fn document_count<'a>(
        &'a self,
        index: &'a str,
        _declaration: &'static IndexDeclaration,
    ) -> BoxFuture<'a, Result<u64, EngineError>> {
        async move {
            match self.client.index(index).get_stats().await {
                Ok(stats) => Ok(stats.number_of_documents as u64),
                Err(error) if is_missing_index(&error) => Ok(0),
                Err(error) => Err(classify(error, "stats")),
            }
        }
        .boxed()
    }

    fn delete_index<'a>(&'a self, index: &'a str) -> BoxFuture<'a, Result<(), EngineError>> {
        async move {
            match self.wait(self.client.delete_index(index).await, "delete index").await {
                Err(EngineError::Rejected(message)) if message.contains("IndexNotFound") => Ok(()),
                other => other,
            }
        }
        .boxed()
    }

    fn check(&self) -> BoxFuture<'_, Result<(), EngineError>> {
        async move { self.client.health().await.map(|_| ()).map_err(|error| classify(error, "health")) }.boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_become_meilisearch_expressions() {
        let filters = vec![
            Filter::AnyOf {
                field: "status".into(),
                values: vec![FilterValue::Text("placed".into()), FilterValue::Text("say \"hi\"".into())],
            },
            Filter::Range { field: "total_minor".into(), min: Some(100), max: Some(500) },
        ];
        assert_eq!(
            filter_expression(&filters),
            r#"status IN ["placed", "say \"hi\""] AND total_minor >= 100 AND total_minor <= 500"#
        );
    }
}
