//! `POST /v1/imports` and `GET /v1/imports/{id}`: an import as an asynchronous job, and
//! `PUT /v1/inventory/items/{sku}/price`, the single request a price row stands for.

use std::time::Duration;

use axum::http::StatusCode;
use serde_json::{json, Value};
use sqlx::PgPool;
use vectis_command_api::{
    handling::CommandHandler,
    http::imports::ImportWorker,
    imports::{
        jobs::{self, Begun, NewImport},
        kinds::ImportKind,
        rows::{Format, Mapping},
        survey, Importer,
    },
};
use vectis_runtime::auth::Scope;
use vectis_test_support::{
    command_api::{command_api, send, TestApi, JSON},
    event_store, eventually,
};

fn catalogue(rows: usize) -> String {
    let mut csv = String::from("sku,name,unit_price_minor,currency\n");
    for i in 0..rows {
        csv.push_str(&format!("API-{i:05},Washer {i},{},EUR\n", 10 + i));
    }
    csv
}

async fn finished(app: &TestApi, location: &str) -> Value {
    eventually(Duration::from_secs(30), "the import finished", || async move {
        let answer = send(app, "GET", location, &[], "").await;
        let body = answer.json();
        (body["status"] == "finished").then_some(body.clone()).ok_or(format!("{body}"))
    })
    .await
}

#[sqlx::test(migrator = "vectis_event_store::MIGRATOR")]
async fn an_uploaded_file_is_imported_in_the_background_and_reported_row_by_row(pool: PgPool) {
    let (app, _) = command_api(pool.clone()).await;
    let mut csv = catalogue(250);
    csv.push_str("API-00003,Washer again,10,EUR\n");
    let csv_type = ("content-type", "text/csv");
    let answer = send(&app, "POST", "/v1/imports?kind=items&file_name=washers.csv", &[csv_type], csv.clone()).await;
    assert_eq!(answer.status, StatusCode::ACCEPTED, "{}", answer.json());
    let location = answer.headers["location"].to_str().expect("location").to_string();
    let accepted = answer.json();
    assert_eq!((accepted["total_rows"].as_i64(), accepted["kind"].as_str()), (Some(251), Some("items")));

    let report = finished(&app, &location).await;
    assert_eq!(
        (report["done"].as_i64(), report["failed"].as_i64(), report["remaining"].as_i64()),
        (Some(250), Some(1), Some(0))
    );
    assert_eq!(report["actor"], "key:test-admin");
    assert_eq!(
        report["rejected"],
        json!([{ "row": 251, "reason": "inventory item API-00003 already exists", "record": "API-00003,Washer again,10,EUR" }])
    );
    let items: i64 = sqlx::query_scalar("SELECT count(*) FROM streams WHERE stream_id LIKE 'inventory-API-%'")
        .fetch_one(&pool)
        .await
        .expect("count");
    assert_eq!(items, 250);

    let again = send(&app, "POST", "/v1/imports?kind=items&file_name=copy.csv", &[csv_type], csv).await;
    assert_eq!(again.status, StatusCode::OK, "the same file is the same import");
    assert_eq!(again.json()["import_id"], report["import_id"]);

    // The request a price row stands for.
    let changed = send(
        &app,
        "PUT",
        "/v1/inventory/items/API-00001/price",
        &[JSON],
        json!({ "unit_price": { "amount_minor": 77, "currency": "EUR" }, "reason": "sale" }).to_string(),
    )
    .await;
    assert_eq!(changed.status, StatusCode::OK, "{}", changed.json());
    let event = &changed.json()["events"][0];
    assert_eq!(event["event_type"], "ItemPriceChanged");
    assert_eq!(event["data"]["previous_unit_price"]["amount_minor"], 11);
    assert_eq!(event["data"]["changed_by"], "key:test-admin");
    let prices = "sku,unit_price_minor,currency\nAPI-00001,77,EUR\nAPI-00002,5,EUR\n";
    let answer = send(&app, "POST", "/v1/imports?kind=prices&file_name=p.csv", &[csv_type], prices).await;
    let report = finished(&app, answer.headers["location"].to_str().expect("location")).await;
    assert_eq!(report["done"], 2, "a price it already has is done, changing nothing: {report}");
    let changes: i64 = sqlx::query_scalar("SELECT count(*) FROM events WHERE event_type = 'ItemPriceChanged'")
        .fetch_one(&pool)
        .await
        .expect("count");
    assert_eq!(changes, 2);
}

