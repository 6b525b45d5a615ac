//! The projections (DESIGN.md, "Projectors"): the PostgreSQL read models and the search
//! indexes, each a handler on the consumer runtime (`vectis-consumer`), with their
//! tables, blue/green rebuild and the `vectis-projectors` process.
//!
//! - [`projection`]: what a read model adds to a handler — its tables and views.
//! - [`store`]: versioned table sets and the `read` views over the active one.
//! - [`read_models`]: accounts, inventory, orders.
//! - [`search`]: the search projections (the engines are `vectis-search`).
//! - [`rebuild`]: blue/green rebuild of a projection into a new version.
//! - [`republish`]: republishing the log to a new broker.
//! - [`process`]: the `vectis-projectors` process.

pub mod process;
pub mod projection;
pub mod read_models;
pub mod rebuild;
pub mod republish;
pub mod reset;
pub mod search;
pub mod store;
