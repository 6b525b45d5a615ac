//! Operators list, show, retry and discard instances with the `vectis` CLI.

use std::time::Duration;

use serde_json::json;
use sqlx::PgPool;
use vectis_command_api::domain::OrderStatus;
use vectis_test_support::eventually;

use crate::stack::Stack;

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
