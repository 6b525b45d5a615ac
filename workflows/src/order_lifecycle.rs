//! The order lifecycle (one instance per order): reserves every line when the order is
//! placed (or approved, if it needed approval) for the reservation TTL; once every line
//! is held, records that on the order (`OrderStockHeld`: it can be confirmed); when a
//! line is short, lets go of the others and rejects the order with the reason. A
//! cancelled or rejected order gives back what it holds, a shipped one commits it
//! (on hand decreases). A held order not confirmed by the earliest expiry is rejected
//! "reservation expired" and its reservations expire (`ReservationExpired`). The
//! rejection goes first and through the order, so a confirmation racing the expiry
//! wins or loses as a whole: a confirmed order's stock never expires.
//!
//! The state keeps facts, from both topics, keyed the way they arrive, so the
//! decisions are the same whichever topic a replay reads ahead.

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::Arc,
    time::Duration,
};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;
use vectis_consumer::event::{DomainEvent, ProjectedEvent};
use vectis_read_side::{catalog::ORDER_LIFECYCLE, ProjectionSpec};
use vectis_schemas::events::{HeldLine, InventoryEvent, OrderEvent};

use crate::{
    commands::WorkflowCommand,
    workflow::{InstanceStatus, Step, TimerWish, Workflow},
};

/// The reason an order is rejected with when its stock was held too long unconfirmed.
pub const RESERVATION_EXPIRED: &str = "reservation expired";

/// How long the lifecycle holds an order's stock by default (`RESERVATION_TTL`).
pub const DEFAULT_RESERVATION_TTL: Duration = Duration::from_secs(15 * 60);

pub struct OrderLifecycle {
    pub reservation_ttl: Duration,
}

impl OrderLifecycle {
    pub fn new(reservation_ttl: Duration) -> Arc<Self> {
        Arc::new(Self { reservation_ttl })
    }
}

