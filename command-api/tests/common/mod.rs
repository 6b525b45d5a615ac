//! Helpers shared by the HTTP tests: the command API over a test database, and a
//! request sender that returns status, content type and body bytes.

#![allow(dead_code)]

use std::{sync::Arc, time::Duration};

use axum::{
    body::{to_bytes, Body},
    http::{header, Request, StatusCode},
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
use vectis_event_store::{EventStore, StoreMetrics};
use vectis_runtime::{
    auth::{ApiKeys, Scope},
    http_metrics::HttpMetrics,
};
use vectis_schemas::{SchemaCatalog, SchemaMode};

/// The command API under test, and an admin key that `send` presents unless a test
/// sends its own `Authorization` header.
pub struct TestApi {
    pub router: Router,
    pub key: String,
    pub keys: ApiKeys,
}

pub async fn command_api(pool: PgPool) -> (TestApi, HttpMetrics) {
    command_api_with_timeout(pool, Duration::from_secs(30)).await
}

pub async fn command_api_with_timeout(pool: PgPool, request_timeout: Duration) -> (TestApi, HttpMetrics) {
    let keys = ApiKeys::new(pool.clone());
    let (_, key) = keys.create("test-admin", &[Scope::Admin]).await.expect("admin key");
    let catalog = Arc::new(SchemaCatalog::embedded().expect("schemas compile"));
    let store = EventStore::new(pool, catalog, SchemaMode::Strict, StoreMetrics::default());
    let metrics = HttpMetrics::register(&mut Registry::default());
    let state = AppState {
        handler: CommandHandler::new(store),
        keys: keys.clone(),
        idempotency_retention: Duration::from_secs(86_400),
        request_timeout,
    };
    (TestApi { router: app(state, metrics.clone()), key, keys }, metrics)
}

pub struct Answer {
    pub status: StatusCode,
    pub content_type: String,
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
    let bytes = to_bytes(response.into_body(), 1 << 20).await.expect("body").to_vec();
    Answer { status, content_type, bytes }
}

pub const JSON: (&str, &str) = ("content-type", "application/json");

pub fn handler(pool: PgPool) -> CommandHandler {
    let catalog = Arc::new(SchemaCatalog::embedded().expect("schemas compile"));
    CommandHandler::new(EventStore::new(pool, catalog, SchemaMode::Strict, StoreMetrics::default()))
}
