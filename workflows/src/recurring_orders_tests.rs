use vectis_schemas::{
    events::{
        RecurringLine, RecurringOrderCancelled, RecurringOrderPaused, RecurringOrderResumed, RecurringOrderRunPlaced,
        RecurringOrderRunSkipped, RecurringOrderScheduled,
    },
    StreamId,
};

use super::*;

const ACCOUNT: Uuid = Uuid::from_u128(1);
const RECURRING: Uuid = Uuid::from_u128(2);

fn at(seconds: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(1_800_000_000 + seconds, 0).expect("time")
}

fn event(e: impl Into<AccountEvent>) -> ProjectedEvent {
    ProjectedEvent {
        event_id: Uuid::new_v4(),
        correlation_id: Uuid::nil(),
        stream_id: StreamId::account(ACCOUNT),
        stream_version: 1,
        global_position: 1,
        occurred_at: at(0),
        event: DomainEvent::Account(e.into()),
    }
}

/// Every 60 s from t = 100, three runs.
fn scheduled() -> ProjectedEvent {
    event(RecurringOrderScheduled {
        account_id: ACCOUNT,
        recurring_order_id: RECURRING,
        lines: vec![RecurringLine { sku: "BOLT".into(), quantity: 5 }],
        starts_at: at(100),
        interval_seconds: 60,
        ends_at: None,
        max_runs: Some(3),
        scheduled_by: "key:buyer".into(),
    })
}

fn placed(run: i64) -> ProjectedEvent {
    event(RecurringOrderRunPlaced {
        account_id: ACCOUNT,
        recurring_order_id: RECURRING,
        run,
        scheduled_for: at(100 + (run - 1) * 60),
        order_id: Uuid::from_u128(100 + run as u128),
    })
}

fn place(run: i64) -> Step {
    Step {
        name: format!("run/{run}"),
        command: WorkflowCommand::PlaceRecurringRun {
            account_id: ACCOUNT,
            recurring_order_id: RECURRING,
            run,
            scheduled_for: at(100 + (run - 1) * 60),
        },
    }
}

fn timer(run: i64) -> Vec<TimerWish> {
    vec![TimerWish { name: format!("run/{run}"), due_at: at(100 + (run - 1) * 60) }]
}

fn fold(events: &[ProjectedEvent]) -> RecurringState {
    events.iter().fold(None, |state, e| RecurringOrders.evolve(state, e)).expect("an instance")
}

#[test]
fn each_run_is_placed_when_its_timer_fires_and_the_last_completes_the_instance() {
    let workflow = RecurringOrders;
    assert_eq!(workflow.instance_of(&scheduled()), Some(RECURRING.to_string()));
    let mut state = fold(&[scheduled()]);
    assert_eq!(workflow.timers(&state), timer(1));
    assert!(workflow.steps(&state, at(99)).is_empty());
    for run in 1..=3 {
        state = workflow.timer_fired(state, &format!("run/{run}"), at(100 + (run - 1) * 60));
        assert_eq!(workflow.steps(&state, at(0)), vec![place(run)]);
        let next = if run < 3 { timer(run + 1) } else { vec![] };
        assert_eq!(workflow.timers(&state), next, "the next run is armed as this one is placed");
        assert_eq!(workflow.status(&state), InstanceStatus::Running);
        state = workflow.evolve(Some(state), &placed(run)).expect("state");
        assert!(workflow.steps(&state, at(0)).is_empty(), "a recorded run is not placed again");
    }
    assert_eq!(workflow.status(&state), InstanceStatus::Completed);
    assert!(workflow.describe(&state).contains("3 placed"), "{}", workflow.describe(&state));
}

#[test]
fn after_a_downtime_every_missed_run_is_placed_once_in_order() {
    let workflow = RecurringOrders;
    // Down from t = 0 to t = 1000: the three runs are all overdue.
    let mut state = fold(&[scheduled()]);
    let mut placed_runs = Vec::new();
    while let Some(wish) = workflow.timers(&state).pop() {
        assert!(wish.due_at < at(1000), "overdue, so it fires at once");
        state = workflow.timer_fired(state, &wish.name, at(1000));
        for step in workflow.steps(&state, at(1000)) {
            let WorkflowCommand::PlaceRecurringRun { run, .. } = step.command else { panic!("{step:?}") };
            if !placed_runs.contains(&run) {
                placed_runs.push(run);
            }
        }
    }
    assert_eq!(placed_runs, vec![1, 2, 3]);
    // Recorded out of order (steps run concurrently): each once.
    let skipped = event(RecurringOrderRunSkipped {
        account_id: ACCOUNT,
        recurring_order_id: RECURRING,
        run: 2,
        scheduled_for: at(160),
        reason: "stock short".into(),
    });
    let state = [placed(3), skipped, placed(1), placed(1)]
        .iter()
        .try_fold(state, |state, e| workflow.evolve(Some(state), e))
        .expect("state");
    assert_eq!(workflow.status(&state), InstanceStatus::Completed);
    assert_eq!((state.order.runs_placed, state.order.runs_skipped), (2, 1));
}

#[test]
fn pausing_disarms_the_next_run_resuming_arms_the_one_it_names_and_cancelling_ends_it() {
    let workflow = RecurringOrders;
    let paused =
        event(RecurringOrderPaused { account_id: ACCOUNT, recurring_order_id: RECURRING, paused_by: "b".into() });
    let state = fold(&[scheduled(), paused]);
    assert!(workflow.timers(&state).is_empty(), "no run while paused");
    assert_eq!(workflow.status(&state), InstanceStatus::Running);
    assert!(workflow.describe(&state).starts_with("paused"));

    let resumed = event(RecurringOrderResumed {
        account_id: ACCOUNT,
        recurring_order_id: RECURRING,
        resumed_by: "b".into(),
        next_run: 3,
    });
    let state = workflow.evolve(Some(state), &resumed).expect("state");
    assert_eq!(workflow.timers(&state), timer(3), "runs 1 and 2 were due while paused");

    let cancelled =
        event(RecurringOrderCancelled { account_id: ACCOUNT, recurring_order_id: RECURRING, cancelled_by: "b".into() });
    let state = workflow.evolve(Some(state), &cancelled).expect("state");
    assert!(workflow.timers(&state).is_empty());
    assert_eq!(workflow.status(&state), InstanceStatus::Completed);
}
