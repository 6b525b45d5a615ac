//! The order lifecycle: reserve → confirmable → confirmed → shipped, short stock,
//! cancellation, expiry, and many orders racing for little stock.

use std::{sync::Arc, time::Duration};

use serde_json::json;
use sqlx::PgPool;
use uuid::Uuid;
use vectis_command_api::domain::OrderStatus;
use vectis_test_support::eventually;

use crate::stack::Stack;

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

    let confirmed = stack.post_empty(&format!("/v1/orders/{order}/confirm")).await;
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
    let early = stack.post_empty(&format!("/v1/orders/{order}/confirm")).await;
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
    let late = stack.post_empty(&format!("/v1/orders/{order}/confirm")).await;
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
