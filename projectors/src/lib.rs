//! Consumer-group projector runtime, PostgreSQL read models, search projectors and lag metrics. Filled by the read-side issue.
//!
//! Nothing lives here yet: see DESIGN.md for what this crate will hold.
