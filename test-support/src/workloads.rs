//! Workloads for read-side tests: realistic commands run as the command API runs them
//! (aggregates decide, the event store appends).

use std::collections::BTreeMap;

use uuid::Uuid;
use vectis_command_api::{
    domain::{
        Account, AccountCommand, AccountStatus, InventoryCommand, InventoryItem, Order, OrderCommand, OrderLineRequest,
    },
    handling::CommandHandler,
};
use vectis_event_store::EventMetadata;
use vectis_schemas::{
    events::{AdjustmentReason, Money},
    StreamId,
};

/// Registers `count` accounts (pending approval). Returns the ids.
pub async fn register_accounts(handler: &CommandHandler, count: usize) -> Vec<Uuid> {
    let metadata = EventMetadata::default();
    let mut store = handler.store().clone();
    let mut ids = Vec::new();
    for n in 0..count {
        let id = Uuid::now_v7();
        let register = AccountCommand::Register {
            account_id: id,
            name: format!("Account {n}"),
            email: format!("buyer{n}@example.com"),
            credit_limit: Money::new(100_000 + n as i64, "EUR"),
            approval_threshold: Money::new(10_000, "EUR"),
        };
        handler
            .execute::<Account, _>(&mut store, &StreamId::account(id), None, &metadata, |_| register.clone())
            .await
            .expect("register");
        ids.push(id);
    }
    ids
}

/// Runs account commands: `count` registrations, then approvals, suspensions,
/// rejections and limit changes on some of them. Returns the account ids.
pub async fn account_workload(handler: &CommandHandler, count: usize) -> Vec<Uuid> {
    let metadata = EventMetadata::default();
    let mut store = handler.store().clone();
    let ids = register_accounts(handler, count).await;
    for (n, id) in ids.iter().enumerate() {
        let commands = match n % 5 {
            0 => vec![AccountCommand::Approve { by: "key:staff".into() }],
            1 => vec![
                AccountCommand::Approve { by: "key:staff".into() },
                AccountCommand::Suspend { by: "key:staff".into(), reason: "late payments".into() },
            ],
            2 => vec![AccountCommand::Reject { by: "key:staff".into(), reason: "unknown company".into() }],
            3 => vec![
                AccountCommand::Approve { by: "key:staff".into() },
                AccountCommand::ChangeCreditLimit { credit_limit: Money::new(5_000_000, "EUR") },
                AccountCommand::ChangeApprovalThreshold { approval_threshold: Money::new(250_000, "EUR") },
            ],
            _ => vec![],
        };
        for command in commands {
            handler
                .execute::<Account, _>(&mut store, &StreamId::account(*id), None, &metadata, |_| command.clone())
                .await
                .expect("command");
        }
    }
    ids
}

/// Items with stock movements and reservations (some rejected, released, committed),
/// and orders through every state, placed by `accounts` (approved ones can order).
pub async fn commerce_workload(handler: &CommandHandler, accounts: &[Uuid]) -> (Vec<String>, Vec<Uuid>) {
    let metadata = EventMetadata::default();
    let mut store = handler.store().clone();
    let mut skus = Vec::new();
    for n in 0..12 {
        let sku = format!("SKU-{n}");
        let item = StreamId::inventory_item(&sku).expect("a SKU");
        let commands = vec![
            InventoryCommand::Create {
                sku: sku.clone(),
                name: format!("Part {n}"),
                description: String::new(),
                unit_price: Money::new(100 + n, "EUR"),
            },
            InventoryCommand::Receive { quantity: 20 + n, reference: None },
            InventoryCommand::Adjust { delta: -1, reason: AdjustmentReason::Damaged, note: None },
        ];
        for command in commands {
            handler
                .execute::<InventoryItem, _>(&mut store, &item, None, &metadata, |_| command.clone())
                .await
                .expect("inventory");
        }
        let now = chrono::Utc::now();
        for (r, quantity) in [5, 8, 100, 3].into_iter().enumerate() {
            let reservation_id = Uuid::now_v7();
            let reserve = InventoryCommand::Reserve {
                reservation_id,
                order_id: Uuid::now_v7(),
                quantity,
                expires_at: now + chrono::Duration::minutes(15),
                now,
            };
            handler
                .execute::<InventoryItem, _>(&mut store, &item, None, &metadata, |_| reserve.clone())
                .await
                .expect("reserve");
            let settle = match r {
                0 => Some(InventoryCommand::Release { reservation_id, reason: None }),
                1 => Some(InventoryCommand::Commit { reservation_id }),
                _ => None,
            };
            if let Some(settle) = settle {
                handler
                    .execute::<InventoryItem, _>(&mut store, &item, None, &metadata, |_| settle.clone())
                    .await
                    .expect("settle");
            }
        }
        skus.push(sku);
    }
    let mut orders = Vec::new();
    for (n, account_id) in accounts.iter().enumerate() {
        let account = handler.load::<Account>(&StreamId::account(*account_id)).await.expect("account").state;
        if account.as_ref().is_none_or(|a| a.status != AccountStatus::Approved) {
            continue;
        }
        let mut catalogue = BTreeMap::new();
        let lines: Vec<OrderLineRequest> = skus[n % skus.len()..]
            .iter()
            .take(2)
            .map(|sku| OrderLineRequest { sku: sku.clone(), quantity: 1 + n as i64 % 3 })
            .collect();
        for line in &lines {
            let item = handler
                .load::<InventoryItem>(&StreamId::inventory_item(&line.sku).expect("a SKU"))
                .await
                .expect("item")
                .state
                .expect("exists");
            catalogue.insert(line.sku.clone(), item);
        }
        let order_id = Uuid::now_v7();
        let place = OrderCommand::Place { order_id, account_id: *account_id, account, lines, catalogue };
        handler
            .execute::<Order, _>(&mut store, &StreamId::order(order_id), None, &metadata, |_| place.clone())
            .await
            .expect("place");
        let path: Vec<OrderCommand> = match n % 4 {
            0 => vec![
                OrderCommand::Confirm,
                OrderCommand::Ship { carrier: "DHL".into(), tracking_number: format!("T{n}") },
                OrderCommand::Deliver,
            ],
            1 => vec![OrderCommand::Cancel { reason: "changed mind".into() }],
            2 => vec![OrderCommand::Confirm],
            _ => vec![],
        };
        for command in path {
            crate::shop::run_order_command(handler, &mut store, order_id, &metadata, command).await;
        }
        orders.push(order_id);
    }
    (skus, orders)
}
