//! What a workflow (a process manager) is: a pure fold of the events it reacts to into
//! an instance's state, and, from that state, the steps it wants taken and the timers
//! it wants pending. The runtime ([`crate::handler`]) does the rest: it stores the
//! state with the checkpoint, issues each step once (through the outbox), arms and
//! cancels timers, and in replay issues nothing.
//!
//! Deciding from the state, not from single events, keeps a workflow correct whatever
//! order its topics interleave in (a rebuild reads each partition at its own pace) and
//! however a batch splits one append's events.

use chrono::{DateTime, Utc};
use serde::{de::DeserializeOwned, Serialize};
use vectis_consumer::event::ProjectedEvent;
use vectis_read_side::ProjectionSpec;

use crate::commands::WorkflowCommand;

/// One step an instance wants taken. `name` is unique within the instance's life: the
/// runtime issues a step once, and its idempotency key is `<instance>/<name>`.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    pub name: String,
    pub command: WorkflowCommand,
}

/// A timer an instance wants pending. `name` is unique within the instance's life: a
/// timer fires once; wanting it again after it fired arms nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimerWish {
    pub name: String,
    pub due_at: DateTime<Utc>,
}

pub use vectis_read_side::workflows::InstanceStatus;

/// A workflow type. Every function is pure: no I/O, `now` is given.
pub trait Workflow: Send + Sync + 'static {
    type State: Serialize + DeserializeOwned + Clone + Send + Sync + std::fmt::Debug + 'static;

    /// Its name (which names its consumer group, `vectis.workflow.<name>`, and its
    /// tables) and its topics.
    fn spec(&self) -> &'static ProjectionSpec;

    /// The instance `event` belongs to, if any (an order's lifecycle: the order id).
    fn instance_of(&self, event: &ProjectedEvent) -> Option<String>;

    /// Folds `event` into the instance's state (`None`: no state yet).
    fn evolve(&self, state: Option<Self::State>, event: &ProjectedEvent) -> Option<Self::State>;

    /// Folds the firing of the timer `timer`.
    fn timer_fired(&self, state: Self::State, timer: &str, now: DateTime<Utc>) -> Self::State;

    /// Every step that should have been taken by now in `state`: the runtime issues
    /// those not yet issued.
    fn steps(&self, state: &Self::State, now: DateTime<Utc>) -> Vec<Step>;

    /// The timers `state` wants pending: new ones are armed, pending ones no longer
    /// wanted are cancelled.
    fn timers(&self, state: &Self::State) -> Vec<TimerWish>;

    fn status(&self, state: &Self::State) -> InstanceStatus;

    /// A line for operators: what the instance waits for.
    fn describe(&self, state: &Self::State) -> String;
}
