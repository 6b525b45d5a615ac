//! The operational endpoints every process serves: `/metrics` (Prometheus),
//! `/health` (liveness only: the process is up) and `/ready` (every dependency
//! answered within its timeout, checked in parallel).

use std::{future::Future, net::SocketAddr, pin::Pin, sync::Arc, time::Duration};

use axum::{
    extract::State,
    http::{header, StatusCode},
    response::{IntoResponse, Response},
    routing::get,
    Json, Router,
};
use prometheus_client::{
    encoding::{text::encode, EncodeLabelSet},
    metrics::{family::Family, gauge::Gauge},
    registry::Registry,
};

use crate::{metric_names as names, Shutdown};

type CheckFuture = Pin<Box<dyn Future<Output = Result<(), String>> + Send>>;

/// One dependency `/ready` checks, such as PostgreSQL or the broker.
#[derive(Clone)]
pub struct ReadinessCheck {
    name: &'static str,
    timeout: Duration,
    check: Arc<dyn Fn() -> CheckFuture + Send + Sync>,
}

impl ReadinessCheck {
    pub fn new<F, Fut>(name: &'static str, timeout: Duration, check: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), String>> + Send + 'static,
    {
        Self { name, timeout, check: Arc::new(move || Box::pin(check())) }
    }

    async fn run(&self) -> (&'static str, Result<(), String>) {
        let outcome = match tokio::time::timeout(self.timeout, (self.check)()).await {
            Ok(result) => result,
            Err(_) => Err(format!("no answer within {}", humantime::format_duration(self.timeout))),
        };
        (self.name, outcome)
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DependencyLabel {
    dependency: String,
}

/// What the operational endpoints need.
#[derive(Clone)]
pub struct OpsState {
    registry: Arc<Registry>,
    checks: Arc<Vec<ReadinessCheck>>,
    dependency_ready: Family<DependencyLabel, Gauge>,
}

impl OpsState {
    /// Also registers `vectis_dependency_ready{dependency}`: each readiness check, run
    /// on every scrape, so a failing `/ready` shows in Prometheus (which scrapes
    /// `/metrics`, not `/ready`).
    pub fn new(mut registry: Registry, checks: Vec<ReadinessCheck>) -> Self {
        let dependency_ready = Family::<DependencyLabel, Gauge>::default();
        registry.register(
            names::DEPENDENCY_READY,
            "1 while the readiness check of the dependency passes, 0 while it fails (what /ready answers)",
            dependency_ready.clone(),
        );
        Self { registry: Arc::new(registry), checks: Arc::new(checks), dependency_ready }
    }

    /// Every readiness check, in parallel, each within its timeout.
    async fn run_checks(&self) -> Vec<(&'static str, Result<(), String>)> {
        futures::future::join_all(self.checks.iter().map(ReadinessCheck::run)).await
    }
}

/// `/metrics`, `/health` and `/ready`, to merge into a service's router or serve alone.
pub fn ops_router(state: OpsState) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/health", get(health))
        .route("/ready", get(ready))
        .with_state(state)
}

/// Serves the operational endpoints alone on `addr` until shutdown. Returns the bound
/// address (useful with port 0) and the server task.
pub async fn serve_ops(
    addr: SocketAddr,
    state: OpsState,
    shutdown: Shutdown,
) -> anyhow::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener =
        tokio::net::TcpListener::bind(addr).await.map_err(|e| anyhow::anyhow!("cannot listen on {addr}: {e}"))?;
    let bound = listener.local_addr()?;
    let app = ops_router(state);
    let task = tokio::spawn(async move {
        let served = axum::serve(listener, app).with_graceful_shutdown(async move { shutdown.wait().await }).await;
        if let Err(e) = served {
            tracing::error!(error = %e, "operational HTTP server failed");
        }
    });
    Ok((bound, task))
}

async fn metrics(State(state): State<OpsState>) -> Response {
    // Not logged here: a scrape is a timer, and `/ready` logs its failures.
    for (name, result) in state.run_checks().await {
        state
            .dependency_ready
            .get_or_create(&DependencyLabel { dependency: name.to_string() })
            .set(i64::from(result.is_ok()));
    }
    let mut body = String::new();
    match encode(&mut body, &state.registry) {
        Ok(()) => ([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], body)
            .into_response(),
        Err(e) => {
            tracing::error!(error = %e, "cannot encode metrics");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

async fn health() -> Json<serde_json::Value> {
    Json(serde_json::json!({ "status": "ok" }))
}

async fn ready(State(state): State<OpsState>) -> Response {
    let results = state.run_checks().await;
    let all_ok = results.iter().all(|(_, r)| r.is_ok());
    let checks: serde_json::Map<String, serde_json::Value> = results
        .into_iter()
        .map(|(name, r)| {
            let value = match r {
                Ok(()) => serde_json::json!({ "status": "ok" }),
                Err(error) => {
                    tracing::warn!(dependency = name, %error, "readiness check failed");
                    serde_json::json!({ "status": "failing", "error": error })
                }
            };
            (name.to_string(), value)
        })
        .collect();
    let status = if all_ok { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    let body = serde_json::json!({ "status": if all_ok { "ready" } else { "not_ready" }, "checks": checks });
    (status, Json(body)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;

    fn request(path: &str) -> Request<Body> {
        Request::builder().uri(path).body(Body::empty()).expect("request")
    }

    #[tokio::test]
    async fn ready_is_503_when_any_check_fails_or_hangs() {
        let state = OpsState::new(
            Registry::default(),
            vec![
                ReadinessCheck::new("postgres", Duration::from_millis(200), || async { Ok(()) }),
                ReadinessCheck::new("broker", Duration::from_millis(50), || async {
                    tokio::time::sleep(Duration::from_secs(5)).await;
                    Ok(())
                }),
            ],
        );
        let response = ops_router(state).oneshot(request("/ready")).await.expect("response");
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        let body = axum::body::to_bytes(response.into_body(), 1 << 16).await.expect("body");
        let json: serde_json::Value = serde_json::from_slice(&body).expect("json");
        assert_eq!(json["checks"]["postgres"]["status"], "ok");
        assert_eq!(json["checks"]["broker"]["status"], "failing");
    }

    #[tokio::test]
    async fn health_and_ready_are_200_when_all_is_well() {
        let state = OpsState::new(
            Registry::default(),
            vec![ReadinessCheck::new("postgres", Duration::from_millis(200), || async { Ok(()) })],
        );
        let app = ops_router(state);
        assert_eq!(app.clone().oneshot(request("/health")).await.expect("r").status(), StatusCode::OK);
        assert_eq!(app.clone().oneshot(request("/ready")).await.expect("r").status(), StatusCode::OK);
        let metrics = app.oneshot(request("/metrics")).await.expect("r");
        assert_eq!(metrics.status(), StatusCode::OK);
    }
}
