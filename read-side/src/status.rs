//! The status words the read models store in their `status` columns and the query API
//! filters and answers with. Written once, here: a projection stores
//! [`AccountStatus::as_str`], the query API parses a filter with [`str::parse`] and
//! refuses a word no row can hold.

use std::{fmt, str::FromStr};

/// A status word no read model stores.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{word:?} is not a {kind} status (one of: {known})")]
pub struct UnknownStatus {
    pub kind: &'static str,
    pub word: String,
    pub known: String,
}

/// An enum whose variants are stored as the given words.
macro_rules! status_words {
    ($(#[$doc:meta])* $name:ident, $kind:literal { $($variant:ident => $word:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, sqlx::Type, serde::Serialize, serde::Deserialize)]
        #[sqlx(type_name = "text", rename_all = "snake_case")]
        #[serde(rename_all = "snake_case")]
        pub enum $name {
            $($variant),+
        }

        impl $name {
            pub const ALL: &'static [Self] = &[$(Self::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $word),+
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = UnknownStatus;

            fn from_str(word: &str) -> Result<Self, Self::Err> {
                Self::ALL.iter().copied().find(|status| status.as_str() == word).ok_or_else(|| UnknownStatus {
                    kind: $kind,
                    word: word.to_string(),
                    known: Self::ALL.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", "),
                })
            }
        }
    };
}

status_words!(
    /// `read.accounts.status`.
    AccountStatus, "account" {
        PendingApproval => "pending_approval",
        Approved => "approved",
        Rejected => "rejected",
        Suspended => "suspended",
    }
);

status_words!(
    /// `read.orders.status` and `read.order_status_history.status`.
    OrderStatus, "order" {
        Placed => "placed",
        AwaitingApproval => "awaiting_approval",
        Approved => "approved",
        Confirmable => "confirmable",
        Rejected => "rejected",
        Confirmed => "confirmed",
        Cancelled => "cancelled",
        Shipped => "shipped",
        Delivered => "delivered",
    }
);

status_words!(
    /// `read.inventory_reservations.status`.
    ReservationStatus, "reservation" {
        Held => "held",
        Rejected => "rejected",
        Released => "released",
        Expired => "expired",
        Committed => "committed",
    }
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_round_trip_and_unknown_words_name_the_known_ones() {
        for status in OrderStatus::ALL {
            assert_eq!(status.as_str().parse::<OrderStatus>(), Ok(*status));
        }
        assert_eq!("pending_approval".parse::<AccountStatus>(), Ok(AccountStatus::PendingApproval));
        let error = "on_hold".parse::<ReservationStatus>().expect_err("unknown");
        assert_eq!(
            error.to_string(),
            "\"on_hold\" is not a reservation status (one of: held, rejected, released, expired, committed)"
        );
    }
}
