//! The command API over HTTP. Each area owns its `router()`; [`app`] merges them and
//! adds what every route shares: the body and time limits, rate limiting and HTTP metrics.

mod accounts;
pub mod command;
mod inventory;
pub mod json;
mod orders;
pub mod problem;
mod streams;

use std::time::Duration;

use axum::{
    extract::{DefaultBodyLimit, Request, State},
    middleware::{self, Next},
    response::{IntoResponse, Response},
    Router,
};
use vectis_runtime::{
    auth::{require_scope, ApiKeys, Scope},
    http_metrics::{track_http, HttpMetrics},
    rate_limit::{rate_limit, RateLimiter},
    request_id::request_id,
};

use crate::handling::CommandHandler;

/// Largest command body accepted (413 above).
pub const MAX_BODY_BYTES: usize = 64 * 1024;

#[derive(Clone)]
pub struct AppState {
    pub handler: CommandHandler,
    pub keys: ApiKeys,
    pub rate_limiter: RateLimiter,
    pub idempotency_retention: Duration,
    /// A request still running after this is answered 503. Its work is dropped, but a
    /// commit already sent may still take effect: the answer says to retry with the
    /// same Idempotency-Key, which replays it or runs it once.
    pub request_timeout: Duration,
}

/// Every command route, each group behind the scope it needs, without the shared layers.
pub fn router(keys: &ApiKeys) -> Router<AppState> {
    Router::new()
        .merge(accounts::router(keys))
        .merge(inventory::router(keys))
        .merge(orders::router(keys))
        .merge(streams::router(keys))
}

/// Puts `routes` behind an API key with `scope`.
fn scoped(routes: Router<AppState>, keys: &ApiKeys, scope: Scope) -> Router<AppState> {
    routes.route_layer(middleware::from_fn_with_state((keys.clone(), scope), require_scope))
}

/// The command API as served: routes, body limit, time limit, rate limiting (before
/// authentication, so a flood never reaches the key store), HTTP metrics (which count
/// the 429s too).
pub fn app(state: AppState, metrics: HttpMetrics) -> Router {
    router(&state.keys)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .route_layer(middleware::from_fn_with_state(state.request_timeout, time_limit))
        .route_layer(middleware::from_fn_with_state(state.rate_limiter.clone(), rate_limit))
        .route_layer(middleware::from_fn_with_state(metrics, track_http))
        .layer(middleware::from_fn(request_id))
        .with_state(state)
}

async fn time_limit(State(limit): State<Duration>, request: Request, next: Next) -> Response {
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => problem::ApiError::Timeout(limit).into_response(),
    }
}
