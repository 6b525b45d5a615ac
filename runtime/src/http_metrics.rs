//! HTTP metrics with the names dashboards expect: `http_requests_total`,
//! `http_request_duration_seconds`, `http_requests_inprogress`,
//! `http_response_size_bytes`, labelled by method, matched route and status. The
//! matched route (`/v1/accounts/{id}/approve`), never the raw path, keeps the label
//! set bounded.

use std::time::Instant;

use axum::{
    body::{Body, HttpBody},
    extract::{MatchedPath, Request, State},
    http::header::CONTENT_LENGTH,
    middleware::Next,
    response::Response,
};
use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::Registry,
};

use crate::metric_names as names;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub method: String,
    pub route: String,
    pub status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct InProgressLabels {
    pub method: String,
    pub route: String,
}

#[derive(Clone, Debug)]
pub struct HttpMetrics {
    requests: Family<RequestLabels, Counter>,
    duration: Family<RequestLabels, Histogram>,
    in_progress: Family<InProgressLabels, Gauge>,
    response_size: Family<RequestLabels, Histogram>,
}

impl HttpMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self {
            requests: Family::default(),
            duration: Family::new_with_constructor(|| {
                Histogram::new([0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0])
            }),
            in_progress: Family::default(),
            response_size: Family::new_with_constructor(|| {
                Histogram::new([100.0, 1_000.0, 10_000.0, 100_000.0, 1_000_000.0])
            }),
        };
        registry.register(names::HTTP_REQUESTS, "HTTP requests answered", metrics.requests.clone());
        registry.register(names::HTTP_REQUEST_DURATION_SECONDS, "HTTP request latency", metrics.duration.clone());
        registry.register(names::HTTP_REQUESTS_IN_PROGRESS, "HTTP requests being served", metrics.in_progress.clone());
        registry.register(names::HTTP_RESPONSE_SIZE_BYTES, "HTTP response body size", metrics.response_size.clone());
        metrics
    }

    pub fn requests_total(&self, method: &str, route: &str, status: u16) -> u64 {
        self.requests
            .get_or_create(&RequestLabels { method: method.into(), route: route.into(), status: status.to_string() })
            .get()
    }
}

/// Middleware: `axum::middleware::from_fn_with_state(metrics, track_http)`.
pub async fn track_http(State(metrics): State<HttpMetrics>, request: Request<Body>, next: Next) -> Response {
    let method = request.method().to_string();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |path| path.as_str().to_string());
    let in_progress =
        metrics.in_progress.get_or_create(&InProgressLabels { method: method.clone(), route: route.clone() }).clone();
    in_progress.inc();
    let started = Instant::now();
    let response = next.run(request).await;
    in_progress.dec();
    let labels = RequestLabels { method, route, status: response.status().as_u16().to_string() };
    metrics.requests.get_or_create(&labels).inc();
    metrics.duration.get_or_create(&labels).observe(started.elapsed().as_secs_f64());
    // Bodies built from bytes know their size; a streamed body of unknown size falls
    // back to its Content-Length header, if any.
    let size = HttpBody::size_hint(response.body())
        .exact()
        .or_else(|| response.headers().get(CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok()));
    metrics.response_size.get_or_create(&labels).observe(size.unwrap_or(0) as f64);
    response
}
