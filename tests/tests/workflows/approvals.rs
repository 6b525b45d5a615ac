//! Approvals with a deadline: an order above its account's threshold, and a registered
//! account, undecided past their timeout are rejected "approval timed out"; decided in
//! time, they go on. Pending approvals show in the metrics while they wait.

use std::time::Duration;

use sqlx::PgPool;
use uuid::Uuid;
use vectis_command_api::domain::{Account, AccountStatus, OrderStatus};
use vectis_schemas::StreamId;
use vectis_test_support::{eventually, http::http_get};

use crate::stack::Stack;

/// The value of the sample `name{labels}` in the workflows process's `/metrics`.
async fn sample(stack: &Stack, series: &str) -> Option<f64> {
    let (_, body) = http_get(stack.ops, "/metrics").await;
    body.lines().find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
}

async fn until_account(stack: &Stack, id: Uuid, status: AccountStatus) {
    eventually(Duration::from_secs(30), &format!("account {id} to be {status}"), || async {
        let account = stack.handler.load::<Account>(&StreamId::account(id)).await.map_err(|e| e.to_string())?;
        match account.state {
            Some(account) if account.status == status => Ok(()),
            other => Err(format!("it is {:?}", other.map(|a| a.status))),
        }
    })
    .await
}

#[sqlx::test(migrator = "vectis_event_store::MIGRATOR")]
async fn undecided_approvals_time_out_and_decided_ones_go_on(pool: PgPool) {
    let stack = Stack::start_with(pool.clone(), |settings| {
        settings.order_approval_timeout = Duration::from_secs(2);
        settings.account_approval_timeout = Duration::from_secs(5);
        settings.metrics_interval = Duration::from_millis(100);
    })
    .await;
    let unanswered = stack.register(1_000_000, 100).await;
    // Orders above 1 € need approval; the item costs 0.10 € a unit.
    let account = stack.register(1_000_000, 100).await;
    assert_eq!(stack.post_empty(&format!("/v1/accounts/{account}/approve")).await.status, 200);
    stack.item("BOLT", 100).await;
    let forgotten = stack.place(account, &[("BOLT", 30)]).await;
    let approved = stack.place(account, &[("BOLT", 20)]).await;
    stack.until_order(approved, OrderStatus::AwaitingApproval).await;
    assert_eq!(stack.post_empty(&format!("/v1/orders/{approved}/approve")).await.status, 200);

    // The unanswered account's approval is pending, and shows how long it waits.
    let running = r#"vectis_workflow_instances{workflow="account_approval",status="running"}"#;
    let oldest = r#"vectis_workflow_oldest_running_seconds{workflow="account_approval"}"#;
    eventually(Duration::from_secs(5), "the pending account approval in the metrics", || async {
        match (sample(&stack, running).await, sample(&stack, oldest).await) {
            (Some(pending), Some(age)) if pending == 1.0 && age > 0.0 => Ok(()),
            other => Err(format!("pending, age: {other:?}")),
        }
    })
    .await;

    stack.until_order(forgotten, OrderStatus::Rejected).await;
    assert_eq!(
        stack.rejection(forgotten).await,
        ("approval timed out".to_string(), "workflow:order_approval".to_string())
    );
    stack.until_order(approved, OrderStatus::Confirmable).await;
    stack.until_stock("BOLT", (100, 20)).await;
    until_account(&stack, unanswered, AccountStatus::Rejected).await;
    assert_eq!(
        stack.rejected(&format!("account-{unanswered}"), "AccountRejected").await,
        ("approval timed out".to_string(), "workflow:account_approval".to_string())
    );
    // Decided in time: untouched by its deadline, which passed meanwhile.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(stack.events_of(&format!("account-{account}")).await, ["AccountRegistered", "AccountApproved"]);
    assert_eq!(stack.order(approved).await.status, OrderStatus::Confirmable);

    let statuses: Vec<(String, String)> =
        sqlx::query_as("SELECT instance_id, status FROM read.order_approval_instances ORDER BY status")
            .fetch_all(&pool)
            .await
            .expect("instances");
    assert_eq!(statuses, [(approved.to_string(), "completed".into()), (forgotten.to_string(), "failed".into())]);
    let ended = r#"vectis_workflow_instances_ended_total{workflow="order_approval",status="failed"}"#;
    let started = r#"vectis_workflow_instances_started_total{workflow="order_approval"}"#;
    eventually(Duration::from_secs(10), "the timed-out approval counted as failed", || async {
        match (sample(&stack, ended).await, sample(&stack, started).await) {
            (Some(failed), Some(started)) if failed == 1.0 && started == 2.0 => Ok(()),
            other => Err(format!("failed, started: {other:?}")),
        }
    })
    .await;
    stack.stop().await;
}
