//! Inventory and order endpoints over HTTP against a real PostgreSQL event store.

use axum::{body::Body, http::StatusCode};
use serde_json::{json, Value};
use sqlx::PgPool;
use uuid::Uuid;
use vectis_test_support::{
    command_api::{command_api, send, Answer, TestApi, JSON},
    shop::mark_stock_held,
};

async fn post(app: &TestApi, uri: &str, body: Value) -> Answer {
    send(app, "POST", uri, &[JSON], body.to_string()).await
}

fn expect(answer: &Answer, status: StatusCode) -> Value {
    assert_eq!(answer.status, status, "{}", String::from_utf8_lossy(&answer.bytes));
    answer.json()
}

/// An account approved by staff (the test key is an admin key) and two stocked items.
async fn setup(app: &TestApi) -> Uuid {
    let registered = post(
        app,
        "/v1/accounts",
        json!({"name": "Acme", "email": "buyer@acme.example",
               "credit_limit": {"amount_minor": 100_000, "currency": "EUR"},
               "approval_threshold": {"amount_minor": 50_000, "currency": "EUR"}}),
    )
    .await;
    let stream = expect(&registered, StatusCode::CREATED)["stream_id"].as_str().expect("id").to_string();
    let approved = send(
        app,
        "POST",
        &format!("/v1/accounts/{}/approve", stream.trim_start_matches("account-")),
        &[],
        Body::empty(),
    )
    .await;
    assert_eq!(expect(&approved, StatusCode::OK)["events"][0]["data"]["approved_by"], "key:test-admin");
    for (sku, price) in [("BOLT-M8", 42), ("NUT-M8", 7)] {
        let created = post(
            app,
            "/v1/inventory/items",
            json!({"sku": sku, "name": format!("{sku} part"), "unit_price": {"amount_minor": price, "currency": "EUR"}}),
        )
        .await;
        expect(&created, StatusCode::CREATED);
        let received = post(app, &format!("/v1/inventory/items/{sku}/receipts"), json!({"quantity": 10})).await;
        assert_eq!(expect(&received, StatusCode::CREATED)["stream_version"], 2);
    }
    stream.trim_start_matches("account-").parse().expect("uuid")
}

#[sqlx::test(migrator = "vectis_event_store::MIGRATOR")]
async fn an_order_is_placed_confirmed_shipped_and_delivered_over_http(pool: PgPool) {
    let (app, _) = command_api(pool.clone()).await;
    let account_id = setup(&app).await;
    let placed = post(
        &app,
        "/v1/orders",
        json!({"account_id": account_id, "lines": [{"sku": "BOLT-M8", "quantity": 3}, {"sku": "NUT-M8", "quantity": 2}]}),
    )
    .await;
    let placed = expect(&placed, StatusCode::CREATED);
    assert_eq!(placed["events"][0]["event_type"], "OrderPlaced");
    assert_eq!(placed["events"][0]["data"]["total"], json!({"amount_minor": 140, "currency": "EUR"}));
    let order = placed["stream_id"].as_str().expect("id").trim_start_matches("order-").to_string();

    // Only its lifecycle makes an order confirmable, once every line's stock is held.
    let early = send(&app, "POST", &format!("/v1/orders/{order}/confirm"), &[], Body::empty()).await;
    let problem = expect(&early, StatusCode::CONFLICT);
    assert_eq!(problem["detail"], format!("cannot confirm order {order}: it is placed"));
    mark_stock_held(&pool, order.parse().expect("uuid")).await;
    let confirmed = send(&app, "POST", &format!("/v1/orders/{order}/confirm"), &[], Body::empty()).await;
    assert_eq!(expect(&confirmed, StatusCode::OK)["stream_version"], 3);
    let shipped =
        post(&app, &format!("/v1/orders/{order}/ship"), json!({"carrier": "DHL", "tracking_number": "JD1"})).await;
    assert_eq!(expect(&shipped, StatusCode::OK)["events"][0]["event_type"], "OrderShipped");
    let delivered = send(&app, "POST", &format!("/v1/orders/{order}/deliver"), &[], Body::empty()).await;
    assert_eq!(expect(&delivered, StatusCode::OK)["consistency_token"], format!("order-{order}@5"));

    let again =
        send(&app, "POST", &format!("/v1/orders/{order}/cancel"), &[JSON], json!({"reason": "late"}).to_string()).await;
    let problem = expect(&again, StatusCode::CONFLICT);
    assert_eq!(problem["type"], "/problems/invalid-state");
    assert_eq!(problem["detail"], format!("cannot cancel order {order}: it is delivered"));
}

