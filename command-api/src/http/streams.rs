//! `GET /v1/streams/{stream_id}`: a stream's events, upcast to current schema
//! versions, for debugging.

use axum::{extract::State, Json};
use utoipa_axum::{router::OpenApiRouter, routes};
use vectis_runtime::auth::{ApiKeys, Scope};
use vectis_schemas::{EventEnvelope, IdError, StreamId};

use super::path::ApiPath;
use super::{problem::ApiError, AppState};

/// Reading raw streams is for operators: `admin`.
pub fn router(keys: &ApiKeys) -> OpenApiRouter<AppState> {
    super::scoped(OpenApiRouter::new().routes(routes!(read_stream)), keys, Scope::Admin)
}

#[utoipa::path(get, path = "/v1/streams/{stream_id}", tag = "streams",
    params(("stream_id" = String, Path, description = "`account-<uuid>`, `inventory-<sku>` or `order-<uuid>`")),
    responses((status = 200, description = "Every event of the stream in order, upcast to the current schema versions", body = Vec<EventEnvelope>)),
    security(("api_key" = ["admin"])))]
async fn read_stream(
    State(state): State<AppState>,
    ApiPath(stream_id): ApiPath<String>,
) -> Result<Json<Vec<EventEnvelope>>, ApiError> {
    // An id no stream can have names none.
    let stream_id: StreamId = stream_id.parse().map_err(|error: IdError| ApiError::NotFound(error.to_string()))?;
    let events = state
        .handler
        .store()
        .read_stream(&stream_id, 1)
        .await
        .map_err(|e| ApiError::Internal(format!("reading {stream_id}: {e}")))?;
    if events.is_empty() {
        return Err(ApiError::NotFound(format!("stream {stream_id} has no events")));
    }
    let upcast = events
        .iter()
        .map(|e| e.upcast())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ApiError::Internal(format!("upcasting {stream_id}: {e}")))?;
    Ok(Json(upcast))
}
