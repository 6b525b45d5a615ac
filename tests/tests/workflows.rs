//! The order lifecycle end to end: commands over HTTP (the command API's router), the
//! relay and the real broker, the workflows process on its consumer group, its steps
//! run back through the command side, the inventory read model.

use std::{sync::Arc, time::Duration};

use axum::body::Body;
use serde_json::{json, Value};
use sqlx::PgPool;
use uuid::Uuid;
use vectis_command_api::{
    domain::{InventoryItem, Order, OrderStatus},
    handling::CommandHandler,
};
use vectis_consumer::{metrics::ConsumerMetrics, runtime::RunningConsumer};
use vectis_projectors::read_models;
use vectis_runtime::Shutdown;
use vectis_schemas::StreamId;
use vectis_test_support::{
    command_api::{command_api, send, Answer, TestApi, JSON},
    event_store, eventually, fresh_topics, start_projector, RelayHandle,
};
use vectis_workflows::process::{WorkflowsProcess, WorkflowsSettings};

/// The stack one test drives.
struct Stack {
    api: TestApi,
    handler: CommandHandler,
    pool: PgPool,
    shutdown: Shutdown,
    workflows: tokio::task::JoinHandle<anyhow::Result<()>>,
    projector: RunningConsumer,
    relay: RelayHandle,
    kafka: vectis_event_store::kafka::KafkaSettings,
}

impl Stack {
    async fn start(pool: PgPool, reservation_ttl: Duration) -> Self {
        let kafka = fresh_topics().await.expect("topics");
        let relay = RelayHandle::start(pool.clone(), &kafka, 500);
        let (api, _) = command_api(pool.clone()).await;
        let mut settings = WorkflowsSettings::from_env().expect("settings");
        settings.store.kafka = kafka.clone();
        settings.ops_addr = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
        settings.reservation_ttl = reservation_ttl;
        settings.timer_poll = Duration::from_millis(100);
        settings.outbox.max_attempts = 2;
        settings.outbox.retry_backoff = Duration::from_millis(50);
        let shutdown = Shutdown::new();
        let process =
            WorkflowsProcess::build_with_pool(settings, pool.clone(), shutdown.clone()).await.expect("builds");
        let workflows = tokio::spawn(process.run_until_stopped());
        let inventory = read_models::all().into_iter().find(|p| p.name() == "inventory").expect("inventory");
        let projector = start_projector(&pool, &kafka, inventory, &ConsumerMetrics::default()).await;
        let handler = CommandHandler::new(event_store(pool.clone()));
        Self { api, handler, pool, shutdown, workflows, projector, relay, kafka }
    }

    async fn stop(self) {
        self.shutdown.trigger();
        self.workflows.await.expect("joined").expect("the workflows process stops cleanly");
        self.projector.stop().await.expect("projector stops");
        self.relay.stop().await;
    }

    async fn post(&self, uri: &str, body: Value) -> Answer {
        send(&self.api, "POST", uri, &[JSON], body.to_string()).await
    }

    /// An approved account that may order up to `credit` euro cents.
    async fn account(&self, credit: i64) -> Uuid {
        let created = self
            .post(
                "/v1/accounts",
                json!({"name": "Acme", "email": "buyer@acme.example",
                       "credit_limit": {"amount_minor": credit, "currency": "EUR"},
                       "approval_threshold": {"amount_minor": credit, "currency": "EUR"}}),
            )
            .await;
        assert_eq!(created.status, 201, "{}", created.json());
        let id = created.json()["stream_id"].as_str().expect("id").trim_start_matches("account-").to_string();
        let approved = send(&self.api, "POST", &format!("/v1/accounts/{id}/approve"), &[], Body::empty()).await;
        assert_eq!(approved.status, 200, "{}", approved.json());
        id.parse().expect("uuid")
    }

