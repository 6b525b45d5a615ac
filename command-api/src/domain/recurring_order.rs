//! Recurring orders: an approved account's order placed again at a fixed interval.
//! They live on the account's stream (an account's schedules are decided with its
//! status: only an approved account schedules), as part of the [`Account`] aggregate.
//! Each run is placed by the `recurring_order` workflow, priced from that day's
//! catalogue, and recorded on the account, placed or skipped with its reason, once.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;
use vectis_schemas::events::{
    recurring_run_due_at, AccountEvent, RecurringLine, RecurringOrderCancelled, RecurringOrderPaused,
    RecurringOrderResumed, RecurringOrderRunPlaced, RecurringOrderRunSkipped, RecurringOrderScheduled,
};

use super::{Account, AccountStatus, DomainError};

/// How many recurring orders an account may have that still run (active or paused).
pub const MAX_LIVE_RECURRING_ORDERS: usize = 100;
/// How many lines one recurring order may hold (as an order).
pub const MAX_RECURRING_LINES: usize = 500;

/// When runs are due: run `n` (from 1) at `starts_at + (n - 1) * interval_seconds`,
/// while `n <= max_runs` and its time is not after `ends_at`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Schedule {
    pub starts_at: DateTime<Utc>,
    pub interval_seconds: i64,
    pub ends_at: Option<DateTime<Utc>>,
    pub max_runs: Option<i64>,
}

impl Schedule {
    /// When run `run` is due, or `None` when the schedule has no such run.
    pub fn due_at(&self, run: i64) -> Option<DateTime<Utc>> {
        recurring_run_due_at(self.starts_at, self.interval_seconds, self.ends_at, self.max_runs, run)
    }

    /// The first run due at or after `at` (it may be past the schedule's end).
    pub fn first_run_from(&self, at: DateTime<Utc>) -> i64 {
        let elapsed_ms = (at - self.starts_at).num_milliseconds();
        if elapsed_ms <= 0 {
            return 1;
        }
        // Run n is due at or after `at` once (n - 1) * interval >= elapsed.
        let interval_ms = self.interval_seconds.saturating_mul(1000).max(1);
        (elapsed_ms + interval_ms - 1) / interval_ms + 1
    }

