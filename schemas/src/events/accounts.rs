use super::{topic_events, Money};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountRegistered {
    pub account_id: Uuid,
    pub name: String,
    pub email: String,
    pub credit_limit: Money,
    pub approval_threshold: Money,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountApproved {
    pub account_id: Uuid,
    pub approved_by: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountRejected {
    pub account_id: Uuid,
    pub rejected_by: String,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountSuspended {
    pub account_id: Uuid,
    pub suspended_by: String,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountReinstated {
    pub account_id: Uuid,
    pub reinstated_by: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreditLimitChanged {
    pub account_id: Uuid,
    pub previous_credit_limit: Money,
    pub credit_limit: Money,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApprovalThresholdChanged {
    pub account_id: Uuid,
    pub previous_approval_threshold: Money,
    pub approval_threshold: Money,
}

/// What each run of a recurring order orders (priced when the run places it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecurringLine {
    pub sku: String,
    pub quantity: i64,
}

/// Run `n` (from 1) is due at `starts_at + (n - 1) * interval_seconds`, while `n` is at
/// most `max_runs` and its time not after `ends_at`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecurringOrderScheduled {
    pub account_id: Uuid,
    pub recurring_order_id: Uuid,
    pub lines: Vec<RecurringLine>,
    pub starts_at: DateTime<Utc>,
    pub interval_seconds: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ends_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_runs: Option<i64>,
    pub scheduled_by: String,
}

/// When run `run` of a schedule is due, by the contract above; `None` when the schedule
/// has no such run.
pub fn recurring_run_due_at(
    starts_at: DateTime<Utc>,
    interval_seconds: i64,
    ends_at: Option<DateTime<Utc>>,
    max_runs: Option<i64>,
    run: i64,
) -> Option<DateTime<Utc>> {
    if run < 1 || max_runs.is_some_and(|max| run > max) {
        return None;
    }
    let offset = chrono::Duration::try_seconds((run - 1).checked_mul(interval_seconds)?)?;
    let due = starts_at.checked_add_signed(offset)?;
    ends_at.is_none_or(|end| due <= end).then_some(due)
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecurringOrderPaused {
    pub account_id: Uuid,
    pub recurring_order_id: Uuid,
    pub paused_by: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecurringOrderResumed {
    pub account_id: Uuid,
    pub recurring_order_id: Uuid,
    pub resumed_by: String,
    /// The first run due at or after the resumption: the runs due while paused are
    /// not placed.
    pub next_run: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecurringOrderCancelled {
    pub account_id: Uuid,
    pub recurring_order_id: Uuid,
    pub cancelled_by: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecurringOrderRunPlaced {
    pub account_id: Uuid,
    pub recurring_order_id: Uuid,
    pub run: i64,
    pub scheduled_for: DateTime<Utc>,
    pub order_id: Uuid,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecurringOrderRunSkipped {
    pub account_id: Uuid,
    pub recurring_order_id: Uuid,
    pub run: i64,
    pub scheduled_for: DateTime<Utc>,
    pub reason: String,
}

topic_events!(
    /// Events of the `vectis.accounts` topic.
    AccountEvent, crate::topics::ACCOUNTS, {
    AccountRegistered,
    AccountApproved,
    AccountRejected,
    AccountSuspended,
    AccountReinstated,
    CreditLimitChanged,
    ApprovalThresholdChanged,
    RecurringOrderScheduled,
    RecurringOrderPaused,
    RecurringOrderResumed,
    RecurringOrderCancelled,
    RecurringOrderRunPlaced,
    RecurringOrderRunSkipped,
});

impl AccountEvent {
    /// The account the event belongs to (its stream is `account-<id>`).
    pub fn account_id(&self) -> Uuid {
        match self {
            Self::AccountRegistered(e) => e.account_id,
            Self::AccountApproved(e) => e.account_id,
            Self::AccountRejected(e) => e.account_id,
            Self::AccountSuspended(e) => e.account_id,
            Self::AccountReinstated(e) => e.account_id,
            Self::CreditLimitChanged(e) => e.account_id,
            Self::ApprovalThresholdChanged(e) => e.account_id,
            Self::RecurringOrderScheduled(e) => e.account_id,
            Self::RecurringOrderPaused(e) => e.account_id,
            Self::RecurringOrderResumed(e) => e.account_id,
            Self::RecurringOrderCancelled(e) => e.account_id,
            Self::RecurringOrderRunPlaced(e) => e.account_id,
            Self::RecurringOrderRunSkipped(e) => e.account_id,
        }
    }

    /// The recurring order the event is about, if it is about one.
    pub fn recurring_order_id(&self) -> Option<Uuid> {
        match self {
            Self::RecurringOrderScheduled(e) => Some(e.recurring_order_id),
            Self::RecurringOrderPaused(e) => Some(e.recurring_order_id),
            Self::RecurringOrderResumed(e) => Some(e.recurring_order_id),
            Self::RecurringOrderCancelled(e) => Some(e.recurring_order_id),
            Self::RecurringOrderRunPlaced(e) => Some(e.recurring_order_id),
            Self::RecurringOrderRunSkipped(e) => Some(e.recurring_order_id),
            _ => None,
        }
    }
}
