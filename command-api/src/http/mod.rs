//! The command API over HTTP. Each area owns its `router()`; [`app`] merges them and
//! adds what every route shares: the body limit and HTTP metrics.

mod accounts;
pub mod command;
mod inventory;
pub mod json;
mod orders;
pub mod problem;
mod streams;

use std::time::Duration;

use axum::{extract::DefaultBodyLimit, middleware, Router};
use vectis_runtime::http_metrics::{track_http, HttpMetrics};

use crate::handling::CommandHandler;

/// Largest command body accepted (413 above).
pub const MAX_BODY_BYTES: usize = 64 * 1024;

#[derive(Clone)]
pub struct AppState {
    pub handler: CommandHandler,
    pub idempotency_retention: Duration,
}

/// Every command route, without the shared layers.
pub fn router() -> Router<AppState> {
    Router::new().merge(accounts::router()).merge(inventory::router()).merge(orders::router()).merge(streams::router())
}

/// The command API as served: routes, body limit, HTTP metrics.
pub fn app(state: AppState, metrics: HttpMetrics) -> Router {
    router()
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .route_layer(middleware::from_fn_with_state(metrics, track_http))
        .with_state(state)
}
