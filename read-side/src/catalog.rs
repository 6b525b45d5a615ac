//! Every projection this build knows: its name (which also names its consumer group
//! and its schemas) and the logical topics it reads. The projections take their names
//! and topics from here, so the query API waiting for a write knows exactly which
//! projections that write reaches.

use vectis_schemas::topics::{ACCOUNTS as ACCOUNT_EVENTS, INVENTORY as INVENTORY_EVENTS, ORDERS as ORDER_EVENTS};

/// What kind of view a projection builds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProjectionKind {
    /// PostgreSQL tables behind `read.*` views.
    ReadModel,
    /// A search index (Meilisearch or embedded), with its documents in PostgreSQL.
    SearchIndex,
    /// A process manager (`workflows/`): its instances' state and timers, and the
    /// commands it decides.
    Workflow,
}

impl ProjectionKind {
    /// Its name in metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ReadModel => "read_model",
            Self::SearchIndex => "search_index",
            Self::Workflow => "workflow",
        }
    }

    /// The word naming its consumer groups: `vectis.<word>.<name>`.
    pub fn group_word(self) -> &'static str {
        match self {
            Self::ReadModel | Self::SearchIndex => "projection",
            Self::Workflow => "workflow",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProjectionSpec {
    pub name: &'static str,
    /// Logical topic names (`vectis.orders`).
    pub topics: &'static [&'static str],
    pub kind: ProjectionKind,
}

impl ProjectionSpec {
    pub fn reads(&self, logical_topic: &str) -> bool {
        self.topics.contains(&logical_topic)
    }
}

const fn read_model(name: &'static str, topics: &'static [&'static str]) -> ProjectionSpec {
    ProjectionSpec { name, topics, kind: ProjectionKind::ReadModel }
}

const fn search_index(name: &'static str, topics: &'static [&'static str]) -> ProjectionSpec {
    ProjectionSpec { name, topics, kind: ProjectionKind::SearchIndex }
}

/// `read.accounts`.
pub const ACCOUNTS: ProjectionSpec = read_model("accounts", &[ACCOUNT_EVENTS.name]);
/// `read.inventory_items`, `read.inventory_reservations`.
pub const INVENTORY: ProjectionSpec = read_model("inventory", &[INVENTORY_EVENTS.name]);
/// `read.orders`, `read.order_lines`, `read.order_status_history`.
pub const ORDERS: ProjectionSpec = read_model("orders", &[ORDER_EVENTS.name]);
/// `read.recurring_orders`, `read.recurring_order_runs`.
pub const RECURRING_ORDERS: ProjectionSpec = read_model("recurring_orders", &[ACCOUNT_EVENTS.name]);
/// The `orders` index: orders carry their account's name, so accounts are read too.
pub const SEARCH_ORDERS: ProjectionSpec = search_index("search_orders", &[ORDER_EVENTS.name, ACCOUNT_EVENTS.name]);
/// The `accounts` index.
pub const SEARCH_ACCOUNTS: ProjectionSpec = search_index("search_accounts", &[ACCOUNT_EVENTS.name]);
/// The `products` index.
pub const SEARCH_PRODUCTS: ProjectionSpec = search_index("search_products", &[INVENTORY_EVENTS.name]);

const fn workflow(name: &'static str, topics: &'static [&'static str]) -> ProjectionSpec {
    ProjectionSpec { name, topics, kind: ProjectionKind::Workflow }
}

/// The order lifecycle: reserves an order's stock, makes it confirmable, releases,
/// commits or expires what it holds.
pub const ORDER_LIFECYCLE: ProjectionSpec = workflow("order_lifecycle", &[ORDER_EVENTS.name, INVENTORY_EVENTS.name]);

/// Staff approval of orders above their account's threshold, with a deadline.
pub const ORDER_APPROVAL: ProjectionSpec = workflow("order_approval", &[ORDER_EVENTS.name]);
/// Staff approval of registered accounts, with a deadline.
pub const ACCOUNT_APPROVAL: ProjectionSpec = workflow("account_approval", &[ACCOUNT_EVENTS.name]);

/// Held reservations made outside the order lifecycle (over HTTP) expire at their
/// `expires_at`.
pub const RESERVATION_EXPIRY: ProjectionSpec = workflow("reservation_expiry", &[INVENTORY_EVENTS.name]);

/// Recurring orders: each run placed at its time, once.
pub const RECURRING_ORDER: ProjectionSpec = workflow("recurring_order", &[ACCOUNT_EVENTS.name]);

/// Every workflow. They are not projections a read waits for: [`reading`] leaves them out.
pub const WORKFLOWS: [ProjectionSpec; 5] =
    [ORDER_LIFECYCLE, ORDER_APPROVAL, ACCOUNT_APPROVAL, RESERVATION_EXPIRY, RECURRING_ORDER];

/// The workflow named `name`, if this build knows it.
pub fn workflow_named(name: &str) -> Option<&'static ProjectionSpec> {
    WORKFLOWS.iter().find(|spec| spec.name == name)
}

/// Every projection, read models first, in the order they are installed.
pub const ALL: [ProjectionSpec; 7] =
    [ACCOUNTS, INVENTORY, ORDERS, RECURRING_ORDERS, SEARCH_ORDERS, SEARCH_ACCOUNTS, SEARCH_PRODUCTS];

/// The projection named `name`, if this build knows it.
pub fn named(name: &str) -> Option<&'static ProjectionSpec> {
    ALL.iter().find(|spec| spec.name == name)
}

/// The projections a write to `logical_topic` reaches: its read models, and its search
/// indexes when `searching`.
pub fn reading(logical_topic: &str, searching: bool) -> Vec<&'static ProjectionSpec> {
    ALL.iter()
        .filter(|spec| spec.reads(logical_topic))
        .filter(|spec| searching || spec.kind == ProjectionKind::ReadModel)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_topic_reaches_its_read_model_and_the_indexes_over_it() {
        let names = |topic: &str, searching| reading(topic, searching).iter().map(|s| s.name).collect::<Vec<_>>();
        assert_eq!(names(ORDER_EVENTS.name, false), ["orders"]);
        assert_eq!(names(ORDER_EVENTS.name, true), ["orders", "search_orders"]);
        assert_eq!(
            names(ACCOUNT_EVENTS.name, true),
            ["accounts", "recurring_orders", "search_orders", "search_accounts"]
        );
        assert_eq!(names(INVENTORY_EVENTS.name, true), ["inventory", "search_products"]);
        assert_eq!(named("search_products"), Some(&SEARCH_PRODUCTS));
        assert_eq!(named("widgets"), None);
    }
}
