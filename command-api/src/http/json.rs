//! The command body extractor: every way a body can be wrong gets the same problem
//! format as everything else, and the raw bytes are kept for idempotency fingerprints.

use axum::{
    body::Bytes,
    extract::{FromRequest, Request},
    http::{header::CONTENT_TYPE, StatusCode},
};
use serde::de::DeserializeOwned;
use serde_json::error::Category;

use super::problem::{ApiError, FieldProblem};

/// The checks of a body's fields, each by its type's rule (see [`super::fields`]):
/// exactly what the body's OpenAPI schema states. Each check adds a problem; all are
/// reported.
pub trait Validate {
    fn validate(&self, problems: &mut Vec<FieldProblem>);
}

pub fn problem(problems: &mut Vec<FieldProblem>, field: &str, message: impl Into<String>) {
    problems.push(FieldProblem { field: field.to_string(), message: message.into() });
}

/// A parsed, validated command body and the bytes it came from.
pub struct CommandBody<T> {
    pub value: T,
    pub raw: Bytes,
}

impl<S, T> FromRequest<S> for CommandBody<T>
where
    S: Send + Sync,
    T: DeserializeOwned + Validate,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let is_json = request
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|mime| {
                let mime = mime.trim().to_ascii_lowercase();
                mime == "application/json" || (mime.starts_with("application/") && mime.ends_with("+json"))
            });
        if !is_json {
            return Err(ApiError::UnsupportedMediaType);
        }
        let raw = Bytes::from_request(request, state).await.map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::PayloadTooLarge
            } else {
                ApiError::MalformedBody(rejection.body_text())
            }
        })?;
        let value = parse::<T>(&raw)?;
        let mut problems = Vec::new();
        value.validate(&mut problems);
        if !problems.is_empty() {
            return Err(ApiError::Validation(problems));
        }
        Ok(Self { value, raw })
    }
}

/// `value` as a `T` that passed its checks, or every problem with it: a bulk import's
/// row meets the same rules as a request body.
pub(crate) fn valid_from_value<T: DeserializeOwned + Validate>(
    value: serde_json::Value,
) -> Result<T, Vec<FieldProblem>> {
    let parsed: T = serde_path_to_error::deserialize(value).map_err(|error| {
        let path = error.path().to_string();
        vec![FieldProblem {
            field: if path == "." { String::new() } else { path },
            message: strip_position(&error.into_inner().to_string()),
        }]
    })?;
    let mut problems = Vec::new();
    parsed.validate(&mut problems);
    if problems.is_empty() {
        Ok(parsed)
    } else {
        Err(problems)
    }
}

/// Syntax errors are 400; a well-formed body of the wrong shape (missing, unknown or
/// mistyped fields) is 422 naming the field.
fn parse<T: DeserializeOwned>(raw: &[u8]) -> Result<T, ApiError> {
    let mut deserializer = serde_json::Deserializer::from_slice(raw);
    let value = serde_path_to_error::deserialize(&mut deserializer).map_err(|error| {
        let path = error.path().to_string();
        let inner = error.into_inner();
        match inner.classify() {
            Category::Data => ApiError::Validation(vec![FieldProblem {
                field: if path == "." { String::new() } else { path },
                message: strip_position(&inner.to_string()),
            }]),
            Category::Syntax | Category::Eof | Category::Io => {
                ApiError::MalformedBody(format!("not valid JSON: {inner}"))
            }
        }
    })?;
    deserializer.end().map_err(|e| ApiError::MalformedBody(format!("not valid JSON: {e}")))?;
    Ok(value)
}

/// serde's messages end with " at line 1 column 42"; the field path says more.
fn strip_position(message: &str) -> String {
    message.split(" at line ").next().unwrap_or(message).to_string()
}

/// A command body that may be left out entirely (no body, or `Content-Length: 0`);
/// then the command runs with `T::default()`.
pub struct OptionalCommandBody<T> {
    pub value: T,
    pub raw: Bytes,
}

impl<S, T> FromRequest<S> for OptionalCommandBody<T>
where
    S: Send + Sync,
    T: DeserializeOwned + Validate + Default,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let declared_empty = request
            .headers()
            .get(axum::http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim() == "0");
        let untyped = !request.headers().contains_key(CONTENT_TYPE);
        if declared_empty || untyped {
            let raw = Bytes::from_request(request, state).await.map_err(|r| ApiError::MalformedBody(r.body_text()))?;
            if raw.is_empty() {
                return Ok(Self { value: T::default(), raw });
            }
            return Err(ApiError::UnsupportedMediaType);
        }
        let CommandBody { value, raw } = CommandBody::<T>::from_request(request, state).await?;
        Ok(Self { value, raw })
    }
}