/// Where the order is, as its own events tell.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case", tag = "phase", content = "reason")]
pub enum Phase {
    /// Facts about its reservations arrived before the order itself (a replay).
    #[default]
    Unknown,
    Placed,
    AwaitingApproval,
    Approved,
    Confirmable,
    Confirmed,
    Shipped,
    Delivered,
    Cancelled,
    Rejected(String),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Line {
    pub sku: String,
    pub quantity: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Held {
    Held,
    /// Refused for lack of stock, with what was available then.
    Rejected {
        available: i64,
    },
    Released,
    Expired,
    Committed,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReservationFact {
    pub sku: String,
    pub quantity: i64,
    pub status: Held,
    pub expires_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct OrderLifecycleState {
    pub order_id: Uuid,
    pub phase: Phase,
    pub lines: Vec<Line>,
    /// Its total exceeded the approval threshold: its stock is reserved after approval.
    pub approval_requested: bool,
    pub reservations: BTreeMap<Uuid, ReservationFact>,
    /// The expiry timer fired while the order was not confirmed.
    pub expiry_fired: bool,
}

/// The reservation that holds `sku` of `order_id`. An order that waited for approval
/// reserves under a second id, so stock reserved before its approval request was
/// seen (a batch that split the placement's events) is told apart and given back.
pub fn reservation_id(order_id: Uuid, sku: &str, attempt: u8) -> Uuid {
    let hash = Sha256::digest(format!("vectis.order_lifecycle/{order_id}/{sku}/{attempt}"));
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&hash[..16]);
    uuid::Builder::from_custom_bytes(bytes).into_uuid()
}

/// Whether the lifecycle of `order_id` made `reservation` for `sku` (either attempt).
pub fn is_lifecycle_reservation(order_id: Uuid, sku: &str, reservation: Uuid) -> bool {
    (0..=1).any(|attempt| reservation_id(order_id, sku, attempt) == reservation)
}

impl OrderLifecycleState {
    fn attempt(&self) -> u8 {
        u8::from(self.approval_requested)
    }

    /// Each line with the reservation that holds it now.
    fn current(&self) -> Vec<(&Line, Uuid)> {
        self.lines.iter().map(|l| (l, reservation_id(self.order_id, &l.sku, self.attempt()))).collect()
    }

    /// Every reservation id this lifecycle may have used for the order, either attempt.
    fn ours(&self) -> BTreeSet<Uuid> {
        self.lines.iter().flat_map(|l| (0..=1).map(|a| reservation_id(self.order_id, &l.sku, a))).collect()
    }

    fn fact(&self, reservation: &Uuid) -> Option<&ReservationFact> {
        self.reservations.get(reservation)
    }

    /// Still reserving: placed, or approved.
    fn reserving(&self) -> bool {
        matches!(self.phase, Phase::Placed | Phase::Approved)
    }

    fn unconfirmed(&self) -> bool {
        matches!(self.phase, Phase::Placed | Phase::Approved | Phase::Confirmable)
    }

    /// The first current line refused for lack of stock, with what was available.
    fn short_line(&self) -> Option<(&Line, i64)> {
        self.current().into_iter().find_map(|(line, id)| match self.fact(&id).map(|f| f.status) {
            Some(Held::Rejected { available }) => Some((line, available)),
            _ => None,
        })
    }

    /// Held reservations of this order, current or not.
    fn held(&self) -> impl Iterator<Item = (&Uuid, &ReservationFact)> {
        let ours = self.ours();
        self.reservations.iter().filter(move |(id, f)| f.status == Held::Held && ours.contains(id))
    }

    /// When the earliest held current reservation expires.
    fn earliest_expiry(&self) -> Option<DateTime<Utc>> {
        self.current()
            .into_iter()
            .filter_map(|(_, id)| self.fact(&id).filter(|f| f.status == Held::Held).and_then(|f| f.expires_at))
            .min()
    }

    fn set_reservation(&mut self, id: Uuid, sku: &str, quantity: i64, status: Held, expires_at: Option<DateTime<Utc>>) {
        let fact = self.reservations.entry(id).or_insert(ReservationFact {
            sku: sku.to_string(),
            quantity,
            status,
            expires_at,
        });
        fact.status = status;
        fact.expires_at = fact.expires_at.or(expires_at);
    }
}

impl Workflow for OrderLifecycle {
    type State = OrderLifecycleState;

    fn spec(&self) -> &'static ProjectionSpec {
        &ORDER_LIFECYCLE
    }

    /// An order's events, and the events of reservations this lifecycle made for it
    /// (others, made directly over HTTP, are not its business).
    fn instance_of(&self, event: &ProjectedEvent) -> Option<String> {
        let (order, reservation) = match &event.event {
            DomainEvent::Order(e) => return Some(e.order_id().to_string()),
            DomainEvent::Inventory(InventoryEvent::StockReserved(e)) => (e.order_id, (e.reservation_id, &e.sku)),
            DomainEvent::Inventory(InventoryEvent::ReservationRejected(e)) => (e.order_id, (e.reservation_id, &e.sku)),
            DomainEvent::Inventory(InventoryEvent::ReservationReleased(e)) => (e.order_id, (e.reservation_id, &e.sku)),
            DomainEvent::Inventory(InventoryEvent::ReservationExpired(e)) => (e.order_id, (e.reservation_id, &e.sku)),
            DomainEvent::Inventory(InventoryEvent::ReservationCommitted(e)) => (e.order_id, (e.reservation_id, &e.sku)),
            _ => return None,
        };
        let (id, sku) = reservation;
        is_lifecycle_reservation(order, sku, id).then(|| order.to_string())
    }

    fn evolve(&self, state: Option<Self::State>, event: &ProjectedEvent) -> Option<Self::State> {
        let mut state = state.unwrap_or_default();
        match &event.event {
            DomainEvent::Order(e) => {
                state.order_id = e.order_id();
                match e {
                    OrderEvent::OrderPlaced(placed) => {
                        state.lines =
                            placed.lines.iter().map(|l| Line { sku: l.sku.clone(), quantity: l.quantity }).collect();
                        state.phase = Phase::Placed;
                    }
                    OrderEvent::OrderApprovalRequested(_) => {
                        state.approval_requested = true;
                        state.phase = Phase::AwaitingApproval;
                    }
                    OrderEvent::OrderApproved(_) => state.phase = Phase::Approved,
                    OrderEvent::OrderRejected(r) => state.phase = Phase::Rejected(r.reason.clone()),
                    OrderEvent::OrderStockHeld(_) => state.phase = Phase::Confirmable,
                    OrderEvent::OrderConfirmed(_) => state.phase = Phase::Confirmed,
                    OrderEvent::OrderCancelled(_) => state.phase = Phase::Cancelled,
                    OrderEvent::OrderShipped(_) => state.phase = Phase::Shipped,
                    OrderEvent::OrderDelivered(_) => state.phase = Phase::Delivered,
                }
            }
            DomainEvent::Inventory(e) => match e {
                InventoryEvent::StockReserved(r) => {
                    state.order_id = r.order_id;
                    state.set_reservation(r.reservation_id, &r.sku, r.quantity, Held::Held, Some(r.expires_at));
                }
                InventoryEvent::ReservationRejected(r) => {
                    state.order_id = r.order_id;
                    let status = Held::Rejected { available: r.available };
                    state.set_reservation(r.reservation_id, &r.sku, r.quantity, status, None);
                }
                InventoryEvent::ReservationReleased(r) => {
                    state.order_id = r.order_id;
                    state.set_reservation(r.reservation_id, &r.sku, r.quantity, Held::Released, None);
                }
                InventoryEvent::ReservationExpired(r) => {
                    state.order_id = r.order_id;
                    state.set_reservation(r.reservation_id, &r.sku, r.quantity, Held::Expired, None);
                }
                InventoryEvent::ReservationCommitted(r) => {
                    state.order_id = r.order_id;
                    state.set_reservation(r.reservation_id, &r.sku, r.quantity, Held::Committed, None);
                }
                _ => {}
            },
            DomainEvent::Account(_) => {}
        }
        Some(state)
    }

    fn timer_fired(&self, mut state: Self::State, timer: &str, _now: DateTime<Utc>) -> Self::State {
        if timer.starts_with("expiry/") && state.unconfirmed() {
            state.expiry_fired = true;
        }
        state
    }

    fn steps(&self, state: &Self::State, now: DateTime<Utc>) -> Vec<Step> {
        let order_id = state.order_id;
        let mut steps = Vec::new();
        if state.reserving() {
            for (line, id) in state.current() {
                steps.push(Step {
                    name: format!("reserve/{id}"),
                    command: WorkflowCommand::Reserve {
                        sku: line.sku.clone(),
                        reservation_id: id,
                        order_id,
                        quantity: line.quantity,
                        hold_for_ms: u64::try_from(self.reservation_ttl.as_millis()).unwrap_or(u64::MAX),
                    },
                });
            }
            if let Some((line, available)) = state.short_line() {
                let reason = format!(
                    "insufficient stock for SKU {}: {} requested, {available} available",
                    line.sku, line.quantity
                );
                steps.push(Step { name: "reject".into(), command: WorkflowCommand::RejectOrder { order_id, reason } });
            } else if let Some(expires_at) = state.earliest_expiry().filter(|_| all_held(state)) {
                let reservations = state
                    .current()
                    .into_iter()
                    .map(|(line, id)| HeldLine { sku: line.sku.clone(), reservation_id: id, quantity: line.quantity })
                    .collect();
                steps.push(Step {
                    name: format!("hold/{}", state.attempt()),
                    command: WorkflowCommand::HoldStock { order_id, reservations, expires_at },
                });
            }
        }
        if state.expiry_fired && state.unconfirmed() {
            let reason = RESERVATION_EXPIRED.to_string();
            steps.push(Step { name: "reject".into(), command: WorkflowCommand::RejectOrder { order_id, reason } });
        }
        let current: BTreeSet<Uuid> = state.current().into_iter().map(|(_, id)| id).collect();
        let short_of_stock = state.reserving() && state.short_line().is_some();
        for (id, fact) in state.held() {
            let (sku, reservation_id) = (fact.sku.clone(), *id);
            let is_current = current.contains(id);
            let let_go = match &state.phase {
                Phase::Cancelled => Some("the order was cancelled".to_string()),
                Phase::Rejected(reason) => Some(format!("the order was rejected: {reason}")),
                Phase::AwaitingApproval => Some("the order waits for approval".to_string()),
                _ if !is_current => Some("the order waits for approval".to_string()),
                _ if short_of_stock => Some("another line of the order is short of stock".to_string()),
                _ => None,
            };
            if let Some(reason) = let_go {
                let expired = state.phase == Phase::Rejected(RESERVATION_EXPIRED.into())
                    && fact.expires_at.is_some_and(|at| at <= now);
                let command = if expired {
                    WorkflowCommand::Expire { sku, reservation_id }
                } else {
                    WorkflowCommand::Release { sku, reservation_id, reason }
                };
                steps.push(Step { name: format!("release/{id}"), command });
            } else if matches!(state.phase, Phase::Shipped | Phase::Delivered) {
                steps.push(Step {
                    name: format!("commit/{id}"),
                    command: WorkflowCommand::Commit { sku, reservation_id },
                });
            }
        }
        steps
    }

    fn timers(&self, state: &Self::State) -> Vec<TimerWish> {
        if !state.unconfirmed() || state.expiry_fired {
            return vec![];
        }
        state
            .earliest_expiry()
            .map(|due_at| TimerWish { name: format!("expiry/{}", state.attempt()), due_at })
            .into_iter()
            .collect()
    }

    fn status(&self, state: &Self::State) -> InstanceStatus {
        let holds = state.held().next().is_some();
        match &state.phase {
            Phase::Shipped | Phase::Delivered | Phase::Cancelled if !holds => InstanceStatus::Completed,
            Phase::Rejected(_) if !holds => InstanceStatus::Failed,
            _ => InstanceStatus::Running,
        }
    }

    fn describe(&self, state: &Self::State) -> String {
        let held = state.current().into_iter().filter(|(_, id)| state.fact(id).is_some_and(|f| f.status == Held::Held));
        let held = held.count();
        let lines = state.lines.len();
        let letting_go = state.held().count();
        match &state.phase {
            Phase::Unknown => "waiting for the order's placement".into(),
            Phase::Placed | Phase::Approved => format!("reserving stock: {held} of {lines} lines held"),
            Phase::AwaitingApproval if letting_go > 0 => {
                format!("waiting for approval; giving back {letting_go} reservations")
            }
            Phase::AwaitingApproval => "waiting for staff approval".into(),
            Phase::Confirmable => match state.earliest_expiry() {
                Some(at) => format!("confirmable: waiting for confirmation until {}", at.to_rfc3339()),
                None => "confirmable: waiting for confirmation".into(),
            },
            Phase::Confirmed => "confirmed: stock held until shipping".into(),
            Phase::Shipped | Phase::Delivered if letting_go > 0 => {
                format!("shipped: committing {letting_go} reservations")
            }
            Phase::Cancelled | Phase::Rejected(_) if letting_go > 0 => format!("giving back {letting_go} reservations"),
            Phase::Shipped | Phase::Delivered => "done: stock committed".into(),
            Phase::Cancelled => "done: cancelled, stock given back".into(),
            Phase::Rejected(reason) => format!("done: rejected ({reason})"),
        }
    }
}

/// Every current line is held.
fn all_held(state: &OrderLifecycleState) -> bool {
    !state.lines.is_empty()
        && state.current().into_iter().all(|(_, id)| state.fact(&id).is_some_and(|f| f.status == Held::Held))
}

#[cfg(test)]
#[path = "order_lifecycle_tests.rs"]
mod tests;
