//! The read side end to end: commands → event store → relay → broker → projector →
//! read models, against the real PostgreSQL and broker. The expected state of every
//! row comes from the write model's own aggregates (independent code), loaded from
//! the event store.

use std::{sync::Arc, time::Duration};

use sqlx::{Connection, PgPool};
use std::collections::BTreeMap;
use uuid::Uuid;

use vectis_command_api::{
    domain::{
        Account, AccountCommand, AccountStatus, InventoryCommand, InventoryItem, Order, OrderCommand, OrderLineRequest,
        OrderStatus, ReservationStatus,
    },
    handling::CommandHandler,
};
use vectis_event_store::{relay, EventMetadata};
use vectis_projectors::{
    lag::LagProbe,
    metrics::ProjectorMetrics,
    projection::Projection,
    read_models::{
        self,
        accounts::{AccountRow, Accounts},
    },
    republish::{republish, RepublishError},
    store::Target,
};
use vectis_schemas::{
    events::{AdjustmentReason, Money},
    samples::{account_stream, inventory_stream, order_stream},
};
use vectis_tests::{event_store, fresh_topics, http_get, produce, recreate_topics, start_projector, RelayHandle};

/// Runs account commands: `count` registrations, then approvals, suspensions,
/// rejections and limit changes on some of them. Returns the account ids.
async fn account_workload(handler: &CommandHandler, count: usize) -> Vec<Uuid> {
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
            .execute::<Account, _>(&mut store, &account_stream(id), None, &metadata, |_| register.clone())
            .await
            .expect("register");
        ids.push(id);
    }
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
                .execute::<Account, _>(&mut store, &account_stream(*id), None, &metadata, |_| command.clone())
                .await
                .expect("command");
        }
    }
    ids
}

fn status_name(status: &AccountStatus) -> &'static str {
    match status {
        AccountStatus::PendingApproval => "pending_approval",
        AccountStatus::Approved => "approved",
        AccountStatus::Rejected => "rejected",
        AccountStatus::Suspended => "suspended",
    }
}

/// Every account row equals the write model's state at the same version.
async fn accounts_match_the_event_store(pool: &PgPool, handler: &CommandHandler, ids: &[Uuid]) -> Result<(), String> {
    let rows: Vec<AccountRow> = sqlx::query_as("SELECT * FROM read.accounts ORDER BY account_id")
        .fetch_all(pool)
        .await
        .map_err(|e| e.to_string())?;
    if rows.len() != ids.len() {
        return Err(format!("{} rows for {} accounts", rows.len(), ids.len()));
    }
    for row in rows {
        let loaded = handler.load::<Account>(&account_stream(row.account_id)).await.map_err(|e| e.to_string())?;
        let account = loaded.state.ok_or("row without account")?;
        let expected = (
            status_name(&account.status),
            account.name.as_str(),
            account.email.as_str(),
            account.credit_limit.amount_minor,
            account.approval_threshold.amount_minor,
            loaded.version,
        );
        let actual = (
            row.status.as_str(),
            row.name.as_str(),
            row.email.as_str(),
            row.credit_limit_minor,
            row.approval_threshold_minor,
            row.version,
        );
        if expected != actual {
            return Err(format!("account {}: expected {expected:?}, read model has {actual:?}", row.account_id));
        }
    }
    Ok(())
}

