//! The one error type of the command API, answered as `application/problem+json`
//! (RFC 9457). Rejections say what to fix; server failures say nothing internal and
//! log the whole cause.

use axum::{
    http::{header, StatusCode},
    response::{IntoResponse, Response},
};
use serde::Serialize;

use crate::{domain::DomainError, handling::CommandError};

pub const PROBLEM_JSON: &str = "application/problem+json";

/// One bad field of a request body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct FieldProblem {
    /// Dotted path into the body (`credit_limit.currency`), or `""` for the body itself.
    pub field: String,
    pub message: String,
}

#[derive(Debug)]
pub enum ApiError {
    /// The body is not JSON, or not an object of the expected shape (400).
    MalformedBody(String),
    /// The body parsed, but fields break the rules their schemas state (422, every
    /// bad field listed).
    Validation(Vec<FieldProblem>),
    /// Each field keeps its schema's rule, but a rule no schema can state refuses
    /// them: one between fields, or against the server's settings or clock (422).
    FieldRules(Vec<FieldProblem>),
    /// A header is present but unusable (400).
    BadHeader {
        header: &'static str,
        message: String,
    },
    /// 415: commands take `application/json`.
    UnsupportedMediaType,
    /// 413: the body is over the limit.
    PayloadTooLarge,
    Domain(DomainError),
    /// 409 with the stream's actual version, so the client can re-read and retry.
    VersionConflict {
        message: String,
        current_version: i64,
    },
    /// 409: retry later.
    Contended(String),
    /// 422: the idempotency key was used for a different request.
    IdempotencyKeyReused,
    /// 409: a request with this idempotency key is still running.
    IdempotencyKeyInUse,
    NotFound(String),
    /// 400: a path segment is not what the route takes (a UUID, say).
    InvalidPath(String),
    /// 400: a query parameter is missing or not of its type.
    InvalidQuery(String),
    /// 422: an uploaded file cannot be imported as sent (its format, its columns).
    UnreadableFile(String),
    /// 404: no route has this path.
    NoRoute(String),
    /// 405: the route exists, not for this method.
    MethodNotAllowed(String),
    /// 403: the key lacks the scope this request needs (decided by the request).
    Forbidden(String),
    /// 503: the request ran past the time limit. If the deadline struck while it was
    /// committing, it may have taken effect: a retry with the same Idempotency-Key
    /// returns its answer, or runs it if it did not.
    Timeout(std::time::Duration),
    /// 500/503: logged in full, answered without detail.
    Internal(String),
}

/// An RFC 9457 problem document: every error answer of the API.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Problem {
    /// Stable identifier of the kind of problem (`/problems/validation`); branch on it.
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    /// What happened and what to do, for humans.
    pub detail: String,
    /// Every invalid field (422 `/problems/validation` and `/problems/field-rules` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub errors: Option<Vec<FieldProblem>>,
    /// The stream's actual version (409 `/problems/version-conflict` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub current_version: Option<i64>,
}

