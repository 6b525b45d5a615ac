//! The three search indexes: their declarations and how events become documents.
//!
//! A search projector keeps each index's documents in PostgreSQL (its versioned schema,
//! table `documents`), folds a batch of events over the documents they touch, and sends
//! the engine only what changed. Keeping the state there makes a replay after a crash
//! recompute the same documents (quantities are never added twice), and lets an event
//! of one stream update documents of another (an account's name on its orders).
//!
//! Document keys starting with `~` are state only (never sent to the engine); body
//! fields starting with `_` are state only too.

use std::collections::HashMap;

use serde_json::{json, Value};
use vectis_schemas::events::{AccountEvent, OrderEvent};

use vectis_consumer::event::{DomainEvent, ProjectedEvent};

use crate::read_models::{
    accounts,
    inventory::{self, InventoryState, ItemRow, ReservationRow},
    orders,
};
use vectis_search::{
    declaration::IndexDeclaration,
    document::{engine_document, Body, DocumentChange},
    indexes::{ACCOUNTS, ORDERS, PRODUCTS},
};

/// Which documents an event needs.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum DocKey {
    Id(String),
    /// Every document linked to this value: whose [`DocumentModel::link_field`]
    /// holds it (an account's orders).
    Linked(String),
}

/// The documents one batch works on: as loaded, and as the batch leaves them.
#[derive(Debug, Default)]
pub struct Documents {
    loaded: HashMap<String, Body>,
    current: HashMap<String, Option<Body>>,
    /// The model's link field, and which documents hold each of its values: a batch
    /// of registrations each updating an account's orders must not scan every
    /// document per event.
    link_field: Option<&'static str>,
    linked: HashMap<String, Vec<String>>,
}

impl Documents {
    /// The documents as stored, indexed by `link_field` (the model's
    /// [`DocumentModel::link_field`]).
    pub fn loaded(docs: impl IntoIterator<Item = (String, Body)>, link_field: Option<&'static str>) -> Self {
        let mut documents = Self { link_field, ..Self::default() };
        for (key, body) in docs {
            documents.loaded.insert(key.clone(), body.clone());
            documents.put(key, body);
        }
        documents
    }

    pub fn get(&self, key: &str) -> Option<&Body> {
        self.current.get(key).and_then(Option::as_ref)
    }

    pub fn get_mut(&mut self, key: &str) -> Option<&mut Body> {
        self.current.get_mut(key).and_then(Option::as_mut)
    }

    pub fn put(&mut self, key: String, body: Body) {
        if let Some(value) = self.link_field.and_then(|field| body.get(field)).and_then(Value::as_str) {
            let keys = self.linked.entry(value.to_string()).or_default();
            if !keys.contains(&key) {
                keys.push(key.clone());
            }
        }
        self.current.insert(key, Some(body));
    }

    /// Calls `update` on every document (visible or not) whose `field` equals `value`:
    /// from the index when `field` is the link field, else by looking at each.
    pub fn update_matching(&mut self, field: &str, value: &str, mut update: impl FnMut(&mut Body)) {
        let matches = |body: &Body| body.get(field).and_then(Value::as_str) == Some(value);
        if self.link_field == Some(field) {
            for key in self.linked.get(value).into_iter().flatten() {
                if let Some(body) = self.current.get_mut(key).and_then(Option::as_mut).filter(|b| matches(b)) {
                    update(body);
                }
            }
        } else {
            self.current.values_mut().flatten().filter(|body| matches(body)).for_each(update);
        }
    }

    /// What changed, for the state table: (key, body or `None` when deleted).
    pub fn changed_state(&self) -> Vec<(String, Option<Body>)> {
        let mut changed: Vec<_> = self
            .current
            .iter()
            .filter(|(key, body)| self.loaded.get(*key) != body.as_ref())
            .map(|(key, body)| (key.clone(), body.clone()))
            .collect();
        changed.sort_by(|a, b| a.0.cmp(&b.0));
        changed
    }

