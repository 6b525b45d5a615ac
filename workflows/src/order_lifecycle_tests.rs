//! The order lifecycle's decisions, pure: from facts to steps and timers.

use chrono::TimeZone;
use vectis_schemas::{
    events::{
        Money, OrderApprovalRequested, OrderApproved, OrderCancelled, OrderConfirmed, OrderLine, OrderPlaced,
        OrderRejected, OrderShipped, OrderStockHeld, ReservationCommitted, ReservationRejected, ReservationReleased,
        StockReserved,
    },
    StreamId,
};

use super::*;

fn at(minute: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 12, 2, 10, minute, 0).single().expect("time")
}

fn order_id() -> Uuid {
    Uuid::from_u128(42)
}

fn event(event: DomainEvent) -> ProjectedEvent {
    let stream_id = match &event {
        DomainEvent::Inventory(_) => StreamId::inventory_item("BOLT").expect("sku"),
        _ => StreamId::order(order_id()),
    };
    ProjectedEvent {
        event_id: Uuid::now_v7(),
        correlation_id: Uuid::from_u128(9),
        stream_id,
        stream_version: 1,
        global_position: 1,
        occurred_at: at(0),
        event,
    }
}

fn order(e: impl Into<OrderEvent>) -> ProjectedEvent {
    event(DomainEvent::Order(e.into()))
}

fn inventory(e: impl Into<InventoryEvent>) -> ProjectedEvent {
    event(DomainEvent::Inventory(e.into()))
}

fn eur(amount: i64) -> Money {
    Money::new(amount, "EUR")
}

fn placed() -> ProjectedEvent {
    let line = |sku: &str, quantity| OrderLine {
        sku: sku.into(),
        quantity,
        unit_price: eur(10),
        line_total: eur(10 * quantity),
    };
    order(OrderPlaced {
        order_id: order_id(),
        account_id: Uuid::from_u128(1),
        currency: "EUR".into(),
        lines: vec![line("BOLT", 3), line("NUT", 5)],
        total: eur(80),
    })
}

fn reserved(sku: &str, quantity: i64, attempt: u8, expires: u32) -> ProjectedEvent {
    inventory(StockReserved {
        sku: sku.into(),
        reservation_id: reservation_id(order_id(), sku, attempt),
        order_id: order_id(),
        quantity,
        expires_at: at(expires),
    })
}

fn lifecycle() -> Arc<OrderLifecycle> {
    OrderLifecycle::new(Duration::from_secs(900))
}

fn fold(events: &[ProjectedEvent]) -> OrderLifecycleState {
    let workflow = lifecycle();
    events.iter().fold(None, |state, e| workflow.evolve(state, e)).expect("state")
}

fn kinds(state: &OrderLifecycleState, now: DateTime<Utc>) -> Vec<(String, &'static str)> {
    lifecycle().steps(state, now).into_iter().map(|s| (s.name.clone(), s.command.kind())).collect()
}

fn names(state: &OrderLifecycleState) -> Vec<String> {
    kinds(state, at(1)).into_iter().map(|(name, _)| name).collect()
}

