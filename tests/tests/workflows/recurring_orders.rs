//! Recurring orders over HTTP: a schedule every second places each run's order once,
//! priced from the catalogue, until its last run; a suspended account's runs are
//! skipped with the reason; pause, resume and cancel; the read model and GraphQL show
//! them; bad schedules are refused with the field that is wrong.

use std::time::Duration;

use chrono::Utc;
use serde_json::{json, Value};
use sqlx::PgPool;
use uuid::Uuid;
use vectis_command_api::domain::OrderStatus;
use vectis_consumer::metrics::ConsumerMetrics;
use vectis_projectors::read_models;
use vectis_test_support::{eventually, start_projector};

use crate::{graphql::graphql, stack::Stack};

/// Schedules `body` for `account`; the new recurring order's id.
async fn schedule(stack: &Stack, account: Uuid, body: Value) -> Uuid {
    let answer = stack.post(&format!("/v1/accounts/{account}/recurring-orders"), body).await;
    assert_eq!(answer.status, 201, "{}", answer.json());
    let event = &answer.json()["events"][0];
    assert_eq!(event["event_type"], "RecurringOrderScheduled");
    event["data"]["recurring_order_id"].as_str().expect("id").parse().expect("uuid")
}

/// The recorded runs of `recurring`: (run, order id, skip reason), by run.
async fn runs(pool: &PgPool, account: Uuid, recurring: Uuid) -> Vec<(i64, Option<Uuid>, Option<String>)> {
    sqlx::query_as(
        "SELECT (data->>'run')::bigint, (data->>'order_id')::uuid, data->>'reason' FROM events
          WHERE stream_id = $1 AND data->>'recurring_order_id' = $2
            AND event_type IN ('RecurringOrderRunPlaced', 'RecurringOrderRunSkipped')
          ORDER BY (data->>'run')::bigint",
    )
    .bind(format!("account-{account}"))
    .bind(recurring.to_string())
    .fetch_all(pool)
    .await
    .expect("runs")
}

async fn until_runs(
    pool: &PgPool,
    account: Uuid,
    recurring: Uuid,
    count: usize,
) -> Vec<(i64, Option<Uuid>, Option<String>)> {
    eventually(Duration::from_secs(30), &format!("{count} runs of {recurring} recorded"), || async {
        let recorded = runs(pool, account, recurring).await;
        if recorded.len() >= count {
            Ok(recorded)
        } else {
            Err(format!("{recorded:?}"))
        }
    })
    .await
}