    /// What changed, for the engine: visible documents only, declared fields only.
    pub fn engine_changes(&self, declaration: &IndexDeclaration) -> Vec<DocumentChange> {
        self.changed_state()
            .into_iter()
            .filter(|(key, _)| !key.starts_with('~'))
            .filter_map(|(key, body)| {
                let before = self.loaded.get(&key).map(|b| engine_document(declaration, &key, b));
                match body {
                    None => before.map(|_| DocumentChange::Delete { id: key }),
                    Some(body) => {
                        let full = engine_document(declaration, &key, &body);
                        let changed: Body = match &before {
                            None => full.clone(),
                            Some(before) => full
                                .iter()
                                .filter(|(field, value)| *field == "id" || before.get(*field) != Some(*value))
                                .map(|(field, value)| (field.clone(), value.clone()))
                                .collect(),
                        };
                        // Only state fields moved: the engine's copy is current.
                        (changed.len() > 1).then_some(DocumentChange::Upsert { id: key, full, changed })
                    }
                }
            })
            .collect()
    }
}

/// How events become one index's documents.
pub trait DocumentModel: Send + Sync + 'static {
    fn declaration(&self) -> &'static IndexDeclaration;

    /// The body field other streams' events reach documents by ([`DocKey::Linked`]);
    /// the projection indexes it.
    fn link_field(&self) -> Option<&'static str> {
        None
    }

    /// The documents `event` reads or writes.
    fn touches(&self, event: &ProjectedEvent) -> Vec<DocKey>;

    /// Folds `event` into `docs` (which hold at least what `touches` named).
    fn apply(&self, docs: &mut Documents, event: &ProjectedEvent);
}

/// `orders`: id, account id and name, status, SKUs, total, currency, placed at.
pub struct OrderDocuments;

/// `accounts`: id, name, email, status.
pub struct AccountDocuments;

/// `products`: SKU, name, description, unit price, available quantity.
pub struct ProductDocuments;

fn account_state_key(account_id: &str) -> String {
    format!("~account:{account_id}")
}

impl DocumentModel for OrderDocuments {
    fn declaration(&self) -> &'static IndexDeclaration {
        &ORDERS
    }

    fn link_field(&self) -> Option<&'static str> {
        Some("account_id")
    }

    fn touches(&self, event: &ProjectedEvent) -> Vec<DocKey> {
        match &event.event {
            DomainEvent::Order(OrderEvent::OrderPlaced(e)) => {
                vec![DocKey::Id(e.order_id.to_string()), DocKey::Id(account_state_key(&e.account_id.to_string()))]
            }
            DomainEvent::Order(e) => vec![DocKey::Id(e.order_id().to_string())],
            DomainEvent::Account(AccountEvent::AccountRegistered(e)) => {
                vec![DocKey::Linked(e.account_id.to_string())]
            }
            _ => Vec::new(),
        }
    }

    fn apply(&self, docs: &mut Documents, event: &ProjectedEvent) {
        match &event.event {
            DomainEvent::Order(OrderEvent::OrderPlaced(e)) => {
                let account_id = e.account_id.to_string();
                let account_name = docs
                    .get(&account_state_key(&account_id))
                    .and_then(|state| state.get("name"))
                    .cloned()
                    .unwrap_or(Value::Null);
                let mut skus: Vec<&str> = e.lines.iter().map(|l| l.sku.as_str()).collect();
                skus.dedup();
                let body = json!({
                    "order_id": e.order_id.to_string(),
                    "account_id": account_id,
                    "account_name": account_name,
                    "status": orders::status_after(&OrderEvent::OrderPlaced(e.clone())),
                    "skus": skus,
                    "total_minor": e.total.amount_minor,
                    "currency": e.total.currency,
                    "placed_at": event.occurred_at.timestamp_millis(),
                });
                docs.put(e.order_id.to_string(), object(body));
            }
            DomainEvent::Order(e) => {
                if let Some(doc) = docs.get_mut(&e.order_id().to_string()) {
                    doc.insert("status".into(), Value::from(orders::status_after(e).as_str()));
                }
            }
            // An order may be indexed before its account's registration is consumed
            // (other topic): keep the name, and fill it into orders already indexed.
            DomainEvent::Account(AccountEvent::AccountRegistered(e)) => {
                let account_id = e.account_id.to_string();
                docs.put(account_state_key(&account_id), object(json!({ "account_id": account_id, "name": e.name })));
                docs.update_matching("account_id", &account_id, |order| {
                    if order.contains_key("order_id") {
                        order.insert("account_name".into(), Value::from(e.name.clone()));
                    }
                });
            }
            _ => {}
        }
    }
}

