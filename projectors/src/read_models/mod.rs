//! The PostgreSQL read models. Each folds a batch of events in memory over the rows
//! they touch (read once, with `= ANY`), then writes the changed rows back with one
//! `UNNEST` upsert per table: a batch costs a few statements however many events it holds.

/// Declares read model `$model`: a handler whose apply is its module's
/// `apply(conn, schema, events)` (SQL only, so every failure is a database error), and
/// a projection with the tables `$ddl` creates and `$tables` exposes as `read.*` views.
macro_rules! read_model {
    ($model:ty, $spec:expr, $ddl:expr, $tables:expr) => {
        impl vectis_consumer::handler::Handler for $model {
            fn spec(&self) -> &'static vectis_read_side::ProjectionSpec {
                &$spec
            }

            fn apply<'a>(
                &'a self,
                conn: &'a mut sqlx::PgConnection,
                schema: &'a str,
                events: &'a [vectis_consumer::event::ProjectedEvent],
            ) -> futures::future::BoxFuture<'a, Result<(), vectis_consumer::handler::ApplyError>> {
                use futures::{FutureExt, TryFutureExt};
                apply(conn, schema, events).map_err(vectis_consumer::handler::ApplyError::from).boxed()
            }
        }

        impl crate::projection::Projection for $model {
            fn tables_ddl(&self) -> &'static str {
                $ddl
            }

            fn tables(&self) -> &'static [&'static str] {
                $tables
            }
        }
    };
}

pub mod accounts;
pub mod inventory;
pub mod orders;
pub mod recurring_orders;

use std::sync::Arc;

use crate::projection::Projection;

/// Every read model, in the order they are installed.
pub fn all() -> Vec<Arc<dyn Projection>> {
    vec![
        Arc::new(accounts::Accounts),
        Arc::new(inventory::Inventory),
        Arc::new(orders::Orders),
        Arc::new(recurring_orders::RecurringOrders),
    ]
}
