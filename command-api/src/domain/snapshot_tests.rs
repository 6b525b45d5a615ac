//! For random histories of every aggregate: a snapshot at any point (the state through
//! its serialised form) with the rest of the history folded on equals the fold of the
//! whole history. Histories are made by deciding random commands, so they are the
//! histories the aggregates really produce.

use std::collections::BTreeMap;

use proptest::prelude::*;
use serde::{de::DeserializeOwned, Serialize};
use vectis_schemas::events::{
    AccountApproved, AccountEvent, AccountRegistered, AdjustmentReason, HeldLine, InventoryEvent, ItemCreated,
    RecurringLine, StockReceived,
};

use super::{
    fold, testing::*, Account, AccountCommand, DomainError, InventoryCommand, InventoryItem, Order, OrderCommand,
    OrderLineRequest, RecurringOrderCommand, RunOutcome, Schedule,
};

/// Every split of `events` into a snapshot and a tail folds to the full fold.
fn snapshot_and_tail_equal_the_full_fold<S, E>(events: &[E], evolve: impl Fn(Option<S>, &E) -> Option<S>)
where
    S: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug + Clone,
    E: Clone,
{
    let full = events.iter().fold(None, &evolve);
    for split in 0..=events.len() {
        let at_split = events[..split].iter().fold(None, &evolve);
        let json = serde_json::to_value(&at_split).expect("a state serialises");
        let snapshot: Option<S> = serde_json::from_value(json).expect("a snapshot deserialises");
        assert_eq!(snapshot, at_split, "the snapshot at {split} is the state");
        let resumed = events[split..].iter().fold(snapshot, &evolve);
        assert_eq!(resumed, full, "snapshot at {split} of {} + tail", events.len());
    }
}

/// Decides each command on the state so far; refused commands add nothing.
fn history<S: Clone, C, E: Clone>(
    commands: Vec<C>,
    decide: impl Fn(&Option<S>, C) -> Result<Vec<E>, DomainError>,
    evolve: impl Fn(Option<S>, &E) -> Option<S>,
) -> Vec<E> {
    let mut events = Vec::new();
    let mut state = None;
    for command in commands {
        if let Ok(decided) = decide(&state, command) {
            state = decided.iter().fold(state, &evolve);
            events.extend(decided);
        }
    }
    events
}

fn inventory_command() -> impl Strategy<Value = InventoryCommand> {
    let reservation = (0u128..8).prop_map(|n| id(100 + n));
    prop_oneof![
        (1i64..20).prop_map(|quantity| InventoryCommand::Receive { quantity, reference: None }),
        (-5i64..5).prop_map(|delta| InventoryCommand::Adjust {
            delta,
            reason: AdjustmentReason::CycleCount,
            note: None
        }),
        (reservation.clone(), 1i64..10).prop_map(|(reservation_id, quantity)| InventoryCommand::Reserve {
            reservation_id,
            order_id: id(900),
            quantity,
            expires_at: at(12),
            now: at(10),
        }),
        reservation.clone().prop_map(|reservation_id| InventoryCommand::Release { reservation_id, reason: None }),
        reservation.clone().prop_map(|reservation_id| InventoryCommand::Commit { reservation_id }),
        reservation.prop_map(|reservation_id| InventoryCommand::Expire { reservation_id, now: at(13) }),
    ]
}

fn account_command() -> impl Strategy<Value = AccountCommand> {
    let recurring = (0u128..3).prop_map(|n| id(200 + n));
    prop_oneof![
        Just(AccountCommand::Approve { by: "staff".into() }),
        Just(AccountCommand::Suspend { by: "staff".into(), reason: "overdue".into() }),
        Just(AccountCommand::Reinstate { by: "staff".into() }),
        (0i64..50_000).prop_map(|amount| AccountCommand::ChangeCreditLimit { credit_limit: eur(amount) }),
        recurring.clone().prop_map(|recurring_order_id| AccountCommand::Recurring(RecurringOrderCommand::Schedule {
            recurring_order_id,
            lines: vec![RecurringLine { sku: "BOLT".into(), quantity: 2 }],
            schedule: Schedule { starts_at: at(9), interval_seconds: 3600, ends_at: None, max_runs: Some(6) },
            by: "buyer".into(),
        })),
        recurring.clone().prop_map(|recurring_order_id| AccountCommand::Recurring(RecurringOrderCommand::Pause {
            recurring_order_id,
            by: "buyer".into()
        })),
        (recurring.clone(), 9u32..15).prop_map(|(recurring_order_id, hour)| AccountCommand::Recurring(
            RecurringOrderCommand::Resume { recurring_order_id, by: "buyer".into(), now: at(hour) }
        )),
        recurring.clone().prop_map(|recurring_order_id| AccountCommand::Recurring(RecurringOrderCommand::Cancel {
            recurring_order_id,
            by: "buyer".into()
        })),
        (recurring, 1i64..7, any::<bool>()).prop_map(|(recurring_order_id, run, placed)| AccountCommand::Recurring(
            RecurringOrderCommand::RecordRun {
                recurring_order_id,
                run,
                scheduled_for: at(9),
                outcome: if placed {
                    RunOutcome::Placed { order_id: id(300 + run as u128) }
                } else {
                    RunOutcome::Skipped { reason: "stock short".into() }
                },
            }
        )),
    ]
}

