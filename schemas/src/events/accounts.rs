use super::{topic_events, Money};
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
        }
    }
}