async fn until_consistent(pool: &PgPool, handler: &CommandHandler, ids: &[Uuid], timeout: Duration) {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        match accounts_match_the_event_store(pool, handler, ids).await {
            Ok(()) => return,
            Err(difference) if tokio::time::Instant::now() >= deadline => {
                panic!("the read model did not converge within {timeout:?}: {difference}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

#[sqlx::test(migrator = "vectis_event_store::MIGRATOR")]
async fn the_accounts_read_model_equals_the_fold_of_the_event_store(pool: PgPool) {
    let kafka = fresh_topics().await.expect("topics");
    let handler = CommandHandler::new(event_store(pool.clone()));
    let relay = RelayHandle::start(pool.clone(), &kafka, 500);
    let metrics = ProjectorMetrics::default();
    let projector = start_projector(&pool, &kafka, Arc::new(Accounts), &metrics).await;

    let ids = account_workload(&handler, 40).await;
    until_consistent(&pool, &handler, &ids, Duration::from_secs(60)).await;
    let events: i64 = sqlx::query_scalar("SELECT count(*) FROM events").fetch_one(&pool).await.expect("count");
    let label = ProjectorMetrics::label("accounts");
    assert_eq!(metrics.applied.get_or_create(&label).get(), events as u64, "every event applied once");
    assert_eq!(metrics.parked.get_or_create(&label).get(), 0);

    projector.stop().await.expect("clean stop");
    relay.stop().await;
}

#[sqlx::test(migrator = "vectis_event_store::MIGRATOR")]
async fn killed_and_restarted_projectors_lose_nothing_and_apply_nothing_twice(pool: PgPool) {
    let kafka = fresh_topics().await.expect("topics");
    let handler = CommandHandler::new(event_store(pool.clone()));
    let relay = RelayHandle::start(pool.clone(), &kafka, 200);
    let metrics = ProjectorMetrics::default();
    // Four writers, about 20,000 events in all.
    let writers: Vec<_> = (0..4)
        .map(|_| {
            let handler = handler.clone();
            tokio::spawn(async move { account_workload(&handler, 2_100).await })
        })
        .collect();
    // Kill the projector 20 times at varying points while events keep arriving.
    for round in 0..20u64 {
        let projector = start_projector(&pool, &kafka, Arc::new(Accounts), &metrics).await;
        tokio::time::sleep(Duration::from_millis(300 + (round * 389) % 1_100)).await;
        projector.kill().await;
    }
    let mut ids = Vec::new();
    for writer in writers {
        ids.extend(writer.await.expect("workload"));
    }
    let events: i64 = sqlx::query_scalar("SELECT count(*) FROM events").fetch_one(&pool).await.expect("count");
    assert!(events >= 20_000, "{events} events");
    let projector = start_projector(&pool, &kafka, Arc::new(Accounts), &metrics).await;
    until_consistent(&pool, &handler, &ids, Duration::from_secs(180)).await;
    let label = ProjectorMetrics::label("accounts");
    assert_eq!(metrics.parked.get_or_create(&label).get(), 0, "nothing parked");
    projector.stop().await.expect("clean stop");
    relay.stop().await;
}

/// Items with stock movements and reservations (some rejected, released, committed),
/// and orders through every state, placed by `accounts` (approved ones can order).
async fn commerce_workload(handler: &CommandHandler, accounts: &[Uuid]) -> (Vec<String>, Vec<Uuid>) {
    let metadata = EventMetadata::default();
    let mut store = handler.store().clone();
    let mut skus = Vec::new();
    for n in 0..12 {
        let sku = format!("SKU-{n}");
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
                .execute::<InventoryItem, _>(&mut store, &inventory_stream(&sku), None, &metadata, |_| command.clone())
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
                .execute::<InventoryItem, _>(&mut store, &inventory_stream(&sku), None, &metadata, |_| reserve.clone())
                .await
                .expect("reserve");
            let settle = match r {
                0 => Some(InventoryCommand::Release { reservation_id, reason: None }),
                1 => Some(InventoryCommand::Commit { reservation_id }),
                _ => None,
            };
            if let Some(settle) = settle {
                handler
                    .execute::<InventoryItem, _>(&mut store, &inventory_stream(&sku), None, &metadata, |_| {
                        settle.clone()
                    })
                    .await
                    .expect("settle");
            }
        }
        skus.push(sku);
    }
    let mut orders = Vec::new();
    for (n, account_id) in accounts.iter().enumerate() {
        let account = handler.load::<Account>(&account_stream(*account_id)).await.expect("account").state;
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
            let item =
                handler.load::<InventoryItem>(&inventory_stream(&line.sku)).await.expect("item").state.expect("exists");
            catalogue.insert(line.sku.clone(), item);
        }
        let order_id = Uuid::now_v7();
        let place = OrderCommand::Place { order_id, account_id: *account_id, account, lines, catalogue };
        handler
            .execute::<Order, _>(&mut store, &order_stream(order_id), None, &metadata, |_| place.clone())
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
            handler
                .execute::<Order, _>(&mut store, &order_stream(order_id), None, &metadata, |_| command.clone())
                .await
                .expect("transition");
        }
        orders.push(order_id);
    }
    (skus, orders)
}

fn order_status_name(status: &OrderStatus) -> &'static str {
    match status {
        OrderStatus::AwaitingApproval => "awaiting_approval",
        OrderStatus::Placed => "placed",
        OrderStatus::Approved => "approved",
        OrderStatus::Rejected => "rejected",
        OrderStatus::Confirmed => "confirmed",
        OrderStatus::Cancelled => "cancelled",
        OrderStatus::Shipped => "shipped",
        OrderStatus::Delivered => "delivered",
    }
}

