//! The platform's business processes as durable process managers (DESIGN.md,
//! "Process managers"), on the shared consumer runtime.
//!
//! - [`workflow`]: what a workflow is — a pure fold into instance state, and the steps
//!   and timers that state wants.
//! - [`handler`]: a workflow as a handler of the log: state, decided steps and timers
//!   written with the checkpoint; only the active version decides anew.
//! - [`instances`]: a workflow version's tables and their set-based reads and writes.
//! - [`commands`]: the commands workflows decide and how one runs through the command
//!   side, under its idempotency key.
//! - [`outbox`]: the dispatcher that runs decided steps, retries and parks.
//! - [`timers`]: the scheduler that fires durable timers.
//! - [`order_lifecycle`]: reserving, holding, releasing, committing and expiring an
//!   order's stock.
//! - [`approvals`]: order and account approvals with a deadline.
//! - [`reservation_expiry`]: reservations made over HTTP expire at their `expires_at`.
//! - [`recurring_orders`], [`recurring_run`]: recurring orders, each run placed once at
//!   its time.
//! - [`operations`]: list, show, retry and discard instances (the CLI, GraphQL).
//! - [`metrics`], [`process`]: the `vectis-workflows` process.

pub mod approvals;
pub mod commands;
pub mod handler;
pub mod instances;
pub mod metrics;
pub mod operations;
pub mod order_lifecycle;
pub mod outbox;
pub mod process;
pub mod recurring_orders;
pub mod recurring_run;
pub mod reservation_expiry;
pub mod timers;
pub mod workflow;
