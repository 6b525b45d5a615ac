//! Command handling against a real PostgreSQL event store.

use std::{collections::BTreeMap, sync::Arc, time::Duration};
use vectis_schemas::StreamId;

use chrono::Utc;
use sqlx::PgPool;
use uuid::Uuid;
use vectis_command_api::{
    domain::{
        Account, AccountCommand, AccountStatus, DomainError, InventoryCommand, InventoryItem, Order, OrderCommand,
        OrderLineRequest, OrderStatus,
    },
    handling::{CommandError, CommandHandler, StreamKnown},
};
use vectis_event_store::{metrics::SnapshotHitLabels, EventMetadata, IdempotencyBegin, IdempotencyKey, StoredResponse};
use vectis_schemas::events::{Money, StockReserved};

use vectis_test_support::{command_api::handler, eventually, shop::hold_every_line};

fn eur(amount_minor: i64) -> Money {
    Money::new(amount_minor, "EUR")
}

async fn register_approved_account(handler: &CommandHandler, account_id: Uuid) {
    let mut store = handler.store().clone();
    let stream = StreamId::account(account_id);
    let meta = EventMetadata::default();
    handler
        .execute::<Account, _>(&mut store, &stream, None, &meta, |_| AccountCommand::Register {
            account_id,
            name: "Acme".into(),
            email: "buyer@acme.example".into(),
            credit_limit: eur(1_000_000),
            approval_threshold: eur(100_000),
        })
        .await
        .expect("register");
    handler
        .execute::<Account, _>(&mut store, &stream, None, &meta, |_| AccountCommand::Approve { by: "staff".into() })
        .await
        .expect("approve");
}

async fn create_item(handler: &CommandHandler, sku: &str, price: i64, stock: i64) {
    let mut store = handler.store().clone();
    let stream = StreamId::inventory_item(sku).expect("a SKU");
    let meta = EventMetadata::default();
    handler
        .execute::<InventoryItem, _>(&mut store, &stream, None, &meta, |_| InventoryCommand::Create {
            sku: sku.into(),
            name: sku.into(),
            description: String::new(),
            unit_price: eur(price),
        })
        .await
        .expect("create");
    handler
        .execute::<InventoryItem, _>(&mut store, &stream, None, &meta, |_| InventoryCommand::Receive {
            quantity: stock,
            reference: None,
        })
        .await
        .expect("receive");
}

/// What the order endpoint does: read the account and the items, then place.
async fn place_order(
    handler: &CommandHandler,
    order_id: Uuid,
    account_id: Uuid,
    lines: Vec<OrderLineRequest>,
) -> Result<vectis_command_api::handling::CommandOutcome, CommandError> {
    let account = handler.load::<Account>(&StreamId::account(account_id)).await?.state;
    let mut catalogue = BTreeMap::new();
    for line in &lines {
        if let Some(item) =
            handler.load::<InventoryItem>(&StreamId::inventory_item(&line.sku).expect("a SKU")).await?.state
        {
            catalogue.insert(line.sku.clone(), item);
        }
    }
    let mut store = handler.store().clone();
    handler
        .execute::<Order, _>(&mut store, &StreamId::order(order_id), None, &EventMetadata::default(), |_| {
            OrderCommand::Place {
                order_id,
                account_id,
                account: account.clone(),
                lines: lines.clone(),
                catalogue: catalogue.clone(),
            }
        })
        .await
}

#[sqlx::test(migrator = "vectis_event_store::MIGRATOR")]
async fn an_order_goes_from_placed_to_delivered(pool: PgPool) {
    let handler = handler(pool);
    let account_id = Uuid::now_v7();
    register_approved_account(&handler, account_id).await;
    create_item(&handler, "BOLT-M8", 42, 1000).await;
    create_item(&handler, "NUT-M8", 7, 1000).await;
    let order_id = Uuid::now_v7();
    let lines = vec![
        OrderLineRequest { sku: "BOLT-M8".into(), quantity: 10 },
        OrderLineRequest { sku: "NUT-M8".into(), quantity: 10 },
    ];
    let placed = place_order(&handler, order_id, account_id, lines).await.expect("placed");
    assert_eq!(placed.stream_version, 1);
    assert_eq!(placed.events[0].envelope.data["total"], serde_json::json!({"amount_minor": 490, "currency": "EUR"}));

    let mut store = handler.store().clone();
    let stream = StreamId::order(order_id);
    let meta = EventMetadata::default();
    for (command, version) in [
        (None, 2),
        (Some(OrderCommand::Confirm), 3),
        (Some(OrderCommand::Ship { carrier: "DHL".into(), tracking_number: "JD1".into() }), 4),
        (Some(OrderCommand::Deliver), 5),
    ] {
        // `None`: the order lifecycle's step, every line's stock held.
        let step = |state: &Option<Order>| command.clone().unwrap_or_else(|| hold_every_line(state));
        let outcome = handler.execute::<Order, _>(&mut store, &stream, None, &meta, step).await.expect("step");
        assert_eq!(outcome.stream_version, version);
    }
    let order = handler.load::<Order>(&stream).await.expect("load");
    assert_eq!((order.version, order.state.map(|o| o.status)), (5, Some(OrderStatus::Delivered)));
}

