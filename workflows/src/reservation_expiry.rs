//! Reservation expiry (the platform's ExpireStaleReservations: TTL expiry on held
//! reservations), one instance per reservation made outside the order lifecycle — over
//! `POST /v1/inventory/items/{sku}/reservations`. A held reservation expires
//! (`ReservationExpired`) by a durable timer at its `expires_at`, once; released or
//! committed first, its timer is cancelled. The lifecycle's own reservations are left to
//! it: it rejects the order before their stock expires, and a confirmed order's stock
//! never does.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;
use vectis_consumer::event::{DomainEvent, ProjectedEvent};
use vectis_read_side::{catalog::RESERVATION_EXPIRY, ProjectionSpec};
use vectis_schemas::events::InventoryEvent;

use crate::{
    commands::WorkflowCommand,
    order_lifecycle::is_lifecycle_reservation,
    workflow::{InstanceStatus, Step, TimerWish, Workflow},
};

const EXPIRY: &str = "expiry";

pub struct ReservationExpiry;

impl ReservationExpiry {
    pub fn new() -> Arc<Self> {
        Arc::new(Self)
    }
}

/// How a reservation's hold ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Ended {
    Released,
    Committed,
    Expired,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReservationState {
    pub sku: String,
    pub reservation_id: Uuid,
    pub expires_at: Option<DateTime<Utc>>,
    pub ended: Option<Ended>,
    /// The expiry timer fired while the reservation was held.
    pub fired: bool,
}

/// The reservation an inventory event is about: (reservation, order, SKU).
fn reservation_of(event: &InventoryEvent) -> Option<(Uuid, Uuid, &str)> {
    Some(match event {
        InventoryEvent::StockReserved(e) => (e.reservation_id, e.order_id, e.sku.as_str()),
        InventoryEvent::ReservationReleased(e) => (e.reservation_id, e.order_id, e.sku.as_str()),
        InventoryEvent::ReservationCommitted(e) => (e.reservation_id, e.order_id, e.sku.as_str()),
        InventoryEvent::ReservationExpired(e) => (e.reservation_id, e.order_id, e.sku.as_str()),
        _ => return None,
    })
}

impl Workflow for ReservationExpiry {
    type State = ReservationState;

    fn spec(&self) -> &'static ProjectionSpec {
        &RESERVATION_EXPIRY
    }

    fn instance_of(&self, event: &ProjectedEvent) -> Option<String> {
        let DomainEvent::Inventory(event) = &event.event else { return None };
        let (reservation, order, sku) = reservation_of(event)?;
        (!is_lifecycle_reservation(order, sku, reservation)).then(|| reservation.to_string())
    }

    fn evolve(&self, state: Option<Self::State>, event: &ProjectedEvent) -> Option<Self::State> {
        let DomainEvent::Inventory(event) = &event.event else { return state };
        let (reservation_id, _, sku) = reservation_of(event)?;
        let mut state = state.unwrap_or(ReservationState {
            sku: sku.to_string(),
            reservation_id,
            expires_at: None,
            ended: None,
            fired: false,
        });
        match event {
            InventoryEvent::StockReserved(e) => state.expires_at = Some(e.expires_at),
            InventoryEvent::ReservationReleased(_) => state.ended = Some(Ended::Released),
            InventoryEvent::ReservationCommitted(_) => state.ended = Some(Ended::Committed),
            InventoryEvent::ReservationExpired(_) => state.ended = Some(Ended::Expired),
            _ => {}
        }
        Some(state)
    }

    fn timer_fired(&self, mut state: Self::State, timer: &str, _now: DateTime<Utc>) -> Self::State {
        if timer == EXPIRY && state.ended.is_none() {
            state.fired = true;
        }
        state
    }

    fn steps(&self, state: &Self::State, _now: DateTime<Utc>) -> Vec<Step> {
        if !state.fired || state.ended.is_some() {
            return vec![];
        }
        let command = WorkflowCommand::Expire { sku: state.sku.clone(), reservation_id: state.reservation_id };
        vec![Step { name: "expire".into(), command }]
    }

    fn timers(&self, state: &Self::State) -> Vec<TimerWish> {
        match (state.ended, state.fired, state.expires_at) {
            (None, false, Some(due_at)) => vec![TimerWish { name: EXPIRY.into(), due_at }],
            _ => vec![],
        }
    }

    fn status(&self, state: &Self::State) -> InstanceStatus {
        match state.ended {
            None => InstanceStatus::Running,
            Some(_) => InstanceStatus::Completed,
        }
    }

    fn describe(&self, state: &Self::State) -> String {
        match (state.ended, state.expires_at) {
            (None, _) if state.fired => "expiring".into(),
            (None, Some(at)) => format!("held until {}", at.to_rfc3339()),
            (None, None) => "waiting for the reservation".into(),
            (Some(Ended::Released), _) => "done: released".into(),
            (Some(Ended::Committed), _) => "done: committed".into(),
            (Some(Ended::Expired), _) => "done: expired".into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use vectis_schemas::{
        events::{ReservationCommitted, StockReserved},
        StreamId,
    };

    use super::*;
    use crate::order_lifecycle::reservation_id;

    fn at(seconds: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + seconds, 0).expect("time")
    }

    fn event(e: impl Into<InventoryEvent>) -> ProjectedEvent {
        ProjectedEvent {
            event_id: Uuid::new_v4(),
            correlation_id: Uuid::nil(),
            stream_id: StreamId::inventory_item("BOLT").expect("sku"),
            stream_version: 1,
            global_position: 1,
            occurred_at: at(0),
            event: DomainEvent::Inventory(e.into()),
        }
    }

    fn reserved(reservation_id: Uuid, order_id: Uuid) -> ProjectedEvent {
        event(StockReserved { sku: "BOLT".into(), reservation_id, order_id, quantity: 3, expires_at: at(60) })
    }

    #[test]
    fn a_held_reservation_expires_once_at_its_expiry() {
        let workflow = ReservationExpiry;
        let id = Uuid::from_u128(1);
        let held = workflow.evolve(None, &reserved(id, Uuid::from_u128(2))).expect("state");
        assert_eq!(workflow.timers(&held), vec![TimerWish { name: EXPIRY.into(), due_at: at(60) }]);
        assert!(workflow.steps(&held, at(59)).is_empty());
        let fired = workflow.timer_fired(held, EXPIRY, at(60));
        assert!(workflow.timers(&fired).is_empty(), "fired once, not armed again");
        assert_eq!(
            workflow.steps(&fired, at(60)),
            vec![Step {
                name: "expire".into(),
                command: WorkflowCommand::Expire { sku: "BOLT".into(), reservation_id: id }
            }]
        );
    }

    #[test]
    fn a_committed_reservation_cancels_its_expiry_and_the_lifecycles_are_not_its_business() {
        let workflow = ReservationExpiry;
        let (id, order) = (Uuid::from_u128(3), Uuid::from_u128(4));
        let committed = ReservationCommitted { sku: "BOLT".into(), reservation_id: id, order_id: order, quantity: 3 };
        let state = [reserved(id, order), event(committed)].iter().fold(None, |s, e| workflow.evolve(s, e));
        let state = state.expect("state");
        assert!(workflow.timers(&state).is_empty());
        assert_eq!(workflow.status(&state), InstanceStatus::Completed);

        let lifecycle_made = reserved(reservation_id(order, "BOLT", 0), order);
        assert!(workflow.instance_of(&lifecycle_made).is_none());
        assert_eq!(workflow.instance_of(&reserved(id, order)), Some(id.to_string()));
    }
}
