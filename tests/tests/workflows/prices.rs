//! A price list imported over HTTP reaches everything that shows or uses a price: the
//! inventory read model, GraphQL, and the next order's lines.

use std::time::Duration;

use axum::body::Body;
use serde_json::json;
use sqlx::PgPool;
use vectis_command_api::domain::OrderStatus;
use vectis_test_support::{command_api::send, eventually};

use crate::{graphql::graphql, stack::Stack};

#[sqlx::test(migrator = "vectis_event_store::MIGRATOR")]
async fn an_imported_price_list_reprices_the_read_model_graphql_and_the_next_order(pool: PgPool) {
    let stack = Stack::start(pool.clone(), Duration::from_secs(60)).await;
    let account = stack.account(1_000_000).await;
    stack.item("PRICE-A", 100).await;
    stack.item("PRICE-B", 100).await;
    let list =
        "SKU,Price,Currency,Reason\nPRICE-A,25,EUR,list 2027\nPRICE-B,10,EUR,list 2027\nPRICE-Z,5,EUR,list 2027\n";
    let uri = "/v1/imports?kind=prices&file_name=list.csv&map=Price%3Dunit_price_minor";
    let started = send(&stack.api, "POST", uri, &[("content-type", "text/csv")], Body::from(list)).await;
    assert_eq!(started.status, 202, "{}", started.json());
    let location = started.headers["location"].to_str().expect("location").to_string();
    let (api, location) = (&stack.api, location.as_str());
    let report = eventually(Duration::from_secs(30), "the price list imported", || async move {
        let body = send(api, "GET", location, &[], Body::empty()).await.json();
        (body["status"] == "finished").then_some(body.clone()).ok_or(format!("{body}"))
    })
    .await;
    assert_eq!((report["done"].as_i64(), report["failed"].as_i64()), (Some(2), Some(1)), "{report}");
    assert_eq!(report["rejected"][0]["reason"], "no inventory item with this SKU");

    let pool_ref = &pool;
    eventually(Duration::from_secs(30), "the read model's new price", || async move {
        let price: Option<i64> =
            sqlx::query_scalar("SELECT unit_price_minor FROM read.inventory_items WHERE sku = 'PRICE-A'")
                .fetch_optional(pool_ref)
                .await
                .map_err(|e| e.to_string())?;
        (price == Some(25)).then_some(()).ok_or(format!("{price:?}"))
    })
    .await;
    let (data, errors) =
        graphql(&pool, "query { inventoryItem(sku: \"PRICE-A\") { unitPrice { amountMinor currency } } }", json!({}))
            .await;
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(data["inventoryItem"]["unitPrice"], json!({ "amountMinor": 25, "currency": "EUR" }));

    let order = stack.place(account, &[("PRICE-A", 2), ("PRICE-B", 1)]).await;
    let placed = stack.until_order(order, OrderStatus::Confirmable).await;
    let prices: Vec<i64> = placed.lines.iter().map(|l| l.unit_price.amount_minor).collect();
    assert_eq!(prices, [25, 10], "an order placed after the change is priced at it");
    stack.stop().await;
}
