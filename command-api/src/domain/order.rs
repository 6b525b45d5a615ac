//! Order: placed by an approved account for SKUs that exist, in one currency, within
//! the account's credit limit. A total above the account's approval threshold waits
//! for staff approval. It can be confirmed once its lifecycle (the `order_lifecycle`
//! workflow) has held every line's stock (`OrderStockHeld`). Every later step follows
//! one state machine; anything else is refused with a message naming the current state.

use std::{
    collections::{BTreeMap, BTreeSet},
    fmt,
};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;
use vectis_schemas::events::{
    HeldLine, Money, OrderApprovalRequested, OrderApproved, OrderCancelled, OrderConfirmed, OrderDelivered, OrderEvent,
    OrderLine, OrderPlaced, OrderRejected, OrderShipped, OrderStockHeld,
};

use super::{Account, DomainError, InventoryItem};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum OrderStatus {
    /// Placed; waits for staff because its total exceeds the approval threshold.
    AwaitingApproval,
    /// Placed (and approved, if it needed approval): its lifecycle is reserving stock.
    Placed,
    /// Approved by staff; its lifecycle is reserving stock.
    Approved,
    /// Every line is held by a reservation: it can be confirmed.
    Confirmable,
    Rejected,
    Confirmed,
    Cancelled,
    Shipped,
    Delivered,
}

impl fmt::Display for OrderStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::AwaitingApproval => "awaiting approval",
            Self::Placed => "placed",
            Self::Approved => "approved",
            Self::Confirmable => "confirmable",
            Self::Rejected => "rejected",
            Self::Confirmed => "confirmed",
            Self::Cancelled => "cancelled",
            Self::Shipped => "shipped",
            Self::Delivered => "delivered",
        })
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Order {
    pub id: Uuid,
    pub account_id: Uuid,
    pub status: OrderStatus,
    pub lines: Vec<OrderLine>,
    pub total: Money,
}

/// One requested line: the price comes from the catalogue, not from the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderLineRequest {
    pub sku: String,
    pub quantity: i64,
}

/// The reason an order (or an account) undecided past its approval deadline is
/// rejected with.
pub const APPROVAL_TIMED_OUT: &str = "approval timed out";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OrderCommand {
    /// `account` and `catalogue` are what the caller read from the event store: the
    /// account (`None` when it does not exist) and every requested SKU that exists.
    Place {
        order_id: Uuid,
        account_id: Uuid,
        account: Option<Account>,
        lines: Vec<OrderLineRequest>,
        catalogue: BTreeMap<String, InventoryItem>,
    },
    Approve {
        by: String,
    },
    /// Refuses an order not yet confirmed: staff deciding an approval, or rejecting it.
    Reject {
        by: String,
        reason: String,
    },
    /// Rejects an order its lifecycle cannot fulfil (short stock, an expired
    /// reservation). Unlike `Reject`, an order waiting for approval is refused: its
    /// stock is not reserved until it is approved, so nothing about it can be short.
    RejectUnfulfillable {
        by: String,
        reason: String,
    },
    /// Rejects an order still waiting for approval when its deadline passed (the
    /// order approval workflow's step). Unlike `Reject`, an order approved meanwhile
    /// is refused: the staff's decision wins over a deadline that raced it.
    TimeOutApproval {
        by: String,
    },
    /// Records that every line is held by a reservation (the order lifecycle's step).
    HoldStock {
        reservations: Vec<HeldLine>,
        expires_at: DateTime<Utc>,
    },
    Confirm,
    Cancel {
        reason: String,
    },
    Ship {
        carrier: String,
        tracking_number: String,
    },
    Deliver,
}

impl Order {
    pub fn decide(state: &Option<Order>, command: OrderCommand) -> Result<Vec<OrderEvent>, DomainError> {
        match (state, command) {
            (None, OrderCommand::Place { order_id, account_id, account, lines, catalogue }) => {
                place(order_id, account_id, account.as_ref(), &lines, &catalogue)
            }
            (None, _) => Err(DomainError::NotFound("order does not exist".into())),
            (Some(order), command) => order.decide_existing(command),
        }
    }