    async fn item(&self, sku: &str, on_hand: i64) {
        let created = self
            .post(
                "/v1/inventory/items",
                json!({"sku": sku, "name": sku, "unit_price": {"amount_minor": 10, "currency": "EUR"}}),
            )
            .await;
        assert_eq!(created.status, 201, "{}", created.json());
        let received = self.post(&format!("/v1/inventory/items/{sku}/receipts"), json!({"quantity": on_hand})).await;
        assert_eq!(received.status, 201, "{}", received.json());
    }

    async fn place(&self, account: Uuid, lines: &[(&str, i64)]) -> Uuid {
        let lines: Vec<Value> = lines.iter().map(|(sku, quantity)| json!({"sku": sku, "quantity": quantity})).collect();
        let placed = self.post("/v1/orders", json!({"account_id": account, "lines": lines})).await;
        assert_eq!(placed.status, 201, "{}", placed.json());
        placed.json()["stream_id"].as_str().expect("id").trim_start_matches("order-").parse().expect("uuid")
    }

    async fn order(&self, id: Uuid) -> Order {
        self.handler.load::<Order>(&StreamId::order(id)).await.expect("order").state.expect("placed")
    }

    /// Waits until the order's lifecycle has brought it to `status`.
    async fn until_order(&self, id: Uuid, status: OrderStatus) -> Order {
        eventually(Duration::from_secs(30), &format!("order {id} to be {status}"), || async {
            let order = self.order(id).await;
            if order.status == status {
                Ok(order)
            } else {
                Err(format!("it is {}", order.status))
            }
        })
        .await
    }

    /// The item as the write model folds it: (on hand, reserved).
    async fn stock(&self, sku: &str) -> (i64, i64) {
        let item = self.handler.load::<InventoryItem>(&StreamId::inventory_item(sku).expect("sku")).await;
        let item = item.expect("item").state.expect("exists");
        (item.on_hand, item.reserved())
    }

    /// Waits until the write model and `read.inventory_items` both show (on hand, reserved).
    async fn until_stock(&self, sku: &str, expected: (i64, i64)) {
        eventually(Duration::from_secs(30), &format!("{sku} to show (on hand, reserved) {expected:?}"), || async {
            let folded = self.stock(sku).await;
            let read: Option<(i64, i64)> =
                sqlx::query_as("SELECT on_hand, reserved FROM read.inventory_items WHERE sku = $1")
                    .bind(sku)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(|e| e.to_string())?;
            if folded == expected && read == Some(expected) {
                Ok(())
            } else {
                Err(format!("the write model has {folded:?}, read.inventory_items {read:?}"))
            }
        })
        .await
    }

    /// The order's rejection: (reason, by whom).
    async fn rejection(&self, order: Uuid) -> (String, String) {
        sqlx::query_as(
            "SELECT data->>'reason', data->>'rejected_by' FROM events
              WHERE stream_id = $1 AND event_type = 'OrderRejected'",
        )
        .bind(format!("order-{order}"))
        .fetch_one(&self.pool)
        .await
        .expect("the order's rejection")
    }

    /// The event types of a stream, in order.
    async fn events_of(&self, stream: &str) -> Vec<String> {
        sqlx::query_scalar("SELECT event_type FROM events WHERE stream_id = $1 ORDER BY stream_version")
            .bind(stream)
            .fetch_all(&self.pool)
            .await
            .expect("events")
    }
}

