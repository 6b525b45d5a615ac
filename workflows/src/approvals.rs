//! Approval deadlines (one instance per order or account awaiting staff): from the
//! request (an order's `OrderApprovalRequested`, an account's `AccountRegistered`) the
//! instance waits for the staff's decision; undecided when the deadline passes, it
//! rejects the subject "approval timed out". The rejection only applies to a subject
//! still waiting (the domain refuses it otherwise), so a staff decision racing the
//! deadline wins. Without a timeout (`ACCOUNT_APPROVAL_TIMEOUT=0`) the instances still
//! show what waits and for how long, and nothing is rejected.

use std::{sync::Arc, time::Duration};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;
use vectis_consumer::event::{DomainEvent, ProjectedEvent};
use vectis_read_side::{
    catalog::{ACCOUNT_APPROVAL, ORDER_APPROVAL},
    ProjectionSpec,
};
use vectis_schemas::events::{AccountEvent, OrderEvent};

use crate::{
    commands::WorkflowCommand,
    workflow::{InstanceStatus, Step, TimerWish, Workflow},
};

/// How long an order waits for staff by default (`ORDER_APPROVAL_TIMEOUT`).
pub const DEFAULT_ORDER_APPROVAL_TIMEOUT: Duration = Duration::from_secs(72 * 3600);
/// How long a registered account waits for staff by default (`ACCOUNT_APPROVAL_TIMEOUT`).
pub const DEFAULT_ACCOUNT_APPROVAL_TIMEOUT: Duration = Duration::from_secs(14 * 24 * 3600);

const DEADLINE: &str = "deadline";

/// What waits for approval.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subject {
    Order,
    Account,
}

pub struct ApprovalDeadline {
    pub subject: Subject,
    /// `None`: no deadline.
    pub timeout: Option<Duration>,
}

impl ApprovalDeadline {
    pub fn orders(timeout: Duration) -> Arc<Self> {
        Arc::new(Self { subject: Subject::Order, timeout: Some(timeout) })
    }

    /// `timeout` zero disables the deadline.
    pub fn accounts(timeout: Duration) -> Arc<Self> {
        Arc::new(Self { subject: Subject::Account, timeout: Some(timeout).filter(|t| !t.is_zero()) })
    }

    fn deadline(&self, state: &ApprovalState) -> Option<DateTime<Utc>> {
        let timeout = chrono::Duration::from_std(self.timeout?).ok()?;
        state.requested_at.checked_add_signed(timeout)
    }
}

/// How the wait ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "decision", content = "reason")]
pub enum Decision {
    Approved,
    Rejected(String),
    /// The order was cancelled while it waited.
    Withdrawn,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApprovalState {
    pub subject_id: Uuid,
    pub requested_at: DateTime<Utc>,
    pub decision: Option<Decision>,
    /// The deadline passed undecided.
    pub timed_out: bool,
}

/// What an event means for an approval: a request (at its time) or a decision.
enum Fact {
    Requested,
    Decided(Decision),
}

fn fact(event: &ProjectedEvent) -> Option<(Uuid, Fact)> {
    match &event.event {
        DomainEvent::Order(e) => {
            let fact = match e {
                OrderEvent::OrderApprovalRequested(_) => Fact::Requested,
                OrderEvent::OrderApproved(_) => Fact::Decided(Decision::Approved),
                OrderEvent::OrderRejected(r) => Fact::Decided(Decision::Rejected(r.reason.clone())),
                OrderEvent::OrderCancelled(_) => Fact::Decided(Decision::Withdrawn),
                _ => return None,
            };
            Some((e.order_id(), fact))
        }
        DomainEvent::Account(e) => {
            let fact = match e {
                AccountEvent::AccountRegistered(_) => Fact::Requested,
                AccountEvent::AccountApproved(_) => Fact::Decided(Decision::Approved),
                AccountEvent::AccountRejected(r) => Fact::Decided(Decision::Rejected(r.reason.clone())),
                _ => return None,
            };
            Some((e.account_id(), fact))
        }
        DomainEvent::Inventory(_) => None,
    }
}

impl Workflow for ApprovalDeadline {
    type State = ApprovalState;

    fn spec(&self) -> &'static ProjectionSpec {
        match self.subject {
            Subject::Order => &ORDER_APPROVAL,
            Subject::Account => &ACCOUNT_APPROVAL,
        }
    }