#[sqlx::test(migrator = "vectis_event_store::MIGRATOR")]
async fn a_recurring_order_places_each_run_once_skips_with_a_reason_and_stops_when_told(pool: PgPool) {
    let stack = Stack::start(pool.clone(), Duration::from_secs(900)).await;
    // The stack projects inventory; GraphQL here reads accounts and recurring orders too.
    let mut projectors = Vec::new();
    for projection in read_models::all().into_iter().filter(|p| ["accounts", "recurring_orders"].contains(&p.name())) {
        projectors.push(start_projector(&pool, &stack.kafka, projection, &ConsumerMetrics::default()).await);
    }
    stack.item("BOLT", 100).await;
    let account = stack.account(1_000_000).await;
    let uri = format!("/v1/accounts/{account}/recurring-orders");

    // Refusals name the field, and an account that is not approved cannot schedule.
    for (body, field) in [
        (json!({"lines": [{"sku": "BOLT", "quantity": 5}], "every": "200ms"}), "every"),
        (json!({"lines": [{"sku": "BOLT", "quantity": 5}], "every": "often"}), "every"),
        (json!({"lines": [{"sku": "BOLT", "quantity": 5}], "every": "3 days", "weekday": "monday"}), "every"),
        (json!({"lines": [{"sku": "BOLT", "quantity": 5}], "every": "1 week", "weekday": "funday"}), "weekday"),
        (json!({"lines": [], "every": "1 week"}), "lines"),
        (json!({"lines": [{"sku": "BOLT", "quantity": 5}], "every": "1 week", "max_runs": 0}), "max_runs"),
        (
            json!({"lines": [{"sku": "BOLT", "quantity": 5}], "every": "1 week", "starts_at": "2020-01-06T09:00:00Z"}),
            "starts_at",
        ),
    ] {
        let answer = stack.post(&uri, body.clone()).await;
        assert_eq!(answer.status, 422, "{body}: {}", answer.json());
        assert!(answer.json().to_string().contains(field), "{body}: {}", answer.json());
    }
    let pending = stack.register(1_000_000, 1_000_000).await;
    let refused = stack
        .post(
            &format!("/v1/accounts/{pending}/recurring-orders"),
            json!({"lines": [{"sku": "BOLT", "quantity": 1}], "every": "1s"}),
        )
        .await;
    assert_eq!(refused.status, 409, "{}", refused.json());

    // Every second from a second from now, three runs.
    let starts_at = Utc::now() + chrono::Duration::seconds(1);
    let recurring = schedule(
        &stack,
        account,
        json!({"lines": [{"sku": "BOLT", "quantity": 5}], "every": "1s", "starts_at": starts_at, "max_runs": 3}),
    )
    .await;
    let recorded = until_runs(&pool, account, recurring, 3).await;
    assert_eq!(recorded.iter().map(|r| r.0).collect::<Vec<_>>(), [1, 2, 3]);
    assert!(recorded.iter().all(|r| r.1.is_some() && r.2.is_none()), "every run placed: {recorded:?}");
    for (_, order, _) in &recorded {
        let order = stack.until_order(order.expect("placed"), OrderStatus::Confirmable).await;
        assert_eq!(order.account_id, account);
        assert_eq!(order.total.amount_minor, 5 * 10, "priced from the catalogue");
    }
    stack.until_stock("BOLT", (100, 15)).await;
    // No fourth run, and no run placed twice.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert_eq!(runs(&pool, account, recurring).await.len(), 3);
    let placed: i64 =
        sqlx::query_scalar("SELECT count(*) FROM events WHERE event_type = 'OrderPlaced' AND data->>'account_id' = $1")
            .bind(account.to_string())
            .fetch_one(&pool)
            .await
            .expect("orders");
    assert_eq!(placed, 3, "one order per run");
    let completed = stack.post_empty(&format!("{uri}/{recurring}/pause")).await;
    assert_eq!(completed.status, 409, "{}", completed.json());

    // A suspended account's runs are skipped, with the reason; paused, nothing is
    // recorded; resumed, runs go on; cancelled, they stop.
    let weekly = stack.account(1_000_000).await;
    let unbounded = schedule(&stack, weekly, json!({"lines": [{"sku": "BOLT", "quantity": 1}], "every": "1s"})).await;
    until_runs(&pool, weekly, unbounded, 1).await;
    let suspended = stack.post(&format!("/v1/accounts/{weekly}/suspend"), json!({"reason": "late payments"})).await;
    assert_eq!(suspended.status, 200, "{}", suspended.json());
    let skipped = eventually(Duration::from_secs(30), "a run skipped for the suspension", || async {
        let recorded = runs(&pool, weekly, unbounded).await;
        recorded.iter().find(|r| r.2.is_some()).cloned().ok_or(format!("{recorded:?}"))
    })
    .await;
    assert_eq!(skipped.2.as_deref(), Some("the account is suspended"));
    assert!(skipped.1.is_none());
    let weekly_uri = format!("/v1/accounts/{weekly}/recurring-orders/{unbounded}");
    assert_eq!(stack.post_empty(&format!("{weekly_uri}/pause")).await.status, 200);
    let at_pause = runs(&pool, weekly, unbounded).await.len();
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    let while_paused = runs(&pool, weekly, unbounded).await.len();
    assert!(while_paused <= at_pause + 1, "at most a run already due when paused: {at_pause} → {while_paused}");
    let resumed = stack.post_empty(&format!("{weekly_uri}/resume")).await;
    assert_eq!(resumed.status, 200, "{}", resumed.json());
    until_runs(&pool, weekly, unbounded, while_paused + 1).await;
    assert_eq!(stack.post_empty(&format!("{weekly_uri}/cancel")).await.status, 200);
    let at_cancel = runs(&pool, weekly, unbounded).await.len();
    tokio::time::sleep(Duration::from_millis(2_000)).await;
    assert!(runs(&pool, weekly, unbounded).await.len() <= at_cancel + 1, "no runs after the cancellation");
    assert_eq!(stack.post_empty(&format!("{weekly_uri}/resume")).await.status, 409);

    // The read model, GraphQL and the workflow's instances show both.
    let query = "query($account: UUID!, $id: UUID!) {
      account(id: $account) { recurringOrders { id status runsPlaced nextRun lines { sku quantity } } }
      recurringOrder(id: $id) { status runsPlaced runsSkipped runs(last: 5) { run orderId skipReason } }
    }";
    let shown = eventually(Duration::from_secs(30), "GraphQL to show the recurring orders", || async {
        let (data, errors) = graphql(&pool, query, json!({"account": account, "id": unbounded})).await;
        let first = &data["account"]["recurringOrders"][0];
        let done = first["status"] == "completed" && data["recurringOrder"]["status"] == "cancelled";
        if errors.is_empty() && done {
            Ok(data)
        } else {
            Err(format!("{data} {errors:?}"))
        }
    })
    .await;
    let first = &shown["account"]["recurringOrders"][0];
    assert_eq!(first["runsPlaced"], 3);
    assert_eq!(first["nextRun"], Value::Null);
    assert_eq!(first["lines"], json!([{"sku": "BOLT", "quantity": 5}]));
    let runs_shown = shown["recurringOrder"]["runs"].as_array().expect("runs");
    assert!(runs_shown.iter().any(|r| r["skipReason"] == "the account is suspended"), "{runs_shown:?}");
    let statuses: Vec<String> =
        sqlx::query_scalar("SELECT status FROM read.recurring_order_instances ORDER BY instance_id")
            .fetch_all(&pool)
            .await
            .expect("instances");
    assert_eq!(statuses, ["completed", "completed"], "completed, and cancelled");
    for projector in projectors {
        projector.stop().await.expect("projector stops");
    }
    stack.stop().await;
}
