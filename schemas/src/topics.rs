//! The topic registry: the one place that says which topics exist, how they are
//! configured and which event types each carries. Topic provisioning, the relay's
//! routing, the schema catalogue's consistency check and `docs/REDPANDA_TOPICS.md`
//! all read it.

use std::fmt::Write as _;

/// One event type and the schema version producers write today. Consumers only ever
/// see this version: older stored versions are upcast on read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventTypeSpec {
    pub name: &'static str,
    pub current_version: u32,
    pub description: &'static str,
}

/// A Kafka topic of the event log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TopicSpec {
    /// Logical name, as stored in the event store (`vectis.orders`).
    pub name: &'static str,
    /// Folder of this topic's schema files under `schemas/events/`.
    pub schema_dir: &'static str,
    /// The stream id prefix of the aggregates whose events go here.
    pub stream_prefix: &'static str,
    pub partitions: i32,
    /// `None` is infinite retention (`retention.ms = -1`): the topics are the
    /// replayable log, so nothing may age out.
    pub retention_ms: Option<i64>,
    pub cleanup_policy: &'static str,
    pub event_types: &'static [EventTypeSpec],
}

impl TopicSpec {
    /// Broker-side topic configuration as Kafka config keys.
    pub fn configs(&self) -> Vec<(&'static str, String)> {
        vec![
            ("retention.ms", self.retention_ms.unwrap_or(-1).to_string()),
            ("retention.bytes", "-1".to_string()),
            ("cleanup.policy", self.cleanup_policy.to_string()),
        ]
    }
}

/// Partitions per topic. Keys are stream ids, so this bounds projector parallelism
/// per topic; changing it re-maps keys, so it is fixed for the life of a topic.
pub const DEFAULT_PARTITIONS: i32 = 6;

/// A topic of the replayable event log: default partitions, infinite retention,
/// `delete` cleanup (never compaction: every event matters, not only the last per key).
const fn log_topic(
    name: &'static str,
    schema_dir: &'static str,
    stream_prefix: &'static str,
    event_types: &'static [EventTypeSpec],
) -> TopicSpec {
    TopicSpec {
        name,
        schema_dir,
        stream_prefix,
        partitions: DEFAULT_PARTITIONS,
        retention_ms: None,
        cleanup_policy: "delete",
        event_types,
    }
}

const fn ev(name: &'static str, current_version: u32, description: &'static str) -> EventTypeSpec {
    EventTypeSpec { name, current_version, description }
}

pub const ACCOUNTS: TopicSpec = log_topic(
    "vectis.accounts",
    "accounts",
    "account-",
    &[
        ev("AccountRegistered", 1, "A B2B account was registered; it waits for staff approval."),
        ev("AccountApproved", 1, "Staff approved a pending account."),
        ev("AccountRejected", 1, "Staff rejected a pending account."),
        ev("AccountSuspended", 1, "An approved account was suspended; it cannot place orders."),
        ev("AccountReinstated", 1, "A suspended account was reinstated."),
        ev("CreditLimitChanged", 1, "The account's credit limit changed."),
        ev("ApprovalThresholdChanged", 1, "Orders above this total wait for approval."),
        ev("RecurringOrderScheduled", 1, "The account scheduled an order placed again at a fixed interval."),
        ev("RecurringOrderPaused", 1, "A recurring order was paused: runs due meanwhile are not placed."),
        ev("RecurringOrderResumed", 1, "A paused recurring order was resumed from its next run."),
        ev("RecurringOrderCancelled", 1, "A recurring order was cancelled."),
        ev("RecurringOrderRunPlaced", 1, "A run of a recurring order placed its order."),
        ev("RecurringOrderRunSkipped", 1, "A run of a recurring order placed nothing, and why."),
    ],
);

pub const INVENTORY: TopicSpec = log_topic(
    "vectis.inventory",
    "inventory",
    "inventory-",
    &[
        ev("ItemCreated", 1, "A SKU was added to the catalogue."),
        ev("ItemPriceChanged", 1, "The SKU's unit price changed: new orders are priced at it."),
        ev("StockReceived", 1, "Units were received into stock."),
        ev("StockAdjusted", 2, "Stock was corrected by a signed delta with a reason code."),
        ev("StockReserved", 1, "Units were held for an order until an expiry."),
        ev("ReservationRejected", 1, "A reservation failed: available stock was short."),
        ev("ReservationReleased", 1, "A held reservation was given back."),
        ev("ReservationExpired", 1, "A held reservation passed its expiry."),
        ev("ReservationCommitted", 1, "A held reservation was committed to an order."),
    ],
);

pub const ORDERS: TopicSpec = log_topic(
    "vectis.orders",
    "orders",
    "order-",
    &[
        ev("OrderPlaced", 1, "An account placed an order."),
        ev("OrderApprovalRequested", 1, "The total exceeds the approval threshold."),
        ev("OrderApproved", 1, "Staff approved the order."),
        ev("OrderRejected", 1, "The order was rejected: by staff, or by its lifecycle (short stock, an expired reservation, an approval that timed out)."),
        ev("OrderStockHeld", 1, "Every line is held by a reservation: the order can be confirmed."),
        ev("OrderConfirmed", 1, "The order was confirmed for fulfilment."),
        ev("OrderCancelled", 1, "The order was cancelled before shipping."),
        ev("OrderShipped", 1, "The order left the warehouse."),
        ev("OrderDelivered", 1, "The order reached the customer."),
    ],
);