    fn instance_of(&self, event: &ProjectedEvent) -> Option<String> {
        let subject_matches = matches!(
            (&event.event, self.subject),
            (DomainEvent::Order(_), Subject::Order) | (DomainEvent::Account(_), Subject::Account)
        );
        subject_matches.then(|| fact(event)).flatten().map(|(id, _)| id.to_string())
    }

    /// A subject that never asked for approval has no instance: its decisions (an
    /// order rejected for stock) are not this workflow's business.
    fn evolve(&self, state: Option<Self::State>, event: &ProjectedEvent) -> Option<Self::State> {
        let (subject_id, fact) = fact(event)?;
        match (state, fact) {
            (None, Fact::Requested) => {
                Some(ApprovalState { subject_id, requested_at: event.occurred_at, decision: None, timed_out: false })
            }
            (None, Fact::Decided(_)) => None,
            (Some(state), Fact::Requested) => Some(state),
            (Some(mut state), Fact::Decided(decision)) => {
                state.decision.get_or_insert(decision);
                Some(state)
            }
        }
    }

    fn timer_fired(&self, mut state: Self::State, timer: &str, _now: DateTime<Utc>) -> Self::State {
        if timer == DEADLINE && state.decision.is_none() {
            state.timed_out = true;
        }
        state
    }

    fn steps(&self, state: &Self::State, _now: DateTime<Utc>) -> Vec<Step> {
        if !state.timed_out || state.decision.is_some() {
            return vec![];
        }
        let command = match self.subject {
            Subject::Order => WorkflowCommand::TimeOutOrderApproval { order_id: state.subject_id },
            Subject::Account => WorkflowCommand::TimeOutAccountApproval { account_id: state.subject_id },
        };
        vec![Step { name: "time_out".into(), command }]
    }

    fn timers(&self, state: &Self::State) -> Vec<TimerWish> {
        if state.decision.is_some() || state.timed_out {
            return vec![];
        }
        self.deadline(state).map(|due_at| TimerWish { name: DEADLINE.into(), due_at }).into_iter().collect()
    }

    fn status(&self, state: &Self::State) -> InstanceStatus {
        match &state.decision {
            None => InstanceStatus::Running,
            Some(Decision::Rejected(_)) if state.timed_out => InstanceStatus::Failed,
            Some(_) => InstanceStatus::Completed,
        }
    }

