//! The aggregates. A command handler loads an aggregate by folding its stream with
//! `evolve`, calls `decide`, and appends the returned events with the stream version
//! it loaded as the expected version.

mod account;
mod inventory;
mod order;
mod recurring_order;

pub use account::{Account, AccountCommand, AccountStatus};
pub use inventory::{InventoryCommand, InventoryItem, Reservation, ReservationStatus};
pub use order::{Order, OrderCommand, OrderLineRequest, OrderStatus, APPROVAL_TIMED_OUT};
pub use recurring_order::{
    RecurringOrder, RecurringOrderCommand, RecurringStatus, RunOutcome, Schedule, MAX_LIVE_RECURRING_ORDERS,
    MAX_RECURRING_LINES,
};

/// Why a command was refused. Every variant is the caller's to fix (4xx); the text
/// names the current state where the state is the reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DomainError {
    /// The aggregate (or one it refers to) does not exist (404).
    #[error("{0}")]
    NotFound(String),
    /// Creating something that already exists (409).
    #[error("{0}")]
    AlreadyExists(String),
    /// The command does not apply in the aggregate's current state (409).
    #[error("{0}")]
    InvalidState(String),
    /// A business rule refuses the command: credit limit, currency, stock (422).
    #[error("{0}")]
    Rule(String),
}

/// Folds events into state: what a command handler does after reading a stream.
pub fn fold<S, E>(initial: S, events: impl IntoIterator<Item = E>, evolve: impl Fn(S, &E) -> S) -> S {
    events.into_iter().fold(initial, |state, event| evolve(state, &event))
}

#[cfg(test)]
mod snapshot_tests;

#[cfg(test)]
pub(crate) mod testing {
    use chrono::{DateTime, TimeZone, Utc};
    use uuid::Uuid;
    use vectis_schemas::events::Money;

    pub fn eur(amount_minor: i64) -> Money {
        Money::new(amount_minor, "EUR")
    }

    pub fn id(n: u128) -> Uuid {
        Uuid::from_u128(n)
    }

    pub fn at(hour: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 23, hour, 0, 0).single().expect("valid time")
    }
}
