//! Path and query parameters, and requests no route takes, answered as problems like
//! every other refusal: axum's own rejections are plain text.

use axum::{
    extract::{FromRequestParts, Path, Query},
    http::{request::Parts, Method, Uri},
};
use serde::de::DeserializeOwned;

use super::problem::ApiError;

/// `Path<T>` whose rejection is a 400 problem naming the parameter.
pub struct ApiPath<T>(pub T);

impl<S, T> FromRequestParts<S> for ApiPath<T>
where
    S: Send + Sync,
    T: DeserializeOwned + Send,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match Path::<T>::from_request_parts(parts, state).await {
            Ok(Path(value)) => Ok(Self(value)),
            Err(rejection) => Err(ApiError::InvalidPath(rejection.body_text())),
        }
    }
}

/// `Query<T>` whose rejection is a 400 problem naming the parameter.
pub struct ApiQuery<T>(pub T);

impl<S, T> FromRequestParts<S> for ApiQuery<T>
where
    S: Send + Sync,
    T: DeserializeOwned + Send,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match Query::<T>::from_request_parts(parts, state).await {
            Ok(Query(value)) => Ok(Self(value)),
            Err(rejection) => Err(ApiError::InvalidQuery(rejection.body_text())),
        }
    }
}

/// The router's fallback: no route has this path.
pub async fn no_route(method: Method, uri: Uri) -> ApiError {
    ApiError::NoRoute(format!("no endpoint {method} {}; the endpoints are listed at /openapi.json", uri.path()))
}

/// The router's fallback for a known path and another method.
pub async fn method_not_allowed(method: Method, uri: Uri) -> ApiError {
    ApiError::MethodNotAllowed(format!("{} does not take {method}; /openapi.json lists what it takes", uri.path()))
}
