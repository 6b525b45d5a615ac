//! The consumer runtime (DESIGN.md, "The consumer runtime"): what every handler of the
//! log runs on — the projections now, the process managers next.
//!
//! - [`event`]: a Kafka record decoded into a typed, upcast event.
//! - [`handler`]: what a handler implements — a set-based apply in PostgreSQL.
//! - [`runtime`]: one consumer group per handler version, starting at the PostgreSQL
//!   checkpoints; batches applied in one transaction with their checkpoints; stream by
//!   stream after repeated failures; a stuck consumer rejoins.
//! - [`settings`]: its tuning values.
//! - [`sequencing`]: duplicate, next or gap — the one rule for a stream's versions.
//! - [`checkpoints`]: checkpoints, stream versions, dead letters, the handler's row lock.
//! - [`dead_letters`]: parked events for operators: list, retry, discard.
//! - [`lag`]: how far a version is behind the log, in events and seconds.
//! - [`lag_report`]: lag measured every interval for a process's handlers: metrics, stuck consumers rejoin.
//! - [`lag_monitor`]: every group's lag measured from outside it (the relay runs it), so a dead consumer's shows.
//! - [`stall`]: which partitions are idle, progressing or stuck.
//! - [`metrics`]: the runtime's metrics, labelled by handler.
//! - [`tables`]: a handler's versioned table set and the `read` views over it.

mod batch;
pub mod checkpoints;
pub mod dead_letters;
pub mod event;
pub mod handler;
pub mod lag;
pub mod lag_monitor;
pub mod lag_report;
pub mod metrics;
mod rebalance;
pub mod runtime;
pub mod sequencing;
pub mod settings;
pub mod stall;
pub mod tables;
