//! async-graphql schema over the read models and search. Filled by the query-side issue.
//!
//! Nothing lives here yet: see DESIGN.md for what this crate will hold.
