//! The read models' pool. Every statement the service sends goes through
//! [`ReadDb::counted`], so `/metrics` shows how many a query cost (and tests prove that
//! a page's cost does not grow with its size).

use std::future::Future;

use prometheus_client::{metrics::counter::Counter, registry::Registry};
use sqlx::PgPool;

use crate::errors;

/// `vectis_query_sql_statements_total`.
pub const SQL_STATEMENTS: &str = "vectis_query_sql_statements";

#[derive(Clone, Debug)]
pub struct ReadDb {
    pub pool: PgPool,
    statements: Counter,
}

impl ReadDb {
    pub fn new(pool: PgPool) -> Self {
        Self { pool, statements: Counter::default() }
    }

    pub fn register(&self, registry: &mut Registry) {
        registry.register(SQL_STATEMENTS, "SQL statements sent to the read models", self.statements.clone());
    }

    pub fn statements(&self) -> u64 {
        self.statements.get()
    }

    /// Runs one statement, counting it; a failure becomes an `UNAVAILABLE` error.
    pub async fn counted<T>(
        &self,
        statement: impl Future<Output = Result<T, sqlx::Error>>,
    ) -> Result<T, async_graphql::Error> {
        self.counted_as(1, statement).await
    }

    /// As [`Self::counted`], for a read-side call that sends `statements` statements.
    pub async fn counted_as<T>(
        &self,
        statements: u64,
        call: impl Future<Output = Result<T, sqlx::Error>>,
    ) -> Result<T, async_graphql::Error> {
        self.statements.inc_by(statements);
        call.await.map_err(errors::unavailable)
    }
}
