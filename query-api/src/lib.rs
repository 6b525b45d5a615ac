//! The query side (DESIGN.md, "Query side"): a GraphQL service over the read models
//! (`read.*` views) and search, on axum.
//!
//! - [`schema`]: the GraphQL types and resolvers (orders, accounts, inventory), with
//!   DataLoaders for every relation ([`schema::loaders`]).
//! - [`pagination`]: Relay cursor connections: `first` 1–100, opaque keyset cursors.
//! - [`consistency`]: read-your-writes with a command's consistency token.
//! - [`db`]: the read models' pool; every statement is counted (`/metrics`).
//! - [`errors`]: GraphQL errors with stable `code` extensions.
//! - [`http`]: `/graphql` (and GraphiQL outside production) behind API keys with the
//!   `read` scope, rate limiting and HTTP metrics.
//! - [`graphiql`]: the GraphiQL page and its assets, served from the binary (works offline).
//! - [`process`]: settings and wiring of the `vectis-query-api` process.

pub mod consistency;
pub mod db;
pub mod errors;
pub mod graphiql;
pub mod http;
pub mod pagination;
pub mod process;
pub mod schema;