    fn decide_existing(&self, command: OrderCommand) -> Result<Vec<OrderEvent>, DomainError> {
        use OrderStatus::*;
        let order_id = self.id;
        let require = |allowed: &[OrderStatus], action: &str| {
            if allowed.contains(&self.status) {
                Ok(())
            } else {
                Err(DomainError::InvalidState(format!("cannot {action} order {order_id}: it is {}", self.status)))
            }
        };
        Ok(match command {
            OrderCommand::Place { .. } => {
                return Err(DomainError::AlreadyExists(format!("order {order_id} already exists")));
            }
            OrderCommand::Approve { by } => {
                require(&[AwaitingApproval], "approve")?;
                vec![OrderApproved { order_id, approved_by: by }.into()]
            }
            OrderCommand::Reject { by, reason } => {
                require(&[AwaitingApproval, Placed, Approved, Confirmable], "reject")?;
                vec![OrderRejected { order_id, rejected_by: by, reason }.into()]
            }
            OrderCommand::RejectUnfulfillable { by, reason } => {
                require(&[Placed, Approved, Confirmable], "reject as unfulfillable")?;
                vec![OrderRejected { order_id, rejected_by: by, reason }.into()]
            }
            OrderCommand::TimeOutApproval { by } => {
                require(&[AwaitingApproval], "time out the approval of")?;
                vec![OrderRejected { order_id, rejected_by: by, reason: APPROVAL_TIMED_OUT.into() }.into()]
            }
            OrderCommand::HoldStock { reservations, expires_at } => {
                require(&[Placed, Approved], "hold stock for")?;
                self.check_covers_every_line(&reservations)?;
                vec![OrderStockHeld { order_id, reservations, expires_at }.into()]
            }
            OrderCommand::Confirm => {
                require(&[Confirmable], "confirm")?;
                vec![OrderConfirmed { order_id }.into()]
            }
            OrderCommand::Cancel { reason } => {
                require(&[AwaitingApproval, Placed, Approved, Confirmable, Confirmed], "cancel")?;
                vec![OrderCancelled { order_id, reason }.into()]
            }
            OrderCommand::Ship { carrier, tracking_number } => {
                require(&[Confirmed], "ship")?;
                vec![OrderShipped { order_id, carrier, tracking_number }.into()]
            }
            OrderCommand::Deliver => {
                require(&[Shipped], "deliver")?;
                vec![OrderDelivered { order_id }.into()]
            }
        })
    }

    /// Held stock must be exactly the order's lines: each SKU once, in its quantity.
    fn check_covers_every_line(&self, reservations: &[HeldLine]) -> Result<(), DomainError> {
        let wanted: BTreeMap<&str, i64> = self.lines.iter().map(|l| (l.sku.as_str(), l.quantity)).collect();
        let held: BTreeMap<&str, i64> = reservations.iter().map(|r| (r.sku.as_str(), r.quantity)).collect();
        if held.len() != reservations.len() || held != wanted {
            return Err(DomainError::Rule(format!(
                "the reservations ({held:?}) do not hold exactly the lines of order {} ({wanted:?})",
                self.id
            )));
        }
        Ok(())
    }

    /// The version of this state's shape and of `evolve`. Bump it with any change to
    /// either: snapshots taken under another version are then ignored and replaced.
    pub const STATE_VERSION: i32 = 1;

    /// Applies one event (a fact from the store).
    pub fn evolve(state: Option<Order>, event: &OrderEvent) -> Option<Order> {
        let mut order = match (state, event) {
            (_, OrderEvent::OrderPlaced(e)) => {
                return Some(Order {
                    id: e.order_id,
                    account_id: e.account_id,
                    status: OrderStatus::Placed,
                    lines: e.lines.clone(),
                    total: e.total.clone(),
                });
            }
            (None, _) => return None,
            (Some(order), _) => order,
        };
        order.status = match event {
            OrderEvent::OrderPlaced(_) => order.status,
            OrderEvent::OrderApprovalRequested(_) => OrderStatus::AwaitingApproval,
            OrderEvent::OrderApproved(_) => OrderStatus::Approved,
            OrderEvent::OrderRejected(_) => OrderStatus::Rejected,
            OrderEvent::OrderStockHeld(_) => OrderStatus::Confirmable,
            OrderEvent::OrderConfirmed(_) => OrderStatus::Confirmed,
            OrderEvent::OrderCancelled(_) => OrderStatus::Cancelled,
            OrderEvent::OrderShipped(_) => OrderStatus::Shipped,
            OrderEvent::OrderDelivered(_) => OrderStatus::Delivered,
        };
        Some(order)
    }
}

