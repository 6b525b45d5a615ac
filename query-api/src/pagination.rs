//! Relay cursor pagination: `first` between 1 and 100 (default 20), `after` an opaque
//! cursor this service issued. Cursors are keyset positions (the sort key of the last
//! row seen), so a page never skips or repeats rows when others are inserted before it;
//! each list's cursor names the list, so one list's cursor is refused by another.

use async_graphql::{connection::Connection, Error, SimpleObject};
use serde::{de::DeserializeOwned, Serialize};

use crate::errors::{bad_input, coded, INVALID_CURSOR};

pub const DEFAULT_PAGE: i32 = 20;
pub const MAX_PAGE: i32 = 100;

/// Fields every connection carries besides edges and page info.
#[derive(SimpleObject, Debug, Clone, Copy)]
pub struct ConnectionTotals {
    /// Items matching the filter, on every page.
    pub total_count: i64,
}

pub type Page<T> = Connection<String, T, ConnectionTotals>;

/// `first` checked: 1 to 100.
pub fn page_size(first: Option<i32>) -> Result<i64, Error> {
    let first = first.unwrap_or(DEFAULT_PAGE);
    if !(1..=MAX_PAGE).contains(&first) {
        return Err(bad_input(format!("first must be between 1 and {MAX_PAGE}, not {first}")));
    }
    Ok(i64::from(first))
}

/// A connection's complexity: its page size (as asked, else the default) times what
/// each node selects, so `first: 100` of a deep selection costs what it will.
pub fn complexity(first: Option<i32>, child_complexity: usize) -> usize {
    let first = first.unwrap_or(DEFAULT_PAGE).clamp(1, MAX_PAGE) as usize;
    first * child_complexity + 1
}

/// A cursor for `list` at `position`: hex of `list:<json>`.
pub fn encode<P: Serialize>(list: &str, position: &P) -> String {
    let json = serde_json::to_string(position).unwrap_or_default();
    format!("{list}:{json}").bytes().map(|b| format!("{b:02x}")).collect()
}

/// The position in `after`, which must be a cursor of `list`.
pub fn decode<P: DeserializeOwned>(list: &str, after: Option<&str>) -> Result<Option<P>, Error> {
    let Some(after) = after else { return Ok(None) };
    let invalid = || coded(format!("after: {after:?} is not a cursor of {list}"), INVALID_CURSOR);
    if after.len() % 2 != 0 || after.len() > 1024 {
        return Err(invalid());
    }
    let bytes: Option<Vec<u8>> =
        (0..after.len()).step_by(2).map(|i| u8::from_str_radix(after.get(i..i + 2)?, 16).ok()).collect();
    let text = bytes.and_then(|b| String::from_utf8(b).ok()).ok_or_else(invalid)?;
    let json = text.strip_prefix(list).and_then(|rest| rest.strip_prefix(':')).ok_or_else(invalid)?;
    serde_json::from_str(json).map(Some).map_err(|_| invalid())
}

/// A page of `rows` fetched with one extra row (`limit` + 1) to tell whether more follow.
pub fn page<T, P: Serialize>(
    list: &str,
    mut rows: Vec<T>,
    limit: i64,
    total_count: i64,
    had_cursor: bool,
    position: impl Fn(&T) -> P,
) -> Page<T>
where
    T: async_graphql::OutputType,
{
    let has_next = rows.len() as i64 > limit;
    rows.truncate(limit as usize);
    let mut connection = Connection::with_additional_fields(had_cursor, has_next, ConnectionTotals { total_count });
    connection.edges.extend(rows.into_iter().map(|row| {
        let cursor = encode(list, &position(&row));
        async_graphql::connection::Edge::new(cursor, row)
    }));
    connection
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_belong_to_their_list() {
        let cursor = encode("orders", &("2026-11-24T10:00:00Z", "0193"));
        let back: Option<(String, String)> = decode("orders", Some(&cursor)).expect("valid");
        assert_eq!(back, Some(("2026-11-24T10:00:00Z".into(), "0193".into())));
        assert!(decode::<(String, String)>("accounts", Some(&cursor)).is_err(), "another list's cursor");
        assert!(decode::<(String, String)>("orders", Some("zz")).is_err());
        assert!(decode::<(String, String)>("orders", Some("abc")).is_err());
    }

    #[test]
    fn first_is_between_one_and_a_hundred() {
        assert_eq!(page_size(None).expect("default"), 20);
        assert!(page_size(Some(0)).is_err());
        assert!(page_size(Some(101)).is_err());
        assert_eq!(page_size(Some(100)).expect("max"), 100);
    }
}
