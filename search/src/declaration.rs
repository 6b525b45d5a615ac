//! What an index is and how it is queried, independent of the engine: each index
//! declares its fields once (searchable, filterable, sortable), both backends build
//! their settings from that declaration, and both answer the same request with the
//! same result shape.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A field's type, as both engines store it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldKind {
    /// Words: tokenized for full-text search.
    Text,
    /// One exact value (an id, a status, a currency).
    Keyword,
    /// Several exact values (an order's SKUs).
    Keywords,
    /// A whole number (money in minor units, quantities).
    Integer,
    /// A point in time, as Unix milliseconds.
    Timestamp,
}

#[derive(Debug, Clone, Copy)]
pub struct FieldSpec {
    pub name: &'static str,
    pub kind: FieldKind,
    pub searchable: bool,
    pub filterable: bool,
    pub sortable: bool,
}

/// One index: its name and fields. The engine's document key is always `id`.
#[derive(Debug)]
pub struct IndexDeclaration {
    pub name: &'static str,
    /// The search projection that builds it (its consumer group and PostgreSQL state).
    pub projection: &'static vectis_read_side::ProjectionSpec,
    /// The field hits are identified by (`id`, or `sku` for products).
    pub entity_field: &'static str,
    pub fields: &'static [FieldSpec],
}

impl IndexDeclaration {
    pub fn field(&self, name: &str) -> Option<&FieldSpec> {
        self.fields.iter().find(|f| f.name == name)
    }

    /// Searchable fields, in ranking order (earlier fields weigh more in Meilisearch).
    pub fn searchable(&self) -> impl Iterator<Item = &FieldSpec> {
        self.fields.iter().filter(|f| f.searchable)
    }

    pub fn filterable(&self) -> impl Iterator<Item = &FieldSpec> {
        self.fields.iter().filter(|f| f.filterable)
    }

    pub fn sortable(&self) -> impl Iterator<Item = &FieldSpec> {
        self.fields.iter().filter(|f| f.sortable)
    }

    /// Checks a request against the declaration: every filter and sort names a field
    /// declared for it, with a value of the field's type.
    pub fn validate(&self, request: &SearchRequest) -> Result<(), SearchError> {
        if !(1..=MAX_LIMIT).contains(&request.limit) {
            return Err(SearchError::Invalid(format!("limit must be 1 to {MAX_LIMIT}, not {}", request.limit)));
        }
        if request.query.len() > MAX_QUERY_BYTES {
            return Err(SearchError::Invalid(format!("the query is longer than {MAX_QUERY_BYTES} bytes")));
        }
        for filter in &request.filters {
            let name = filter.field();
            let field = self.field(name).filter(|f| f.filterable).ok_or_else(|| {
                SearchError::Invalid(format!(
                    "{}: {name:?} is not filterable; filterable: {}",
                    self.name,
                    self.filterable().map(|f| f.name).collect::<Vec<_>>().join(", ")
                ))
            })?;
            let numeric = matches!(field.kind, FieldKind::Integer | FieldKind::Timestamp);
            let fits = match filter {
                Filter::Equals { value, .. } => value.is_integer() == numeric,
                Filter::AnyOf { values, .. } => !values.is_empty() && values.iter().all(|v| v.is_integer() == numeric),
                Filter::Range { min, max, .. } => numeric && (min.is_some() || max.is_some()),
            };
            if !fits {
                let expected = if numeric { "whole numbers (ranges allowed)" } else { "text values (no ranges)" };
                return Err(SearchError::Invalid(format!("{}: filter on {name:?} takes {expected}", self.name)));
            }
        }
        if request.sort.len() > 1 {
            return Err(SearchError::Invalid("sort by one field at most".into()));
        }
        for sort in &request.sort {
            if !self.field(&sort.field).is_some_and(|f| f.sortable) {
                return Err(SearchError::Invalid(format!(
                    "{}: {:?} is not sortable; sortable: {}",
                    self.name,
                    sort.field,
                    self.sortable().map(|f| f.name).collect::<Vec<_>>().join(", ")
                )));
            }
        }
        Ok(())
    }
}

pub const MAX_LIMIT: usize = 100;
pub const MAX_QUERY_BYTES: usize = 512;

/// A filter value: text for keyword fields, a whole number for numeric ones.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum FilterValue {
    Integer(i64),
    Text(String),
}

impl FilterValue {
    fn is_integer(&self) -> bool {
        matches!(self, Self::Integer(_))
    }
}

/// Filters are combined with AND.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Filter {
    Equals {
        field: String,
        value: FilterValue,
    },
    AnyOf {
        field: String,
        values: Vec<FilterValue>,
    },
    /// Inclusive bounds on a numeric field.
    Range {
        field: String,
        min: Option<i64>,
        max: Option<i64>,
    },
}

impl Filter {
    pub fn field(&self) -> &str {
        match self {
            Self::Equals { field, .. } | Self::AnyOf { field, .. } | Self::Range { field, .. } => field,
        }
    }