    fn check(&self) -> Result<(), DomainError> {
        let rule = |text: &str| Err(DomainError::Rule(text.into()));
        if self.interval_seconds < 1 {
            return rule("the interval must be at least one second");
        }
        if self.max_runs.is_some_and(|max| max < 1) {
            return rule("max_runs must be at least 1");
        }
        if self.ends_at.is_some_and(|end| end < self.starts_at) {
            return rule("ends_at must not be before starts_at");
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecurringStatus {
    Active,
    Paused,
    Cancelled,
}

/// One recurring order as its account holds it (and as its workflow keeps it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecurringOrder {
    pub id: Uuid,
    pub lines: Vec<RecurringLine>,
    pub schedule: Schedule,
    pub status: RecurringStatus,
    /// Runs before this one are not placed: 1, or where the last resumption started.
    pub resume_from: i64,
    /// Every run below this one is settled: recorded (placed or skipped), or passed
    /// over by a resumption...
    settled_below: i64,
    /// ...and these above it are recorded (runs may be recorded out of order).
    recorded_above: BTreeSet<i64>,
    pub runs_placed: i64,
    pub runs_skipped: i64,
}

impl RecurringOrder {
    /// The recurring order `event` schedules.
    pub fn scheduled(e: &RecurringOrderScheduled) -> Self {
        RecurringOrder {
            id: e.recurring_order_id,
            lines: e.lines.clone(),
            schedule: Schedule {
                starts_at: e.starts_at,
                interval_seconds: e.interval_seconds,
                ends_at: e.ends_at,
                max_runs: e.max_runs,
            },
            status: RecurringStatus::Active,
            resume_from: 1,
            settled_below: 1,
            recorded_above: BTreeSet::new(),
            runs_placed: 0,
            runs_skipped: 0,
        }
    }

    /// Folds one of its later events (others are ignored).
    pub fn apply(&mut self, event: &AccountEvent) {
        match event {
            AccountEvent::RecurringOrderPaused(_) => self.status = RecurringStatus::Paused,
            AccountEvent::RecurringOrderResumed(e) => {
                self.status = RecurringStatus::Active;
                self.resume_from = e.next_run;
                // The runs due while paused are passed over: none will be recorded.
                self.recorded_above.retain(|run| *run >= e.next_run);
                self.settled_below = self.settled_below.max(e.next_run);
                self.compact();
            }
            AccountEvent::RecurringOrderCancelled(_) => self.status = RecurringStatus::Cancelled,
            AccountEvent::RecurringOrderRunPlaced(e) if !self.is_settled(e.run) => {
                self.record(e.run);
                self.runs_placed += 1;
            }
            AccountEvent::RecurringOrderRunSkipped(e) if !self.is_settled(e.run) => {
                self.record(e.run);
                self.runs_skipped += 1;
            }
            _ => {}
        }
    }

    /// Whether `run` is done with: recorded, or passed over by a resumption. A settled
    /// run places nothing and is recorded no more.
    pub fn is_settled(&self, run: i64) -> bool {
        run < self.settled_below || self.recorded_above.contains(&run)
    }

    fn record(&mut self, run: i64) {
        self.recorded_above.insert(run);
        self.compact();
    }

    /// Keeps `recorded_above` to the runs past the first unsettled one.
    fn compact(&mut self) {
        while self.recorded_above.remove(&self.settled_below) {
            self.settled_below += 1;
        }
    }

    /// The next run to place: the first one not settled, if the schedule has it.
    /// `None`: every run is done (or it was cancelled).
    pub fn next_run(&self) -> Option<i64> {
        if self.status == RecurringStatus::Cancelled {
            return None;
        }
        let run = self.settled_below;
        self.schedule.due_at(run).map(|_| run)
    }

    /// Still placing orders: active with a run left.
    pub fn is_live(&self) -> bool {
        self.status != RecurringStatus::Cancelled && self.next_run().is_some()
    }
}

/// What can be done to an account's recurring orders.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecurringOrderCommand {
    Schedule {
        recurring_order_id: Uuid,
        lines: Vec<RecurringLine>,
        schedule: Schedule,
        by: String,
    },
    Pause {
        recurring_order_id: Uuid,
        by: String,
    },
    /// Resumes from the first run due at or after `now`.
    Resume {
        recurring_order_id: Uuid,
        by: String,
        now: DateTime<Utc>,
    },
    Cancel {
        recurring_order_id: Uuid,
        by: String,
    },
    /// Records a run's outcome (the workflow's step, which places the order only when
    /// this records it, in the same transaction). A run is recorded once: recording it
    /// again, or a run a resumption passed over, decides nothing. Otherwise it is
    /// recorded whatever the status: the step decided from the status it read.
    RecordRun {
        recurring_order_id: Uuid,
        run: i64,
        scheduled_for: DateTime<Utc>,
        outcome: RunOutcome,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunOutcome {
    Placed { order_id: Uuid },
    Skipped { reason: String },
}

impl Account {
    pub(super) fn decide_recurring(&self, command: RecurringOrderCommand) -> Result<Vec<AccountEvent>, DomainError> {
        let account_id = self.id;
        let find = |id: Uuid| {
            self.recurring_orders
                .get(&id)
                .ok_or_else(|| DomainError::NotFound(format!("account {account_id} has no recurring order {id}")))
        };
        let refuse = |id: Uuid, action: &str, order: &RecurringOrder| {
            let state = match (order.status, order.next_run()) {
                (RecurringStatus::Cancelled, _) => "cancelled",
                (_, None) => "completed",
                (RecurringStatus::Active, _) => "active",
                (RecurringStatus::Paused, _) => "paused",
            };
            Err(DomainError::InvalidState(format!("cannot {action} recurring order {id}: it is {state}")))
        };
        Ok(match command {
            RecurringOrderCommand::Schedule { recurring_order_id, lines, schedule, by } => {
                if self.status != AccountStatus::Approved {
                    return Err(DomainError::InvalidState(format!(
                        "cannot schedule a recurring order for account {account_id}: it is {}, and only an approved account can",
                        self.status
                    )));
                }
                if self.recurring_orders.contains_key(&recurring_order_id) {
                    return Err(DomainError::AlreadyExists(format!(
                        "recurring order {recurring_order_id} already exists"
                    )));
                }
                if self.recurring_orders.values().filter(|r| r.is_live()).count() >= MAX_LIVE_RECURRING_ORDERS {
                    return Err(DomainError::Rule(format!(
                        "account {account_id} already has {MAX_LIVE_RECURRING_ORDERS} recurring orders running: cancel one first"
                    )));
                }
                check_lines(&lines)?;
                schedule.check()?;
                let Schedule { starts_at, interval_seconds, ends_at, max_runs } = schedule;
                vec![RecurringOrderScheduled {
                    account_id,
                    recurring_order_id,
                    lines,
                    starts_at,
                    interval_seconds,
                    ends_at,
                    max_runs,
                    scheduled_by: by,
                }
                .into()]
            }
            RecurringOrderCommand::Pause { recurring_order_id, by } => {
                let order = find(recurring_order_id)?;
                if order.status != RecurringStatus::Active || !order.is_live() {
                    return refuse(recurring_order_id, "pause", order);
                }
                vec![RecurringOrderPaused { account_id, recurring_order_id, paused_by: by }.into()]
            }
            RecurringOrderCommand::Resume { recurring_order_id, by, now } => {
                let order = find(recurring_order_id)?;
                if order.status != RecurringStatus::Paused {
                    return refuse(recurring_order_id, "resume", order);
                }
                let next_run = order.schedule.first_run_from(now).max(order.resume_from);
                if order.schedule.due_at(next_run).is_none() {
                    return Err(DomainError::InvalidState(format!(
                        "cannot resume recurring order {recurring_order_id}: its schedule has no run left"
                    )));
                }
                vec![RecurringOrderResumed { account_id, recurring_order_id, resumed_by: by, next_run }.into()]
            }
            RecurringOrderCommand::Cancel { recurring_order_id, by } => {
                let order = find(recurring_order_id)?;
                if !order.is_live() {
                    return refuse(recurring_order_id, "cancel", order);
                }
                vec![RecurringOrderCancelled { account_id, recurring_order_id, cancelled_by: by }.into()]
            }
            RecurringOrderCommand::RecordRun { recurring_order_id, run, scheduled_for, outcome } => {
                if find(recurring_order_id)?.is_settled(run) {
                    return Ok(vec![]);
                }
                match outcome {
                    RunOutcome::Placed { order_id } => {
                        vec![RecurringOrderRunPlaced { account_id, recurring_order_id, run, scheduled_for, order_id }
                            .into()]
                    }
                    RunOutcome::Skipped { reason } => {
                        vec![RecurringOrderRunSkipped { account_id, recurring_order_id, run, scheduled_for, reason }
                            .into()]
                    }
                }
            }
        })
    }

    /// Folds a recurring order's event into the account's recurring orders.
    pub(super) fn evolve_recurring(orders: &mut BTreeMap<Uuid, RecurringOrder>, event: &AccountEvent) {
        if let AccountEvent::RecurringOrderScheduled(e) = event {
            orders.insert(e.recurring_order_id, RecurringOrder::scheduled(e));
        } else if let Some(order) = event.recurring_order_id().and_then(|id| orders.get_mut(&id)) {
            order.apply(event);
        }
    }
}

fn check_lines(lines: &[RecurringLine]) -> Result<(), DomainError> {
    if lines.is_empty() || lines.len() > MAX_RECURRING_LINES {
        return Err(DomainError::Rule(format!("a recurring order holds 1 to {MAX_RECURRING_LINES} lines")));
    }
    let mut skus = BTreeSet::new();
    for line in lines {
        if line.quantity <= 0 {
            return Err(DomainError::Rule(format!("the quantity of {} must be positive", line.sku)));
        }
        if !skus.insert(line.sku.as_str()) {
            return Err(DomainError::Rule(format!("{} appears on two lines: put it on one", line.sku)));
        }
    }
    Ok(())
}

#[cfg(test)]
#[path = "recurring_order_tests.rs"]
mod tests;
