//! InventoryItem: one per SKU. Stock is received and adjusted; units are reserved for
//! orders until an expiry, then released, committed or expired. On-hand stock never
//! drops below what is reserved, so nothing is ever oversold.
//!
//! The state stays bounded however busy the SKU: it holds the reservations still
//! held, nothing of those that closed or were rejected. A command naming one of
//! those (a late release, a reservation id used again) is answered from the store:
//! [`InventoryItem::forgotten`] names the reservation, the handler reads the stream's
//! events mentioning it (an index on `reservation_id`) and [`InventoryItem::recall`]
//! takes them in before deciding, so the answer is as precise as if the state had
//! kept every reservation. A repeated request under an idempotency key is answered
//! from its stored response before any of this.

use std::{collections::BTreeMap, fmt};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;
use vectis_schemas::events::{
    AdjustmentReason, InventoryEvent, ItemCreated, ItemPriceChanged, Money, ReservationCommitted, ReservationExpired,
    ReservationRejected, ReservationReleased, StockAdjusted, StockReceived, StockReserved,
};

use super::DomainError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReservationStatus {
    Held,
    Released,
    Committed,
    Expired,
    /// Refused for lack of stock; its id cannot be reused.
    Rejected,
}

impl fmt::Display for ReservationStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Held => "held",
            Self::Released => "released",
            Self::Committed => "committed",
            Self::Expired => "expired",
            Self::Rejected => "rejected",
        })
    }
}

