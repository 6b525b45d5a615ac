//! `/graphql`: POST runs a query for an API key with the `read` scope; GET serves
//! GraphiQL outside production. Rate limiting, HTTP metrics and request ids as on the
//! command API; GraphQL operation counts and durations by operation name.

use std::{
    collections::HashSet,
    time::{Duration, Instant},
};

use async_graphql::{
    parser::types::{ExecutableDocument, Selection, SelectionSet},
    ErrorExtensionValues, ServerError,
};
use axum::{
    extract::{DefaultBodyLimit, State},
    http::HeaderMap,
    middleware,
    response::{IntoResponse, Response},
    routing::{get, post},
    Json, Router,
};
use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, histogram::Histogram},
    registry::Registry,
};
use vectis_runtime::{
    auth::{require_scope, ApiKeys, Scope},
    http_metrics::{track_http, HttpMetrics},
    rate_limit::{rate_limit, RateLimiter},
    request_id::request_id,
};

use crate::{
    consistency,
    db::ReadDb,
    errors,
    schema::{with_loaders, QuerySchema},
};

/// Largest request body: the query document and its variables.
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// Largest query document.
pub const MAX_QUERY_BYTES: usize = 16 * 1024;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OperationLabel {
    pub operation: String,
}

/// `vectis_graphql_operations_total` and `vectis_graphql_operation_duration_seconds`,
/// by operation name (`anonymous` when unnamed; `other` when not a plain identifier,
/// so clients cannot grow the label set without bound).
#[derive(Clone, Debug)]
pub struct OperationMetrics {
    pub operations: Family<OperationLabel, Counter>,
    pub duration: Family<OperationLabel, Histogram>,
}

impl OperationMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self {
            operations: Family::default(),
            duration: Family::new_with_constructor(|| {
                Histogram::new([0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0])
            }),
        };
        registry.register("vectis_graphql_operations", "GraphQL operations executed", metrics.operations.clone());
        registry.register(
            "vectis_graphql_operation_duration_seconds",
            "Time to execute a GraphQL operation",
            metrics.duration.clone(),
        );
        metrics
    }

    fn label(operation: Option<&str>) -> OperationLabel {
        let operation = match operation {
            None => "anonymous",
            Some(name) if name.len() <= 64 && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') => name,
            Some(_) => "other",
        };
        OperationLabel { operation: operation.to_string() }
    }
}

#[derive(Clone)]
pub struct QueryState {
    pub schema: QuerySchema,
    pub db: ReadDb,
    pub metrics: OperationMetrics,
    /// Introspection allowed (everywhere but production).
    pub introspection: bool,
    /// How long a query with a consistency token waits for the projections.
    pub consistency_wait: Duration,
}

pub fn app(
    state: QueryState,
    keys: ApiKeys,
    rate_limiter: RateLimiter,
    http_metrics: HttpMetrics,
    graphiql: bool,
) -> Router {
    let run = post(graphql).route_layer(middleware::from_fn_with_state((keys, Scope::Read), require_scope));
    let route = if graphiql { get(crate::graphiql::page).merge(run) } else { run };
    let router = Router::new().route("/graphql", route);
    let router = if graphiql { router.merge(crate::graphiql::asset_routes()) } else { router };
    router
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .route_layer(middleware::from_fn_with_state(rate_limiter, rate_limit))
        .route_layer(middleware::from_fn_with_state(http_metrics, track_http))
        .with_state(state)
        .layer(middleware::from_fn(request_id))
}

async fn graphql(
    State(state): State<QueryState>,
    headers: HeaderMap,
    Json(mut request): Json<async_graphql::Request>,
) -> Response {
    let label = OperationMetrics::label(request.operation_name.as_deref());
    if request.query.len() > MAX_QUERY_BYTES {
        return refused(format!("the query is over {MAX_QUERY_BYTES} bytes"), errors::QUERY_TOO_LARGE);
    }
    // Parsed once, here: the executor reuses the document.
    let selected = match request.parsed_query() {
        Ok(document) => top_level_fields(document),
        Err(error) => return refused(error.message, errors::GRAPHQL_PARSE_FAILED),
    };
    if !state.introspection && selected.iter().any(|f| f == "__schema" || f == "__type") {
        return refused("introspection is disabled in production".into(), errors::INTROSPECTION_DISABLED);
    }
    let token = match headers
        .get(consistency::HEADER)
        .map(|v| v.to_str().unwrap_or("").parse::<vectis_schemas::ConsistencyToken>())
    {
        None => None,
        Some(Ok(token)) => Some(token),
        Some(Err(error)) => {
            return refused(format!("{}: {error}", consistency::HEADER), errors::INVALID_CONSISTENCY_TOKEN)
        }
    };
    let started = Instant::now();
    let mut fresh = true;
    if let Some(token) = &token {
        let projections = consistency::projections(token, selected.iter().any(|f| f == "search"));
        fresh = consistency::wait(token, &state.db, &projections, state.consistency_wait).await;
    }
    let mut response = state.schema.execute(with_loaders(request, &state.db)).await;
    if token.is_some() {
        // What was answered reflects the token's write, or not (the wait timed out).
        response.extensions.insert("stale".into(), async_graphql::Value::Boolean(!fresh));
    }
    state.metrics.operations.get_or_create(&label).inc();
    state.metrics.duration.get_or_create(&label).observe(started.elapsed().as_secs_f64());
    for error in &mut response.errors {
        if error.extensions.as_ref().is_none_or(|e| e.get("code").is_none()) {
            error.extensions = Some(code(classify(&error.message)));
        }
    }
    Json(response).into_response()
}

fn refused(message: String, error_code: &'static str) -> Response {
    let mut error = ServerError::new(message, None);
    error.extensions = Some(code(error_code));
    Json(async_graphql::Response::from_errors(vec![error])).into_response()
}

/// The names of the fields the document selects on the query root (through fragments
/// too): whether it asks for `__schema`/`__type` (async-graphql's own switch answers
/// them with null; clients deserve to be told), whether it searches. Each fragment is
/// walked once, so a cycle (refused later by validation) cannot loop here.
fn top_level_fields(document: &ExecutableDocument) -> Vec<String> {
    let mut sets: Vec<&SelectionSet> = document.operations.iter().map(|(_, op)| &op.node.selection_set.node).collect();
    let mut walked = HashSet::new();
    let mut fields = Vec::new();
    while let Some(set) = sets.pop() {
        for item in &set.items {
            match &item.node {
                Selection::Field(field) => fields.push(field.node.name.node.to_string()),
                Selection::InlineFragment(fragment) => sets.push(&fragment.node.selection_set.node),
                Selection::FragmentSpread(spread) => {
                    let name = &spread.node.fragment_name.node;
                    if let Some(fragment) = document.fragments.get(name).filter(|_| walked.insert(name.clone())) {
                        sets.push(&fragment.node.selection_set.node);
                    }
                }
            }
        }
    }
    fields
}

fn code(code: &'static str) -> ErrorExtensionValues {
    let mut extensions = ErrorExtensionValues::default();
    extensions.set("code", code);
    extensions
}

/// Codes for the errors async-graphql raises itself (the document parsed: these are
/// its limits and validation), by their messages.
fn classify(message: &str) -> &'static str {
    if message.contains("nested too deep") {
        "QUERY_TOO_DEEP"
    } else if message.contains("too complex") {
        "QUERY_TOO_COMPLEX"
    } else {
        "GRAPHQL_VALIDATION_FAILED"
    }
}