/// Every topic of the event log.
pub const TOPICS: &[TopicSpec] = &[ORDERS, INVENTORY, ACCOUNTS];

/// The topic that carries `event_type`, if the registry knows the type.
///
/// ```
/// use vectis_schemas::topics::topic_for_event_type;
/// assert_eq!(topic_for_event_type("StockReserved").map(|t| t.name), Some("vectis.inventory"));
/// assert!(topic_for_event_type("NoSuchEvent").is_none());
/// ```
pub fn topic_for_event_type(event_type: &str) -> Option<&'static TopicSpec> {
    TOPICS.iter().find(|t| t.event_types.iter().any(|e| e.name == event_type))
}

/// The registry entry of `event_type`.
pub fn event_type_spec(event_type: &str) -> Option<&'static EventTypeSpec> {
    TOPICS.iter().flat_map(|t| t.event_types.iter()).find(|e| e.name == event_type)
}

/// The registry looked up by logical topic name.
pub fn topic(name: &str) -> Option<&'static TopicSpec> {
    TOPICS.iter().find(|t| t.name == name)
}

/// Maps logical topic names to the physical names on a broker. Production uses no
/// prefix; tests use a random one so parallel runs never see each other's records.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TopicNaming {
    prefix: String,
}

impl TopicNaming {
    pub fn with_prefix(prefix: impl Into<String>) -> Self {
        Self { prefix: prefix.into() }
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The broker topic for a logical topic name.
    ///
    /// ```
    /// use vectis_schemas::TopicNaming;
    /// assert_eq!(TopicNaming::default().physical("vectis.orders"), "vectis.orders");
    /// assert_eq!(TopicNaming::with_prefix("test-1.").physical("vectis.orders"), "test-1.vectis.orders");
    /// ```
    pub fn physical(&self, logical: &str) -> String {
        format!("{}{}", self.prefix, logical)
    }
}

/// Renders `docs/REDPANDA_TOPICS.md`. A test compares the committed file with this
/// output, so the document cannot drift from the registry.
pub fn render_topics_markdown() -> String {
    let mut out = String::new();
    out.push_str("# Redpanda topics\n\n");
    out.push_str("<!-- Generated from schemas/src/topics.rs by `vectis topics doc > docs/REDPANDA_TOPICS.md`. Do not edit by hand: a test fails when this file is stale. -->\n\n");
    out.push_str("Every record is keyed by its stream id (one aggregate instance), so the events of one aggregate stay in order within one partition. Values are the JSON event envelope; headers repeat `event_type`, `schema_version`, `event_id` and `content-type`, plus W3C `traceparent` when the command had one.\n\n");
    out.push_str("| topic | partitions | retention | cleanup policy | stream id prefix |\n|---|---|---|---|---|\n");
    for t in TOPICS {
        let retention = match t.retention_ms {
            None => "infinite (`retention.ms=-1`)".to_string(),
            Some(ms) => format!("{ms} ms"),
        };
        let _ = writeln!(
            out,
            "| `{}` | {} | {} | `{}` | `{}` |",
            t.name, t.partitions, retention, t.cleanup_policy, t.stream_prefix
        );
    }
    for t in TOPICS {
        let _ = write!(
            out,
            "\n## `{}`\n\n| event type | schema version | schema file | meaning |\n|---|---|---|---|\n",
            t.name
        );
        for e in t.event_types {
            let _ = writeln!(
                out,
                "| `{}` | {} | `schemas/events/{}/{}.v{}.json` | {} |",
                e.name, e.current_version, t.schema_dir, e.name, e.current_version, e.description
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn event_type_names_are_unique_across_topics() {
        let mut seen = HashSet::new();
        for e in TOPICS.iter().flat_map(|t| t.event_types.iter()) {
            assert!(seen.insert(e.name), "{} is listed twice", e.name);
        }
    }

    #[test]
    fn every_event_type_routes_to_the_topic_that_lists_it() {
        assert_eq!(topic_for_event_type("OrderPlaced").map(|t| t.name), Some("vectis.orders"));
        assert_eq!(topic_for_event_type("StockReserved").map(|t| t.name), Some("vectis.inventory"));
        assert_eq!(topic_for_event_type("AccountApproved").map(|t| t.name), Some("vectis.accounts"));
        assert_eq!(topic_for_event_type("NoSuchEvent"), None);
    }

    #[test]
    fn committed_topics_document_matches_the_registry() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/REDPANDA_TOPICS.md");
        let committed = std::fs::read_to_string(path).unwrap_or_default();
        assert!(
            committed == render_topics_markdown(),
            "docs/REDPANDA_TOPICS.md is stale: regenerate it with `vectis topics doc > docs/REDPANDA_TOPICS.md`"
        );
    }
}
