use vectis_schemas::events::{AccountApproved, AccountRegistered, AccountSuspended};

use super::*;
use crate::domain::{fold, testing::*, AccountCommand};

fn account(events: Vec<AccountEvent>) -> Option<Account> {
    let mut history: Vec<AccountEvent> = vec![
        AccountRegistered {
            account_id: id(1),
            name: "Acme".into(),
            email: "buyer@acme.example".into(),
            credit_limit: eur(100_000),
            approval_threshold: eur(50_000),
        }
        .into(),
        AccountApproved { account_id: id(1), approved_by: "staff".into() }.into(),
    ];
    history.extend(events);
    fold(None, history, Account::evolve)
}

fn weekly(max_runs: Option<i64>) -> Schedule {
    Schedule { starts_at: at(9), interval_seconds: 7 * 24 * 3600, ends_at: None, max_runs }
}

fn line(sku: &str, quantity: i64) -> RecurringLine {
    RecurringLine { sku: sku.into(), quantity }
}

fn decide(state: &Option<Account>, command: RecurringOrderCommand) -> Result<Vec<AccountEvent>, DomainError> {
    Account::decide(state, AccountCommand::Recurring(command))
}

fn schedule(schedule: Schedule) -> RecurringOrderCommand {
    RecurringOrderCommand::Schedule {
        recurring_order_id: id(9),
        lines: vec![line("BOLT", 10)],
        schedule,
        by: "key:buyer".into(),
    }
}

fn scheduled(max_runs: Option<i64>) -> Vec<AccountEvent> {
    decide(&account(vec![]), schedule(weekly(max_runs))).expect("schedules")
}

fn record(run: i64, outcome: RunOutcome) -> RecurringOrderCommand {
    RecurringOrderCommand::RecordRun { recurring_order_id: id(9), run, scheduled_for: at(9), outcome }
}

fn recurring(state: &Option<Account>) -> &RecurringOrder {
    state.as_ref().and_then(|a| a.recurring_orders.get(&id(9))).expect("the recurring order")
}

#[test]
fn runs_are_due_at_the_start_then_every_interval_within_the_bounds() {
    let day = 24 * 3600;
    let bounded = Schedule { ends_at: Some(at(9) + chrono::Duration::days(14)), ..weekly(Some(10)) };
    assert_eq!(bounded.due_at(1), Some(at(9)));
    assert_eq!(bounded.due_at(3), Some(at(9) + chrono::Duration::seconds(14 * day)));
    assert_eq!(bounded.due_at(4), None, "after ends_at");
    assert_eq!(bounded.due_at(0), None);
    assert_eq!(weekly(Some(2)).due_at(3), None, "beyond max_runs");

    let schedule = weekly(None);
    assert_eq!(schedule.first_run_from(at(8)), 1);
    assert_eq!(schedule.first_run_from(at(9)), 1, "a run due exactly then counts");
    assert_eq!(schedule.first_run_from(at(10)), 2);
    assert_eq!(schedule.first_run_from(at(9) + chrono::Duration::days(7)), 2);
}

#[test]
fn only_an_approved_account_schedules_and_a_schedule_must_make_sense() {
    let mut pending = account(vec![]);
    if let Some(account) = pending.as_mut() {
        account.status = AccountStatus::PendingApproval;
    }
    assert!(matches!(decide(&pending, schedule(weekly(None))), Err(DomainError::InvalidState(_))));
    assert!(matches!(decide(&None, schedule(weekly(None))), Err(DomainError::NotFound(_))));
    let suspended = account(vec![AccountSuspended {
        account_id: id(1),
        suspended_by: "staff".into(),
        reason: "late payments".into(),
    }
    .into()]);
    assert!(matches!(decide(&suspended, schedule(weekly(None))), Err(DomainError::InvalidState(_))));

    let approved = account(vec![]);
    let no_interval = Schedule { interval_seconds: 0, ..weekly(None) };
    assert!(matches!(decide(&approved, schedule(no_interval)), Err(DomainError::Rule(_))));
    let ends_first = Schedule { ends_at: Some(at(8)), ..weekly(None) };
    assert!(matches!(decide(&approved, schedule(ends_first)), Err(DomainError::Rule(_))));
    let twice = RecurringOrderCommand::Schedule {
        recurring_order_id: id(9),
        lines: vec![line("BOLT", 1), line("BOLT", 2)],
        schedule: weekly(None),
        by: "key:buyer".into(),
    };
    assert!(matches!(decide(&approved, twice), Err(DomainError::Rule(_))));

    let state = account(scheduled(None));
    assert!(matches!(decide(&state, schedule(weekly(None))), Err(DomainError::AlreadyExists(_))));
    assert_eq!(recurring(&state).next_run(), Some(1));
}