#[sqlx::test(migrator = "vectis_event_store::MIGRATOR")]
async fn bad_uploads_are_refused_with_problems_and_a_key_imports_only_what_it_may_write(pool: PgPool) {
    let (app, _) = command_api(pool.clone()).await;
    let csv_type = ("content-type", "text/csv");
    let problem = |answer: &vectis_test_support::command_api::Answer| {
        assert_eq!(answer.content_type, "application/problem+json");
        answer.json()
    };
    let bogus = send(&app, "POST", "/v1/imports?kind=invoices", &[csv_type], "a\n1\n").await;
    assert_eq!(bogus.status, StatusCode::BAD_REQUEST);
    let bogus = problem(&bogus);
    assert_eq!(bogus["type"], "/problems/invalid-query");
    assert!(bogus["detail"].as_str().is_some_and(|d| d.contains("invoices") && d.contains("prices")), "{bogus}");
    let unmapped = send(&app, "POST", "/v1/imports?kind=prices", &[csv_type], "sku,price\nA,1\n").await;
    assert_eq!(unmapped.status, StatusCode::UNPROCESSABLE_ENTITY);
    let unmapped = problem(&unmapped);
    assert_eq!(unmapped["type"], "/problems/unreadable-file");
    let message = unmapped["detail"].as_str().expect("detail").to_string();
    assert!(message.contains("no column for unit_price_minor, currency"), "{message}");
    let mapped =
        send(&app, "POST", "/v1/imports?kind=prices&map=price%3Dunit_price_minor", &[csv_type], "sku,price\nA,1\n")
            .await;
    assert_eq!(mapped.status, StatusCode::UNPROCESSABLE_ENTITY, "still no currency");
    let untyped = send(&app, "POST", "/v1/imports?kind=prices", &[("content-type", "application/pdf")], "%PDF").await;
    assert_eq!(untyped.status, StatusCode::UNPROCESSABLE_ENTITY);
    let huge = "x".repeat((1 << 20) + 1);
    let too_large = send(&app, "POST", "/v1/imports?kind=items", &[csv_type], huge).await;
    assert_eq!(too_large.status, StatusCode::PAYLOAD_TOO_LARGE);

    let (_, accounts_key) = app.keys.create("crm", &[Scope::AccountsWrite]).await.expect("key");
    let bearer = format!("Bearer {accounts_key}");
    let auth = ("authorization", bearer.as_str());
    let forbidden = send(&app, "POST", "/v1/imports?kind=prices", &[auth, csv_type], catalogue(1)).await;
    assert_eq!(forbidden.status, StatusCode::FORBIDDEN);
    assert!(problem(&forbidden)["detail"].as_str().is_some_and(|d| d.contains("inventory:write")));
    let accounts =
        "name,email,currency,credit_limit_minor,approval_threshold_minor\nAcme,buyer@acme.test,EUR,500000,100000\n";
    let accepted = send(&app, "POST", "/v1/imports?kind=accounts", &[auth, csv_type], accounts).await;
    assert_eq!(accepted.status, StatusCode::ACCEPTED, "{}", accepted.json());
    let (_, reader) = app.keys.create("reader", &[Scope::Read]).await.expect("key");
    let location = accepted.headers["location"].to_str().expect("location");
    let reader_auth = format!("Bearer {reader}");
    let denied = send(&app, "GET", location, &[("authorization", reader_auth.as_str())], "").await;
    assert_eq!(denied.status, StatusCode::FORBIDDEN);
    let report = finished(&app, location).await;
    assert_eq!(report["done"], 1);
    let registered: i64 = sqlx::query_scalar("SELECT count(*) FROM events WHERE event_type = 'AccountRegistered'")
        .fetch_one(&pool)
        .await
        .expect("count");
    assert_eq!(registered, 1);
}

#[sqlx::test(migrator = "vectis_event_store::MIGRATOR")]
async fn an_upload_left_unfinished_is_resumed_by_the_next_process(pool: PgPool) {
    let csv = catalogue(120);
    let surveyed = survey(csv.as_bytes(), ImportKind::Items, Format::Csv, &Mapping::new()).expect("survey");
    let new = NewImport {
        kind: ImportKind::Items,
        file_name: "left.csv".into(),
        file_sha256: surveyed.sha256,
        format: Format::Csv,
        mapping: Mapping::new(),
        actor: "staff:someone".into(),
        total_rows: surveyed.rows,
        content: Some(csv.into_bytes()),
    };
    let Ok(Begun::New(import)) = jobs::begin(&pool, &new).await else { panic!("a new import") };
    // As a process that died running it leaves it (the CLI's test kills one halfway).
    jobs::running(&pool, import.import_id).await.expect("running");
    let worker = ImportWorker::new(Importer::new(CommandHandler::new(event_store(pool.clone())), 50), 1 << 20);
    worker.resume_unfinished().await.expect("resumes");
    let (pool_ref, id) = (&pool, import.import_id);
    let status = eventually(Duration::from_secs(30), "the import resumed and finished", || async move {
        let status = jobs::find(pool_ref, id, 0).await.map_err(|e| e.to_string())?.ok_or("gone")?;
        (status.status == jobs::ImportState::Finished).then_some(status.clone()).ok_or(format!("{status:?}"))
    })
    .await;
    assert_eq!((status.done, status.failed, status.remaining), (120, 0, 0));
    let kept: Option<Vec<u8>> = jobs::content(&pool, id).await.expect("content");
    assert_eq!(kept, None, "a finished upload's file is let go");
}
