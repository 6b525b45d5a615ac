//! Account: a B2B customer. Registers as pending approval; staff approve or reject
//! it; an approved account can be suspended and reinstated; its credit limit and
//! order approval threshold can change. It also holds the account's recurring orders
//! (`recurring_order.rs`).

use std::{collections::BTreeMap, fmt};

use serde::{Deserialize, Serialize};
use uuid::Uuid;
use vectis_schemas::events::{
    AccountApproved, AccountEvent, AccountRegistered, AccountReinstated, AccountRejected, AccountSuspended,
    ApprovalThresholdChanged, CreditLimitChanged, Money,
};

use super::{
    recurring_order::{RecurringOrder, RecurringOrderCommand},
    DomainError,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum AccountStatus {
    PendingApproval,
    Approved,
    Rejected,
    Suspended,
}

impl fmt::Display for AccountStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::PendingApproval => "pending approval",
            Self::Approved => "approved",
            Self::Rejected => "rejected",
            Self::Suspended => "suspended",
        })
    }
}

/// Bounded: besides its own fields it holds its recurring orders, at most 100 live ones
/// plus those that ended (each created by a person, not by traffic).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    pub id: Uuid,
    pub name: String,
    pub email: String,
    pub status: AccountStatus,
    pub credit_limit: Money,
    pub approval_threshold: Money,
    pub recurring_orders: BTreeMap<Uuid, RecurringOrder>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccountCommand {
    Register { account_id: Uuid, name: String, email: String, credit_limit: Money, approval_threshold: Money },
    Approve { by: String },
    Reject { by: String, reason: String },
    Suspend { by: String, reason: String },
    Reinstate { by: String },
    ChangeCreditLimit { credit_limit: Money },
    ChangeApprovalThreshold { approval_threshold: Money },
    Recurring(RecurringOrderCommand),
}

impl Account {
    /// Decides what `command` means for the account (`None`: not registered yet).
    /// A change to the value the account already has decides no events.
    pub fn decide(state: &Option<Account>, command: AccountCommand) -> Result<Vec<AccountEvent>, DomainError> {
        match (state, command) {
            (None, AccountCommand::Register { account_id, name, email, credit_limit, approval_threshold }) => {
                check_amount("credit limit", &credit_limit)?;
                check_amount("approval threshold", &approval_threshold)?;
                if credit_limit.currency != approval_threshold.currency {
                    return Err(DomainError::Rule(format!(
                        "credit limit ({}) and approval threshold ({}) must share a currency",
                        credit_limit.currency, approval_threshold.currency
                    )));
                }
                Ok(vec![AccountRegistered { account_id, name, email, credit_limit, approval_threshold }.into()])
            }
            (None, _) => Err(DomainError::NotFound("account is not registered".into())),
            (Some(account), command) => account.decide_registered(command),
        }
    }

    fn decide_registered(&self, command: AccountCommand) -> Result<Vec<AccountEvent>, DomainError> {
        let account_id = self.id;
        let require = |allowed: AccountStatus, action: &str| {
            if self.status == allowed {
                Ok(())
            } else {
                Err(DomainError::InvalidState(format!(
                    "cannot {action} account {account_id}: it is {}, and only a {allowed} account can be",
                    self.status
                )))
            }
        };
        Ok(match command {
            AccountCommand::Register { .. } => {
                return Err(DomainError::AlreadyExists(format!("account {account_id} is already registered")));
            }
            AccountCommand::Approve { by } => {
                require(AccountStatus::PendingApproval, "approve")?;
                vec![AccountApproved { account_id, approved_by: by }.into()]
            }
            AccountCommand::Reject { by, reason } => {
                require(AccountStatus::PendingApproval, "reject")?;
                vec![AccountRejected { account_id, rejected_by: by, reason }.into()]
            }
            AccountCommand::Suspend { by, reason } => {
                require(AccountStatus::Approved, "suspend")?;
                vec![AccountSuspended { account_id, suspended_by: by, reason }.into()]
            }
            AccountCommand::Reinstate { by } => {
                require(AccountStatus::Suspended, "reinstate")?;
                vec![AccountReinstated { account_id, reinstated_by: by }.into()]
            }
            AccountCommand::ChangeCreditLimit { credit_limit } => {
                self.check_changeable("credit limit", &credit_limit)?;
                if credit_limit == self.credit_limit {
                    return Ok(vec![]);
                }
                vec![CreditLimitChanged { account_id, previous_credit_limit: self.credit_limit.clone(), credit_limit }
                    .into()]
            }
            AccountCommand::ChangeApprovalThreshold { approval_threshold } => {
                self.check_changeable("approval threshold", &approval_threshold)?;
                if approval_threshold == self.approval_threshold {
                    return Ok(vec![]);
                }
                vec![ApprovalThresholdChanged {
                    account_id,
                    previous_approval_threshold: self.approval_threshold.clone(),
                    approval_threshold,
                }
                .into()]
            }
            AccountCommand::Recurring(command) => return self.decide_recurring(command),
        })
    }