#[test]
fn a_run_is_recorded_once_even_out_of_order_and_the_last_one_completes_it() {
    let mut events = scheduled(Some(3));
    for run in [2, 1] {
        let state = account(events.clone());
        events.extend(
            decide(&state, record(run, RunOutcome::Placed { order_id: id(100 + run as u128) })).expect("records"),
        );
    }
    let state = account(events.clone());
    assert!(decide(&state, record(2, RunOutcome::Skipped { reason: "again".into() })).expect("decides").is_empty());
    assert_eq!(recurring(&state).next_run(), Some(3));

    events.extend(decide(&state, record(3, RunOutcome::Skipped { reason: "stock short".into() })).expect("records"));
    let state = account(events);
    assert_eq!(recurring(&state).next_run(), None);
    assert!(!recurring(&state).is_live());
    let pause = RecurringOrderCommand::Pause { recurring_order_id: id(9), by: "key:buyer".into() };
    let refused = decide(&state, pause).expect_err("completed");
    assert!(refused.to_string().contains("it is completed"), "{refused}");
}

#[test]
fn a_resumed_order_goes_on_from_the_first_run_due_after_the_resumption() {
    let mut events = scheduled(None);
    let state = account(events.clone());
    events.extend(
        decide(&state, RecurringOrderCommand::Pause { recurring_order_id: id(9), by: "key:buyer".into() })
            .expect("pauses"),
    );
    let state = account(events.clone());
    assert_eq!(recurring(&state).status, RecurringStatus::Paused);
    let paused_again =
        decide(&state, RecurringOrderCommand::Pause { recurring_order_id: id(9), by: "key:buyer".into() });
    assert!(matches!(paused_again, Err(DomainError::InvalidState(_))));

    // Resumed two and a half weeks after the start: runs 1 to 3 are not placed.
    let now = at(9) + chrono::Duration::hours(24 * 17 + 12);
    let resumed =
        decide(&state, RecurringOrderCommand::Resume { recurring_order_id: id(9), by: "key:buyer".into(), now })
            .expect("resumes");
    assert_eq!(
        resumed,
        vec![RecurringOrderResumed {
            account_id: id(1),
            recurring_order_id: id(9),
            resumed_by: "key:buyer".into(),
            next_run: 4
        }
        .into()]
    );
    events.extend(resumed);
    let state = account(events.clone());
    assert_eq!(recurring(&state).next_run(), Some(4));
    // The runs due while paused are passed over: recording one decides nothing.
    assert!(recurring(&state).is_settled(2));
    assert!(decide(&state, record(2, RunOutcome::Placed { order_id: id(102) })).expect("decides").is_empty());
    events.extend(decide(&state, record(4, RunOutcome::Placed { order_id: id(104) })).expect("records"));
    let state = account(events.clone());
    assert_eq!(recurring(&state).next_run(), Some(5), "settled up to the resumption, then run 4");

    events.extend(
        decide(&state, RecurringOrderCommand::Cancel { recurring_order_id: id(9), by: "key:buyer".into() })
            .expect("cancels"),
    );
    let state = account(events);
    assert_eq!(recurring(&state).next_run(), None);
    let unknown = RecurringOrderCommand::Cancel { recurring_order_id: id(10), by: "key:buyer".into() };
    assert!(matches!(decide(&state, unknown), Err(DomainError::NotFound(_))));
}