#[sqlx::test(migrator = "vectis_event_store::MIGRATOR")]
async fn a_refused_command_appends_nothing(pool: PgPool) {
    let handler = handler(pool.clone());
    let account_id = Uuid::now_v7();
    register_approved_account(&handler, account_id).await;
    let before: i64 = sqlx::query_scalar("SELECT count(*) FROM events").fetch_one(&pool).await.expect("count");
    let err =
        place_order(&handler, Uuid::now_v7(), account_id, vec![OrderLineRequest { sku: "GHOST".into(), quantity: 1 }])
            .await
            .expect_err("unknown SKU");
    assert!(matches!(&err, CommandError::Domain(DomainError::Rule(m)) if m.contains("GHOST does not exist")), "{err}");
    assert!(err.is_rejection());
    let mut store = handler.store().clone();
    let err = handler
        .execute::<Account, _>(&mut store, &StreamId::account(account_id), None, &EventMetadata::default(), |_| {
            AccountCommand::Approve { by: "staff".into() }
        })
        .await
        .expect_err("already approved");
    assert!(matches!(err, CommandError::Domain(DomainError::InvalidState(_))));
    let after: i64 = sqlx::query_scalar("SELECT count(*) FROM events").fetch_one(&pool).await.expect("count");
    assert_eq!(before, after);
}

#[sqlx::test(migrator = "vectis_event_store::MIGRATOR")]
async fn if_match_pins_the_version_the_client_saw(pool: PgPool) {
    let handler = handler(pool);
    let account_id = Uuid::now_v7();
    register_approved_account(&handler, account_id).await;
    let stream = StreamId::account(account_id);
    let mut store = handler.store().clone();
    let meta = EventMetadata::default();
    let change = |amount| move |_: &Option<Account>| AccountCommand::ChangeCreditLimit { credit_limit: eur(amount) };
    let err = handler.execute::<Account, _>(&mut store, &stream, Some(1), &meta, change(5)).await.expect_err("stale");
    assert!(matches!(err, CommandError::VersionMismatch { expected: 1, actual: 2, .. }), "{err}");
    let outcome = handler.execute::<Account, _>(&mut store, &stream, Some(2), &meta, change(5)).await.expect("current");
    assert_eq!(outcome.stream_version, 3);
    // An unchanged value decides nothing and appends nothing.
    let same = handler.execute::<Account, _>(&mut store, &stream, None, &meta, change(5)).await.expect("no-op");
    assert_eq!((same.stream_version, same.events.len()), (3, 0));
    let account = handler.load::<Account>(&stream).await.expect("load").state.expect("exists");
    assert_eq!((account.status, account.credit_limit), (AccountStatus::Approved, eur(5)));
}