#[sqlx::test(migrator = "vectis_event_store::MIGRATOR")]
async fn an_order_within_stock_is_reserved_becomes_confirmable_and_shipping_takes_it_off_hand(pool: PgPool) {
    let stack = Stack::start(pool.clone(), Duration::from_secs(900)).await;
    let account = stack.account(1_000_000).await;
    stack.item("BOLT", 100).await;
    stack.item("NUT", 50).await;
    let order = stack.place(account, &[("BOLT", 10), ("NUT", 5)]).await;
    stack.until_order(order, OrderStatus::Confirmable).await;
    stack.until_stock("BOLT", (100, 10)).await;
    stack.until_stock("NUT", (50, 5)).await;

    // The lifecycle's commands carry the order's correlation and their trigger.
    let (placed_id, correlation): (Uuid, Uuid) = sqlx::query_as(
        "SELECT event_id, (metadata->>'correlation_id')::uuid FROM events
          WHERE stream_id = $1 AND event_type = 'OrderPlaced'",
    )
    .bind(format!("order-{order}"))
    .fetch_one(&pool)
    .await
    .expect("placed");
    let reserved: Vec<(Option<Uuid>, Uuid)> = sqlx::query_as(
        "SELECT (metadata->>'causation_id')::uuid, (metadata->>'correlation_id')::uuid
               FROM events WHERE event_type = 'StockReserved'",
    )
    .fetch_all(&pool)
    .await
    .expect("reserved");
    assert_eq!(reserved, vec![(Some(placed_id), correlation); 2], "each line reserved once, caused by the placement");

    let confirmed = send(&stack.api, "POST", &format!("/v1/orders/{order}/confirm"), &[], Body::empty()).await;
    assert_eq!(confirmed.status, 200, "{}", confirmed.json());
    let shipped =
        stack.post(&format!("/v1/orders/{order}/ship"), json!({"carrier": "DHL", "tracking_number": "JD1"})).await;
    assert_eq!(shipped.status, 200, "{}", shipped.json());
    stack.until_stock("BOLT", (90, 0)).await;
    stack.until_stock("NUT", (45, 0)).await;
    assert_eq!(
        stack.events_of("inventory-BOLT").await,
        ["ItemCreated", "StockReceived", "StockReserved", "ReservationCommitted"]
    );
    stack.stop().await;
}

#[sqlx::test(migrator = "vectis_event_store::MIGRATOR")]
async fn an_order_for_more_than_is_on_hand_is_rejected_with_the_reason_and_its_other_lines_released(pool: PgPool) {
    let stack = Stack::start(pool.clone(), Duration::from_secs(900)).await;
    let account = stack.account(1_000_000).await;
    stack.item("BOLT", 100).await;
    stack.item("NUT", 50).await;
    let order = stack.place(account, &[("NUT", 5), ("BOLT", 1000)]).await;
    stack.until_order(order, OrderStatus::Rejected).await;
    let (reason, _) = stack.rejection(order).await;
    assert_eq!(reason, "insufficient stock for SKU BOLT: 1000 requested, 100 available");
    stack.until_stock("NUT", (50, 0)).await;
    stack.until_stock("BOLT", (100, 0)).await;
    let early = send(&stack.api, "POST", &format!("/v1/orders/{order}/confirm"), &[], Body::empty()).await;
    assert_eq!(early.status, 409);
    assert_eq!(early.json()["detail"], format!("cannot confirm order {order}: it is rejected"));
    stack.stop().await;
}

#[sqlx::test(migrator = "vectis_event_store::MIGRATOR")]
async fn a_cancelled_order_gives_its_units_back(pool: PgPool) {
    let stack = Stack::start(pool.clone(), Duration::from_secs(900)).await;
    let account = stack.account(1_000_000).await;
    stack.item("BOLT", 100).await;
    let order = stack.place(account, &[("BOLT", 30)]).await;
    stack.until_order(order, OrderStatus::Confirmable).await;
    stack.until_stock("BOLT", (100, 30)).await;
    let cancelled = stack.post(&format!("/v1/orders/{order}/cancel"), json!({"reason": "changed mind"})).await;
    assert_eq!(cancelled.status, 200, "{}", cancelled.json());
    stack.until_stock("BOLT", (100, 0)).await;
    assert_eq!(stack.events_of("inventory-BOLT").await.last().map(String::as_str), Some("ReservationReleased"));
    stack.stop().await;
}

