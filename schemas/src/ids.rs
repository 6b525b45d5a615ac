//! Typed ids every crate passes instead of strings: a stream's id, and the consistency
//! token a command answers with. Built and parsed here only, so the format
//! (`<prefix><entity>`, `<stream id>@<version>`) is written once.

use std::{fmt, str::FromStr};

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::topics::{self, TopicSpec, TOPICS};

/// Why a text is not an id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("{0:?} is not a stream id: it must start with one of account-, inventory-, order- and name an entity")]
    NotAStream(String),
    #[error("{0:?} is not a consistency token (<stream id>@<version>, as commands answer)")]
    NotAToken(String),
}

/// An event stream: one aggregate instance, e.g. `order-0193…`. Its prefix decides its
/// topic; what follows is the entity (a UUID, or a SKU), never empty.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct StreamId(String);

impl StreamId {
    /// `account-<id>`.
    pub fn account(account_id: Uuid) -> Self {
        Self(format!("{}{account_id}", topics::ACCOUNTS.stream_prefix))
    }

    /// `order-<id>`.
    pub fn order(order_id: Uuid) -> Self {
        Self(format!("{}{order_id}", topics::ORDERS.stream_prefix))
    }

    /// `inventory-<sku>`; a SKU is never empty.
    pub fn inventory_item(sku: &str) -> Result<Self, IdError> {
        format!("{}{sku}", topics::INVENTORY.stream_prefix).parse()
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The topic its events go to.
    pub fn topic(&self) -> &'static TopicSpec {
        TOPICS.iter().find(|t| self.0.starts_with(t.stream_prefix)).expect("a StreamId has a known prefix")
    }

    /// What follows the prefix: the account's or order's id, the item's SKU.
    pub fn entity(&self) -> &str {
        &self.0[self.topic().stream_prefix.len()..]
    }

    /// The entity as a UUID (accounts and orders).
    pub fn uuid(&self) -> Option<Uuid> {
        self.entity().parse().ok()
    }
}

impl FromStr for StreamId {
    type Err = IdError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let known = TOPICS.iter().any(|t| text.strip_prefix(t.stream_prefix).is_some_and(|entity| !entity.is_empty()));
        if known {
            Ok(Self(text.to_string()))
        } else {
            Err(IdError::NotAStream(text.to_string()))
        }
    }
}

impl TryFrom<String> for StreamId {
    type Error = IdError;

    fn try_from(text: String) -> Result<Self, Self::Error> {
        text.parse()
    }
}

impl From<StreamId> for String {
    fn from(id: StreamId) -> Self {
        id.0
    }
}

impl fmt::Display for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for StreamId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl PartialEq<str> for StreamId {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

impl PartialEq<&str> for StreamId {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

/// What a command answers so that a later query can wait for its effect: the stream it
/// wrote and the version it reached, `<stream id>@<version>`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ConsistencyToken {
    pub stream: StreamId,
    /// At least 1.
    pub version: i64,
}

impl ConsistencyToken {
    pub fn new(stream: StreamId, version: i64) -> Self {
        Self { stream, version }
    }
}

impl fmt::Display for ConsistencyToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.stream, self.version)
    }
}

impl FromStr for ConsistencyToken {
    type Err = IdError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let invalid = || IdError::NotAToken(text.to_string());
        let (stream, version) = text.rsplit_once('@').ok_or_else(invalid)?;
        let version: i64 = version.parse().map_err(|_| invalid())?;
        let stream: StreamId = stream.parse().map_err(|_| invalid())?;
        if version < 1 {
            return Err(invalid());
        }
        Ok(Self { stream, version })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_ids_name_their_topic_and_entity() {
        let order_id = Uuid::now_v7();
        let order = StreamId::order(order_id);
        assert_eq!(order.to_string(), format!("order-{order_id}"));
        assert_eq!(order.topic().name, "vectis.orders");
        assert_eq!(order.uuid(), Some(order_id));
        let item = StreamId::inventory_item("SKU-1").expect("a SKU");
        assert_eq!((item.as_str(), item.entity(), item.topic().name), ("inventory-SKU-1", "SKU-1", "vectis.inventory"));
        assert_eq!(item.uuid(), None);
        assert_eq!(StreamId::account(order_id).topic().name, "vectis.accounts");
        for bad in ["", "order-", "widget-1", "account", "inventory-"] {
            assert_eq!(bad.parse::<StreamId>(), Err(IdError::NotAStream(bad.to_string())), "{bad:?}");
        }
        assert!(StreamId::inventory_item("").is_err());
    }

    #[test]
    fn stream_ids_serialize_as_their_text_and_refuse_bad_text() {
        let id = StreamId::inventory_item("A").expect("sku");
        assert_eq!(serde_json::to_string(&id).expect("json"), "\"inventory-A\"");
        assert_eq!(serde_json::from_str::<StreamId>("\"inventory-A\"").expect("parses"), id);
        assert!(serde_json::from_str::<StreamId>("\"gizmo-A\"").is_err());
    }

    #[test]
    fn tokens_round_trip_as_commands_write_them() {
        let token: ConsistencyToken = "order-0193a8f0-0000-7000-8000-000000000001@3".parse().expect("valid");
        assert_eq!(token.version, 3);
        assert_eq!(token.stream.topic().name, "vectis.orders");
        assert_eq!(token.to_string(), "order-0193a8f0-0000-7000-8000-000000000001@3");
        // A SKU may hold '@': the version is after the last one.
        let item: ConsistencyToken = "inventory-A@B@2".parse().expect("valid");
        assert_eq!((item.stream.entity(), item.version), ("A@B", 2));
        for bad in ["", "order-1", "order-1@0", "order-1@x", "widget-1@2", "@2", "order-@1"] {
            assert_eq!(bad.parse::<ConsistencyToken>(), Err(IdError::NotAToken(bad.to_string())), "{bad:?}");
        }
    }
}
