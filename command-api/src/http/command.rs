//! Runs one command for an endpoint: If-Match, Idempotency-Key, correlation and trace
//! context from the headers; load → decide → append; the response with the stream's
//! new version, the events and a consistency token. Under an idempotency key the exact
//! response bytes are stored with the append, so a retry gets them back unchanged.

use std::{sync::LazyLock, time::Duration};

use axum::{
    extract::FromRequestParts,
    http::{header, request::Parts, HeaderMap, StatusCode},
    response::{IntoResponse, Response},
};
use regex::Regex;
use serde::Serialize;
use sha2::{Digest, Sha256};
use uuid::Uuid;
use vectis_event_store::{EventMetadata, IdempotencyBegin, IdempotencyKey, StoredResponse};
use vectis_runtime::auth::Principal;
use vectis_schemas::{ConsistencyToken, EventEnvelope, StreamId};

use super::{problem::ApiError, AppState};
use crate::handling::{Aggregate, CommandError, CommandOutcome, StreamKnown};

/// What a command takes from the request line and headers.
pub struct CommandContext {
    /// The authenticated caller: keys of different callers never collide.
    pub principal: Principal,
    if_match: Option<i64>,
    idempotency_key: Option<String>,
    metadata: EventMetadata,
    method: String,
    path: String,
}

impl<S: Send + Sync> FromRequestParts<S> for CommandContext {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let principal = parts
            .extensions
            .get::<Principal>()
            .cloned()
            .ok_or_else(|| ApiError::Internal("command route without authentication".into()))?;
        let headers = &parts.headers;
        Ok(Self {
            principal,
            if_match: if_match(headers)?,
            idempotency_key: idempotency_key(headers)?,
            metadata: EventMetadata {
                correlation_id: correlation_id(headers)?.unwrap_or_else(Uuid::now_v7),
                causation_id: None,
                traceparent: header_text(headers, "traceparent").filter(|v| is_traceparent(v)).map(str::to_string),
            },
            method: parts.method.to_string(),
            path: parts.uri.path().to_string(),
        })
    }
}

fn header_text<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim).filter(|v| !v.is_empty())
}

/// What [`if_match`] takes, as the OpenAPI document states it.
pub const IF_MATCH_PATTERN: &str = r#"^(W/)?("[0-9]{1,18}"|[0-9]{1,18})$"#;
/// What [`idempotency_key`] takes, as the OpenAPI document states it.
pub const IDEMPOTENCY_KEY_PATTERN: &str = "^[!-~]{1,255}$";

/// `If-Match: 3` or `If-Match: "3"`: the stream version the client last saw.
fn if_match(headers: &HeaderMap) -> Result<Option<i64>, ApiError> {
    let Some(raw) = headers.get(header::IF_MATCH) else { return Ok(None) };
    static PATTERN: LazyLock<Regex> = LazyLock::new(|| Regex::new(IF_MATCH_PATTERN).expect("a valid pattern"));
    let text = raw.to_str().unwrap_or_default().trim();
    let digits = text.strip_prefix("W/").unwrap_or(text).trim_matches('"');
    match digits.parse::<i64>() {
        Ok(version) if PATTERN.is_match(text) => Ok(Some(version)),
        _ => Err(ApiError::BadHeader {
            header: "If-Match",
            message: format!("must be the stream version you last saw, a number such as \"3\", not {text:?}"),
        }),
    }
}

fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(raw) = headers.get("idempotency-key") else { return Ok(None) };
    match raw.to_str() {
        Ok(key) if (1..=255).contains(&key.len()) && key.bytes().all(|b| b.is_ascii_graphic()) => Ok(Some(key.into())),
        _ => Err(ApiError::BadHeader {
            header: "Idempotency-Key",
            message: "must be 1 to 255 visible ASCII characters, such as a UUID".into(),
        }),
    }
}

/// `X-Correlation-Id`: a UUID in its hyphenated form (the document's `format: uuid`);
/// anything else, an empty value too, is refused.
fn correlation_id(headers: &HeaderMap) -> Result<Option<Uuid>, ApiError> {
    let Some(raw) = headers.get("x-correlation-id") else { return Ok(None) };
    let text = raw.to_str().unwrap_or_default().trim();
    match Uuid::try_parse(text) {
        Ok(id) if text.len() == 36 => Ok(Some(id)),
        _ => Err(ApiError::BadHeader {
            header: "X-Correlation-Id",
            message: format!("must be a UUID such as 0191e8a2-7c3b-7d4e-9f10-2a3b4c5d6e7f, not {text:?}"),
        }),
    }
}

