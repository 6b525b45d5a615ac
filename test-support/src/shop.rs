//! Commands as the command API runs them (aggregates decide, the event store appends),
//! for tests that need realistic event streams.

use std::collections::BTreeMap;

use sqlx::PgPool;
use uuid::Uuid;
use vectis_command_api::{
    domain::{Account, AccountCommand, InventoryCommand, InventoryItem, Order, OrderCommand, OrderLineRequest},
    handling::CommandHandler,
};
use vectis_event_store::EventMetadata;
use vectis_schemas::{
    events::{HeldLine, Money},
    StreamId,
};

use crate::event_store;

/// Commands as the command API runs them.
pub struct Shop {
    pub handler: CommandHandler,
    pub metadata: EventMetadata,
}

impl Shop {
    pub fn new(pool: &PgPool) -> Self {
        Self { handler: CommandHandler::new(event_store(pool.clone())), metadata: EventMetadata::default() }
    }

    pub async fn account(&self, name: &str, email: &str, commands: Vec<AccountCommand>) -> Uuid {
        let id = Uuid::now_v7();
        let mut store = self.handler.store().clone();
        let register = AccountCommand::Register {
            account_id: id,
            name: name.into(),
            email: email.into(),
            credit_limit: Money::new(10_000_000, "EUR"),
            approval_threshold: Money::new(5_000_000, "EUR"),
        };
        for command in std::iter::once(register).chain(commands) {
            self.handler
                .execute::<Account, _>(&mut store, &StreamId::account(id), None, &self.metadata, |_| command.clone())
                .await
                .expect("account command");
        }
        id
    }

    pub async fn inventory(&self, sku: &str, commands: Vec<InventoryCommand>) {
        let mut store = self.handler.store().clone();
        for command in commands {
            self.handler
                .execute::<InventoryItem, _>(
                    &mut store,
                    &StreamId::inventory_item(sku).expect("a SKU"),
                    None,
                    &self.metadata,
                    |_| command.clone(),
                )
                .await
                .expect("inventory command");
        }
    }

    pub async fn product(&self, sku: &str, name: &str, description: &str, price: i64, stock: i64) {
        let create = InventoryCommand::Create {
            sku: sku.into(),
            name: name.into(),
            description: description.into(),
            unit_price: Money::new(price, "EUR"),
        };
        self.inventory(sku, vec![create, InventoryCommand::Receive { quantity: stock, reference: None }]).await;
    }

    pub async fn order(&self, account_id: Uuid, lines: &[(&str, i64)], then: Vec<OrderCommand>) -> Uuid {
        let mut store = self.handler.store().clone();
        let account = self.handler.load::<Account>(&StreamId::account(account_id)).await.expect("account").state;
        let mut catalogue = BTreeMap::new();
        for (sku, _) in lines {
            let item = self
                .handler
                .load::<InventoryItem>(&StreamId::inventory_item(sku).expect("a SKU"))
                .await
                .expect("item")
                .state;
            catalogue.insert(sku.to_string(), item.expect("the product exists"));
        }
        let lines = lines.iter().map(|(sku, quantity)| OrderLineRequest { sku: sku.to_string(), quantity: *quantity });
        let order_id = Uuid::now_v7();
        let place = OrderCommand::Place { order_id, account_id, account, lines: lines.collect(), catalogue };
        for command in std::iter::once(place).chain(then) {
            run_order_command(&self.handler, &mut store, order_id, &self.metadata, command).await;
        }
        order_id
    }
}

/// Runs `command` on the order, as its lifecycle would see it: the workflows do not run
/// in these tests, so before a confirmation the order's stock is marked held, as the
/// order lifecycle does once its reservations are held (nothing is reserved here).
pub async fn run_order_command(
    handler: &CommandHandler,
    store: &mut vectis_event_store::EventStore,
    order_id: Uuid,
    metadata: &EventMetadata,
    command: OrderCommand,
) {
    let stream = StreamId::order(order_id);
    if command == OrderCommand::Confirm {
        handler
            .execute::<Order, _>(store, &stream, None, metadata, hold_every_line)
            .await
            .expect("mark the order's stock held");
    }
    handler.execute::<Order, _>(store, &stream, None, metadata, |_| command.clone()).await.expect("order command");
}

/// Marks the stock of the order held in the store behind `pool`, as the order
/// lifecycle would: for tests of the command side, where no workflow runs.
pub async fn mark_stock_held(pool: &PgPool, order_id: Uuid) {
    let handler = CommandHandler::new(event_store(pool.clone()));
    let mut store = handler.store().clone();
    handler
        .execute::<Order, _>(&mut store, &StreamId::order(order_id), None, &EventMetadata::default(), hold_every_line)
        .await
        .expect("mark the order's stock held");
}

/// The order lifecycle's `HoldStock` for every line of `order`, without reservations.
pub fn hold_every_line(order: &Option<Order>) -> OrderCommand {
    let reservations = order
        .iter()
        .flat_map(|o| &o.lines)
        .map(|line| HeldLine { sku: line.sku.clone(), reservation_id: Uuid::now_v7(), quantity: line.quantity })
        .collect();
    OrderCommand::HoldStock { reservations, expires_at: chrono::Utc::now() + chrono::Duration::minutes(15) }
}