#[sqlx::test(migrator = "vectis_event_store::MIGRATOR")]
async fn an_unconfirmed_order_whose_reservation_expires_is_rejected_and_its_stock_returns(pool: PgPool) {
    let stack = Stack::start(pool.clone(), Duration::from_secs(2)).await;
    let account = stack.account(1_000_000).await;
    stack.item("BOLT", 100).await;
    let order = stack.place(account, &[("BOLT", 30)]).await;
    stack.until_order(order, OrderStatus::Confirmable).await;
    stack.until_order(order, OrderStatus::Rejected).await;
    stack.until_stock("BOLT", (100, 0)).await;
    let (reason, rejected_by) = stack.rejection(order).await;
    assert_eq!((reason.as_str(), rejected_by.as_str()), ("reservation expired", "workflow:order_lifecycle"));
    assert_eq!(
        stack.events_of("inventory-BOLT").await,
        ["ItemCreated", "StockReceived", "StockReserved", "ReservationExpired"],
        "expired once"
    );
    let late = send(&stack.api, "POST", &format!("/v1/orders/{order}/confirm"), &[], Body::empty()).await;
    assert_eq!(late.status, 409);
    stack.stop().await;
}

#[sqlx::test(migrator = "vectis_event_store::MIGRATOR")]
async fn fifty_orders_for_ten_units_exactly_ten_become_confirmable(pool: PgPool) {
    let stack = Arc::new(Stack::start(pool.clone(), Duration::from_secs(900)).await);
    let account = stack.account(100_000_000).await;
    stack.item("BOLT", 10).await;
    let orders: Vec<Uuid> = futures::future::join_all((0..50).map(|_| {
        let stack = stack.clone();
        async move { stack.place(account, &[("BOLT", 1)]).await }
    }))
    .await;
    let settled = eventually(Duration::from_secs(60), "every order to be confirmable or rejected", || async {
        let mut confirmable = 0;
        let mut rejected = 0;
        for id in &orders {
            match stack.order(*id).await.status {
                OrderStatus::Confirmable => confirmable += 1,
                OrderStatus::Rejected => rejected += 1,
                _ => {}
            }
        }
        if confirmable + rejected == orders.len() {
            Ok((confirmable, rejected))
        } else {
            Err(format!("{confirmable} confirmable, {rejected} rejected of {}", orders.len()))
        }
    })
    .await;
    assert_eq!(settled, (10, 40));
    stack.until_stock("BOLT", (10, 10)).await;
    let never_negative: bool = sqlx::query_scalar("SELECT bool_and(available >= 0) FROM read.inventory_items")
        .fetch_one(&pool)
        .await
        .expect("q");
    assert!(never_negative);
    let stack = Arc::into_inner(stack).expect("the only handle");
    stack.stop().await;
}

/// A workflow version's rows, comparable across versions.
async fn lifecycle_rows(pool: &PgPool, version: i32) -> (Vec<(String, String, Value)>, Vec<(String, String, String)>) {
    let schema = vectis_read_side::schema_name("order_lifecycle", version);
    let instances =
        sqlx::query_as(&format!("SELECT instance_id, status, state FROM {schema}.instances ORDER BY instance_id"))
            .fetch_all(pool)
            .await
            .expect("instances");
    let timers = sqlx::query_as(&format!(
        "SELECT instance_id, name, due_at::text FROM {schema}.timers ORDER BY instance_id, name"
    ))
    .fetch_all(pool)
    .await
    .expect("timers");
    (instances, timers)
}

async fn count(pool: &PgPool, table: &str) -> i64 {
    sqlx::query_scalar(&format!("SELECT count(*) FROM {table}")).fetch_one(pool).await.expect("count")
}