impl DocumentModel for AccountDocuments {
    fn declaration(&self) -> &'static IndexDeclaration {
        &ACCOUNTS
    }

    fn touches(&self, event: &ProjectedEvent) -> Vec<DocKey> {
        match &event.event {
            DomainEvent::Account(e) => vec![DocKey::Id(e.account_id().to_string())],
            _ => Vec::new(),
        }
    }

    fn apply(&self, docs: &mut Documents, event: &ProjectedEvent) {
        let DomainEvent::Account(e) = &event.event else { return };
        let key = e.account_id().to_string();
        if let AccountEvent::AccountRegistered(r) = e {
            let status = accounts::status_after(e);
            docs.put(key, object(json!({ "name": r.name, "email": r.email, "status": status })));
        } else if let (Some(doc), Some(status)) = (docs.get_mut(&key), accounts::status_after(e)) {
            doc.insert("status".into(), Value::from(status.as_str()));
        }
    }
}

/// A SKU as an engine document id: Meilisearch ids allow letters, digits, `-` and `_`;
/// SKUs also allow `.`, and never lower-case letters, so `_dot_` cannot collide.
pub fn product_key(sku: &str) -> String {
    sku.replace('.', "_dot_")
}

fn reservation_state_key(reservation_id: &uuid::Uuid) -> String {
    format!("~reservation:{reservation_id}")
}

impl DocumentModel for ProductDocuments {
    fn declaration(&self) -> &'static IndexDeclaration {
        &PRODUCTS
    }

    fn touches(&self, event: &ProjectedEvent) -> Vec<DocKey> {
        let DomainEvent::Inventory(e) = &event.event else { return Vec::new() };
        let mut keys = vec![DocKey::Id(product_key(inventory::sku_of(e)))];
        if let Some(reservation) = inventory::reservation_of(e) {
            keys.push(DocKey::Id(reservation_state_key(&reservation)));
        }
        keys
    }

    /// The inventory read model's own fold, over the state kept in the documents, so
    /// `available` here is what `read.inventory_items` says.
    fn apply(&self, docs: &mut Documents, event: &ProjectedEvent) {
        let DomainEvent::Inventory(e) = &event.event else { return };
        let sku = inventory::sku_of(e).to_string();
        let key = product_key(&sku);
        let mut state = InventoryState::default();
        if let Some(item) =
            docs.get(&key).and_then(|d| d.get("_item")).and_then(|v| serde_json::from_value::<ItemRow>(v.clone()).ok())
        {
            state.items.insert(sku.clone(), item);
        }
        let reservation = inventory::reservation_of(e);
        if let Some(id) = reservation {
            let stored = docs.get(&reservation_state_key(&id)).and_then(|d| d.get("_reservation"));
            if let Some(row) = stored.and_then(|v| serde_json::from_value::<ReservationRow>(v.clone()).ok()) {
                state.reservations.insert(id, row);
            }
        }
        state.evolve(e, event.stream_version, event.occurred_at);
        for (id, row) in state.reservations {
            docs.put(reservation_state_key(&id), object(json!({ "_reservation": row })));
        }
        if let Some(item) = state.items.remove(&sku) {
            let body = json!({
                "sku": item.sku,
                "name": item.name,
                "description": item.description,
                "unit_price_minor": item.unit_price_minor,
                "currency": item.currency,
                "available": item.on_hand - item.reserved,
                "_item": item,
            });
            docs.put(key, object(body));
        }
    }
}

fn object(value: Value) -> Body {
    match value {
        Value::Object(map) => map,
        _ => Body::new(),
    }
}

/// Every search index's document model.
pub fn all() -> Vec<std::sync::Arc<dyn DocumentModel>> {
    vec![
        std::sync::Arc::new(OrderDocuments),
        std::sync::Arc::new(AccountDocuments),
        std::sync::Arc::new(ProductDocuments),
    ]
}

#[cfg(test)]
mod tests {
    use chrono::Utc;
    use uuid::Uuid;
    use vectis_schemas::samples;
    use vectis_schemas::StreamId;

