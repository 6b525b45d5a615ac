//! Reservations made over HTTP expire at their `expires_at`, once; one released before
//! its expiry does not.

use std::time::Duration;

use chrono::Utc;
use serde_json::json;
use sqlx::PgPool;
use uuid::Uuid;
use vectis_test_support::eventually;

use crate::stack::Stack;

#[sqlx::test(migrator = "vectis_event_store::MIGRATOR")]
async fn a_reservation_made_over_http_expires_at_its_expiry_and_a_released_one_does_not(pool: PgPool) {
    let stack = Stack::start(pool.clone(), Duration::from_secs(900)).await;
    stack.item("BOLT", 100).await;
    let expires_at = Utc::now() + chrono::Duration::seconds(2);
    let (expiring, released) = (Uuid::now_v7(), Uuid::now_v7());
    for (id, quantity) in [(expiring, 10), (released, 5)] {
        let body =
            json!({"reservation_id": id, "order_id": Uuid::now_v7(), "quantity": quantity, "expires_at": expires_at});
        let answer = stack.post("/v1/inventory/items/BOLT/reservations", body).await;
        assert_eq!(answer.status, 201, "{}", answer.json());
    }
    stack.until_stock("BOLT", (100, 15)).await;
    let answer = stack.post(&format!("/v1/inventory/items/BOLT/reservations/{released}/release"), json!({})).await;
    assert_eq!(answer.status, 200, "{}", answer.json());
    stack.until_stock("BOLT", (100, 0)).await;
    assert!(Utc::now() >= expires_at, "the expiring reservation was given back before its expiry");

    let expired: Vec<String> = sqlx::query_scalar(
        "SELECT data->>'reservation_id' FROM events WHERE stream_id = 'inventory-BOLT' AND event_type = 'ReservationExpired'",
    )
    .fetch_all(&pool)
    .await
    .expect("expired");
    assert_eq!(expired, [expiring.to_string()], "expired once, and only the one still held");
    let done = eventually(Duration::from_secs(10), "both instances done", || async {
        let statuses: Vec<String> =
            sqlx::query_scalar("SELECT waiting_for FROM read.reservation_expiry_instances ORDER BY waiting_for")
                .fetch_all(&pool)
                .await
                .map_err(|e| e.to_string())?;
        if statuses.len() == 2 && statuses.iter().all(|s| s.starts_with("done")) {
            Ok(statuses)
        } else {
            Err(format!("{statuses:?}"))
        }
    })
    .await;
    assert_eq!(done, ["done: expired", "done: released"]);
    stack.stop().await;
}
