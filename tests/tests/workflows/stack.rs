//! The stack a workflow test drives: the command API's router, the relay, the
//! workflows process and the inventory projector on fresh topics.

use std::time::Duration;

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
pub struct Stack {
    pub api: TestApi,
    pub handler: CommandHandler,
    pub pool: PgPool,
    shutdown: Shutdown,
    workflows: tokio::task::JoinHandle<anyhow::Result<()>>,
    projector: RunningConsumer,
    relay: RelayHandle,
    pub kafka: vectis_event_store::kafka::KafkaSettings,
    /// The workflows process's `/metrics`, `/health`, `/ready`.
    pub ops: std::net::SocketAddr,
}

impl Stack {
    pub async fn start(pool: PgPool, reservation_ttl: Duration) -> Self {
        Self::start_with(pool, |settings| settings.reservation_ttl = reservation_ttl).await
    }

    /// Starts the stack with the workflows' settings as `configure` leaves them.
    pub async fn start_with(pool: PgPool, configure: impl FnOnce(&mut WorkflowsSettings)) -> Self {
        let kafka = fresh_topics().await.expect("topics");
        let relay = RelayHandle::start(pool.clone(), &kafka, 500);
        let (api, _) = command_api(pool.clone()).await;
        let mut settings = WorkflowsSettings::from_env().expect("settings");
        settings.store.kafka = kafka.clone();
        settings.ops_addr = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
        configure(&mut settings);
        settings.timer_poll = Duration::from_millis(100);
        settings.outbox.max_attempts = 2;
        settings.outbox.retry_backoff = Duration::from_millis(50);
        let shutdown = Shutdown::new();
        let process =
            WorkflowsProcess::build_with_pool(settings, pool.clone(), shutdown.clone()).await.expect("builds");
        let ops = process.ops_addr();
        let workflows = tokio::spawn(process.run_until_stopped());
        let inventory = read_models::all().into_iter().find(|p| p.name() == "inventory").expect("inventory");
        let projector = start_projector(&pool, &kafka, inventory, &ConsumerMetrics::default()).await;
        let handler = CommandHandler::new(event_store(pool.clone()));
        Self { api, handler, pool, shutdown, workflows, projector, relay, kafka, ops }
    }

    pub async fn stop(self) {
        self.shutdown.trigger();
        self.workflows.await.expect("joined").expect("the workflows process stops cleanly");
        self.projector.stop().await.expect("projector stops");
        self.relay.stop().await;
    }

    pub async fn post(&self, uri: &str, body: Value) -> Answer {
        send(&self.api, "POST", uri, &[JSON], body.to_string()).await
    }

    /// An approved account that may order up to `credit` euro cents without approval.
    pub async fn account(&self, credit: i64) -> Uuid {
        let id = self.register(credit, credit).await;
        let approved = self.post_empty(&format!("/v1/accounts/{id}/approve")).await;
        assert_eq!(approved.status, 200, "{}", approved.json());
        id
    }

    /// A registered account, pending approval: orders above `threshold` cents need approval.
    pub async fn register(&self, credit: i64, threshold: i64) -> Uuid {
        let created = self
            .post(
                "/v1/accounts",
                json!({"name": "Acme", "email": "buyer@acme.example",
                       "credit_limit": {"amount_minor": credit, "currency": "EUR"},
                       "approval_threshold": {"amount_minor": threshold, "currency": "EUR"}}),
            )
            .await;
        assert_eq!(created.status, 201, "{}", created.json());
        created.json()["stream_id"].as_str().expect("id").trim_start_matches("account-").parse().expect("uuid")
    }

    /// A POST without a body (approve, confirm).
    pub async fn post_empty(&self, uri: &str) -> Answer {
        send(&self.api, "POST", uri, &[], Body::empty()).await
    }

    pub async fn item(&self, sku: &str, on_hand: i64) {
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

    pub async fn place(&self, account: Uuid, lines: &[(&str, i64)]) -> Uuid {
        let lines: Vec<Value> = lines.iter().map(|(sku, quantity)| json!({"sku": sku, "quantity": quantity})).collect();
        let placed = self.post("/v1/orders", json!({"account_id": account, "lines": lines})).await;
        assert_eq!(placed.status, 201, "{}", placed.json());
        placed.json()["stream_id"].as_str().expect("id").trim_start_matches("order-").parse().expect("uuid")
    }

    pub async fn order(&self, id: Uuid) -> Order {
        self.handler.load::<Order>(&StreamId::order(id)).await.expect("order").state.expect("placed")
    }

    /// Waits until the order's lifecycle has brought it to `status`.
    pub async fn until_order(&self, id: Uuid, status: OrderStatus) -> Order {
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
    pub async fn stock(&self, sku: &str) -> (i64, i64) {
        let item = self.handler.load::<InventoryItem>(&StreamId::inventory_item(sku).expect("sku")).await;
        let item = item.expect("item").state.expect("exists");
        (item.on_hand, item.reserved())
    }

    /// Waits until the write model and `read.inventory_items` both show (on hand, reserved).
    pub async fn until_stock(&self, sku: &str, expected: (i64, i64)) {
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
    pub async fn rejection(&self, order: Uuid) -> (String, String) {
        self.rejected(&format!("order-{order}"), "OrderRejected").await
    }

    /// A stream's rejection event of type `event_type`: (reason, by whom).
    pub async fn rejected(&self, stream: &str, event_type: &str) -> (String, String) {
        sqlx::query_as(
            "SELECT data->>'reason', data->>'rejected_by' FROM events WHERE stream_id = $1 AND event_type = $2",
        )
        .bind(stream)
        .bind(event_type)
        .fetch_one(&self.pool)
        .await
        .expect("the rejection")
    }

    /// The event types of a stream, in order.
    pub async fn events_of(&self, stream: &str) -> Vec<String> {
        sqlx::query_scalar("SELECT event_type FROM events WHERE stream_id = $1 ORDER BY stream_version")
            .bind(stream)
            .fetch_all(&self.pool)
            .await
            .expect("events")
    }
}