#[sqlx::test(migrator = "vectis_event_store::MIGRATOR")]
async fn orders_that_break_a_rule_are_refused_and_append_nothing(pool: PgPool) {
    let (app, _) = command_api(pool.clone()).await;
    let account_id = setup(&app).await;
    let before: i64 = sqlx::query_scalar("SELECT count(*) FROM events").fetch_one(&pool).await.expect("count");
    let cases = [
        (json!({"account_id": account_id, "lines": [{"sku": "GHOST", "quantity": 1}]}), "GHOST does not exist"),
        (json!({"account_id": Uuid::now_v7(), "lines": [{"sku": "BOLT-M8", "quantity": 1}]}), "does not exist"),
        (
            json!({"account_id": account_id, "lines": [{"sku": "BOLT-M8", "quantity": 5000}]}),
            "exceeds the account's credit limit",
        ),
    ];
    for (body, detail) in cases {
        let answer = post(&app, "/v1/orders", body).await;
        let problem = expect(&answer, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(problem["type"], "/problems/business-rule");
        assert!(problem["detail"].as_str().expect("detail").contains(detail), "{problem}");
    }
    let answer =
        post(&app, "/v1/orders", json!({"account_id": account_id, "lines": [{"sku": "BOLT-M8", "quantity": -1}]}))
            .await;
    assert_eq!(expect(&answer, StatusCode::UNPROCESSABLE_ENTITY)["errors"][0]["field"], "lines[0].quantity");
    let answer = post(&app, "/v1/orders", json!({"account_id": "nope", "lines": []})).await;
    assert_eq!(expect(&answer, StatusCode::UNPROCESSABLE_ENTITY)["errors"][0]["field"], "account_id");
    let answer = post(&app, &format!("/v1/orders/{}/cancel", Uuid::now_v7()), json!({})).await;
    assert_eq!(expect(&answer, StatusCode::UNPROCESSABLE_ENTITY)["type"], "/problems/validation");
    let missing = send(&app, "POST", &format!("/v1/orders/{}/confirm", Uuid::now_v7()), &[], Body::empty()).await;
    expect(&missing, StatusCode::NOT_FOUND);
    let after: i64 = sqlx::query_scalar("SELECT count(*) FROM events").fetch_one(&pool).await.expect("count");
    assert_eq!(before, after);
}

#[sqlx::test(migrator = "vectis_event_store::MIGRATOR")]
async fn reservations_hold_reject_release_and_commit_over_http(pool: PgPool) {
    let (app, _) = command_api(pool.clone()).await;
    setup(&app).await;
    let order_id = Uuid::now_v7();
    let held =
        post(&app, "/v1/inventory/items/BOLT-M8/reservations", json!({"order_id": order_id, "quantity": 6})).await;
    let held = expect(&held, StatusCode::CREATED);
    assert_eq!(held["events"][0]["event_type"], "StockReserved");
    let reservation = held["events"][0]["data"]["reservation_id"].as_str().expect("id").to_string();

    let short =
        post(&app, "/v1/inventory/items/BOLT-M8/reservations", json!({"order_id": order_id, "quantity": 5})).await;
    let short = expect(&short, StatusCode::CREATED);
    assert_eq!(short["events"][0]["event_type"], "ReservationRejected");
    assert_eq!(short["events"][0]["data"]["available"], 4);

    let below = post(&app, "/v1/inventory/items/BOLT-M8/adjustments", json!({"delta": -5, "reason": "damaged"})).await;
    assert_eq!(expect(&below, StatusCode::UNPROCESSABLE_ENTITY)["type"], "/problems/business-rule");
    let bad_reason =
        post(&app, "/v1/inventory/items/BOLT-M8/adjustments", json!({"delta": -1, "reason": "gremlins"})).await;
    assert_eq!(expect(&bad_reason, StatusCode::UNPROCESSABLE_ENTITY)["errors"][0]["field"], "reason");

    let release_uri = format!("/v1/inventory/items/BOLT-M8/reservations/{reservation}/release");
    let released = send(&app, "POST", &release_uri, &[], Body::empty()).await;
    assert_eq!(expect(&released, StatusCode::OK)["events"][0]["event_type"], "ReservationReleased");
    let commit_uri = format!("/v1/inventory/items/BOLT-M8/reservations/{reservation}/commit");
    let late = send(&app, "POST", &commit_uri, &[], Body::empty()).await;
    assert!(expect(&late, StatusCode::CONFLICT)["detail"].as_str().expect("detail").contains("it is released"));
    let unknown = send(
        &app,
        "POST",
        &format!("/v1/inventory/items/BOLT-M8/reservations/{}/commit", Uuid::now_v7()),
        &[],
        Body::empty(),
    )
    .await;
    expect(&unknown, StatusCode::NOT_FOUND);
    let bad_sku = post(&app, "/v1/inventory/items/lower-case/receipts", json!({"quantity": 1})).await;
    expect(&bad_sku, StatusCode::NOT_FOUND);
    let duplicate = post(
        &app,
        "/v1/inventory/items",
        json!({"sku": "BOLT-M8", "name": "again", "unit_price": {"amount_minor": 1, "currency": "EUR"}}),
    )
    .await;
    assert_eq!(expect(&duplicate, StatusCode::CONFLICT)["type"], "/problems/already-exists");
}
