//! Rebuilding a workflow's state from the log decides nothing anew and fires nothing.

use std::{sync::Arc, time::Duration};

use serde_json::{json, Value};
use sqlx::PgPool;
use vectis_command_api::domain::OrderStatus;
use vectis_consumer::metrics::ConsumerMetrics;
use vectis_test_support::eventually;

use crate::stack::Stack;

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
    let handler = Arc::new(WorkflowHandler::new(lifecycle.clone(), Wakers::default(), Default::default()));
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
        metrics: Default::default(),
    };
    assert_eq!(scheduler.fire_due().await.expect("fires"), Some(0), "the active version has nothing due");
    tokio::time::sleep(Duration::from_secs(1)).await;
    rebuild.stop().await.expect("stops");
    assert_eq!(rebuilt.1.len(), 1);
    assert_eq!(count(&pool, "workflow_outbox").await, outbox, "the rebuild decided no step anew");
    assert_eq!(count(&pool, "events").await, events, "nothing was appended");
    assert_eq!(count(&pool, "proj_order_lifecycle_v2.timers").await, 1, "its timer did not fire");
}

/// The `read.order_approval_instances` rows: (instance, status, what it waits for).
async fn approval_rows(pool: &PgPool) -> Vec<(String, String, String)> {
    sqlx::query_as("SELECT instance_id, status, waiting_for FROM read.order_approval_instances ORDER BY instance_id")
        .fetch_all(pool)
        .await
        .expect("instances")
}

#[sqlx::test(migrator = "vectis_event_store::MIGRATOR")]
async fn vectis_workflows_rebuild_switches_to_a_replayed_version_that_then_acts(pool: PgPool) {
    use std::ffi::OsStr;
    use vectis_test_support::{cli, processes::binary};
    let stack = Stack::start_with(pool.clone(), |s| s.order_approval_timeout = Duration::from_secs(900)).await;
    let account = stack.register(1_000_000, 100).await;
    assert_eq!(stack.post_empty(&format!("/v1/accounts/{account}/approve")).await.status, 200);
    stack.item("BOLT", 100).await;
    let waiting = stack.place(account, &[("BOLT", 30)]).await;
    let approved = stack.place(account, &[("BOLT", 20)]).await;
    stack.until_order(approved, OrderStatus::AwaitingApproval).await;
    assert_eq!(stack.post_empty(&format!("/v1/orders/{approved}/approve")).await.status, 200);
    stack.until_order(approved, OrderStatus::Confirmable).await;
    let before = eventually(Duration::from_secs(10), "both approvals recorded", || async {
        let rows = approval_rows(&pool).await;
        if rows.len() == 2 && rows.iter().any(|(_, status, _)| status == "completed") {
            Ok(rows)
        } else {
            Err(format!("{rows:?}"))
        }
    })
    .await;
    assert!(before.iter().any(|(id, status, _)| id == &waiting.to_string() && status == "running"));
    let (outbox, events) = (count(&pool, "workflow_outbox").await, count(&pool, "events").await);

    let vectis = binary("vectis");
    let timeout: &OsStr = OsStr::new("900s");
    let rebuilt = cli::run(
        vectis.to_str().expect("path"),
        &pool,
        &stack.kafka,
        &[("ORDER_APPROVAL_TIMEOUT", timeout)],
        &["workflows", "rebuild", "order_approval", "--progress-every", "0.2"],
    )
    .await;
    assert_eq!(rebuilt.code, 0, "{}\n{}", rebuilt.stdout, rebuilt.stderr);
    assert!(rebuilt.stdout.contains("order_approval: readers now use version 2"), "{}", rebuilt.stdout);
    assert_eq!(approval_rows(&pool).await, before, "version 2 holds what version 1 held");
    assert_eq!(count(&pool, "workflow_outbox").await, outbox, "the rebuild decided nothing anew");
    assert_eq!(count(&pool, "events").await, events, "the rebuild appended nothing");
    let unknown = cli::run(vectis.to_str().expect("path"), &pool, &stack.kafka, &[], &["workflows", "rebuild", "nope"]);
    let unknown = unknown.await;
    assert_ne!(unknown.code, 0);
    assert!(unknown.stderr.contains("no workflow \"nope\""), "{}", unknown.stderr);

    // The running process follows version 2: a new approval request is recorded there.
    let later = stack.place(account, &[("BOLT", 15)]).await;
    eventually(Duration::from_secs(30), "the new order's approval in version 2", || async {
        let found: Option<String> =
            sqlx::query_scalar("SELECT status FROM proj_order_approval_v2.instances WHERE instance_id = $1")
                .bind(later.to_string())
                .fetch_optional(&pool)
                .await
                .map_err(|e| e.to_string())?;
        found.filter(|s| s == "running").map(|_| ()).ok_or_else(|| "not yet".to_string())
    })
    .await;
    stack.stop().await;
}