fn reservation_status_name(status: &ReservationStatus) -> &'static str {
    match status {
        ReservationStatus::Held => "held",
        ReservationStatus::Released => "released",
        ReservationStatus::Committed => "committed",
        ReservationStatus::Expired => "expired",
    }
}

/// Inventory and order rows equal the write model's state.
async fn commerce_matches_the_event_store(
    pool: &PgPool,
    handler: &CommandHandler,
    skus: &[String],
    orders: &[Uuid],
) -> Result<(), String> {
    let fail = |e: sqlx::Error| e.to_string();
    for sku in skus {
        let loaded = handler.load::<InventoryItem>(&inventory_stream(sku)).await.map_err(|e| e.to_string())?;
        let item = loaded.state.ok_or("no item")?;
        let row: Option<(i64, i64, i64, i64)> =
            sqlx::query_as("SELECT on_hand, reserved, available, version FROM read.inventory_items WHERE sku = $1")
                .bind(sku)
                .fetch_optional(pool)
                .await
                .map_err(fail)?;
        let expected = (item.on_hand, item.reserved(), item.available(), loaded.version);
        if row != Some(expected) {
            return Err(format!("{sku}: expected {expected:?}, read model has {row:?}"));
        }
        let mut reservations: Vec<(Uuid, String)> = sqlx::query_as(
            "SELECT reservation_id, status FROM read.inventory_reservations WHERE sku = $1 AND status <> 'rejected' ORDER BY reservation_id",
        ).bind(sku).fetch_all(pool).await.map_err(fail)?;
        reservations.sort();
        let mut expected: Vec<(Uuid, String)> =
            item.reservations.iter().map(|(id, r)| (*id, reservation_status_name(&r.status).to_string())).collect();
        expected.sort();
        if reservations != expected {
            return Err(format!("{sku} reservations: expected {expected:?}, read model has {reservations:?}"));
        }
        let rejected: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM read.inventory_reservations WHERE sku = $1 AND status = 'rejected'",
        )
        .bind(sku)
        .fetch_one(pool)
        .await
        .map_err(fail)?;
        if rejected != item.rejected_reservations.len() as i64 {
            return Err(format!(
                "{sku}: {rejected} rejected reservations, expected {}",
                item.rejected_reservations.len()
            ));
        }
    }
    for order_id in orders {
        let loaded = handler.load::<Order>(&order_stream(*order_id)).await.map_err(|e| e.to_string())?;
        let order = loaded.state.ok_or("no order")?;
        let row: Option<(String, i64, i32, i64, Uuid)> = sqlx::query_as(
            "SELECT status, total_minor, line_count, version, account_id FROM read.orders WHERE order_id = $1",
        )
        .bind(order_id)
        .fetch_optional(pool)
        .await
        .map_err(fail)?;
        let expected = (
            order_status_name(&order.status).to_string(),
            order.total.amount_minor,
            order.lines.len() as i32,
            loaded.version,
            order.account_id,
        );
        if row.as_ref() != Some(&expected) {
            return Err(format!("order {order_id}: expected {expected:?}, read model has {row:?}"));
        }
        let lines: Vec<(String, i64)> =
            sqlx::query_as("SELECT sku, quantity FROM read.order_lines WHERE order_id = $1 ORDER BY line_no")
                .bind(order_id)
                .fetch_all(pool)
                .await
                .map_err(fail)?;
        let expected_lines: Vec<(String, i64)> = order.lines.iter().map(|l| (l.sku.clone(), l.quantity)).collect();
        if lines != expected_lines {
            return Err(format!("order {order_id} lines: expected {expected_lines:?}, read model has {lines:?}"));
        }
        let history: i64 = sqlx::query_scalar("SELECT count(*) FROM read.order_status_history WHERE order_id = $1")
            .bind(order_id)
            .fetch_one(pool)
            .await
            .map_err(fail)?;
        if history != loaded.version {
            return Err(format!("order {order_id}: {history} history rows for {} events", loaded.version));
        }
    }
    Ok(())
}