/// `00-<32 hex>-<16 hex>-<2 hex>`, as W3C Trace Context defines it; anything else is dropped.
fn is_traceparent(value: &str) -> bool {
    let parts: Vec<&str> = value.split('-').collect();
    parts.len() == 4
        && [2, 32, 16, 2].iter().zip(&parts).all(|(len, p)| p.len() == *len && p.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// The body every successful command answers with.
#[derive(Serialize, utoipa::ToSchema)]
pub struct CommandResponse {
    /// The stream the command wrote: `account-<uuid>`, `inventory-<sku>` or `order-<uuid>`.
    #[schema(value_type = String)]
    pub stream_id: StreamId,
    /// The stream's version after the append; send it as `If-Match` next time.
    pub stream_version: i64,
    /// Pass as `X-Consistency-Token` to a query to read this write.
    pub consistency_token: String,
    /// The events this command appended, in order.
    pub events: Vec<EventEnvelope>,
}

impl CommandContext {
    /// Handles the command and answers. `success` is 201 for creations, 200 otherwise.
    pub async fn run<A, F>(
        self,
        state: &AppState,
        raw_body: &[u8],
        stream_id: StreamId,
        success: StatusCode,
        command: F,
    ) -> Response
    where
        A: Aggregate,
        F: Fn(&Option<A>) -> A::Command + Send,
    {
        self.run_on::<A, F>(state, raw_body, stream_id, StreamKnown::MayExist, success, command).await
    }

    /// `run` for a creation whose stream id the server just generated (see
    /// [`StreamKnown::New`]).
    pub async fn run_new<A, F>(self, state: &AppState, raw_body: &[u8], stream_id: StreamId, command: F) -> Response
    where
        A: Aggregate,
        F: Fn(&Option<A>) -> A::Command + Send,
    {
        self.run_on::<A, F>(state, raw_body, stream_id, StreamKnown::New, StatusCode::CREATED, command).await
    }

    async fn run_on<A, F>(
        self,
        state: &AppState,
        raw_body: &[u8],
        stream_id: StreamId,
        known: StreamKnown,
        success: StatusCode,
        command: F,
    ) -> Response
    where
        A: Aggregate,
        F: Fn(&Option<A>) -> A::Command + Send,
    {
        let handler = &state.handler;
        let Some(key) = self.idempotency_key.clone() else {
            let mut store = handler.store().clone();
            let outcome =
                handler.execute_on::<A, F>(&mut store, known, &stream_id, self.if_match, &self.metadata, command).await;
            return replay(render(outcome, success));
        };
        let fingerprint = self.fingerprint(raw_body);
        let key = IdempotencyKey { scope: self.principal.key_id.to_string(), key };
        match handler.store().begin_idempotent(key, &fingerprint, state.idempotency_retention).await {
            Err(e) => ApiError::Internal(format!("idempotency: {e}")).into_response(),
            Ok(IdempotencyBegin::Mismatch) => ApiError::IdempotencyKeyReused.into_response(),
            Ok(IdempotencyBegin::InProgress) => ApiError::IdempotencyKeyInUse.into_response(),
            Ok(IdempotencyBegin::Replay(stored)) => replay(stored),
            Ok(IdempotencyBegin::Fresh(mut claimed)) => {
                let outcome = handler
                    .execute_on::<A, F>(&mut claimed, known, &stream_id, self.if_match, &self.metadata, command)
                    .await;
                let stored = render(outcome, success);
                // A server failure is not an answer to keep: the key stays free.
                if stored.status >= 500 {
                    return replay(stored);
                }
                match claimed.complete(&stored).await {
                    Ok(()) => replay(stored),
                    Err(e) => ApiError::Internal(format!("storing the idempotent response: {e}")).into_response(),
                }
            }
        }
    }

    /// Same key + same method, path and body = the same request.
    fn fingerprint(&self, raw_body: &[u8]) -> Vec<u8> {
        let mut hash = Sha256::new();
        hash.update(self.method.as_bytes());
        hash.update([0]);
        hash.update(self.path.as_bytes());
        hash.update([0]);
        hash.update(raw_body);
        hash.finalize().to_vec()
    }
}

/// The response as bytes, so it can be stored and replayed exactly.
fn render(outcome: Result<CommandOutcome, CommandError>, success: StatusCode) -> StoredResponse {
    match outcome {
        Ok(outcome) => {
            let body = CommandResponse {
                consistency_token: ConsistencyToken::new(outcome.stream_id.clone(), outcome.stream_version).to_string(),
                stream_id: outcome.stream_id,
                stream_version: outcome.stream_version,
                events: outcome.events.into_iter().map(|e| e.envelope).collect(),
            };
            StoredResponse {
                status: success.as_u16(),
                content_type: "application/json".into(),
                body: serde_json::to_vec(&body).unwrap_or_default(),
            }
        }
        Err(error) => {
            let error = ApiError::from(error);
            if let ApiError::Internal(cause) = &error {
                tracing::error!(%cause, "command failed");
            }
            StoredResponse {
                status: error.status().as_u16(),
                content_type: super::problem::PROBLEM_JSON.into(),
                body: error.body(),
            }
        }
    }
}

fn replay(stored: StoredResponse) -> Response {
    let status = StatusCode::from_u16(stored.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, [(header::CONTENT_TYPE, stored.content_type)], stored.body).into_response()
}

/// The default retention of idempotency records.
pub const DEFAULT_IDEMPOTENCY_RETENTION: Duration = Duration::from_secs(24 * 60 * 60);