    use super::*;

    fn projected(stream_id: StreamId, version: i64, event: DomainEvent) -> ProjectedEvent {
        ProjectedEvent {
            event_id: uuid::Uuid::now_v7(),
            correlation_id: uuid::Uuid::now_v7(),
            stream_id,
            stream_version: version,
            global_position: version,
            occurred_at: Utc::now(),
            event,
        }
    }

    fn fold(model: &dyn DocumentModel, docs: &mut Documents, events: &[ProjectedEvent]) {
        for event in events {
            model.apply(docs, event);
        }
    }

    #[test]
    fn an_order_gets_its_account_name_whichever_topic_is_consumed_first() {
        let (account, order) = (Uuid::now_v7(), Uuid::now_v7());
        let registered = projected(
            StreamId::account(account),
            1,
            DomainEvent::Account(samples::account_registered(account, "Acme Fasteners")),
        );
        let placed = projected(
            StreamId::order(order),
            1,
            DomainEvent::Order(samples::order_placed(order, account, "BOLT-M8", 2)),
        );
        for events in [[registered.clone(), placed.clone()], [placed, registered]] {
            let mut docs = Documents::loaded([], OrderDocuments.link_field());
            fold(&OrderDocuments, &mut docs, &events);
            let doc = docs.get(&order.to_string()).expect("indexed");
            assert_eq!(doc["account_name"], "Acme Fasteners");
            assert_eq!(doc["skus"], json!(["BOLT-M8"]));
            let changes = docs.engine_changes(&ORDERS);
            assert_eq!(changes.len(), 1, "the account's state document is not sent: {changes:?}");
        }
    }

    #[test]
    fn a_status_change_sends_only_the_status() {
        let order = Uuid::now_v7();
        let mut docs = Documents::default();
        let placed = projected(
            StreamId::order(order),
            1,
            DomainEvent::Order(samples::order_placed(order, Uuid::now_v7(), "BOLT-M8", 2)),
        );
        fold(&OrderDocuments, &mut docs, &[placed]);
        let stored: Vec<(String, Body)> =
            docs.changed_state().into_iter().filter_map(|(k, b)| b.map(|b| (k, b))).collect();
        let mut docs = Documents::loaded(stored, OrderDocuments.link_field());
        let confirmed = projected(StreamId::order(order), 2, DomainEvent::Order(samples::order_confirmed(order)));
        fold(&OrderDocuments, &mut docs, &[confirmed]);
        match docs.engine_changes(&ORDERS).as_slice() {
            [DocumentChange::Upsert { changed, full, .. }] => {
                assert_eq!(changed.keys().collect::<Vec<_>>(), ["id", "status"]);
                assert_eq!(changed["status"], "confirmed");
                assert_eq!(full["total_minor"], 2500);
            }
            other => panic!("expected one partial update, got {other:?}"),
        }
    }

    #[test]
    fn products_carry_what_the_inventory_read_model_calls_available() {
        let sku = "BOLT.M8";
        let stream = StreamId::inventory_item(sku).expect("a SKU");
        let mut docs = Documents::default();
        let events = [
            projected(stream.clone(), 1, DomainEvent::Inventory(samples::item_created(sku))),
            projected(stream.clone(), 2, DomainEvent::Inventory(samples::stock_received(sku, 10))),
            projected(stream.clone(), 3, DomainEvent::Inventory(samples::item_price_changed(sku, 1_250, 1_399))),
        ];
        fold(&ProductDocuments, &mut docs, &events);
        let doc = docs.get(&product_key(sku)).expect("indexed");
        assert_eq!((doc["available"].as_i64(), doc["sku"].as_str()), (Some(10), Some(sku)));
        assert_eq!(doc["unit_price_minor"].as_i64(), Some(1_399), "a price change reaches the product document");
        let changes = docs.engine_changes(&PRODUCTS);
        let [DocumentChange::Upsert { id, full, .. }] = changes.as_slice() else { panic!("{changes:?}") };
        assert_eq!(id, "BOLT_dot_M8");
        assert!(full.keys().all(|k| !k.starts_with('_')), "state fields stay out of the engine: {full:?}");
    }
}