impl ApiError {
    fn parts(&self) -> (StatusCode, &'static str, &'static str) {
        match self {
            Self::MalformedBody(_) => {
                (StatusCode::BAD_REQUEST, "/problems/malformed-body", "The request body is malformed")
            }
            Self::Validation(_) => {
                (StatusCode::UNPROCESSABLE_ENTITY, "/problems/validation", "The request has invalid fields")
            }
            Self::FieldRules(_) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "/problems/field-rules",
                "The fields break a rule between them or of this server",
            ),
            Self::BadHeader { .. } => (StatusCode::BAD_REQUEST, "/problems/bad-header", "A request header is invalid"),
            Self::UnsupportedMediaType => {
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, "/problems/unsupported-media-type", "Send application/json")
            }
            Self::PayloadTooLarge => {
                (StatusCode::PAYLOAD_TOO_LARGE, "/problems/payload-too-large", "The request body is too large")
            }
            Self::Domain(DomainError::NotFound(_)) | Self::NotFound(_) => {
                (StatusCode::NOT_FOUND, "/problems/not-found", "Not found")
            }
            Self::Domain(DomainError::AlreadyExists(_)) => {
                (StatusCode::CONFLICT, "/problems/already-exists", "Already exists")
            }
            Self::Domain(DomainError::InvalidState(_)) => {
                (StatusCode::CONFLICT, "/problems/invalid-state", "Not possible in the current state")
            }
            Self::Domain(DomainError::Rule(_)) => {
                (StatusCode::UNPROCESSABLE_ENTITY, "/problems/business-rule", "A business rule refuses the command")
            }
            Self::VersionConflict { .. } => {
                (StatusCode::CONFLICT, "/problems/version-conflict", "The stream is not at the expected version")
            }
            Self::Contended(_) => (StatusCode::CONFLICT, "/problems/contended", "Too many concurrent changes; retry"),
            Self::IdempotencyKeyReused => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "/problems/idempotency-key-reused",
                "This Idempotency-Key was used for a different request",
            ),
            Self::IdempotencyKeyInUse => (
                StatusCode::CONFLICT,
                "/problems/idempotency-key-in-use",
                "A request with this Idempotency-Key is still running",
            ),
            Self::InvalidPath(_) => (StatusCode::BAD_REQUEST, "/problems/invalid-path", "A path parameter is invalid"),
            Self::InvalidQuery(_) => {
                (StatusCode::BAD_REQUEST, "/problems/invalid-query", "A query parameter is invalid")
            }
            Self::UnreadableFile(_) => {
                (StatusCode::UNPROCESSABLE_ENTITY, "/problems/unreadable-file", "The file cannot be imported")
            }
            Self::NoRoute(_) => (StatusCode::NOT_FOUND, "/problems/no-route", "No such endpoint"),
            Self::MethodNotAllowed(_) => (
                StatusCode::METHOD_NOT_ALLOWED,
                "/problems/method-not-allowed",
                "The endpoint does not take this method",
            ),
            Self::Forbidden(_) => (StatusCode::FORBIDDEN, "/problems/forbidden", "The API key lacks a scope"),
            Self::Timeout(_) => (StatusCode::SERVICE_UNAVAILABLE, "/problems/timeout", "The request took too long"),
            Self::Internal(_) => {
                (StatusCode::INTERNAL_SERVER_ERROR, "/problems/internal", "The server could not complete the request")
            }
        }
    }

    pub fn status(&self) -> StatusCode {
        self.parts().0
    }

    /// The problem document's bytes, as sent (and as stored for idempotent replays).
    pub fn body(&self) -> Vec<u8> {
        let (status, kind, title) = self.parts();
        let detail = match self {
            Self::MalformedBody(m)
            | Self::Contended(m)
            | Self::NotFound(m)
            | Self::Forbidden(m)
            | Self::InvalidPath(m)
            | Self::InvalidQuery(m)
            | Self::UnreadableFile(m)
            | Self::NoRoute(m)
            | Self::MethodNotAllowed(m) => m.clone(),
            Self::Validation(errors) => format!("{} field(s) are invalid", errors.len()),
            Self::FieldRules(errors) => {
                errors.iter().map(|e| format!("{}: {}", e.field, e.message)).collect::<Vec<_>>().join("; ")
            }
            Self::BadHeader { header, message } => format!("{header}: {message}"),
            Self::UnsupportedMediaType => "commands take a JSON body with Content-Type: application/json".into(),
            Self::PayloadTooLarge => format!("command bodies are limited to {} bytes", super::MAX_BODY_BYTES),
            Self::Domain(e) => e.to_string(),
            Self::VersionConflict { message, .. } => message.clone(),
            Self::IdempotencyKeyReused => {
                "send a new Idempotency-Key for a new request, or the same body to get the first answer".into()
            }
            Self::IdempotencyKeyInUse => "retry in a moment to get its answer".into(),
            Self::Timeout(limit) => format!(
                "not finished within {} ms; its outcome is unknown: retry with the same Idempotency-Key to get its answer",
                limit.as_millis()
            ),
            Self::Internal(_) => "an internal error occurred; it has been logged".into(),
        };
        let body = Problem {
            kind: kind.into(),
            title: title.into(),
            status: status.as_u16(),
            detail,
            errors: match self {
                Self::Validation(errors) | Self::FieldRules(errors) => Some(errors.clone()),
                _ => None,
            },
            current_version: match self {
                Self::VersionConflict { current_version, .. } => Some(*current_version),
                _ => None,
            },
        };
        serde_json::to_vec(&body).unwrap_or_default()
    }
}

impl From<CommandError> for ApiError {
    fn from(error: CommandError) -> Self {
        match error {
            CommandError::Domain(e) => Self::Domain(e),
            CommandError::VersionMismatch { actual, .. } => {
                Self::VersionConflict { message: error.to_string(), current_version: actual }
            }
            CommandError::Contended { .. } => Self::Contended(error.to_string()),
            other => Self::Internal(format!("{other:#}")),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let Self::Internal(cause) = &self {
            tracing::error!(%cause, "command failed");
        }
        (self.status(), [(header::CONTENT_TYPE, PROBLEM_JSON)], self.body()).into_response()
    }
}
