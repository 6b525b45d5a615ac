//! The write side of Vectis.
//!
//! * [`domain`]: the aggregates Account, InventoryItem and Order. Each is pure and
//!   synchronous: `decide(&state, command) -> Result<Vec<Event>, DomainError>` and
//!   `evolve(state, &event) -> state`, with no I/O. Cross-aggregate facts (is the
//!   account approved, does the SKU exist) are read by the caller and passed in.
//!
//! * [`handling`]: load an aggregate, decide, append at the version it was loaded at;
//!   retry a lost race on fresh state unless the client pinned a version.
//! * `loading` and [`state_cache`]: an aggregate's state from a cached or snapshotted
//!   state and the events after it, so a command's cost does not grow with its stream.
//! * [`http`]: the axum command endpoints and their OpenAPI document.

pub mod domain;
pub mod handling;
pub mod http;
pub mod imports;
mod loading;
pub mod process;
pub mod state_cache;
