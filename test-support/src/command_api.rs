//! The command API's router over a test database, called in process, and a request
//! sender that returns status, content type, headers and body bytes.

use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr},
    time::Duration,
};

use axum::{
    body::{to_bytes, Body},
    extract::connect_info::MockConnectInfo,
    http::{header, HeaderMap, Request, StatusCode},
    Router,
};
use prometheus_client::registry::Registry;
use serde_json::Value;
use sqlx::PgPool;
use tower::ServiceExt;
use vectis_command_api::{
    handling::CommandHandler,
    http::{app, AppState},
};
use vectis_runtime::{
    auth::{ApiKeys, Scope},
    http_metrics::HttpMetrics,
    rate_limit::{RateLimiter, TrustedProxies},
};

/// The command API under test, and an admin key that `send` presents unless a test
/// sends its own `Authorization` header.
pub struct TestApi {
    pub router: Router,
    pub key: String,
    pub keys: ApiKeys,
    pub rate_limiter: RateLimiter,
}

pub async fn command_api(pool: PgPool) -> (TestApi, HttpMetrics) {
    command_api_with_timeout(pool, Duration::from_secs(30)).await
}

pub async fn command_api_with_timeout(pool: PgPool, request_timeout: Duration) -> (TestApi, HttpMetrics) {
    command_api_configured(pool, request_timeout, TrustedProxies::none(), PEER).await
}

/// The peer address every test request comes from.
pub const PEER: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// The command API with the rate-limit policies in the test database (loaded now and
/// reloaded on change), `trusted` proxies, and requests arriving from `peer`.
pub async fn command_api_configured(
    pool: PgPool,
    request_timeout: Duration,
    trusted: TrustedProxies,
    peer: IpAddr,
) -> (TestApi, HttpMetrics) {
    let rate_limiter = RateLimiter::start(pool.clone(), trusted).await.expect("rate-limit policies load");
    let keys = ApiKeys::new(pool.clone());
    let (_, key) = keys.create("test-admin", &[Scope::Admin]).await.expect("admin key");
    let store = crate::event_store(pool);
    let metrics = HttpMetrics::register(&mut Registry::default());
    let handler = CommandHandler::new(store);
    let importer = vectis_command_api::imports::Importer::new(handler.clone(), 100);
    let state = AppState {
        imports: vectis_command_api::http::imports::ImportWorker::new(importer, 1 << 20),
        handler,
        keys: keys.clone(),
        rate_limiter: rate_limiter.clone(),
        idempotency_retention: Duration::from_secs(86_400),
        request_timeout,
        // Tests run recurring orders every second or two.
        recurring_min_interval: Duration::from_secs(1),
    };
    let router = app(state, metrics.clone()).layer(MockConnectInfo(SocketAddr::new(peer, 40_000)));
    (TestApi { router, key, keys, rate_limiter }, metrics)
}

pub struct Answer {
    pub status: StatusCode,
    pub content_type: String,
    pub headers: HeaderMap,
    pub bytes: Vec<u8>,
}

impl Answer {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.bytes)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", String::from_utf8_lossy(&self.bytes)))
    }
}

pub async fn send(app: &TestApi, method: &str, uri: &str, headers: &[(&str, &str)], body: impl Into<Body>) -> Answer {
    let mut request = Request::builder().method(method).uri(uri);
    if !headers.iter().any(|(name, _)| name.eq_ignore_ascii_case("authorization")) {
        request = request.header("authorization", format!("Bearer {}", app.key));
    }
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = app.router.clone().oneshot(request.body(body.into()).expect("request")).await.expect("response");
    let status = response.status();
    let content_type =
        response.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
    let headers = response.headers().clone();
    let bytes = to_bytes(response.into_body(), 1 << 20).await.expect("body").to_vec();
    Answer { status, content_type, headers, bytes }
}

pub const JSON: (&str, &str) = ("content-type", "application/json");

pub fn handler(pool: PgPool) -> CommandHandler {
    CommandHandler::new(crate::event_store(pool))
}
