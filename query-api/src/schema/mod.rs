//! The GraphQL schema: the query root, the read-model types and their relations.

pub mod accounts;
pub mod inventory;
pub mod loaders;
pub mod orders;
pub mod projections;
pub mod recurring_orders;
pub mod search;
pub mod workflows;

use async_graphql::{
    dataloader::DataLoader, EmptyMutation, EmptySubscription, MergedObject, Object, Request, Schema, SimpleObject,
};

use vectis_search::SearchEngine;

use crate::db::ReadDb;

pub type QuerySchema = Schema<QueryRoot, EmptyMutation, EmptySubscription>;

/// Deepest selection accepted (`orders → edges → node → account → orders → …`).
pub const MAX_DEPTH: usize = 12;
/// Most fields a query may select, each connection counting its page size times its
/// selection.
pub const MAX_COMPLEXITY: usize = 20_000;

/// Money in minor units (cents) and its ISO 4217 currency.
#[derive(SimpleObject, Debug, Clone, PartialEq, Eq)]
pub struct Money {
    pub amount_minor: i64,
    pub currency: String,
}

impl Money {
    pub fn new(amount_minor: i64, currency: &str) -> Self {
        Self { amount_minor, currency: currency.to_string() }
    }
}

/// Every query field: each area's fields in its own module, merged.
#[derive(MergedObject, Default)]
pub struct QueryRoot(
    HealthQuery,
    orders::OrderQueries,
    accounts::AccountQueries,
    inventory::InventoryQueries,
    search::SearchQueries,
    projections::ProjectionQueries,
    workflows::WorkflowQueries,
    recurring_orders::RecurringOrderQueries,
);

#[derive(Default)]
pub struct HealthQuery;

#[Object]
impl HealthQuery {
    /// Answers when the service is up.
    async fn health(&self) -> &'static str {
        "Vectis Commerce API is healthy"
    }
}

/// The schema with its limits; introspection off in production.
/// A status filter, read against the words the read models store (the read-side
/// contract's enums).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusFilter<S> {
    /// No filter.
    Any,
    Only(S),
    /// A word no row holds: the answer is empty, without asking the database.
    Unmatchable,
}

impl<S: std::str::FromStr> StatusFilter<S> {
    pub fn parse(word: Option<&str>) -> Self {
        match word.map(str::parse) {
            None => Self::Any,
            Some(Ok(status)) => Self::Only(status),
            Some(Err(_)) => Self::Unmatchable,
        }
    }
}

pub fn build(db: ReadDb, search: SearchEngine, introspection: bool) -> QuerySchema {
    let builder = Schema::build(QueryRoot::default(), EmptyMutation, EmptySubscription)
        .data(db)
        .data(search)
        .limit_depth(MAX_DEPTH)
        .limit_complexity(MAX_COMPLEXITY);
    if introspection {
        builder.finish()
    } else {
        builder.disable_introspection().finish()
    }
}

/// `request` with this request's DataLoaders: each request batches and caches its own
/// loads, so one page costs a constant number of statements.
pub fn with_loaders(request: Request, db: &ReadDb) -> Request {
    request
        .data(loader(loaders::Accounts(db.clone())))
        .data(loader(loaders::Orders(db.clone())))
        .data(loader(loaders::AccountOrders(db.clone())))
        .data(loader(loaders::Items(db.clone())))
        .data(loader(loaders::OrderLines(db.clone())))
        .data(loader(loaders::StatusHistory(db.clone())))
        .data(loader(loaders::Reservations(db.clone())))
}

/// How long a loader collects keys before it runs its batch. async-graphql's 1 ms let a
/// busy machine (two cores, a test suite beside) split one page's loads into two batches
/// when the resolvers of its nodes were preempted mid-way: 6 statements instead of 5.
const LOADER_BATCH_WINDOW: std::time::Duration = std::time::Duration::from_millis(5);

fn loader<T: Send + Sync + 'static>(load: T) -> DataLoader<T> {
    DataLoader::new(load, tokio::spawn).delay(LOADER_BATCH_WINDOW)
}