/// 50 concurrent reservations of one unit each for a SKU with 10 in stock: exactly
/// 10 are held, 40 are rejected, nothing is oversold, versions have no gaps. With
/// snapshots (every 3 events in tests) and the state cache on, as in production.
#[sqlx::test(migrator = "vectis_event_store::MIGRATOR")]
async fn fifty_concurrent_reservations_never_oversell_ten_units(pool: PgPool) {
    let handler = handler(pool.clone());
    let sku = "HOT-SKU";
    create_item(&handler, sku, 100, 10).await;
    let stream = StreamId::inventory_item(sku).expect("a SKU");
    let barrier = Arc::new(tokio::sync::Barrier::new(50));
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let (handler, stream, barrier) = (handler.clone(), stream.clone(), barrier.clone());
            tokio::spawn(async move {
                let reservation_id = Uuid::now_v7();
                let mut store = handler.store().clone();
                barrier.wait().await;
                let now = Utc::now();
                handler
                    .execute::<InventoryItem, _>(&mut store, &stream, None, &EventMetadata::default(), |_| {
                        InventoryCommand::Reserve {
                            reservation_id,
                            order_id: Uuid::now_v7(),
                            quantity: 1,
                            expires_at: now + Duration::from_secs(900),
                            now,
                        }
                    })
                    .await
            })
        })
        .collect();
    let mut held = 0;
    let mut rejected = 0;
    for task in tasks {
        let outcome = task.await.expect("task").expect("every reservation gets an outcome");
        match outcome.events[0].envelope.event_type.as_str() {
            "StockReserved" => held += 1,
            "ReservationRejected" => rejected += 1,
            other => panic!("unexpected {other}"),
        }
    }
    assert_eq!((held, rejected), (10, 40));
    let item = handler.load::<InventoryItem>(&stream).await.expect("load");
    let state = item.state.expect("exists");
    assert_eq!((state.on_hand, state.reserved(), state.available()), (10, 10, 0));
    let versions: Vec<i64> =
        sqlx::query_scalar("SELECT stream_version FROM events WHERE stream_id = $1 ORDER BY stream_version")
            .bind(stream.as_str())
            .fetch_all(&pool)
            .await
            .expect("versions");
    assert_eq!(versions, (1..=52).collect::<Vec<i64>>());
    let reserved_units: i64 = handler
        .store()
        .read_stream(&stream, 1)
        .await
        .expect("read")
        .iter()
        .filter(|e| e.envelope.event_type == "StockReserved")
        .map(|e| serde_json::from_value::<StockReserved>(e.envelope.data.clone()).expect("decodes").quantity)
        .sum();
    assert_eq!(reserved_units, 10);
    let metrics = handler.store().metrics();
    let hits = |source| {
        metrics.snapshot_hits.get_or_create(&SnapshotHitLabels { aggregate: "inventory_item".into(), source }).get()
    };
    assert!(hits("cache") > 0, "the contenders loaded from the cache");
    eventually(Duration::from_secs(10), "a snapshot of the contended stream", || async {
        let at: Option<i64> = sqlx::query_scalar("SELECT stream_version FROM snapshots WHERE stream_id = $1")
            .bind(stream.as_str())
            .fetch_optional(&pool)
            .await
            .map_err(|e| e.to_string())?;
        at.filter(|v| *v >= 50).ok_or(format!("snapshot at {at:?}"))
    })
    .await;
}

#[sqlx::test(migrator = "vectis_event_store::MIGRATOR")]
async fn commands_run_under_an_idempotency_key_append_once(pool: PgPool) {
    let handler = handler(pool.clone());
    create_item(&handler, "IDEM-1", 10, 5).await;
    let stream = StreamId::inventory_item("IDEM-1").expect("a SKU");
    let key = IdempotencyKey { scope: "client".into(), key: "receipt-1".into() };
    let day = Duration::from_secs(86_400);
    for round in 0..2 {
        match handler.store().begin_idempotent(key.clone(), b"same body", day).await.expect("begin") {
            IdempotencyBegin::Fresh(mut command) => {
                assert_eq!(round, 0, "only the first round runs the command");
                let outcome = handler
                    .execute::<InventoryItem, _>(&mut command, &stream, None, &EventMetadata::default(), |_| {
                        InventoryCommand::Receive { quantity: 3, reference: None }
                    })
                    .await
                    .expect("receive");
                let body = format!("{{\"version\":{}}}", outcome.stream_version).into_bytes();
                command
                    .complete(&StoredResponse { status: 201, content_type: "application/json".into(), body })
                    .await
                    .expect("complete");
            }
            IdempotencyBegin::Replay(response) => {
                assert_eq!(round, 1);
                assert_eq!(response.body, b"{\"version\":3}");
            }
            IdempotencyBegin::Mismatch | IdempotencyBegin::InProgress => panic!("same body, one at a time"),
        }
    }
    let item = handler.load::<InventoryItem>(&stream).await.expect("load").state.expect("exists");
    assert_eq!(item.on_hand, 8, "received once");
}

#[sqlx::test(migrator = "vectis_event_store::MIGRATOR")]
async fn a_new_stream_is_appended_without_reading_and_never_overwrites(pool: PgPool) {
    let handler = handler(pool);
    let account_id = Uuid::now_v7();
    let stream = StreamId::account(account_id);
    let register = |_: &Option<Account>| AccountCommand::Register {
        account_id,
        name: "Acme".into(),
        email: "buyer@acme.example".into(),
        credit_limit: eur(10),
        approval_threshold: eur(5),
    };
    let mut store = handler.store().clone();
    let meta = EventMetadata::default();
    let created = handler
        .execute_on::<Account, _>(&mut store, StreamKnown::New, &stream, None, &meta, register)
        .await
        .expect("created");
    assert_eq!(created.stream_version, 1);
    let err = handler
        .execute_on::<Account, _>(&mut store, StreamKnown::New, &stream, None, &meta, register)
        .await
        .expect_err("exists");
    assert!(matches!(err, CommandError::Domain(DomainError::AlreadyExists(_))), "{err}");
    assert_eq!(handler.load::<Account>(&stream).await.expect("load").version, 1);
}