#[sqlx::test(migrator = "vectis_event_store::MIGRATOR")]
async fn rebuilding_the_lifecycle_state_from_the_log_issues_no_command_and_fires_no_timer(pool: PgPool) {
    use vectis_consumer::{runtime::GroupConsumer, settings::ConsumerSettings, tables};
    use vectis_workflows::{
        handler::{Wakers, WorkflowHandler},
        instances::table_set,
        order_lifecycle::OrderLifecycle,
        process::ORDER_LIFECYCLE_VIEWS,
        timers::Scheduler,
    };
    let stack = Stack::start(pool.clone(), Duration::from_secs(900)).await;
    let account = stack.account(1_000_000).await;
    stack.item("BOLT", 100).await;
    let confirmable = stack.place(account, &[("BOLT", 10)]).await;
    let short = stack.place(account, &[("BOLT", 500)]).await;
    let cancelled = stack.place(account, &[("BOLT", 5)]).await;
    stack.until_order(confirmable, OrderStatus::Confirmable).await;
    stack.until_order(short, OrderStatus::Rejected).await;
    stack.until_order(cancelled, OrderStatus::Confirmable).await;
    let answer = stack.post(&format!("/v1/orders/{cancelled}/cancel"), json!({"reason": "changed mind"})).await;
    assert_eq!(answer.status, 200);
    stack.until_stock("BOLT", (100, 10)).await;
    let live = eventually(Duration::from_secs(30), "the live version to settle", || async {
        let rows = lifecycle_rows(&pool, 1).await;
        let pending: i64 = sqlx::query_scalar("SELECT count(*) FROM workflow_outbox WHERE status = 'pending'")
            .fetch_one(&pool)
            .await
            .map_err(|e| e.to_string())?;
        let running = rows.0.iter().filter(|(_, status, _)| status == "running").count();
        if pending == 0 && running == 1 {
            Ok(rows)
        } else {
            Err(format!("{pending} steps pending, {running} instances running"))
        }
    })
    .await;
    assert_eq!(live.1.len(), 1, "the confirmable order's expiry is pending: {:?}", live.1);
    let kafka = stack.kafka.clone();
    stack.stop().await;
    let (outbox, events) = (count(&pool, "workflow_outbox").await, count(&pool, "events").await);

    // A rebuild builds version 2 from the log beside the active version 1.
    let target = vectis_read_side::Target { projection: "order_lifecycle", version: 2 };
    let mut conn = pool.acquire().await.expect("connection");
    tables::create_tables(&mut conn, &table_set(ORDER_LIFECYCLE_VIEWS), &target).await.expect("tables");
    sqlx::query("UPDATE projections SET building_version = 2 WHERE name = 'order_lifecycle'")
        .execute(&mut *conn)
        .await
        .expect("building");
    let lifecycle = OrderLifecycle::new(Duration::from_secs(900));
    let handler = Arc::new(WorkflowHandler::new(lifecycle.clone(), Wakers::default()));
    let rebuild =
        GroupConsumer::new(pool.clone(), handler, 2, ConsumerSettings::new(kafka), ConsumerMetrics::default())
            .start()
            .expect("starts");
    let rebuilt = eventually(Duration::from_secs(30), "version 2 to hold the live version's state", || async {
        let rows = lifecycle_rows(&pool, 2).await;
        if rows.0 == live.0 && rows.1 == live.1 {
            Ok(rows)
        } else {
            Err(format!("{} instances, {} timers rebuilt", rows.0.len(), rows.1.len()))
        }
    })
    .await;
    // Its timer overdue: still, only the active version fires.
    sqlx::query("UPDATE proj_order_lifecycle_v2.timers SET due_at = now() - interval '1 minute'")
        .execute(&mut *conn)
        .await
        .expect("overdue");
    let scheduler = Scheduler {
        pool: pool.clone(),
        workflow: lifecycle,
        wake: Default::default(),
        outbox: Default::default(),
        poll: Duration::from_millis(100),
        batch: 10,
    };
    assert_eq!(scheduler.fire_due().await.expect("fires"), Some(0), "the active version has nothing due");
    tokio::time::sleep(Duration::from_secs(1)).await;
    rebuild.stop().await.expect("stops");
    assert_eq!(rebuilt.1.len(), 1);
    assert_eq!(count(&pool, "workflow_outbox").await, outbox, "the rebuild decided no step anew");
    assert_eq!(count(&pool, "events").await, events, "nothing was appended");
    assert_eq!(count(&pool, "proj_order_lifecycle_v2.timers").await, 1, "its timer did not fire");
}

