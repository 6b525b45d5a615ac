//! The one rule for a stream's versions, which the runtime's batches and the
//! dead-letter retries both follow: an event at or below the version applied is a
//! duplicate (skipped), the next version is applied, anything beyond is a gap (parked,
//! with the stream's later events behind it, until an operator resolves it).

/// Where an event stands against the version its stream is at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sequence {
    /// Already applied (a redelivery or a republished record).
    Duplicate,
    /// The next version: apply it.
    Next,
    /// Versions are missing in between.
    Gap { applied: i64, received: i64 },
}

impl Sequence {
    /// An event of version `received` on a stream at version `applied` (0: nothing
    /// applied yet).
    pub fn of(applied: i64, received: i64) -> Self {
        if received <= applied {
            Self::Duplicate
        } else if received == applied + 1 {
            Self::Next
        } else {
            Self::Gap { applied, received }
        }
    }

    /// Why a gap parks, as the dead letter records it; `None` for other outcomes.
    pub fn gap_error(self) -> Option<String> {
        match self {
            Self::Gap { applied, received } => {
                Some(format!("gap: the read model is at version {applied}, the event has version {received}"))
            }
            _ => None,
        }
    }
}

/// The error recorded for an event parked only because an earlier one of its stream is.
pub const WAITING_BEHIND_PARKED: &str = "waiting behind an earlier parked event of this stream";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_or_below_the_applied_version_is_a_duplicate() {
        assert_eq!(Sequence::of(3, 3), Sequence::Duplicate);
        assert_eq!(Sequence::of(3, 1), Sequence::Duplicate);
        assert_eq!(Sequence::of(3, 1).gap_error(), None);
    }

    #[test]
    fn the_next_version_is_applied_and_a_new_stream_starts_at_one() {
        assert_eq!(Sequence::of(0, 1), Sequence::Next);
        assert_eq!(Sequence::of(41, 42), Sequence::Next);
        assert_eq!(Sequence::of(0, 1).gap_error(), None);
    }

    #[test]
    fn beyond_the_next_version_is_a_gap_that_says_what_is_missing() {
        assert_eq!(Sequence::of(0, 2), Sequence::Gap { applied: 0, received: 2 });
        assert_eq!(
            Sequence::of(3, 7).gap_error().as_deref(),
            Some("gap: the read model is at version 3, the event has version 7")
        );
    }
}
