//! GraphQL `workflows(filter, first, after)` and `workflow(id)` over live instances:
//! pages, filters, an instance's steps with their outcomes and its pending timers.

use std::time::Duration;

use serde_json::{json, Value};
use sqlx::PgPool;
use vectis_command_api::domain::OrderStatus;
use vectis_query_api::{db::ReadDb, schema};
use vectis_search::{metrics::SearchMetrics, SearchEngine, SearchSettings};
use vectis_test_support::eventually;

use crate::stack::Stack;

/// Runs `query` on the GraphQL schema over the stack's read models: (data, error codes).
pub(crate) async fn graphql(pool: &PgPool, query: &str, variables: Value) -> (Value, Vec<String>) {
    let root = std::env::temp_dir().join(format!("vectis-wf-graphql-{}", uuid::Uuid::now_v7().simple()));
    let search =
        SearchEngine::new(&SearchSettings::Embedded { root }, "test", SearchMetrics::default()).expect("search");
    let db = ReadDb::new(pool.clone());
    let schema = schema::build(db.clone(), search, true);
    let request = async_graphql::Request::new(query).variables(async_graphql::Variables::from_json(variables));
    let response = schema.execute(schema::with_loaders(request, &db)).await;
    let codes = response
        .errors
        .iter()
        .map(|e| {
            let code = e.extensions.as_ref().and_then(|x| x.get("code")).map(|c| c.to_string()).unwrap_or_default();
            format!("{code}: {}", e.message)
        })
        .collect();
    (response.data.into_json().expect("json"), codes)
}

const PAGE: &str = "query($filter: WorkflowFilter, $after: String) {
  workflows(filter: $filter, first: 1, after: $after) {
    totalCount
    pageInfo { hasNextPage endCursor }
    edges { node { id workflow instanceId status waitingFor } }
  }
}";

const ONE: &str = "query($id: String!) {
  workflow(id: $id) {
    id workflow status waitingFor correlationId
    pendingTimers { name dueAt }
    steps { name status attempts command outcome }
  }
}";

#[sqlx::test(migrator = "vectis_event_store::MIGRATOR")]
async fn graphql_lists_pages_of_instances_and_shows_one_with_its_steps_and_timers(pool: PgPool) {
    let stack = Stack::start(pool.clone(), Duration::from_secs(900)).await;
    let account = stack.register(1_000_000, 100).await;
    assert_eq!(stack.post_empty(&format!("/v1/accounts/{account}/approve")).await.status, 200);
    stack.item("BOLT", 100).await;
    let waiting = stack.place(account, &[("BOLT", 30)]).await;
    stack.until_order(waiting, OrderStatus::AwaitingApproval).await;
    assert_eq!(stack.post_empty(&format!("/v1/orders/{waiting}/approve")).await.status, 200);
    let held = stack.until_order(waiting, OrderStatus::Confirmable).await;
    let pending = stack.place(account, &[("BOLT", 20)]).await;
    stack.until_order(pending, OrderStatus::AwaitingApproval).await;

    // Two lifecycles, a page of one at a time; the cursor leads to the second.
    let filter = json!({"workflow": "order_lifecycle"});
    let first = eventually(Duration::from_secs(10), "two lifecycle instances", || async {
        let (data, errors) = graphql(&pool, PAGE, json!({"filter": filter})).await;
        match data["workflows"]["totalCount"].as_i64() {
            Some(2) if errors.is_empty() => Ok(data),
            other => Err(format!("{other:?} {errors:?}")),
        }
    })
    .await;
    let page = &first["workflows"];
    assert_eq!(page["pageInfo"]["hasNextPage"], true);
    assert_eq!(page["edges"][0]["node"]["instanceId"], waiting.to_string(), "oldest first");
    assert_eq!(page["edges"][0]["node"]["id"], format!("order_lifecycle/{waiting}"));
    assert_eq!(page["edges"][0]["node"]["status"], "RUNNING");
    let after = page["pageInfo"]["endCursor"].clone();
    let (second, errors) = graphql(&pool, PAGE, json!({"filter": filter, "after": after})).await;
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(second["workflows"]["edges"][0]["node"]["instanceId"], pending.to_string());
    assert_eq!(second["workflows"]["pageInfo"]["hasNextPage"], false);

    // An approval waiting, with its deadline pending.
    let approval = eventually(Duration::from_secs(10), "the pending order's approval", || async {
        let (approval, errors) = graphql(&pool, ONE, json!({"id": format!("order_approval/{pending}")})).await;
        match approval["workflow"]["pendingTimers"].as_array().map(Vec::len) {
            Some(1) if errors.is_empty() => Ok(approval),
            other => Err(format!("{other:?} {errors:?}")),
        }
    })
    .await;
    let approval = &approval["workflow"];
    assert_eq!(approval["status"], "RUNNING");
    assert!(approval["waitingFor"].as_str().unwrap_or_default().starts_with("waiting for staff approval since"));
    assert_eq!(approval["pendingTimers"][0]["name"], "deadline");
    assert_eq!(approval["steps"], json!([]));
    // Filtered by status: the approved order's approval is done.
    // (the approval workflow records the decision on its own consumer group: wait for it)
    let filter = json!({"workflow": "order_approval", "status": "COMPLETED"});
    let done = eventually(Duration::from_secs(10), "the approved order's approval completed", || async {
        let (done, errors) = graphql(&pool, PAGE, json!({"filter": filter})).await;
        match done["workflows"]["totalCount"].as_i64() {
            Some(1) if errors.is_empty() => Ok(done),
            other => Err(format!("{other:?} {errors:?}")),
        }
    })
    .await;
    assert_eq!(done["workflows"]["edges"][0]["node"]["waitingFor"], "done: approved");

    // A bare id is the order's lifecycle: its steps and what they did.
    let (lifecycle, errors) = graphql(&pool, ONE, json!({"id": waiting.to_string()})).await;
    assert!(errors.is_empty(), "{errors:?}");
    let lifecycle = &lifecycle["workflow"];
    assert_eq!(lifecycle["workflow"], "order_lifecycle");
    let steps = lifecycle["steps"].as_array().expect("steps");
    let names: Vec<&str> = steps.iter().filter_map(|s| s["name"].as_str()).collect();
    assert!(names.contains(&"hold/1"), "{names:?}");
    let reserve = steps.iter().find(|s| s["name"].as_str().is_some_and(|n| n.starts_with("reserve/")));
    let reserve = reserve.expect("a reserve step");
    assert_eq!(reserve["status"], "done");
    assert_eq!(reserve["command"]["command"], "reserve");
    assert_eq!(reserve["outcome"]["events"], json!(["StockReserved"]));
    assert_eq!(lifecycle["pendingTimers"][0]["name"], "expiry/1");
    assert!(held.status == OrderStatus::Confirmable);

    // Nothing there, and a workflow that does not exist.
    let (missing, errors) = graphql(&pool, ONE, json!({"id": "order_lifecycle/nope"})).await;
    assert!(errors.is_empty() && missing["workflow"].is_null(), "{missing} {errors:?}");
    let (_, errors) = graphql(&pool, PAGE, json!({"filter": {"workflow": "teleport"}})).await;
    assert_eq!(errors.len(), 1);
    assert!(errors[0].contains("BAD_USER_INPUT") && errors[0].contains("no workflow \"teleport\""), "{errors:?}");
    stack.stop().await;
}