#[sqlx::test(migrator = "vectis_event_store::MIGRATOR")]
async fn every_read_model_equals_the_fold_after_a_mixed_workload(pool: PgPool) {
    let kafka = fresh_topics().await.expect("topics");
    let handler = CommandHandler::new(event_store(pool.clone()));
    let relay = RelayHandle::start(pool.clone(), &kafka, 500);
    let metrics = ProjectorMetrics::default();
    let mut projectors = Vec::new();
    for projection in read_models::all() {
        projectors.push(start_projector(&pool, &kafka, projection, &metrics).await);
    }
    let accounts = account_workload(&handler, 20).await;
    let (skus, orders) = commerce_workload(&handler, &accounts).await;
    assert!(orders.len() >= 8, "the workload places orders in every state");

    until_consistent(&pool, &handler, &accounts, Duration::from_secs(60)).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while let Err(difference) = commerce_matches_the_event_store(&pool, &handler, &skus, &orders).await {
        assert!(tokio::time::Instant::now() < deadline, "did not converge: {difference}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let events: i64 = sqlx::query_scalar("SELECT count(*) FROM events").fetch_one(&pool).await.expect("count");
    let applied: u64 = ["accounts", "inventory", "orders"]
        .iter()
        .map(|p| metrics.applied.get_or_create(&ProjectorMetrics::label(p)).get())
        .sum();
    assert_eq!(applied, events as u64, "every event applied exactly once");
    for projector in projectors {
        projector.stop().await.expect("clean stop");
    }
    relay.stop().await;
}

#[sqlx::test(migrator = "vectis_event_store::MIGRATOR")]
async fn the_projectors_process_projects_and_serves_metrics_and_readiness(pool: PgPool) {
    use vectis_projectors::process::{ProjectorsProcess, ProjectorsSettings};
    let kafka = fresh_topics().await.expect("topics");
    let mut settings = ProjectorsSettings::from_env().expect("settings");
    settings.store.kafka = kafka.clone();
    settings.ops_addr = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    settings.lag_interval = Duration::from_millis(200);
    let search_dir = std::env::temp_dir().join(format!("vectis-process-test-{}", Uuid::now_v7().simple()));
    settings.search = vectis_projectors::search::SearchSettings::Embedded { root: search_dir.clone() };
    let shutdown = vectis_runtime::Shutdown::new();
    let process = ProjectorsProcess::build_with_pool(settings, pool.clone(), shutdown.clone()).await.expect("builds");
    let addr = process.ops_addr();
    let running = tokio::spawn(process.run_until_stopped());
    let relay = RelayHandle::start(pool.clone(), &kafka, 500);
    let handler = CommandHandler::new(event_store(pool.clone()));
    let ids = account_workload(&handler, 5).await;
    until_consistent(&pool, &handler, &ids, Duration::from_secs(60)).await;

    assert_eq!(http_get(addr, "/health").await.0, 200);
    let (status, ready) = http_get(addr, "/ready").await;
    assert_eq!(status, 200, "{ready}");
    let events: i64 = sqlx::query_scalar("SELECT count(*) FROM events").fetch_one(&pool).await.expect("count");
    // Caught up: every partition of every projection at lag 0, in events and seconds:
    // 3 read models and 3 search indexes on 6 partitions per topic (search orders
    // reads orders and accounts).
    let partitions = 6 * (3 + 2 + 1 + 1);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (_, metrics) = http_get(addr, "/metrics").await;
        let lag_events: Vec<&str> =
            metrics.lines().filter(|l| l.starts_with("vectis_projection_lag_events{")).collect();
        let caught_up = lag_events.len() == partitions
            && lag_events.iter().all(|l| l.ends_with(" 0"))
            && metrics.contains(r#"vectis_projection_lag_seconds{projection="accounts"} 0.0"#)
            && metrics.contains(r#"vectis_search_freshness_seconds{index="accounts"} 0.0"#)
            && metrics.contains(r#"vectis_search_documents{index="accounts"} 5"#);
        if caught_up {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "lag never reported 0 for {partitions} partitions:\n{metrics}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (_, metrics) = http_get(addr, "/metrics").await;
    for line in [
        format!(r#"vectis_projection_events_applied_total{{projection="accounts"}} {events}"#),
        "vectis_projection_end_to_end_latency_seconds_bucket".to_string(),
        "vectis_projection_batch_duration_seconds_count".to_string(),
        "vectis_db_pool_connections_in_use".to_string(),
        r#"vectis_search_documents_indexed_total{index="accounts"}"#.to_string(),
        r#"vectis_search_documents{index="products"} 0"#.to_string(),
    ] {
        assert!(metrics.contains(&line), "/metrics lacks {line}:\n{metrics}");
    }
    shutdown.trigger();
    tokio::time::timeout(Duration::from_secs(30), running).await.expect("stops").expect("task").expect("clean exit");
    relay.stop().await;
    let _ = std::fs::remove_dir_all(search_dir);
}

#[sqlx::test(migrator = "vectis_event_store::MIGRATOR")]
async fn ready_reports_a_configured_meilisearch_that_does_not_answer(pool: PgPool) {
    use vectis_projectors::{
        process::{ProjectorsProcess, ProjectorsSettings},
        search::SearchSettings,
    };
    let kafka = fresh_topics().await.expect("topics");
    let mut settings = ProjectorsSettings::from_env().expect("settings");
    settings.store.kafka = kafka.clone();
    settings.ops_addr = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    settings.projections = vec!["accounts".into()];
    // Nothing listens on the discard port.
    settings.search = SearchSettings::Meilisearch { url: "http://127.0.0.1:9".into(), master_key: None };
    let shutdown = vectis_runtime::Shutdown::new();
    let process = ProjectorsProcess::build_with_pool(settings, pool.clone(), shutdown.clone()).await.expect("builds");
    let (status, body) = http_get(process.ops_addr(), "/ready").await;
    assert_eq!(status, 503, "{body}");
    let body: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(body["checks"]["meilisearch"]["status"], "failing", "{body}");
    assert_eq!(body["checks"]["postgres"]["status"], "ok", "{body}");
    let running = tokio::spawn(process.run_until_stopped());
    shutdown.trigger();
    tokio::time::timeout(Duration::from_secs(30), running).await.expect("stops").expect("task").expect("clean exit");
}

/// Produces records as-is (same key, so the same partition as the relay's).
async fn read_model_snapshot(pool: &PgPool) -> Vec<AccountRow> {
    sqlx::query_as("SELECT * FROM read.accounts ORDER BY account_id").fetch_all(pool).await.expect("rows")
}

#[sqlx::test(migrator = "vectis_event_store::MIGRATOR")]
async fn republished_duplicates_change_nothing(pool: PgPool) {
    let kafka = fresh_topics().await.expect("topics");
    let handler = CommandHandler::new(event_store(pool.clone()));
    let relay = RelayHandle::start(pool.clone(), &kafka, 500);
    let metrics = ProjectorMetrics::default();
    let projector = start_projector(&pool, &kafka, Arc::new(Accounts), &metrics).await;
    let ids = account_workload(&handler, 10).await;
    until_consistent(&pool, &handler, &ids, Duration::from_secs(60)).await;
    let before = read_model_snapshot(&pool).await;

    // What a relay crash between publishing and advancing its cursor does: the same
    // records again.
    let events: i64 = sqlx::query_scalar("SELECT count(*) FROM events").fetch_one(&pool).await.expect("count");
    let mut reader = vectis_tests::TopicReader::new(&kafka).expect("reader");
    let copies: Vec<(String, Vec<u8>)> = reader
        .read_at_least(events as usize, Duration::from_secs(30))
        .await
        .iter()
        .map(|r| (r.key.clone().expect("key"), r.payload.clone()))
        .collect();
    produce(&kafka, vectis_schemas::topics::ACCOUNTS.name, &copies).await;
    let label = ProjectorMetrics::label("accounts");
    vectis_tests::eventually(Duration::from_secs(30), "every copy skipped", || {
        metrics.duplicates.get_or_create(&label).get() == events as u64
    })
    .await;
    assert_eq!(read_model_snapshot(&pool).await, before, "duplicates changed nothing");
    assert_eq!(metrics.applied.get_or_create(&label).get(), events as u64);
    projector.stop().await.expect("clean stop");
    relay.stop().await;
}

#[sqlx::test(migrator = "vectis_event_store::MIGRATOR")]
async fn a_poison_record_parks_its_stream_and_other_streams_go_on(pool: PgPool) {
    let kafka = fresh_topics().await.expect("topics");
    let handler = CommandHandler::new(event_store(pool.clone()));
    let relay = RelayHandle::start(pool.clone(), &kafka, 500);
    let metrics = ProjectorMetrics::default();
    let projector = start_projector(&pool, &kafka, Arc::new(Accounts), &metrics).await;
    let ids = account_workload(&handler, 2).await;
    until_consistent(&pool, &handler, &ids, Duration::from_secs(60)).await;
    let (poisoned, healthy) = (ids[0], ids[1]);

    // A record of the first account's stream that is not an event at all...
    produce(&kafka, vectis_schemas::topics::ACCOUNTS.name, &[(account_stream(poisoned), b"{not json".to_vec())]).await;
    // ...then real events for both accounts.
    let metadata = EventMetadata::default();
    let mut store = handler.store().clone();
    for id in [poisoned, healthy] {
        let change = AccountCommand::ChangeCreditLimit { credit_limit: Money::new(777_777, "EUR") };
        handler
            .execute::<Account, _>(&mut store, &account_stream(id), None, &metadata, |_| change.clone())
            .await
            .expect("command");
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let limits: Vec<(Uuid, i64)> = sqlx::query_as("SELECT account_id, credit_limit_minor FROM read.accounts")
            .fetch_all(&pool)
            .await
            .expect("rows");
        let parked: i64 = sqlx::query_scalar("SELECT count(*) FROM projection_dead_letters WHERE status = 'parked'")
            .fetch_one(&pool)
            .await
            .expect("count");
        if limits.contains(&(healthy, 777_777)) && parked == 2 {
            assert!(!limits.contains(&(poisoned, 777_777)), "the poisoned stream's later event waits");
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "limits {limits:?}, {parked} parked");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let letters: Vec<(String, Option<i64>, String)> =
        sqlx::query_as("SELECT stream_id, stream_version, error FROM projection_dead_letters ORDER BY \"offset\"")
            .fetch_all(&pool)
            .await
            .expect("letters");
    assert_eq!(letters.len(), 2);
    assert!(letters.iter().all(|(stream, _, _)| *stream == account_stream(poisoned)));
    assert!(letters[0].2.starts_with("undecodable"), "{letters:?}");
    assert!(letters[1].2.contains("waiting behind"), "{letters:?}");
    assert_eq!(metrics.parked.get_or_create(&ProjectorMetrics::label("accounts")).get(), 2);
    projector.stop().await.expect("clean stop");
    relay.stop().await;
}

/// A new broker, as consumers with old offsets see it: the topics are recreated empty.
/// The projector holds the partitions whose checkpoint is beyond the new log instead of
/// waiting to skip to it; the relay refuses to start the log mid-way; `republish`
/// (refused while anything runs) rewinds the relay and discards the old checkpoints;
/// then the read model is the fold of the event store again, every event applied once.
#[sqlx::test(migrator = "vectis_event_store::MIGRATOR")]
async fn a_recreated_log_is_held_and_reported_until_republished_from_the_event_store(pool: PgPool) {
    let kafka = fresh_topics().await.expect("topics");
    let handler = CommandHandler::new(event_store(pool.clone()));
    let relay = RelayHandle::start(pool.clone(), &kafka, 500);
    let metrics = ProjectorMetrics::default();
    let projector = start_projector(&pool, &kafka, Arc::new(Accounts), &metrics).await;
    let mut ids = account_workload(&handler, 30).await;
    until_consistent(&pool, &handler, &ids, Duration::from_secs(60)).await;
    projector.stop().await.expect("clean stop");
    relay.stop().await;
    let applied_before = metrics.applied.get_or_create(&ProjectorMetrics::label("accounts")).get();

    recreate_topics(&kafka).await.expect("recreate the topics");
    let projector = start_projector(&pool, &kafka, Arc::new(Accounts), &metrics).await;
    let probe = LagProbe::new(&kafka).expect("lag probe");
    let target = Target { projection: "accounts", version: 1 };
    // A topic created a moment ago may not be listed with its partitions yet.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let lag = loop {
        match probe.measure(&pool, &target, Accounts.topics()).await {
            Ok(lag) => break lag,
            Err(error) => assert!(tokio::time::Instant::now() < deadline, "lag: {error}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(!lag.beyond_log().is_empty(), "the checkpoints are beyond the recreated log: {lag:?}");
    assert!(lag.beyond_log().iter().all(|p| p.high_watermark == 0));

    // What reaches a held partition is not read: these records do not decode, so a
    // projector that read one would park it.
    let sentinels: Vec<(String, Vec<u8>)> =
        (0..6).map(|n| (format!("sentinel-{n}"), b"not an event envelope".to_vec())).collect();
    produce(&kafka, vectis_schemas::topics::ACCOUNTS.name, &sentinels).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let label = ProjectorMetrics::label("accounts");
    assert_eq!(metrics.applied.get_or_create(&label).get(), applied_before, "nothing applied while held");
    assert_eq!(metrics.parked.get_or_create(&label).get(), 0, "nothing read while held");
    let lag = probe.measure(&pool, &target, Accounts.topics()).await.expect("lag");
    assert!(!lag.beyond_log().is_empty(), "still reported beyond the log: {lag:?}");

    let relay = RelayHandle::start(pool.clone(), &kafka, 500);
    let stopped = relay.stopped_by_itself(Duration::from_secs(30)).await;
    // The sentinels are on the topics, yet fewer records than the events published.
    let error = stopped.expect_err("the relay refuses to start the log mid-way").to_string();
    assert!(error.contains("vectis relay republish"), "{error}");
    assert!(error.contains(&format!("have taken {} records", sentinels.len())), "{error}");

    let refused = republish(&pool, &kafka, "default").await.expect_err("a projector is running");
    assert!(matches!(refused, RepublishError::ConsumersRunning(_)), "{refused}");
    projector.stop().await.expect("clean stop");
    let mut running_relay = pool.acquire().await.expect("connection");
    assert!(relay::try_lock(&mut running_relay, "default").await.expect("lock"), "as a running relay does");
    let refused = republish(&pool, &kafka, "default").await.expect_err("the relay is running");
    assert!(matches!(refused, RepublishError::RelayRunning(_)), "{refused}");
    running_relay.detach().close().await.expect("the lock is released");
    let last: i64 = sqlx::query_scalar("SELECT max(global_position) FROM events").fetch_one(&pool).await.expect("max");
    let done = republish(&pool, &kafka, "default").await.expect("republish");
    assert_eq!(done.relay_cursor_was, last);
    assert!(done.checkpoints_discarded > 0);

    let relay = RelayHandle::start(pool.clone(), &kafka, 500);
    let projector = start_projector(&pool, &kafka, Arc::new(Accounts), &metrics).await;
    ids.extend(account_workload(&handler, 10).await);
    until_consistent(&pool, &handler, &ids, Duration::from_secs(60)).await;
    let events: i64 = sqlx::query_scalar("SELECT count(*) FROM events").fetch_one(&pool).await.expect("count");
    assert_eq!(metrics.applied.get_or_create(&label).get(), events as u64, "every event applied once");
    assert!(metrics.applied.get_or_create(&label).get() > applied_before);
    // Read from the start once republished: the undecodable records are parked, no more.
    assert_eq!(metrics.parked.get_or_create(&label).get(), sentinels.len() as u64, "only the sentinels parked");
    let lag = probe.measure(&pool, &target, Accounts.topics()).await.expect("lag");
    assert!(lag.beyond_log().is_empty() && lag.events() == 0, "{lag:?}");
    projector.stop().await.expect("clean stop");
    relay.stop().await;
}
