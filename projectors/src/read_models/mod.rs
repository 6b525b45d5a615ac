//! The PostgreSQL read models. Each folds a batch of events in memory over the rows
//! they touch (read once, with `= ANY`), then writes the changed rows back with one
//! `UNNEST` upsert per table: a batch costs a few statements however many events it holds.

pub mod accounts;
pub mod inventory;
pub mod orders;

use std::sync::Arc;

use crate::projection::Projection;

/// Every read model, in the order they are installed.
pub fn all() -> Vec<Arc<dyn Projection>> {
    vec![Arc::new(accounts::Accounts), Arc::new(inventory::Inventory), Arc::new(orders::Orders)]
}