    /// The version of this state's shape and of `evolve`. Bump it with any change to
    /// either: snapshots taken under another version are then ignored and replaced.
    pub const STATE_VERSION: i32 = 1;

    /// Applies one event. Events come from the store, so they are facts: an event that
    /// does not fit the state is applied as far as it goes rather than refused.
    pub fn evolve(state: Option<Account>, event: &AccountEvent) -> Option<Account> {
        match (state, event) {
            (_, AccountEvent::AccountRegistered(e)) => Some(Account {
                id: e.account_id,
                name: e.name.clone(),
                email: e.email.clone(),
                status: AccountStatus::PendingApproval,
                credit_limit: e.credit_limit.clone(),
                approval_threshold: e.approval_threshold.clone(),
                recurring_orders: BTreeMap::new(),
            }),
            (None, _) => None,
            (Some(mut account), event) => {
                match event {
                    AccountEvent::AccountRegistered(_) => {}
                    AccountEvent::AccountApproved(_) | AccountEvent::AccountReinstated(_) => {
                        account.status = AccountStatus::Approved
                    }
                    AccountEvent::AccountRejected(_) => account.status = AccountStatus::Rejected,
                    AccountEvent::AccountSuspended(_) => account.status = AccountStatus::Suspended,
                    AccountEvent::CreditLimitChanged(e) => account.credit_limit = e.credit_limit.clone(),
                    AccountEvent::ApprovalThresholdChanged(e) => {
                        account.approval_threshold = e.approval_threshold.clone()
                    }
                    _ => Account::evolve_recurring(&mut account.recurring_orders, event),
                }
                Some(account)
            }
        }
    }

    /// True when the account may place orders.
    pub fn can_order(&self) -> bool {
        self.status == AccountStatus::Approved
    }

    fn check_changeable(&self, what: &str, amount: &Money) -> Result<(), DomainError> {
        if self.status == AccountStatus::Rejected {
            return Err(DomainError::InvalidState(format!(
                "cannot change the {what} of account {}: it is rejected",
                self.id
            )));
        }
        check_amount(what, amount)?;
        if amount.currency != self.credit_limit.currency {
            return Err(DomainError::Rule(format!(
                "the {what} must be in the account's currency {}, not {}",
                self.credit_limit.currency, amount.currency
            )));
        }
        Ok(())
    }
}