#[sqlx::test(migrator = "vectis_event_store::MIGRATOR")]
async fn operators_list_and_show_instances_and_resolve_a_parked_step_with_the_cli(pool: PgPool) {
    use vectis_test_support::{cli, processes::binary};
    let stack = Stack::start(pool.clone(), Duration::from_secs(900)).await;
    let account = stack.account(1_000_000).await;
    stack.item("BOLT", 100).await;
    let held = stack.place(account, &[("BOLT", 10)]).await;
    let short = stack.place(account, &[("BOLT", 500)]).await;
    stack.until_order(held, OrderStatus::Confirmable).await;
    stack.until_order(short, OrderStatus::Rejected).await;
    let vectis = binary("vectis");
    let vectis = vectis.to_str().expect("path");
    let run = |args: &'static [&'static str]| cli::run(vectis, &pool, &stack.kafka, &[], args);

    let failed = eventually(Duration::from_secs(10), "the short order's instance to be failed", || async {
        let listed = run(&["workflows", "list", "--type", "order_lifecycle", "--state", "failed"]).await;
        if listed.code == 0 && listed.stdout.contains(&short.to_string()) {
            Ok(listed)
        } else {
            Err(format!("{} {}", listed.stdout, listed.stderr))
        }
    })
    .await;
    assert!(failed.stdout.contains("insufficient stock for SKU BOLT"), "{}", failed.stdout);
    assert!(!failed.stdout.contains(&held.to_string()), "{}", failed.stdout);
    let shown = cli::run(vectis, &pool, &stack.kafka, &[], &["workflows", "show", &held.to_string()]).await;
    assert_eq!(shown.code, 0, "{}", shown.stderr);
    for expected in ["order_lifecycle", "confirmable: waiting for confirmation", "[done]", "StockReserved", "expiry/0"]
    {
        assert!(shown.stdout.contains(expected), "no {expected:?} in {}", shown.stdout);
    }
    let unknown = run(&["workflows", "list", "--state", "stuck"]).await;
    assert_ne!(unknown.code, 0);
    assert!(unknown.stderr.contains("\"stuck\" is not an instance status"), "{}", unknown.stderr);

    // A step that cannot run (a command this build cannot read, as a newer build's
    // might be) parks with its instance.
    sqlx::query(
        "INSERT INTO workflow_outbox (workflow, instance_id, step, command, causation_id, correlation_id)
         VALUES ('order_lifecycle', $1, 'broken', $2, gen_random_uuid(), gen_random_uuid())",
    )
    .bind(held.to_string())
    .bind(json!({"command": "teleport", "sku": "BOLT"}))
    .execute(&pool)
    .await
    .expect("a broken step");
    let parked = eventually(Duration::from_secs(10), "the instance to be parked", || async {
        let listed = run(&["workflows", "list", "--state", "parked"]).await;
        if listed.stdout.contains(&held.to_string()) {
            return Ok(listed);
        }
        let steps: Vec<(String, String, i32, Option<String>)> =
            sqlx::query_as("SELECT step, status, attempts, last_error FROM workflow_outbox WHERE step = 'broken'")
                .fetch_all(&pool)
                .await
                .map_err(|e| e.to_string())?;
        Err(format!("{} {}; the broken step: {steps:?}", listed.stdout, listed.stderr))
    })
    .await;
    assert!(parked.stdout.contains("parked"));
    let shown = cli::run(vectis, &pool, &stack.kafka, &[], &["workflows", "show", &held.to_string()]).await;
    assert!(shown.stdout.contains("last error: unreadable command: unknown variant `teleport`"), "{}", shown.stdout);
    let discarded = cli::run(vectis, &pool, &stack.kafka, &[], &["workflows", "discard", &held.to_string()]).await;
    assert_eq!(discarded.stdout.trim(), format!("1 parked steps of {held} discarded; its later steps go on"));
    let listed = run(&["workflows", "list", "--state", "parked"]).await;
    assert!(!listed.stdout.contains(&held.to_string()), "{}", listed.stdout);
    stack.stop().await;
}