    fn describe(&self, state: &Self::State) -> String {
        let since = state.requested_at.to_rfc3339();
        match (&state.decision, self.deadline(state)) {
            (None, _) if state.timed_out => "approval timed out: rejecting".into(),
            (None, Some(deadline)) => {
                format!("waiting for staff approval since {since}, until {}", deadline.to_rfc3339())
            }
            (None, None) => format!("waiting for staff approval since {since} (no deadline)"),
            (Some(Decision::Approved), _) => "done: approved".into(),
            (Some(Decision::Rejected(reason)), _) => format!("done: rejected ({reason})"),
            (Some(Decision::Withdrawn), _) => "done: the order was cancelled while waiting".into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use vectis_schemas::{
        events::{AccountApproved, AccountRegistered, Money, OrderApprovalRequested, OrderApproved, OrderRejected},
        StreamId,
    };

    use super::*;

    fn at(seconds: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + seconds, 0).expect("time")
    }

    fn event(event: DomainEvent, seconds: i64) -> ProjectedEvent {
        ProjectedEvent {
            event_id: Uuid::new_v4(),
            correlation_id: Uuid::nil(),
            stream_id: StreamId::order(Uuid::nil()),
            stream_version: 1,
            global_position: 1,
            occurred_at: at(seconds),
            event,
        }
    }

    fn fold(workflow: &ApprovalDeadline, events: &[ProjectedEvent]) -> Option<ApprovalState> {
        events.iter().fold(None, |state, e| workflow.evolve(state, e))
    }

    fn order(e: impl Into<OrderEvent>, seconds: i64) -> ProjectedEvent {
        event(DomainEvent::Order(e.into()), seconds)
    }

    fn requested(order_id: Uuid, seconds: i64) -> ProjectedEvent {
        let total = Money { amount_minor: 500_000, currency: "EUR".into() };
        let threshold = Money { amount_minor: 100_000, currency: "EUR".into() };
        order(
            OrderApprovalRequested { order_id, account_id: Uuid::nil(), total, approval_threshold: threshold },
            seconds,
        )
    }

    #[test]
    fn an_undecided_order_is_rejected_once_at_its_deadline() {
        let workflow = ApprovalDeadline::orders(Duration::from_secs(3600));
        let order_id = Uuid::from_u128(7);
        let state = fold(&workflow, &[requested(order_id, 0)]).expect("an instance");
        assert_eq!(workflow.timers(&state), vec![TimerWish { name: DEADLINE.into(), due_at: at(3600) }]);
        assert!(workflow.steps(&state, at(3599)).is_empty(), "nothing before the deadline");
        assert_eq!(workflow.status(&state), InstanceStatus::Running);

        let state = workflow.timer_fired(state, DEADLINE, at(3600));
        let steps = workflow.steps(&state, at(3600));
        assert_eq!(
            steps,
            vec![Step { name: "time_out".into(), command: WorkflowCommand::TimeOutOrderApproval { order_id } }]
        );
        assert!(workflow.timers(&state).is_empty(), "the deadline is not armed again");

        let rejected = OrderRejected {
            order_id,
            rejected_by: "workflow:order_approval".into(),
            reason: "approval timed out".into(),
        };
        let state = workflow.evolve(Some(state), &order(rejected, 3601)).expect("state");
        assert!(workflow.steps(&state, at(3601)).is_empty());
        assert_eq!(workflow.status(&state), InstanceStatus::Failed);
    }

    #[test]
    fn a_decision_before_the_deadline_cancels_it_and_wins_a_race_with_it() {
        let workflow = ApprovalDeadline::orders(Duration::from_secs(60));
        let order_id = Uuid::from_u128(8);
        let approved = order(OrderApproved { order_id, approved_by: "staff".into() }, 30);
        let state = fold(&workflow, &[requested(order_id, 0), approved.clone()]).expect("state");
        assert!(workflow.timers(&state).is_empty(), "decided: no deadline pending");
        assert_eq!(workflow.status(&state), InstanceStatus::Completed);

        // The timer fired, then the approval arrived before the step ran: the step is
        // no longer wanted (and the domain would refuse it anyway).
        let fired = workflow.timer_fired(fold(&workflow, &[requested(order_id, 0)]).expect("state"), DEADLINE, at(60));
        let state = workflow.evolve(Some(fired), &approved).expect("state");
        assert!(workflow.steps(&state, at(61)).is_empty());
    }

    #[test]
    fn orders_that_never_asked_for_approval_have_no_instance() {
        let workflow = ApprovalDeadline::orders(Duration::from_secs(60));
        let rejected =
            order(OrderRejected { order_id: Uuid::from_u128(9), rejected_by: "x".into(), reason: "stock".into() }, 1);
        assert_eq!(workflow.instance_of(&rejected).as_deref(), Some(Uuid::from_u128(9).to_string().as_str()));
        assert!(workflow.evolve(None, &rejected).is_none());
    }

    #[test]
    fn accounts_wait_without_a_deadline_when_it_is_zero() {
        let account_id = Uuid::from_u128(10);
        let eur = |amount_minor| Money { amount_minor, currency: "EUR".into() };
        let registered = event(
            DomainEvent::Account(
                AccountRegistered {
                    account_id,
                    name: "Acme".into(),
                    email: "a@example.com".into(),
                    credit_limit: eur(100),
                    approval_threshold: eur(50),
                }
                .into(),
            ),
            0,
        );
        let disabled = ApprovalDeadline::accounts(Duration::ZERO);
        let state = fold(&disabled, std::slice::from_ref(&registered)).expect("an instance");
        assert!(disabled.timers(&state).is_empty());
        assert!(disabled.describe(&state).contains("no deadline"));

        let workflow = ApprovalDeadline::accounts(Duration::from_secs(10));
        assert!(workflow.instance_of(&requested(account_id, 0)).is_none(), "order events are not the accounts'");
        let state = workflow.timer_fired(fold(&workflow, &[registered]).expect("state"), DEADLINE, at(10));
        assert_eq!(
            workflow.steps(&state, at(10)),
            vec![Step { name: "time_out".into(), command: WorkflowCommand::TimeOutAccountApproval { account_id } }]
        );
        let approved =
            event(DomainEvent::Account(AccountApproved { account_id, approved_by: "staff".into() }.into()), 11);
        let state = workflow.evolve(Some(state), &approved).expect("state");
        assert_eq!(workflow.status(&state), InstanceStatus::Completed);
    }
}
