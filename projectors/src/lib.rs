//! The read side: the consumer-group projector runtime and the PostgreSQL read models
//! it builds (DESIGN.md, "Projectors").
//!
//! - [`event`]: a Kafka record decoded into a typed, upcast event.
//! - [`projection`]: what a read model implements — its tables and a set-based apply.
//! - [`store`]: versioned table sets, the `read` views, checkpoints, stream versions,
//!   dead letters.
//! - [`runtime`]: one consumer group per projection; batches applied in one PostgreSQL
//!   transaction with their checkpoints; duplicates skipped, gaps and poison parked.
//! - [`read_models`]: accounts, inventory, orders.

pub mod event;
pub mod metrics;
pub mod process;
pub mod projection;
pub mod read_models;
pub mod runtime;
pub mod store;