fn place(
    order_id: Uuid,
    account_id: Uuid,
    account: Option<&Account>,
    lines: &[OrderLineRequest],
    catalogue: &BTreeMap<String, InventoryItem>,
) -> Result<Vec<OrderEvent>, DomainError> {
    let account = account.ok_or_else(|| DomainError::Rule(format!("account {account_id} does not exist")))?;
    if !account.can_order() {
        return Err(DomainError::Rule(format!(
            "account {account_id} is {}; only approved accounts can place orders",
            account.status
        )));
    }
    if lines.is_empty() {
        return Err(DomainError::Rule("an order needs at least one line".into()));
    }
    let currency = account.credit_limit.currency.clone();
    let mut seen = BTreeSet::new();
    let mut priced = Vec::with_capacity(lines.len());
    let mut total: i64 = 0;
    for (n, line) in lines.iter().enumerate() {
        if line.quantity <= 0 {
            return Err(DomainError::Rule(format!("line {n}: quantity must be positive, not {}", line.quantity)));
        }
        if !seen.insert(line.sku.as_str()) {
            return Err(DomainError::Rule(format!("line {n}: SKU {} is listed twice in this order", line.sku)));
        }
        let item = catalogue
            .get(&line.sku)
            .ok_or_else(|| DomainError::Rule(format!("line {n}: SKU {} does not exist", line.sku)))?;
        if item.unit_price.currency != currency {
            return Err(DomainError::Rule(format!(
                "line {n}: SKU {} is priced in {}, but this account buys in {currency}; an order has one currency",
                line.sku, item.unit_price.currency
            )));
        }
        let line_total = item
            .unit_price
            .amount_minor
            .checked_mul(line.quantity)
            .ok_or_else(|| DomainError::Rule(format!("line {n}: the line total is too large")))?;
        total =
            total.checked_add(line_total).ok_or_else(|| DomainError::Rule("the order total is too large".into()))?;
        priced.push(OrderLine {
            sku: line.sku.clone(),
            quantity: line.quantity,
            unit_price: item.unit_price.clone(),
            line_total: Money::new(line_total, currency.clone()),
        });
    }
    if total > account.credit_limit.amount_minor {
        return Err(DomainError::Rule(format!(
            "the order total {total} {currency} exceeds the account's credit limit of {} {currency}",
            account.credit_limit.amount_minor
        )));
    }
    let total = Money::new(total, currency.clone());
    let mut events: Vec<OrderEvent> =
        vec![OrderPlaced { order_id, account_id, currency, lines: priced, total: total.clone() }.into()];
    if total.amount_minor > account.approval_threshold.amount_minor {
        events.push(
            OrderApprovalRequested {
                order_id,
                account_id,
                total,
                approval_threshold: account.approval_threshold.clone(),
            }
            .into(),
        );
    }
    Ok(events)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{fold, testing::*, AccountStatus};
    use vectis_schemas::events::{InventoryEvent, ItemCreated};

    fn account(status: AccountStatus) -> Account {
        Account {
            id: id(1),
            name: "Acme".into(),
            email: "buyer@acme.example".into(),
            status,
            credit_limit: eur(10_000),
            approval_threshold: eur(5_000),
            recurring_orders: Default::default(),
        }
    }

    fn item(sku: &str, price: Money) -> InventoryItem {
        let created: InventoryEvent =
            ItemCreated { sku: sku.into(), name: sku.into(), description: String::new(), unit_price: price }.into();
        InventoryItem::evolve(None, &created).expect("item")
    }

    fn catalogue() -> BTreeMap<String, InventoryItem> {
        [
            ("BOLT", item("BOLT", eur(100))),
            ("NUT", item("NUT", eur(25))),
            ("DOLLAR-NUT", item("DOLLAR-NUT", Money::new(25, "USD"))),
        ]
        .into_iter()
        .map(|(sku, item)| (sku.to_string(), item))
        .collect()
    }

    fn line(sku: &str, quantity: i64) -> OrderLineRequest {
        OrderLineRequest { sku: sku.into(), quantity }
    }

    fn place_with(account: Option<Account>, lines: Vec<OrderLineRequest>) -> OrderCommand {
        OrderCommand::Place { order_id: id(50), account_id: id(1), account, lines, catalogue: catalogue() }
    }

    fn place(lines: Vec<OrderLineRequest>) -> OrderCommand {
        place_with(Some(account(AccountStatus::Approved)), lines)
    }

    fn rule(result: Result<Vec<OrderEvent>, DomainError>) -> String {
        match result {
            Err(DomainError::Rule(message)) => message,
            other => panic!("expected a rule violation, got {other:?}"),
        }
    }

    fn given(events: Vec<OrderEvent>) -> Option<Order> {
        fold(None, events, Order::evolve)
    }

    fn order_lines() -> Vec<OrderLine> {
        vec![OrderLine { sku: "BOLT".into(), quantity: 3, unit_price: eur(100), line_total: eur(300) }]
    }

    fn held_lines() -> Vec<HeldLine> {
        vec![HeldLine { sku: "BOLT".into(), reservation_id: id(70), quantity: 3 }]
    }

    #[test]
    fn held_stock_must_be_exactly_the_order_lines() {
        let placed = Some(Order {
            id: id(50),
            account_id: id(1),
            status: OrderStatus::Placed,
            lines: order_lines(),
            total: eur(300),
        });
        let hold = |reservations| Order::decide(&placed, OrderCommand::HoldStock { reservations, expires_at: at(12) });
        let short = vec![HeldLine { sku: "BOLT".into(), reservation_id: id(70), quantity: 2 }];
        assert!(rule(hold(short)).contains("do not hold exactly the lines"));
        let extra = [held_lines(), vec![HeldLine { sku: "NUT".into(), reservation_id: id(71), quantity: 1 }]].concat();
        assert!(rule(hold(extra)).contains("do not hold exactly the lines"));
        let twice = [held_lines(), held_lines()].concat();
        assert!(rule(hold(twice)).contains("do not hold exactly the lines"));
        let events = hold(held_lines()).expect("held");
        assert_eq!(fold(placed, events, Order::evolve).map(|o| o.status), Some(OrderStatus::Confirmable));
    }

    #[test]
    fn placing_prices_the_lines_from_the_catalogue() {
        let events = Order::decide(&None, place(vec![line("BOLT", 3), line("NUT", 4)])).expect("placed");
        assert_eq!(
            events,
            vec![OrderPlaced {
                order_id: id(50),
                account_id: id(1),
                currency: "EUR".into(),
                lines: vec![
                    OrderLine { sku: "BOLT".into(), quantity: 3, unit_price: eur(100), line_total: eur(300) },
                    OrderLine { sku: "NUT".into(), quantity: 4, unit_price: eur(25), line_total: eur(100) },
                ],
                total: eur(400),
            }
            .into()]
        );
        assert_eq!(given(events).map(|o| o.status), Some(OrderStatus::Placed));
    }

    #[test]
    fn a_total_above_the_approval_threshold_waits_for_approval() {
        let events = Order::decide(&None, place(vec![line("BOLT", 51)])).expect("placed");
        assert_eq!(events.len(), 2);
        assert_eq!(
            events[1],
            OrderApprovalRequested {
                order_id: id(50),
                account_id: id(1),
                total: eur(5_100),
                approval_threshold: eur(5_000)
            }
            .into()
        );
        assert_eq!(given(events).map(|o| o.status), Some(OrderStatus::AwaitingApproval));
        let at_threshold = Order::decide(&None, place(vec![line("BOLT", 50)])).expect("placed");
        assert_eq!(at_threshold.len(), 1, "exactly at the threshold needs no approval");
    }

    #[test]
    fn only_an_approved_existing_account_can_place() {
        for status in [AccountStatus::PendingApproval, AccountStatus::Suspended, AccountStatus::Rejected] {
            let message = rule(Order::decide(&None, place_with(Some(account(status)), vec![line("BOLT", 1)])));
            assert!(message.contains(&status.to_string()), "{message}");
        }
        let message = rule(Order::decide(&None, place_with(None, vec![line("BOLT", 1)])));
        assert!(message.contains("does not exist"), "{message}");
    }

    #[test]
    fn lines_must_be_present_positive_distinct_and_known() {
        assert!(rule(Order::decide(&None, place(vec![]))).contains("at least one line"));
        assert!(rule(Order::decide(&None, place(vec![line("BOLT", 0)]))).contains("positive"));
        assert!(rule(Order::decide(&None, place(vec![line("BOLT", -2)]))).contains("positive"));
        assert!(rule(Order::decide(&None, place(vec![line("BOLT", 1), line("BOLT", 2)]))).contains("listed twice"));
        assert!(rule(Order::decide(&None, place(vec![line("GHOST", 1)]))).contains("GHOST does not exist"));
    }

    #[test]
    fn an_order_has_one_currency_and_stays_within_the_credit_limit() {
        assert!(rule(Order::decide(&None, place(vec![line("DOLLAR-NUT", 1)]))).contains("one currency"));
        let message = rule(Order::decide(&None, place(vec![line("BOLT", 101)])));
        assert_eq!(message, "the order total 10100 EUR exceeds the account's credit limit of 10000 EUR");
        assert!(Order::decide(&None, place(vec![line("BOLT", 100)])).is_ok(), "exactly the limit is allowed");
        assert!(rule(Order::decide(&None, place(vec![line("BOLT", i64::MAX)]))).contains("too large"));
    }

    #[test]
    fn placing_twice_and_acting_on_a_missing_order_are_refused() {
        let placed = given(Order::decide(&None, place(vec![line("BOLT", 1)])).expect("placed"));
        assert!(matches!(Order::decide(&placed, place(vec![line("BOLT", 1)])), Err(DomainError::AlreadyExists(_))));
        assert!(matches!(Order::decide(&None, OrderCommand::Confirm), Err(DomainError::NotFound(_))));
    }

    /// Every command from every state: exactly the state machine's transitions are
    /// allowed, and every refusal names the current state.
    #[test]
    fn the_state_machine_allows_exactly_its_transitions() {
        use OrderStatus::*;
        let commands: Vec<(&str, OrderCommand)> = vec![
            ("approve", OrderCommand::Approve { by: "staff".into() }),
            ("reject", OrderCommand::Reject { by: "staff".into(), reason: "no".into() }),
            ("reject as unfulfillable", OrderCommand::RejectUnfulfillable { by: "w".into(), reason: "short".into() }),
            ("time out the approval of", OrderCommand::TimeOutApproval { by: "workflow:order_approval".into() }),
            ("hold stock for", OrderCommand::HoldStock { reservations: held_lines(), expires_at: at(12) }),
            ("confirm", OrderCommand::Confirm),
            ("cancel", OrderCommand::Cancel { reason: "changed mind".into() }),
            ("ship", OrderCommand::Ship { carrier: "DHL".into(), tracking_number: "1".into() }),
            ("deliver", OrderCommand::Deliver),
        ];
        let allowed: &[(OrderStatus, &str, OrderStatus)] = &[
            (AwaitingApproval, "approve", Approved),
            (AwaitingApproval, "reject", Rejected),
            (AwaitingApproval, "time out the approval of", Rejected),
            (AwaitingApproval, "cancel", Cancelled),
            (Placed, "hold stock for", Confirmable),
            (Placed, "reject", Rejected),
            (Placed, "reject as unfulfillable", Rejected),
            (Placed, "cancel", Cancelled),
            (Approved, "hold stock for", Confirmable),
            (Approved, "reject", Rejected),
            (Approved, "reject as unfulfillable", Rejected),
            (Approved, "cancel", Cancelled),
            (Confirmable, "confirm", Confirmed),
            (Confirmable, "reject", Rejected),
            (Confirmable, "reject as unfulfillable", Rejected),
            (Confirmable, "cancel", Cancelled),
            (Confirmed, "cancel", Cancelled),
            (Confirmed, "ship", Shipped),
            (Shipped, "deliver", Delivered),
        ];
        let states =
            [AwaitingApproval, Placed, Approved, Confirmable, Rejected, Confirmed, Cancelled, Shipped, Delivered];
        for state in states {
            let order =
                Some(Order { id: id(50), account_id: id(1), status: state, lines: order_lines(), total: eur(0) });
            for (action, command) in &commands {
                let outcome = Order::decide(&order, command.clone());
                match allowed.iter().find(|(from, a, _)| *from == state && a == action) {
                    Some((_, _, to)) => {
                        let events = outcome.unwrap_or_else(|e| panic!("{action} from {state}: {e}"));
                        let after = fold(order.clone(), events, Order::evolve).expect("order");
                        assert_eq!(after.status, *to, "{action} from {state}");
                    }
                    None => assert_eq!(
                        outcome,
                        Err(DomainError::InvalidState(format!("cannot {action} order {}: it is {state}", id(50)))),
                        "{action} from {state}"
                    ),
                }
            }
        }
    }
}
