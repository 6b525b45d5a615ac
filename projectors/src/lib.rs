//! The read side: the consumer-group projector runtime and the PostgreSQL read models
//! it builds (DESIGN.md, "Projectors").
//!
//! - [`event`]: a Kafka record decoded into a typed, upcast event.
//! - [`projection`]: what a read model implements — its tables and a set-based apply.
//! - [`store`]: versioned table sets, the `read` views, checkpoints, stream versions,
//!   dead letters.
//! - [`runtime`]: one consumer group per projection; batches applied in one PostgreSQL
//!   transaction with their checkpoints; duplicates skipped, gaps and poison parked.
//! - [`lag`]: how far a projection version is behind the log, in events and seconds.
//! - [`stall`]: which partitions are idle, progressing or stuck.
//! - [`rebuild`]: blue/green rebuild of a projection into a new version.
//! - [`dead_letters`]: parked events for operators: list, retry, discard.
//! - [`read_models`]: accounts, inventory, orders.
//! - [`search`]: the search indexes and their projectors (Meilisearch or embedded).

pub mod dead_letters;
pub mod event;
pub mod lag;
pub mod metrics;
pub mod process;
pub mod projection;
pub mod read_models;
pub mod rebuild;
pub mod republish;
pub mod runtime;
pub mod search;
pub mod stall;
pub mod store;