    /// Parses the operator syntax of the CLI: `status=placed`, `status=placed,confirmed`,
    /// `total_minor>=100`, `placed_at<=1795520512000`.
    pub fn parse(text: &str) -> Result<Self, SearchError> {
        let invalid =
            || SearchError::Invalid(format!("filter {text:?}: expected field=value[,value…], field>=n or field<=n"));
        let value =
            |raw: &str| raw.parse::<i64>().map_or_else(|_| FilterValue::Text(raw.to_string()), FilterValue::Integer);
        if let Some((field, bound)) = text.split_once(">=") {
            let min = bound.trim().parse().map_err(|_| invalid())?;
            return Ok(Self::Range { field: field.trim().into(), min: Some(min), max: None });
        }
        if let Some((field, bound)) = text.split_once("<=") {
            let max = bound.trim().parse().map_err(|_| invalid())?;
            return Ok(Self::Range { field: field.trim().into(), min: None, max: Some(max) });
        }
        let (field, values) = text.split_once('=').ok_or_else(invalid)?;
        let values: Vec<FilterValue> = values.split(',').map(str::trim).filter(|v| !v.is_empty()).map(value).collect();
        match values.len() {
            0 => Err(invalid()),
            1 => Ok(Self::Equals { field: field.trim().into(), value: values.into_iter().next().ok_or_else(invalid)? }),
            _ => Ok(Self::AnyOf { field: field.trim().into(), values }),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sort {
    pub field: String,
    pub descending: bool,
}

impl Sort {
    /// `placed_at:desc`, `name` (ascending), `total_minor:asc`.
    pub fn parse(text: &str) -> Result<Self, SearchError> {
        let (field, direction) = text.split_once(':').unwrap_or((text, "asc"));
        let descending = match direction {
            "asc" => false,
            "desc" => true,
            other => return Err(SearchError::Invalid(format!("sort direction {other:?}: expected asc or desc"))),
        };
        Ok(Self { field: field.trim().into(), descending })
    }
}

/// One search. An empty query matches every document (then filters and sort decide).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SearchRequest {
    pub query: String,
    pub filters: Vec<Filter>,
    pub sort: Vec<Sort>,
    pub offset: usize,
    pub limit: usize,
}

impl SearchRequest {
    pub fn new(query: impl Into<String>) -> Self {
        Self { query: query.into(), filters: Vec::new(), sort: Vec::new(), offset: 0, limit: 20 }
    }
}

/// One hit: the entity's id (order id, account id, SKU), the highlighted searchable
/// fields that matched (matches wrapped in `<em>`), and the indexed document.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Hit {
    pub id: String,
    pub highlights: BTreeMap<String, String>,
    pub document: serde_json::Map<String, serde_json::Value>,
}

/// The default is no hits: an index nothing was written to yet.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct SearchResults {
    pub hits: Vec<Hit>,
    /// Documents matching in all (Meilisearch: its estimate).
    pub total: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum SearchError {
    /// The caller's mistake: 4xx.
    #[error("{0}")]
    Invalid(String),
    #[error("no search index {0:?}; known: orders, accounts, products")]
    UnknownIndex(String),
    /// The engine or the database failed: 5xx.
    #[error("search engine unavailable: {0}")]
    Unavailable(String),
}

impl From<sqlx::Error> for SearchError {
    fn from(error: sqlx::Error) -> Self {
        Self::Unavailable(error.to_string())
    }
}

/// Typo budget per word, as Meilisearch counts it: none under 5 letters, one up to 8,
/// two from 9. The embedded backend uses the same rule.
pub fn typo_budget(word: &str) -> u8 {
    match word.chars().count() {
        0..=4 => 0,
        5..=8 => 1,
        _ => 2,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_parse_from_the_cli_syntax() {
        assert_eq!(
            Filter::parse("status=placed").expect("parses"),
            Filter::Equals { field: "status".into(), value: FilterValue::Text("placed".into()) }
        );
        assert_eq!(
            Filter::parse("status=placed,confirmed").expect("parses"),
            Filter::AnyOf {
                field: "status".into(),
                values: vec![FilterValue::Text("placed".into()), FilterValue::Text("confirmed".into())]
            }
        );
        assert_eq!(
            Filter::parse("total_minor>=100").expect("parses"),
            Filter::Range { field: "total_minor".into(), min: Some(100), max: None }
        );
        assert!(Filter::parse("status").is_err());
        assert!(Filter::parse("total_minor>=lots").is_err());
        assert_eq!(
            Sort::parse("placed_at:desc").expect("parses"),
            Sort { field: "placed_at".into(), descending: true }
        );
        assert!(Sort::parse("name:sideways").is_err());
    }

    #[test]
    fn typo_budget_follows_word_length() {
        assert_eq!([typo_budget("bolt"), typo_budget("screw"), typo_budget("fasteners")], [0, 1, 2]);
    }
}