#[test]
fn a_placed_order_reserves_every_line_then_becomes_confirmable_and_its_expiry_is_armed() {
    let bolt = reservation_id(order_id(), "BOLT", 0);
    let nut = reservation_id(order_id(), "NUT", 0);
    let state = fold(&[placed()]);
    assert_eq!(names(&state), [format!("reserve/{bolt}"), format!("reserve/{nut}")]);
    assert!(lifecycle().timers(&state).is_empty());

    let state = fold(&[placed(), reserved("BOLT", 3, 0, 15), reserved("NUT", 5, 0, 14)]);
    let steps = lifecycle().steps(&state, at(1));
    let hold = steps.iter().find(|s| s.name == "hold/0").expect("hold step");
    match &hold.command {
        WorkflowCommand::HoldStock { expires_at, reservations, .. } => {
            assert_eq!(*expires_at, at(14), "the earliest expiry");
            assert_eq!(reservations.len(), 2);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(lifecycle().timers(&state), vec![TimerWish { name: "expiry/0".into(), due_at: at(14) }]);
    assert_eq!(lifecycle().status(&state), InstanceStatus::Running);
}

#[test]
fn a_short_line_rejects_the_order_and_gives_back_the_held_ones() {
    let nut = reservation_id(order_id(), "NUT", 0);
    let short = inventory(ReservationRejected {
        sku: "NUT".into(),
        reservation_id: nut,
        order_id: order_id(),
        quantity: 5,
        available: 2,
        reason: "5 requested, 2 available".into(),
    });
    let state = fold(&[placed(), reserved("BOLT", 3, 0, 15), short]);
    let steps = lifecycle().steps(&state, at(1));
    let reject = steps.iter().find(|s| s.name == "reject").expect("reject");
    assert_eq!(
        reject.command,
        WorkflowCommand::RejectOrder {
            order_id: order_id(),
            reason: "insufficient stock for SKU NUT: 5 requested, 2 available".into()
        }
    );
    let bolt = reservation_id(order_id(), "BOLT", 0);
    assert!(steps.iter().any(|s| s.name == format!("release/{bolt}") && s.command.kind() == "release"));
    assert!(!steps.iter().any(|s| s.name.starts_with("hold")), "never confirmable");
}

#[test]
fn an_expiry_rejects_an_unconfirmed_order_first_then_expires_its_reservations() {
    let held = [placed(), reserved("BOLT", 3, 0, 15), reserved("NUT", 5, 0, 15)];
    let stock_held = order(OrderStockHeld { order_id: order_id(), reservations: vec![], expires_at: at(15) });
    let state = fold(&[held.as_slice(), std::slice::from_ref(&stock_held)].concat());
    let fired = lifecycle().timer_fired(state, "expiry/0", at(15));
    assert!(lifecycle().timers(&fired).is_empty(), "fired once");
    assert!(kinds(&fired, at(15)).contains(&("reject".into(), "reject_order")));
    assert!(!kinds(&fired, at(15)).iter().any(|(_, kind)| *kind == "expire"), "nothing expires before the order");

    let rejected = order(OrderRejected {
        order_id: order_id(),
        rejected_by: "workflow:order_lifecycle".into(),
        reason: RESERVATION_EXPIRED.into(),
    });
    let state = fold(&[held.as_slice(), &[stock_held, rejected]].concat());
    let expire: Vec<_> = kinds(&state, at(16)).into_iter().filter(|(_, kind)| *kind == "expire").collect();
    assert_eq!(expire.len(), 2, "both reservations expire");
}

#[test]
fn a_confirmed_order_keeps_its_stock_until_shipped_then_commits_it() {
    let stock_held = order(OrderStockHeld { order_id: order_id(), reservations: vec![], expires_at: at(15) });
    let confirmed = order(OrderConfirmed { order_id: order_id() });
    let events = [placed(), reserved("BOLT", 3, 0, 15), reserved("NUT", 5, 0, 15), stock_held, confirmed];
    let state = fold(&events);
    assert!(lifecycle().timers(&state).is_empty(), "no expiry once confirmed");
    let fired = lifecycle().timer_fired(state.clone(), "expiry/0", at(20));
    assert!(!fired.expiry_fired, "a late timer does nothing to a confirmed order");
    assert!(names(&state).iter().all(|n| n.starts_with("reserve/") || n == "hold/0"));

    let shipped = order(OrderShipped { order_id: order_id(), carrier: "DHL".into(), tracking_number: "1".into() });
    let state = fold(&[events.as_slice(), std::slice::from_ref(&shipped)].concat());
    let commits: Vec<_> = kinds(&state, at(2)).into_iter().filter(|(_, kind)| *kind == "commit").collect();
    assert_eq!(commits.len(), 2);
    let committed = |sku: &str, quantity| {
        inventory(ReservationCommitted {
            sku: sku.into(),
            reservation_id: reservation_id(order_id(), sku, 0),
            order_id: order_id(),
            quantity,
        })
    };
    let done = fold(&[events.as_slice(), &[shipped, committed("BOLT", 3), committed("NUT", 5)]].concat());
    assert_eq!(lifecycle().status(&done), InstanceStatus::Completed);
}

#[test]
fn a_cancelled_order_gives_back_what_it_holds() {
    let cancelled = order(OrderCancelled { order_id: order_id(), reason: "changed mind".into() });
    let state = fold(&[placed(), reserved("BOLT", 3, 0, 15), cancelled.clone()]);
    let releases: Vec<_> = kinds(&state, at(1)).into_iter().filter(|(_, kind)| *kind == "release").collect();
    assert_eq!(releases.len(), 1);
    let released = inventory(ReservationReleased {
        sku: "BOLT".into(),
        reservation_id: reservation_id(order_id(), "BOLT", 0),
        order_id: order_id(),
        quantity: 3,
        reason: None,
    });
    let done = fold(&[placed(), reserved("BOLT", 3, 0, 15), cancelled, released]);
    assert_eq!(lifecycle().status(&done), InstanceStatus::Completed);
}

#[test]
fn an_order_needing_approval_reserves_after_approval_and_gives_back_what_it_reserved_before() {
    let requested = order(OrderApprovalRequested {
        order_id: order_id(),
        account_id: Uuid::from_u128(1),
        total: eur(80),
        approval_threshold: eur(50),
    });
    let waiting = fold(&[placed(), requested.clone()]);
    assert!(names(&waiting).is_empty(), "nothing reserved while waiting for approval");
    // A batch that split the placement from its approval request reserved already.
    let early = fold(&[placed(), reserved("BOLT", 3, 0, 15), requested.clone()]);
    assert_eq!(kinds(&early, at(1)).iter().filter(|(_, k)| *k == "release").count(), 1);
    let approved = order(OrderApproved { order_id: order_id(), approved_by: "staff:ines".into() });
    let state = fold(&[placed(), requested, approved]);
    let bolt = reservation_id(order_id(), "BOLT", 1);
    assert!(names(&state).contains(&format!("reserve/{bolt}")), "reserved under the second id");
}

#[test]
fn facts_arriving_before_the_order_give_the_same_decisions() {
    let in_order = fold(&[placed(), reserved("BOLT", 3, 0, 15), reserved("NUT", 5, 0, 15)]);
    let inventory_first = fold(&[reserved("BOLT", 3, 0, 15), reserved("NUT", 5, 0, 15), placed()]);
    assert_eq!(names(&in_order), names(&inventory_first));
    assert_eq!(lifecycle().timers(&in_order), lifecycle().timers(&inventory_first));
}

#[test]
fn reservations_it_did_not_make_are_not_its_business() {
    let foreign = inventory(StockReserved {
        sku: "BOLT".into(),
        reservation_id: Uuid::now_v7(),
        order_id: order_id(),
        quantity: 1,
        expires_at: at(15),
    });
    assert_eq!(lifecycle().instance_of(&foreign), None);
    assert_eq!(lifecycle().instance_of(&reserved("BOLT", 3, 0, 15)), Some(order_id().to_string()));
}