fn order_command() -> impl Strategy<Value = OrderCommand> {
    prop_oneof![
        Just(OrderCommand::Approve { by: "staff".into() }),
        Just(OrderCommand::Reject { by: "staff".into(), reason: "no".into() }),
        Just(OrderCommand::HoldStock {
            reservations: vec![HeldLine { sku: "BOLT".into(), reservation_id: id(400), quantity: 3 }],
            expires_at: at(12),
        }),
        Just(OrderCommand::Confirm),
        Just(OrderCommand::Cancel { reason: "changed mind".into() }),
        Just(OrderCommand::Ship { carrier: "DHL".into(), tracking_number: "1Z".into() }),
        Just(OrderCommand::Deliver),
    ]
}

fn approved_account() -> Account {
    let events: Vec<AccountEvent> = vec![
        AccountRegistered {
            account_id: id(1),
            name: "Acme".into(),
            email: "buyer@acme.example".into(),
            credit_limit: eur(1_000_000),
            approval_threshold: eur(200),
        }
        .into(),
        AccountApproved { account_id: id(1), approved_by: "staff".into() }.into(),
    ];
    fold(None, events, Account::evolve).expect("an account")
}

fn catalogue() -> BTreeMap<String, InventoryItem> {
    let events: Vec<InventoryEvent> = vec![
        ItemCreated { sku: "BOLT".into(), name: "Bolt".into(), description: String::new(), unit_price: eur(100) }
            .into(),
        StockReceived { sku: "BOLT".into(), quantity: 50, reference: None }.into(),
    ];
    let item = fold(None, events, InventoryItem::evolve).expect("an item");
    [("BOLT".to_string(), item)].into_iter().collect()
}

proptest! {
    #[test]
    fn inventory_item_snapshot_and_tail_equal_the_full_fold(commands in prop::collection::vec(inventory_command(), 0..40)) {
        let create = InventoryCommand::Create {
            sku: "BOLT".into(), name: "Bolt".into(), description: String::new(), unit_price: eur(100),
        };
        let commands = std::iter::once(create).chain(commands).collect();
        let events = history(commands, InventoryItem::decide, InventoryItem::evolve);
        snapshot_and_tail_equal_the_full_fold(&events, InventoryItem::evolve);
        // Bounded: only held reservations stay, whatever the history.
        let item = events.iter().fold(None, InventoryItem::evolve).expect("created");
        prop_assert!(item.reservations.len() <= 8);
        prop_assert_eq!(item.reserved(), item.reservations.values().map(|r| r.quantity).sum::<i64>());
    }

    #[test]
    fn account_snapshot_and_tail_equal_the_full_fold(commands in prop::collection::vec(account_command(), 0..40)) {
        let register = AccountCommand::Register {
            account_id: id(1), name: "Acme".into(), email: "buyer@acme.example".into(),
            credit_limit: eur(100_000), approval_threshold: eur(50_000),
        };
        let commands = std::iter::once(register).chain(commands).collect();
        let events = history(commands, Account::decide, Account::evolve);
        snapshot_and_tail_equal_the_full_fold(&events, Account::evolve);
    }

    #[test]
    fn order_snapshot_and_tail_equal_the_full_fold(
        quantity in 1i64..5,
        commands in prop::collection::vec(order_command(), 0..20),
    ) {
        let place = OrderCommand::Place {
            order_id: id(50), account_id: id(1), account: Some(approved_account()),
            lines: vec![OrderLineRequest { sku: "BOLT".into(), quantity }], catalogue: catalogue(),
        };
        let commands = std::iter::once(place).chain(commands).collect();
        let events = history(commands, Order::decide, Order::evolve);
        snapshot_and_tail_equal_the_full_fold(&events, Order::evolve);
    }
}
