//! `search(index, query, filter, sort, first, after)`: the configured search engine's
//! hits, resolved to the read models' own types (an order hit is an `Order`).

use std::collections::HashMap;

use async_graphql::{
    connection::Edge, dataloader::DataLoader, Context, Enum, Error, InputObject, Object, SimpleObject, Union,
};
use uuid::Uuid;
use vectis_search::{
    declaration::{FieldKind, Filter, FilterValue, SearchError, SearchRequest, Sort},
    SearchEngine,
};

use super::{
    accounts::Account,
    inventory::InventoryItem,
    loaders::{Accounts, Items, Orders},
    orders::Order,
};
use crate::{
    db::ReadDb,
    errors,
    pagination::{self, ConnectionTotals, Page},
};

#[derive(Enum, Copy, Clone, Debug, PartialEq, Eq)]
pub enum SearchIndex {
    Orders,
    Accounts,
    Products,
}

impl SearchIndex {
    fn name(self) -> &'static str {
        match self {
            Self::Orders => "orders",
            Self::Accounts => "accounts",
            Self::Products => "products",
        }
    }
}

/// One condition on a filterable field: `equals`, `anyOf`, or a `min`/`max` range
/// (inclusive; numeric fields). Values of numeric fields are written as text.
#[derive(InputObject, Debug, Clone)]
pub struct SearchFilter {
    pub field: String,
    pub equals: Option<String>,
    pub any_of: Option<Vec<String>>,
    pub min: Option<i64>,
    pub max: Option<i64>,
}

#[derive(InputObject, Debug, Clone)]
pub struct SearchSort {
    pub field: String,
    #[graphql(default)]
    pub descending: bool,
}

#[derive(Union, Clone)]
pub enum SearchNode {
    Order(Order),
    Account(Account),
    InventoryItem(InventoryItem),
}

/// A searchable field's text with the matched words in `<em>`.
#[derive(SimpleObject, Clone)]
pub struct Highlight {
    pub field: String,
    pub text: String,
}

#[derive(SimpleObject, Clone)]
pub struct SearchHit {
    /// The order id, account id or SKU.
    pub id: String,
    pub highlights: Vec<Highlight>,
    /// The read model's row; null while the read model has not caught up with the
    /// search index.
    pub node: Option<SearchNode>,
}

#[derive(Default)]
pub struct SearchQueries;

fn filters(index: &str, given: Vec<SearchFilter>) -> Result<Vec<Filter>, Error> {
    let declaration = vectis_search::declaration(index).map_err(|e| errors::bad_input(e.to_string()))?;
    given
        .into_iter()
        .map(|f| {
            let numeric = declaration
                .field(&f.field)
                .is_some_and(|spec| matches!(spec.kind, FieldKind::Integer | FieldKind::Timestamp));
            let name = f.field.clone();
            let value = |text: String| -> Result<FilterValue, Error> {
                if numeric {
                    text.parse()
                        .map(FilterValue::Integer)
                        .map_err(|_| errors::bad_input(format!("filter on {name:?} takes whole numbers, not {text:?}")))
                } else {
                    Ok(FilterValue::Text(text))
                }
            };
            match (f.equals, f.any_of, f.min, f.max) {
                (Some(equals), None, None, None) => Ok(Filter::Equals { field: f.field, value: value(equals)? }),
                (None, Some(values), None, None) => Ok(Filter::AnyOf {
                    field: f.field,
                    values: values.into_iter().map(value).collect::<Result<_, _>>()?,
                }),
                (None, None, min, max) if min.is_some() || max.is_some() => {
                    Ok(Filter::Range { field: f.field, min, max })
                }
                _ => Err(errors::bad_input(format!(
                    "filter on {:?}: give one of equals, anyOf, or min and/or max",
                    f.field
                ))),
            }
        })
        .collect()
}

#[Object]
impl SearchQueries {
    /// Typo-tolerant full-text search; the last word matches as a prefix. Without
    /// `sort`, best matches first.
    #[graphql(complexity = "pagination::complexity(first, child_complexity)")]
    #[allow(clippy::too_many_arguments)] // one per GraphQL argument
    async fn search(
        &self,
        ctx: &Context<'_>,
        index: SearchIndex,
        #[graphql(default)] query: String,
        #[graphql(default)] filter: Vec<SearchFilter>,
        sort: Option<SearchSort>,
        first: Option<i32>,
        after: Option<String>,
    ) -> Result<Page<SearchHit>, Error> {
        let list = format!("search.{}", index.name());
        let limit = pagination::page_size(first)?;
        let offset: usize = pagination::decode::<usize>(&list, after.as_deref())?.map_or(0, |last| last + 1);
        let mut request = SearchRequest::new(query);
        request.filters = filters(index.name(), filter)?;
        request.sort = sort.map(|s| Sort { field: s.field, descending: s.descending }).into_iter().collect();
        request.offset = offset;
        request.limit = limit as usize;
        let engine = ctx.data_unchecked::<SearchEngine>();
        let db = ctx.data_unchecked::<ReadDb>();
        let results = engine.search(&db.pool, index.name(), &request).await.map_err(|error| match error {
            SearchError::Invalid(message) | SearchError::UnknownIndex(message) => errors::bad_input(message),
            SearchError::Unavailable(detail) => {
                tracing::error!(%detail, "search failed");
                errors::coded("search is unavailable; try again", errors::UNAVAILABLE)
            }
        })?;
        let ids: Vec<String> = results.hits.iter().map(|h| h.id.clone()).collect();
        let mut nodes = resolve(ctx, index, &ids).await?;
        let has_next = offset + results.hits.len() < results.total;
        let mut page =
            Page::with_additional_fields(offset > 0, has_next, ConnectionTotals { total_count: results.total as i64 });
        for (position, hit) in results.hits.into_iter().enumerate() {
            let highlights =
                hit.highlights.into_iter().map(|(field, text)| Highlight { field, text }).collect::<Vec<_>>();
            let node = nodes.remove(&hit.id);
            let cursor = pagination::encode(&list, &(offset + position));
            page.edges.push(Edge::new(cursor, SearchHit { id: hit.id, highlights, node }));
        }
        Ok(page)
    }
}

/// The read-model rows of the hits, through the request's DataLoaders.
async fn resolve(ctx: &Context<'_>, index: SearchIndex, ids: &[String]) -> Result<HashMap<String, SearchNode>, Error> {
    let uuids = || ids.iter().filter_map(|id| Uuid::parse_str(id).ok()).collect::<Vec<_>>();
    Ok(match index {
        SearchIndex::Orders => {
            let found = ctx.data_unchecked::<DataLoader<Orders>>().load_many(uuids()).await?;
            found.into_iter().map(|(id, order)| (id.to_string(), SearchNode::Order(order))).collect()
        }
        SearchIndex::Accounts => {
            let found = ctx.data_unchecked::<DataLoader<Accounts>>().load_many(uuids()).await?;
            found.into_iter().map(|(id, account)| (id.to_string(), SearchNode::Account(account))).collect()
        }
        SearchIndex::Products => {
            let found = ctx.data_unchecked::<DataLoader<Items>>().load_many(ids.to_vec()).await?;
            found.into_iter().map(|(sku, item)| (sku, SearchNode::InventoryItem(item))).collect()
        }
    })
}
