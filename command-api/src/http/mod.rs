//! The command API over HTTP. Each area owns its `router()`; [`app`] merges them and
//! adds what every route shares: the body and time limits, rate limiting and HTTP metrics.

pub(crate) mod accounts;
pub mod command;
pub mod fields;
pub mod imports;
pub(crate) mod inventory;
pub mod json;
pub mod openapi;
mod openapi_links;
mod orders;
mod path;
pub mod problem;
mod recurring_orders;
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

use utoipa_axum::router::OpenApiRouter;
use utoipa_swagger_ui::SwaggerUi;

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
    /// The shortest interval a recurring order may have (`RECURRING_ORDER_MIN_INTERVAL`).
    pub recurring_min_interval: Duration,
    /// Runs the imports uploaded to `/v1/imports`.
    pub imports: imports::ImportWorker,
}

/// Every command route, each group behind the scope it needs, without the shared
/// layers, together with its OpenAPI description.
pub fn router(keys: &ApiKeys) -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .merge(accounts::router(keys))
        .merge(inventory::router(keys))
        .merge(orders::router(keys))
        .merge(recurring_orders::router(keys))
        .merge(streams::router(keys))
        .merge(imports::router(keys))
}

/// Puts `routes` behind an API key with `scope`.
fn scoped(routes: OpenApiRouter<AppState>, keys: &ApiKeys, scope: Scope) -> OpenApiRouter<AppState> {
    routes.route_layer(middleware::from_fn_with_state((keys.clone(), scope), require_scope))
}

/// The command API as served: routes, body limit, time limit, rate limiting (before
/// authentication, so a flood never reaches the key store), HTTP metrics (which count
/// the 429s too). The OpenAPI document and Swagger UI are served beside them, open to
/// anyone.
pub fn app(state: AppState, metrics: HttpMetrics) -> Router {
    let (routes, doc) = router(&state.keys).split_for_parts();
    let docs = SwaggerUi::new(openapi::DOCS_PATH).url(openapi::OPENAPI_PATH, openapi::complete(doc));
    routes
        .fallback(path::no_route)
        .method_not_allowed_fallback(path::method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .route_layer(middleware::from_fn_with_state(state.request_timeout, time_limit))
        .route_layer(middleware::from_fn_with_state(state.rate_limiter.clone(), rate_limit))
        .route_layer(middleware::from_fn_with_state(metrics, track_http))
        .with_state(state)
        .merge(docs)
        .layer(middleware::from_fn(request_id))
}

async fn time_limit(State(limit): State<Duration>, request: Request, next: Next) -> Response {
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => problem::ApiError::Timeout(limit).into_response(),
    }
}