/// A reservation that is held.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reservation {
    pub order_id: Uuid,
    pub quantity: i64,
    pub expires_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InventoryItem {
    pub sku: String,
    pub name: String,
    pub description: String,
    pub unit_price: Money,
    pub on_hand: i64,
    /// The reservations held now: all that stock decisions need.
    pub reservations: BTreeMap<Uuid, Reservation>,
    /// What became of reservations the state does not hold, as recalled from the store
    /// for one decision (see the module comment); never part of a snapshot.
    #[serde(skip)]
    recalled: BTreeMap<Uuid, ReservationStatus>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InventoryCommand {
    Create {
        sku: String,
        name: String,
        description: String,
        unit_price: Money,
    },
    /// A new unit price; `by` is who changes it (recorded in the event).
    ChangePrice {
        unit_price: Money,
        by: String,
        reason: Option<String>,
    },
    Receive {
        quantity: i64,
        reference: Option<String>,
    },
    Adjust {
        delta: i64,
        reason: AdjustmentReason,
        note: Option<String>,
    },
    Reserve {
        reservation_id: Uuid,
        order_id: Uuid,
        quantity: i64,
        expires_at: DateTime<Utc>,
        now: DateTime<Utc>,
    },
    Release {
        reservation_id: Uuid,
        reason: Option<String>,
    },
    Commit {
        reservation_id: Uuid,
    },
    Expire {
        reservation_id: Uuid,
        now: DateTime<Utc>,
    },
}

impl InventoryItem {
    /// Units held by reservations.
    pub fn reserved(&self) -> i64 {
        self.reservations.values().map(|r| r.quantity).sum()
    }

    /// Units that can still be reserved.
    pub fn available(&self) -> i64 {
        self.on_hand - self.reserved()
    }

    /// Decides what `command` means for the item (`None`: no such SKU yet). A
    /// reservation that stock cannot cover is an outcome (`ReservationRejected`), not
    /// an error: the order process needs to hear about it.
    pub fn decide(
        state: &Option<InventoryItem>,
        command: InventoryCommand,
    ) -> Result<Vec<InventoryEvent>, DomainError> {
        match (state, command) {
            (None, InventoryCommand::Create { sku, name, description, unit_price }) => {
                if unit_price.amount_minor < 0 {
                    return Err(DomainError::Rule("the unit price cannot be negative".into()));
                }
                Ok(vec![ItemCreated { sku, name, description, unit_price }.into()])
            }
            (None, _) => Err(DomainError::NotFound("no inventory item with this SKU".into())),
            (Some(item), command) => item.decide_existing(command),
        }
    }

    fn decide_existing(&self, command: InventoryCommand) -> Result<Vec<InventoryEvent>, DomainError> {
        let sku = self.sku.clone();
        Ok(match command {
            InventoryCommand::Create { .. } => {
                return Err(DomainError::AlreadyExists(format!("inventory item {sku} already exists")));
            }
            InventoryCommand::ChangePrice { unit_price, by, reason } => {
                if unit_price.amount_minor < 0 {
                    return Err(DomainError::Rule("the unit price cannot be negative".into()));
                }
                if unit_price == self.unit_price {
                    // Already so: a price list applied twice changes nothing.
                    return Ok(vec![]);
                }
                vec![ItemPriceChanged {
                    sku,
                    previous_unit_price: self.unit_price.clone(),
                    unit_price,
                    changed_by: by,
                    reason,
                }
                .into()]
            }
            InventoryCommand::Receive { quantity, reference } => {
                positive(quantity)?;
                vec![StockReceived { sku, quantity, reference }.into()]
            }
            InventoryCommand::Adjust { delta, reason, note } => {
                if delta == 0 {
                    return Err(DomainError::Rule("an adjustment needs a non-zero delta".into()));
                }
                let reserved = self.reserved();
                if self.on_hand.saturating_add(delta) < reserved {
                    return Err(DomainError::Rule(format!(
                        "adjusting {sku} by {delta} would leave {} on hand, below the {reserved} reserved",
                        self.on_hand.saturating_add(delta)
                    )));
                }
                vec![StockAdjusted { sku, delta, reason, note }.into()]
            }
            InventoryCommand::Reserve { reservation_id, order_id, quantity, expires_at, now } => {
                positive(quantity)?;
                match self.status_of(reservation_id) {
                    None => {}
                    Some(ReservationStatus::Rejected) => {
                        return Err(DomainError::AlreadyExists(format!(
                            "reservation {reservation_id} was already rejected on {sku}"
                        )));
                    }
                    Some(status) => {
                        return Err(DomainError::AlreadyExists(format!(
                            "reservation {reservation_id} already exists on {sku} and is {status}"
                        )));
                    }
                }
                if expires_at <= now {
                    return Err(DomainError::Rule(format!("the reservation would expire in the past ({expires_at})")));
                }
                let available = self.available();
                if quantity > available {
                    vec![ReservationRejected {
                        sku,
                        reservation_id,
                        order_id,
                        quantity,
                        available: available.max(0),
                        reason: format!("{quantity} requested, {available} available"),
                    }
                    .into()]
                } else {
                    vec![StockReserved { sku, reservation_id, order_id, quantity, expires_at }.into()]
                }
            }
            InventoryCommand::Release { reservation_id, reason } => {
                let held = self.held(reservation_id, "release")?;
                vec![ReservationReleased {
                    sku,
                    reservation_id,
                    order_id: held.order_id,
                    quantity: held.quantity,
                    reason,
                }
                .into()]
            }
            InventoryCommand::Commit { reservation_id } => {
                let held = self.held(reservation_id, "commit")?;
                vec![ReservationCommitted { sku, reservation_id, order_id: held.order_id, quantity: held.quantity }
                    .into()]
            }
            InventoryCommand::Expire { reservation_id, now } => {
                let held = self.held(reservation_id, "expire")?;
                if now < held.expires_at {
                    return Err(DomainError::InvalidState(format!(
                        "reservation {reservation_id} is held until {}; it cannot expire before",
                        held.expires_at
                    )));
                }
                vec![ReservationExpired {
                    sku,
                    reservation_id,
                    order_id: held.order_id,
                    quantity: held.quantity,
                    expired_at: now,
                }
                .into()]
            }
        })
    }

    /// The reservation, if it is held; otherwise an error naming its status.
    fn held(&self, reservation_id: Uuid, action: &str) -> Result<&Reservation, DomainError> {
        if let Some(held) = self.reservations.get(&reservation_id) {
            return Ok(held);
        }
        Err(match self.recalled.get(&reservation_id) {
            None | Some(ReservationStatus::Held) => {
                DomainError::NotFound(format!("no reservation {reservation_id} on {}", self.sku))
            }
            Some(ReservationStatus::Rejected) => DomainError::InvalidState(format!(
                "cannot {action} reservation {reservation_id}: it was rejected, and only a held reservation can be"
            )),
            Some(status) => DomainError::InvalidState(format!(
                "cannot {action} reservation {reservation_id}: it is {status}, and only a held reservation can be"
            )),
        })
    }

    /// What is known of a reservation: held, or what the store recalled of it.
    pub fn status_of(&self, reservation_id: Uuid) -> Option<ReservationStatus> {
        if self.reservations.contains_key(&reservation_id) {
            return Some(ReservationStatus::Held);
        }
        self.recalled.get(&reservation_id).copied()
    }

    /// The reservation `command` names when the state does not hold it: the store
    /// knows whether it closed, was rejected, or never existed.
    pub fn forgotten(&self, command: &InventoryCommand) -> Option<Uuid> {
        let reservation_id = match command {
            InventoryCommand::Reserve { reservation_id, .. }
            | InventoryCommand::Release { reservation_id, .. }
            | InventoryCommand::Commit { reservation_id }
            | InventoryCommand::Expire { reservation_id, .. } => *reservation_id,
            InventoryCommand::Create { .. }
            | InventoryCommand::ChangePrice { .. }
            | InventoryCommand::Receive { .. }
            | InventoryCommand::Adjust { .. } => return None,
        };
        (!self.reservations.contains_key(&reservation_id)).then_some(reservation_id)
    }

    /// Takes in the events that mention reservations the state does not hold (events
    /// about other reservations, or other facts, change nothing).
    pub fn recall(&mut self, events: &[InventoryEvent]) {
        for event in events {
            let (reservation_id, status) = match event {
                InventoryEvent::StockReserved(e) => (e.reservation_id, ReservationStatus::Held),
                InventoryEvent::ReservationRejected(e) => (e.reservation_id, ReservationStatus::Rejected),
                InventoryEvent::ReservationReleased(e) => (e.reservation_id, ReservationStatus::Released),
                InventoryEvent::ReservationCommitted(e) => (e.reservation_id, ReservationStatus::Committed),
                InventoryEvent::ReservationExpired(e) => (e.reservation_id, ReservationStatus::Expired),
                _ => continue,
            };
            if !self.reservations.contains_key(&reservation_id) {
                self.recalled.insert(reservation_id, status);
            }
        }
    }

    /// The version of this state's shape and of `evolve`. Bump it with any change to
    /// either: snapshots taken under another version are then ignored and replaced.
    /// 2: `evolve` takes in `ItemPriceChanged`.
    pub const STATE_VERSION: i32 = 2;

    /// Applies one event (a fact from the store).
    pub fn evolve(state: Option<InventoryItem>, event: &InventoryEvent) -> Option<InventoryItem> {
        let mut item = match (state, event) {
            (_, InventoryEvent::ItemCreated(e)) => {
                return Some(InventoryItem {
                    sku: e.sku.clone(),
                    name: e.name.clone(),
                    description: e.description.clone(),
                    unit_price: e.unit_price.clone(),
                    on_hand: 0,
                    reservations: BTreeMap::new(),
                    recalled: BTreeMap::new(),
                });
            }
            (None, _) => return None,
            (Some(item), _) => item,
        };
        match event {
            InventoryEvent::ItemCreated(_) => {}
            InventoryEvent::ItemPriceChanged(e) => item.unit_price = e.unit_price.clone(),
            InventoryEvent::StockReceived(e) => item.on_hand += e.quantity,
            InventoryEvent::StockAdjusted(e) => item.on_hand += e.delta,
            InventoryEvent::StockReserved(e) => {
                item.reservations.insert(
                    e.reservation_id,
                    Reservation { order_id: e.order_id, quantity: e.quantity, expires_at: e.expires_at },
                );
            }
            // A rejected reservation never held anything; a closed one leaves the state.
            InventoryEvent::ReservationRejected(_) => {}
            InventoryEvent::ReservationReleased(e) => {
                item.reservations.remove(&e.reservation_id);
            }
            InventoryEvent::ReservationExpired(e) => {
                item.reservations.remove(&e.reservation_id);
            }
            InventoryEvent::ReservationCommitted(e) => {
                item.reservations.remove(&e.reservation_id);
                // Committed units leave the warehouse's on-hand stock.
                item.on_hand -= e.quantity;
            }
        }
        Some(item)
    }
}

fn positive(quantity: i64) -> Result<(), DomainError> {
    if quantity > 0 {
        Ok(())
    } else {
        Err(DomainError::Rule(format!("quantity must be positive, not {quantity}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{fold, testing::*};

    const SKU: &str = "BOLT-M8";

    fn created() -> InventoryEvent {
        ItemCreated { sku: SKU.into(), name: "M8 bolt".into(), description: String::new(), unit_price: eur(42) }.into()
    }

    fn received(quantity: i64) -> InventoryEvent {
        StockReceived { sku: SKU.into(), quantity, reference: None }.into()
    }

    fn reserved(reservation: u128, quantity: i64) -> InventoryEvent {
        StockReserved {
            sku: SKU.into(),
            reservation_id: id(reservation),
            order_id: id(900),
            quantity,
            expires_at: at(12),
        }
        .into()
    }

    /// The item after `events`, knowing what the store would recall of them (as the
    /// command handler does before deciding).
    fn given(events: Vec<InventoryEvent>) -> Option<InventoryItem> {
        let mut item = fold(None, events.clone(), InventoryItem::evolve);
        if let Some(item) = item.as_mut() {
            item.recall(&events);
        }
        item
    }

    fn reserve(reservation: u128, quantity: i64) -> InventoryCommand {
        InventoryCommand::Reserve {
            reservation_id: id(reservation),
            order_id: id(900),
            quantity,
            expires_at: at(12),
            now: at(10),
        }
    }

    #[test]
    fn an_item_is_created_once_with_a_non_negative_price() {
        let create = |price| InventoryCommand::Create {
            sku: SKU.into(),
            name: "M8 bolt".into(),
            description: String::new(),
            unit_price: eur(price),
        };
        assert_eq!(InventoryItem::decide(&None, create(42)), Ok(vec![created()]));
        assert!(matches!(InventoryItem::decide(&None, create(-1)), Err(DomainError::Rule(_))));
        assert!(matches!(
            InventoryItem::decide(&given(vec![created()]), create(42)),
            Err(DomainError::AlreadyExists(_))
        ));
        assert!(matches!(InventoryItem::decide(&None, reserve(1, 1)), Err(DomainError::NotFound(_))));
    }

    #[test]
    fn a_price_change_records_the_previous_price_and_who_changed_it_and_the_same_price_changes_nothing() {
        let item = given(vec![created()]);
        let change = |price| InventoryCommand::ChangePrice {
            unit_price: eur(price),
            by: "staff:pricing".into(),
            reason: Some("list 2027".into()),
        };
        let changed: InventoryEvent = ItemPriceChanged {
            sku: SKU.into(),
            previous_unit_price: eur(42),
            unit_price: eur(45),
            changed_by: "staff:pricing".into(),
            reason: Some("list 2027".into()),
        }
        .into();
        assert_eq!(InventoryItem::decide(&item, change(45)), Ok(vec![changed.clone()]));
        assert_eq!(InventoryItem::decide(&item, change(42)), Ok(vec![]));
        assert!(matches!(InventoryItem::decide(&item, change(-1)), Err(DomainError::Rule(_))));
        assert!(matches!(InventoryItem::decide(&None, change(45)), Err(DomainError::NotFound(_))));
        let repriced = given(vec![created(), changed]).expect("item");
        assert_eq!(repriced.unit_price, eur(45));
    }

    #[test]
    fn receiving_needs_a_positive_quantity() {
        let item = given(vec![created()]);
        let receive = |quantity| InventoryCommand::Receive { quantity, reference: Some("PO-1".into()) };
        assert_eq!(
            InventoryItem::decide(&item, receive(10)),
            Ok(vec![StockReceived { sku: SKU.into(), quantity: 10, reference: Some("PO-1".into()) }.into()])
        );
        assert!(matches!(InventoryItem::decide(&item, receive(0)), Err(DomainError::Rule(_))));
        assert!(matches!(InventoryItem::decide(&item, receive(-3)), Err(DomainError::Rule(_))));
    }

    #[test]
    fn adjustments_never_take_stock_below_what_is_reserved() {
        let item = given(vec![created(), received(10), reserved(1, 6)]);
        let adjust = |delta| InventoryCommand::Adjust { delta, reason: AdjustmentReason::Damaged, note: None };
        assert!(InventoryItem::decide(&item, adjust(-4)).is_ok(), "10 - 4 = 6 still covers 6 reserved");
        let err = InventoryItem::decide(&item, adjust(-5)).expect_err("below reserved");
        assert_eq!(
            err,
            DomainError::Rule("adjusting BOLT-M8 by -5 would leave 5 on hand, below the 6 reserved".into())
        );
        assert!(matches!(InventoryItem::decide(&item, adjust(0)), Err(DomainError::Rule(_))));
        let events = InventoryItem::decide(&item, adjust(3)).expect("up");
        let after = given(vec![created(), received(10), reserved(1, 6), events[0].clone()]).expect("item");
        assert_eq!((after.on_hand, after.reserved(), after.available()), (13, 6, 7));
    }

    #[test]
    fn a_reservation_holds_stock_or_is_rejected_when_stock_is_short() {
        let item = given(vec![created(), received(10)]);
        assert_eq!(InventoryItem::decide(&item, reserve(1, 10)), Ok(vec![reserved(1, 10)]));
        let busy = given(vec![created(), received(10), reserved(1, 7)]);
        assert_eq!(
            InventoryItem::decide(&busy, reserve(2, 4)),
            Ok(vec![ReservationRejected {
                sku: SKU.into(),
                reservation_id: id(2),
                order_id: id(900),
                quantity: 4,
                available: 3,
                reason: "4 requested, 3 available".into(),
            }
            .into()])
        );
    }

    #[test]
    fn reservation_ids_are_not_reused_and_expiry_must_be_in_the_future() {
        let item = given(vec![created(), received(10), reserved(1, 2)]);
        assert!(matches!(InventoryItem::decide(&item, reserve(1, 2)), Err(DomainError::AlreadyExists(_))));
        let rejected = InventoryItem::decide(&item, reserve(2, 50)).expect("rejected outcome");
        let item = given(vec![created(), received(10), reserved(1, 2), rejected[0].clone()]);
        assert!(matches!(InventoryItem::decide(&item, reserve(2, 1)), Err(DomainError::AlreadyExists(_))));
        let past = InventoryCommand::Reserve {
            reservation_id: id(3),
            order_id: id(900),
            quantity: 1,
            expires_at: at(9),
            now: at(10),
        };
        assert!(matches!(InventoryItem::decide(&item, past), Err(DomainError::Rule(_))));
        assert!(matches!(InventoryItem::decide(&item, reserve(4, 0)), Err(DomainError::Rule(_))));
    }

    #[test]
    fn only_a_held_reservation_is_released_committed_or_expired() {
        let history = vec![created(), received(10), reserved(1, 4)];
        let item = given(history.clone());
        let release = InventoryCommand::Release { reservation_id: id(1), reason: None };
        let released = InventoryItem::decide(&item, release.clone()).expect("release");
        assert_eq!(
            released,
            vec![ReservationReleased {
                sku: SKU.into(),
                reservation_id: id(1),
                order_id: id(900),
                quantity: 4,
                reason: None
            }
            .into()]
        );
        let after = given([history.clone(), released].concat());
        assert_eq!(after.as_ref().map(InventoryItem::available), Some(10));
        let err =
            InventoryItem::decide(&after, InventoryCommand::Commit { reservation_id: id(1) }).expect_err("released");
        assert!(matches!(err, DomainError::InvalidState(m) if m.contains("it is released")));
        let unknown = InventoryCommand::Commit { reservation_id: id(77) };
        assert!(matches!(InventoryItem::decide(&item, unknown), Err(DomainError::NotFound(_))));
    }

    #[test]
    fn committing_takes_the_units_out_of_stock() {
        let history = vec![created(), received(10), reserved(1, 4)];
        let committed =
            InventoryItem::decide(&given(history.clone()), InventoryCommand::Commit { reservation_id: id(1) })
                .expect("commit");
        let item = given([history, committed].concat()).expect("item");
        assert_eq!((item.on_hand, item.reserved(), item.available()), (6, 0, 6));
    }

    #[test]
    fn a_reservation_expires_only_after_its_expiry() {
        let history = vec![created(), received(10), reserved(1, 4)];
        let item = given(history.clone());
        let early = InventoryCommand::Expire { reservation_id: id(1), now: at(11) };
        assert!(matches!(InventoryItem::decide(&item, early), Err(DomainError::InvalidState(_))));
        let expired = InventoryItem::decide(&item, InventoryCommand::Expire { reservation_id: id(1), now: at(12) })
            .expect("expires at its expiry");
        assert_eq!(
            expired,
            vec![ReservationExpired {
                sku: SKU.into(),
                reservation_id: id(1),
                order_id: id(900),
                quantity: 4,
                expired_at: at(12)
            }
            .into()]
        );
        let item = given([history, expired].concat()).expect("item");
        assert_eq!(item.available(), 10);
        let again = InventoryCommand::Expire { reservation_id: id(1), now: at(13) };
        assert!(
            matches!(InventoryItem::decide(&Some(item), again), Err(DomainError::InvalidState(m)) if m.contains("expired"))
        );
    }
}
