//! The write model (aggregates) and the axum HTTP command endpoints. Filled by the write-side issue.
//!
//! Nothing lives here yet: see DESIGN.md for what this crate will hold.
