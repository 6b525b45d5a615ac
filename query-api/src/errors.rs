//! GraphQL errors with a stable `code` extension clients can branch on. Infrastructure
//! failures say nothing internal: the detail goes to the log.

use async_graphql::{Error, ErrorExtensions};

/// The caller's mistake: a value out of range, a malformed argument.
pub const BAD_USER_INPUT: &str = "BAD_USER_INPUT";
/// An `after` cursor this service did not issue (or issued for another list).
pub const INVALID_CURSOR: &str = "INVALID_CURSOR";
/// A read model or the search engine failed; retry later.
pub const UNAVAILABLE: &str = "UNAVAILABLE";
/// `X-Consistency-Token` is not a token a command answered with.
pub const INVALID_CONSISTENCY_TOKEN: &str = "INVALID_CONSISTENCY_TOKEN";
/// `__schema` / `__type` asked of a production service.
pub const INTROSPECTION_DISABLED: &str = "INTROSPECTION_DISABLED";
/// The document is not GraphQL.
pub const GRAPHQL_PARSE_FAILED: &str = "GRAPHQL_PARSE_FAILED";
/// The document is over the size limit.
pub const QUERY_TOO_LARGE: &str = "QUERY_TOO_LARGE";

pub fn coded(message: impl Into<String>, code: &'static str) -> Error {
    Error::new(message).extend_with(|_, extensions| extensions.set("code", code))
}

pub fn bad_input(message: impl Into<String>) -> Error {
    coded(message, BAD_USER_INPUT)
}

/// Logs `error` and answers with a message that reveals nothing about it.
pub fn unavailable(error: impl std::fmt::Display) -> Error {
    tracing::error!(%error, "a query failed");
    coded("the read models are unavailable; try again", UNAVAILABLE)
}
