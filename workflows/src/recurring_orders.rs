//! Recurring orders (one instance per recurring order, from the account stream): a
//! durable timer per run, `run/<n>`, armed for the run's due time; when it fires, the
//! step `run/<n>` places that run's order (or records why not: the account suspended,
//! stock short) and the next run's timer is armed. After a downtime the overdue timer
//! fires once, the next one is due at once too, and so on: each missed run is placed
//! once, in order, and no run twice (the step's idempotency key and the deterministic
//! order id see to a retried step). Pausing cancels the pending timer; resuming arms
//! the run the resumption names; cancelling ends the instance.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;
use vectis_command_api::domain::{RecurringOrder, RecurringStatus};
use vectis_consumer::event::{DomainEvent, ProjectedEvent};
use vectis_read_side::{catalog::RECURRING_ORDER, ProjectionSpec};
use vectis_schemas::events::AccountEvent;

use crate::{
    commands::WorkflowCommand,
    workflow::{InstanceStatus, Step, TimerWish, Workflow},
};

const RUN_PREFIX: &str = "run/";

pub struct RecurringOrders;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecurringState {
    pub account_id: Uuid,
    pub order: RecurringOrder,
    /// The highest run whose timer fired (0: none yet).
    pub fired_up_to: i64,
    /// Runs whose timer fired and that are not settled yet (recorded, or passed over
    /// by a resumption).
    pub pending: BTreeSet<i64>,
}

impl RecurringState {
    /// The run whose timer should be pending.
    fn next_timer(&self) -> Option<(i64, DateTime<Utc>)> {
        if self.order.status != RecurringStatus::Active {
            return None;
        }
        let run = (self.fired_up_to + 1).max(self.order.resume_from);
        self.order.schedule.due_at(run).map(|due| (run, due))
    }
}

fn run_timer(run: i64) -> String {
    format!("{RUN_PREFIX}{run}")
}

impl Workflow for RecurringOrders {
    type State = RecurringState;

    fn spec(&self) -> &'static ProjectionSpec {
        &RECURRING_ORDER
    }

    fn instance_of(&self, event: &ProjectedEvent) -> Option<String> {
        match &event.event {
            DomainEvent::Account(e) => e.recurring_order_id().map(|id| id.to_string()),
            _ => None,
        }
    }

    fn evolve(&self, state: Option<Self::State>, event: &ProjectedEvent) -> Option<Self::State> {
        let DomainEvent::Account(event) = &event.event else {
            return state;
        };
        if let AccountEvent::RecurringOrderScheduled(e) = event {
            return Some(state.unwrap_or(RecurringState {
                account_id: e.account_id,
                order: RecurringOrder::scheduled(e),
                fired_up_to: 0,
                pending: BTreeSet::new(),
            }));
        }
        let mut state = state?;
        state.order.apply(event);
        state.pending.retain(|run| !state.order.is_settled(*run));
        Some(state)
    }

    fn timer_fired(&self, mut state: Self::State, timer: &str, _now: DateTime<Utc>) -> Self::State {
        if let Some(run) = timer.strip_prefix(RUN_PREFIX).and_then(|n| n.parse::<i64>().ok()) {
            state.fired_up_to = state.fired_up_to.max(run);
            if !state.order.is_settled(run) {
                state.pending.insert(run);
            }
        }
        state
    }

    fn steps(&self, state: &Self::State, _now: DateTime<Utc>) -> Vec<Step> {
        state
            .pending
            .iter()
            .copied()
            .filter_map(|run| {
                let scheduled_for = state.order.schedule.due_at(run)?;
                Some(Step {
                    name: run_timer(run),
                    command: WorkflowCommand::PlaceRecurringRun {
                        account_id: state.account_id,
                        recurring_order_id: state.order.id,
                        run,
                        scheduled_for,
                    },
                })
            })
            .collect()
    }

    fn timers(&self, state: &Self::State) -> Vec<TimerWish> {
        state.next_timer().map(|(run, due_at)| TimerWish { name: run_timer(run), due_at }).into_iter().collect()
    }

    fn status(&self, state: &Self::State) -> InstanceStatus {
        if state.pending.is_empty() && !state.order.is_live() {
            InstanceStatus::Completed
        } else {
            InstanceStatus::Running
        }
    }

    fn describe(&self, state: &Self::State) -> String {
        let order = &state.order;
        let done = format!("{} placed, {} skipped", order.runs_placed, order.runs_skipped);
        if let Some(run) = state.pending.first() {
            return format!("placing run {run} ({done})");
        }
        match (order.status, state.next_timer()) {
            (RecurringStatus::Cancelled, _) => format!("cancelled ({done})"),
            (RecurringStatus::Paused, _) => format!("paused ({done})"),
            (RecurringStatus::Active, Some((run, due))) => format!("next: run {run} at {} ({done})", due.to_rfc3339()),
            (RecurringStatus::Active, None) => format!("completed ({done})"),
        }
    }
}

#[cfg(test)]
#[path = "recurring_orders_tests.rs"]
mod tests;
