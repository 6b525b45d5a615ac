//! API keys on the command API: 401 without a valid key, 403 without the scope,
//! staff actions for `admin` only, idempotency keys per API key.

use axum::{body::Body, http::StatusCode};
use serde_json::json;
use sqlx::PgPool;
use vectis_runtime::auth::Scope;
use vectis_test_support::command_api::{command_api, send, Answer, TestApi, JSON};

fn registration() -> String {
    json!({"name": "Acme", "email": "buyer@acme.example",
           "credit_limit": {"amount_minor": 100, "currency": "EUR"},
           "approval_threshold": {"amount_minor": 50, "currency": "EUR"}})
    .to_string()
}

async fn register_with(app: &TestApi, key: &str) -> Answer {
    let bearer = format!("Bearer {key}");
    send(app, "POST", "/v1/accounts", &[JSON, ("authorization", bearer.as_str())], registration()).await
}

async fn event_count(pool: &PgPool) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM events").fetch_one(pool).await.expect("count")
}

#[sqlx::test(migrator = "vectis_event_store::MIGRATOR")]
async fn missing_unknown_and_revoked_keys_are_401(pool: PgPool) {
    let (app, _) = command_api(pool.clone()).await;
    let none = send(&app, "POST", "/v1/accounts", &[JSON, ("authorization", "")], registration()).await;
    assert_eq!(none.status, StatusCode::UNAUTHORIZED);
    assert_eq!(none.content_type, "application/problem+json");
    assert_eq!(none.json()["type"], "/problems/unauthenticated");
    let wrong = register_with(&app, "vk_0000000000000000000000000000000000000000000000000000000000000000").await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    let garbage = register_with(&app, "hunter2").await;
    assert_eq!(garbage.status, StatusCode::UNAUTHORIZED);

    let (id, key) = app.keys.create("short-lived", &[Scope::AccountsWrite]).await.expect("key");
    assert_eq!(register_with(&app, &key).await.status, StatusCode::CREATED);
    assert!(app.keys.revoke(id).await.expect("revoke"));
    assert!(!app.keys.revoke(id).await.expect("revoke twice"), "a revoked key is not revoked again");
    assert_eq!(register_with(&app, &key).await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(event_count(&pool).await, 1);
}

#[sqlx::test(migrator = "vectis_event_store::MIGRATOR")]
async fn keys_need_the_scope_of_the_endpoint(pool: PgPool) {
    let (app, _) = command_api(pool.clone()).await;
    let (_, inventory_only) = app.keys.create("warehouse", &[Scope::InventoryWrite]).await.expect("key");
    let forbidden = register_with(&app, &inventory_only).await;
    assert_eq!(forbidden.status, StatusCode::FORBIDDEN);
    assert_eq!(forbidden.json()["detail"], "this endpoint needs the accounts:write scope");
    let bearer = format!("Bearer {inventory_only}");
    let item = json!({"sku": "BOLT-1", "name": "bolt", "unit_price": {"amount_minor": 1, "currency": "EUR"}});
    let created =
        send(&app, "POST", "/v1/inventory/items", &[JSON, ("authorization", bearer.as_str())], item.to_string()).await;
    assert_eq!(created.status, StatusCode::CREATED);
    let debug =
        send(&app, "GET", "/v1/streams/inventory-BOLT-1", &[("authorization", bearer.as_str())], Body::empty()).await;
    assert_eq!(debug.status, StatusCode::FORBIDDEN, "reading raw streams is for admins");
}

#[sqlx::test(migrator = "vectis_event_store::MIGRATOR")]
async fn only_staff_approve_and_the_event_names_the_key(pool: PgPool) {
    let (app, _) = command_api(pool.clone()).await;
    let (_, customer) = app.keys.create("acme-buyer", &[Scope::AccountsWrite]).await.expect("key");
    let registered = register_with(&app, &customer).await;
    let id = registered.json()["stream_id"].as_str().expect("id").trim_start_matches("account-").to_string();
    let bearer = format!("Bearer {customer}");
    let approve = format!("/v1/accounts/{id}/approve");
    let self_approval = send(&app, "POST", &approve, &[("authorization", bearer.as_str())], Body::empty()).await;
    assert_eq!(self_approval.status, StatusCode::FORBIDDEN);
    let staff = send(&app, "POST", &approve, &[], Body::empty()).await;
    assert_eq!(staff.status, StatusCode::OK);
    assert_eq!(staff.json()["events"][0]["data"]["approved_by"], "key:test-admin");
    let suspend =
        send(&app, "POST", &format!("/v1/accounts/{id}/suspend"), &[JSON], json!({"reason": "overdue"}).to_string())
            .await;
    assert_eq!(suspend.json()["events"][0]["event_type"], "AccountSuspended");
    let reinstate = send(&app, "POST", &format!("/v1/accounts/{id}/reinstate"), &[], Body::empty()).await;
    assert_eq!(reinstate.json()["stream_version"], 4);
}

#[sqlx::test(migrator = "vectis_event_store::MIGRATOR")]
async fn idempotency_keys_belong_to_their_api_key(pool: PgPool) {
    let (app, _) = command_api(pool.clone()).await;
    let (_, first) = app.keys.create("client-a", &[Scope::AccountsWrite]).await.expect("key");
    let (_, second) = app.keys.create("client-b", &[Scope::AccountsWrite]).await.expect("key");
    for key in [&first, &second, &first] {
        let bearer = format!("Bearer {key}");
        let answer = send(
            &app,
            "POST",
            "/v1/accounts",
            &[JSON, ("authorization", bearer.as_str()), ("idempotency-key", "same-key")],
            registration(),
        )
        .await;
        assert_eq!(answer.status, StatusCode::CREATED);
    }
    assert_eq!(event_count(&pool).await, 2, "two clients, two commands; the third request was a replay");
}
