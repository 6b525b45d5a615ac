//! The write side of Vectis.
//!
//! * [`domain`]: the aggregates Account, InventoryItem and Order. Each is pure and
//!   synchronous: `decide(&state, command) -> Result<Vec<Event>, DomainError>` and
//!   `evolve(state, &event) -> state`, with no I/O. Cross-aggregate facts (is the
//!   account approved, does the SKU exist) are read by the caller and passed in.
//!
//! * [`handling`]: load an aggregate from its stream, decide, append at the version it
//!   was loaded at; retry a lost race on fresh state unless the client pinned a version.
//!
//! The HTTP command endpoints arrive with the rest of the write-side issue.

pub mod domain;
pub mod handling;
pub mod http;
pub mod process;