fn check_amount(what: &str, amount: &Money) -> Result<(), DomainError> {
    if amount.amount_minor < 0 {
        return Err(DomainError::Rule(format!("the {what} cannot be negative")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{fold, testing::*};

    fn registered() -> AccountEvent {
        AccountRegistered {
            account_id: id(1),
            name: "Acme".into(),
            email: "buyer@acme.example".into(),
            credit_limit: eur(100_000),
            approval_threshold: eur(50_000),
        }
        .into()
    }

    fn given(events: Vec<AccountEvent>) -> Option<Account> {
        fold(None, events, Account::evolve)
    }

    fn approved() -> AccountEvent {
        AccountApproved { account_id: id(1), approved_by: "staff".into() }.into()
    }

    fn suspended() -> AccountEvent {
        AccountSuspended { account_id: id(1), suspended_by: "staff".into(), reason: "late payments".into() }.into()
    }

    fn register_command() -> AccountCommand {
        AccountCommand::Register {
            account_id: id(1),
            name: "Acme".into(),
            email: "buyer@acme.example".into(),
            credit_limit: eur(100_000),
            approval_threshold: eur(50_000),
        }
    }

    #[test]
    fn registering_makes_a_pending_account() {
        let events = Account::decide(&None, register_command()).expect("registers");
        assert_eq!(events, vec![registered()]);
        assert_eq!(given(events).map(|a| a.status), Some(AccountStatus::PendingApproval));
    }

    #[test]
    fn registering_twice_is_refused() {
        let err = Account::decide(&given(vec![registered()]), register_command()).expect_err("exists");
        assert!(matches!(err, DomainError::AlreadyExists(_)));
    }

    #[test]
    fn registering_with_mixed_currencies_or_negative_amounts_is_refused() {
        let mut command = register_command();
        if let AccountCommand::Register { approval_threshold, .. } = &mut command {
            *approval_threshold = Money::new(10, "USD");
        }
        assert!(matches!(Account::decide(&None, command), Err(DomainError::Rule(_))));
        let mut command = register_command();
        if let AccountCommand::Register { credit_limit, .. } = &mut command {
            credit_limit.amount_minor = -1;
        }
        assert!(matches!(Account::decide(&None, command), Err(DomainError::Rule(_))));
    }

    #[test]
    fn commands_on_an_unregistered_account_are_not_found() {
        let err = Account::decide(&None, AccountCommand::Approve { by: "staff".into() }).expect_err("none");
        assert!(matches!(err, DomainError::NotFound(_)));
    }

    #[test]
    fn a_pending_account_is_approved_or_rejected_once() {
        let pending = given(vec![registered()]);
        assert_eq!(Account::decide(&pending, AccountCommand::Approve { by: "staff".into() }), Ok(vec![approved()]));
        let rejected =
            Account::decide(&pending, AccountCommand::Reject { by: "staff".into(), reason: "no VAT id".into() })
                .expect("rejects");
        assert_eq!(given([vec![registered()], rejected].concat()).map(|a| a.status), Some(AccountStatus::Rejected));

        let active = given(vec![registered(), approved()]);
        let err = Account::decide(&active, AccountCommand::Approve { by: "staff".into() }).expect_err("twice");
        assert_eq!(
            err,
            DomainError::InvalidState(format!(
                "cannot approve account {}: it is approved, and only a pending approval account can be",
                id(1)
            ))
        );
        assert!(Account::decide(&active, AccountCommand::Reject { by: "s".into(), reason: "r".into() }).is_err());
    }

    #[test]
    fn only_approved_accounts_are_suspended_and_only_suspended_ones_reinstated() {
        let pending = given(vec![registered()]);
        let suspend = || AccountCommand::Suspend { by: "staff".into(), reason: "late payments".into() };
        let reinstate = || AccountCommand::Reinstate { by: "staff".into() };
        assert!(
            matches!(Account::decide(&pending, suspend()), Err(DomainError::InvalidState(m)) if m.contains("pending approval"))
        );
        let active = given(vec![registered(), approved()]);
        assert_eq!(Account::decide(&active, suspend()), Ok(vec![suspended()]));
        assert!(matches!(Account::decide(&active, reinstate()), Err(DomainError::InvalidState(_))));
        let off = given(vec![registered(), approved(), suspended()]);
        assert!(!off.as_ref().expect("exists").can_order());
        let back = Account::decide(&off, reinstate()).expect("reinstates");
        let account = given([vec![registered(), approved(), suspended()], back].concat()).expect("exists");
        assert!(account.can_order());
    }

    #[test]
    fn credit_limit_and_threshold_changes_record_the_previous_value() {
        let active = given(vec![registered(), approved()]);
        let events =
            Account::decide(&active, AccountCommand::ChangeCreditLimit { credit_limit: eur(200_000) }).expect("ok");
        assert_eq!(
            events,
            vec![CreditLimitChanged {
                account_id: id(1),
                previous_credit_limit: eur(100_000),
                credit_limit: eur(200_000)
            }
            .into()]
        );
        let events = Account::decide(&active, AccountCommand::ChangeApprovalThreshold { approval_threshold: eur(0) })
            .expect("ok");
        let account = given([vec![registered(), approved()], events].concat()).expect("exists");
        assert_eq!(account.approval_threshold, eur(0));
    }

    #[test]
    fn unchanged_values_decide_nothing_and_bad_values_are_refused() {
        let active = given(vec![registered(), approved()]);
        assert_eq!(
            Account::decide(&active, AccountCommand::ChangeCreditLimit { credit_limit: eur(100_000) }),
            Ok(vec![])
        );
        let usd = AccountCommand::ChangeCreditLimit { credit_limit: Money::new(1, "USD") };
        assert!(matches!(Account::decide(&active, usd), Err(DomainError::Rule(m)) if m.contains("EUR")));
        let negative = AccountCommand::ChangeApprovalThreshold { approval_threshold: eur(-5) };
        assert!(matches!(Account::decide(&active, negative), Err(DomainError::Rule(_))));
        let rejected = given(vec![
            registered(),
            AccountRejected { account_id: id(1), rejected_by: "s".into(), reason: "r".into() }.into(),
        ]);
        let change = AccountCommand::ChangeCreditLimit { credit_limit: eur(1) };
        assert!(matches!(Account::decide(&rejected, change), Err(DomainError::InvalidState(_))));
    }
}
