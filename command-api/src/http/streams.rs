//! `GET /v1/streams/{stream_id}`: a stream's events, upcast to current schema
//! versions, for debugging.

use axum::{
    extract::{Path, State},
    routing::get,
    Json, Router,
};
use vectis_runtime::auth::{ApiKeys, Scope};
use vectis_schemas::EventEnvelope;

use super::{problem::ApiError, AppState};

/// Reading raw streams is for operators: `admin`.
pub fn router(keys: &ApiKeys) -> Router<AppState> {
    super::scoped(Router::new().route("/v1/streams/{stream_id}", get(read_stream)), keys, Scope::Admin)
}

async fn read_stream(
    State(state): State<AppState>,
    Path(stream_id): Path<String>,
) -> Result<Json<Vec<EventEnvelope>>, ApiError> {
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
