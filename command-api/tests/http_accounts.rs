//! The command API over HTTP (router driven with `oneshot`), against a real
//! PostgreSQL event store: statuses, problem documents, idempotency, If-Match.

use axum::{body::Body, http::StatusCode};
use serde_json::{json, Value};
use sqlx::PgPool;
use vectis_test_support::command_api::{command_api, command_api_with_timeout, send, Answer, TestApi, JSON};

fn registration() -> Value {
    json!({
        "name": "Acme Fasteners GmbH",
        "email": "buyer@acme.example",
        "credit_limit": {"amount_minor": 5_000_000, "currency": "EUR"},
        "approval_threshold": {"amount_minor": 1_000_000, "currency": "EUR"}
    })
}

async fn event_count(pool: &PgPool) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM events").fetch_one(pool).await.expect("count")
}

#[sqlx::test(migrator = "vectis_event_store::MIGRATOR")]
async fn registering_an_account_answers_201_with_version_events_and_token(pool: PgPool) {
    let (app, metrics) = command_api(pool).await;
    let answer = send(&app, "POST", "/v1/accounts", &[JSON], registration().to_string()).await;
    assert_eq!(answer.status, StatusCode::CREATED);
    assert_eq!(answer.content_type, "application/json");
    let body = answer.json();
    let stream_id = body["stream_id"].as_str().expect("stream id");
    assert!(stream_id.starts_with("account-"));
    assert_eq!(body["stream_version"], 1);
    assert_eq!(body["consistency_token"], format!("{stream_id}@1"));
    assert_eq!(body["events"][0]["event_type"], "AccountRegistered");
    assert_eq!(body["events"][0]["data"]["credit_limit"], json!({"amount_minor": 5_000_000, "currency": "EUR"}));

    let stream = send(&app, "GET", &format!("/v1/streams/{stream_id}"), &[], Body::empty()).await;
    assert_eq!(stream.status, StatusCode::OK);
    assert_eq!(stream.json()[0]["event_id"], body["events"][0]["event_id"]);
    assert_eq!(metrics.requests_total("POST", "/v1/accounts", 201), 1);
    assert_eq!(metrics.requests_total("GET", "/v1/streams/{stream_id}", 200), 1);
}

#[sqlx::test(migrator = "vectis_event_store::MIGRATOR")]
async fn bad_bodies_get_problem_documents_and_append_nothing(pool: PgPool) {
    let (app, _) = command_api(pool.clone()).await;
    let problem = |answer: &Answer, status: StatusCode, kind: &str| {
        assert_eq!(answer.status, status, "{}", String::from_utf8_lossy(&answer.bytes));
        assert_eq!(answer.content_type, "application/problem+json");
        assert_eq!(answer.json()["type"], kind);
        assert_eq!(answer.json()["status"], status.as_u16());
    };
    let malformed = send(&app, "POST", "/v1/accounts", &[JSON], "{\"name\": ").await;
    problem(&malformed, StatusCode::BAD_REQUEST, "/problems/malformed-body");

    let mut wrong_type = registration();
    wrong_type["credit_limit"]["amount_minor"] = json!("lots");
    let answer = send(&app, "POST", "/v1/accounts", &[JSON], wrong_type.to_string()).await;
    problem(&answer, StatusCode::UNPROCESSABLE_ENTITY, "/problems/validation");
    assert_eq!(answer.json()["errors"][0]["field"], "credit_limit.amount_minor");

    let mut unknown = registration();
    unknown["vip"] = json!(true);
    let answer = send(&app, "POST", "/v1/accounts", &[JSON], unknown.to_string()).await;
    problem(&answer, StatusCode::UNPROCESSABLE_ENTITY, "/problems/validation");
    assert!(answer.json()["errors"][0]["message"].as_str().expect("message").contains("vip"));

    let mut missing = registration();
    missing.as_object_mut().expect("object").remove("email");
    let answer = send(&app, "POST", "/v1/accounts", &[JSON], missing.to_string()).await;
    problem(&answer, StatusCode::UNPROCESSABLE_ENTITY, "/problems/validation");
    assert!(answer.json()["errors"][0]["message"].as_str().expect("message").contains("email"));

    let mut several = registration();
    several["email"] = json!("not an email");
    several["credit_limit"]["amount_minor"] = json!(-1);
    several["approval_threshold"]["currency"] = json!("euro");
    let answer = send(&app, "POST", "/v1/accounts", &[JSON], several.to_string()).await;
    problem(&answer, StatusCode::UNPROCESSABLE_ENTITY, "/problems/validation");
    let fields: Vec<String> = answer.json()["errors"]
        .as_array()
        .expect("errors")
        .iter()
        .map(|e| e["field"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(fields, ["email", "credit_limit.amount_minor", "approval_threshold.currency"]);

    let answer = send(&app, "POST", "/v1/accounts", &[], registration().to_string()).await;
    problem(&answer, StatusCode::UNSUPPORTED_MEDIA_TYPE, "/problems/unsupported-media-type");

    let huge = json!({"name": "x".repeat(100_000), "email": "a@b.c"}).to_string();
    let answer = send(&app, "POST", "/v1/accounts", &[JSON], huge).await;
    problem(&answer, StatusCode::PAYLOAD_TOO_LARGE, "/problems/payload-too-large");

    let answer =
        send(&app, "POST", "/v1/accounts", &[JSON, ("if-match", "yesterday")], registration().to_string()).await;
    problem(&answer, StatusCode::BAD_REQUEST, "/problems/bad-header");

    assert_eq!(event_count(&pool).await, 0, "bad input never appends anything");
}

async fn register(app: &TestApi) -> String {
    let answer = send(app, "POST", "/v1/accounts", &[JSON], registration().to_string()).await;
    assert_eq!(answer.status, StatusCode::CREATED);
    answer.json()["stream_id"].as_str().expect("id").trim_start_matches("account-").to_string()
}

#[sqlx::test(migrator = "vectis_event_store::MIGRATOR")]
async fn if_match_conflicts_are_409_with_the_current_version(pool: PgPool) {
    let (app, _) = command_api(pool).await;
    let id = register(&app).await;
    let uri = format!("/v1/accounts/{id}/credit-limit");
    let body = json!({"credit_limit": {"amount_minor": 7_000_000, "currency": "EUR"}}).to_string();
    let stale = send(&app, "PUT", &uri, &[JSON, ("if-match", "\"7\"")], body.clone()).await;
    assert_eq!(stale.status, StatusCode::CONFLICT);
    assert_eq!(stale.json()["type"], "/problems/version-conflict");
    assert_eq!(stale.json()["current_version"], 1);
    let current = send(&app, "PUT", &uri, &[JSON, ("if-match", "\"1\"")], body).await;
    assert_eq!(current.status, StatusCode::OK);
    assert_eq!(current.json()["stream_version"], 2);
    assert_eq!(current.json()["events"][0]["event_type"], "CreditLimitChanged");

    let usd = json!({"approval_threshold": {"amount_minor": 5, "currency": "USD"}}).to_string();
    let rule = send(&app, "PUT", &format!("/v1/accounts/{id}/approval-threshold"), &[JSON], usd).await;
    assert_eq!(rule.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(rule.json()["type"], "/problems/business-rule");

    let missing = uuid::Uuid::now_v7();
    let body = json!({"credit_limit": {"amount_minor": 1, "currency": "EUR"}}).to_string();
    let answer = send(&app, "PUT", &format!("/v1/accounts/{missing}/credit-limit"), &[JSON], body).await;
    assert_eq!(answer.status, StatusCode::NOT_FOUND);
    let answer = send(&app, "GET", &format!("/v1/streams/account-{missing}"), &[], Body::empty()).await;
    assert_eq!(answer.status, StatusCode::NOT_FOUND);
}

#[sqlx::test(migrator = "vectis_event_store::MIGRATOR")]
async fn idempotent_retries_get_identical_bytes_and_append_once(pool: PgPool) {
    let (app, _) = command_api(pool.clone()).await;
    let key = ("idempotency-key", "3f0c2a4e-registration-1");
    let first = send(&app, "POST", "/v1/accounts", &[JSON, key], registration().to_string()).await;
    let again = send(&app, "POST", "/v1/accounts", &[JSON, key], registration().to_string()).await;
    assert_eq!(first.status, StatusCode::CREATED);
    assert_eq!((again.status, &again.content_type, &again.bytes), (first.status, &first.content_type, &first.bytes));
    assert_eq!(event_count(&pool).await, 1);

    let mut changed = registration();
    changed["name"] = json!("Someone Else");
    let reused = send(&app, "POST", "/v1/accounts", &[JSON, key], changed.to_string()).await;
    assert_eq!(reused.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(reused.json()["type"], "/problems/idempotency-key-reused");

    let headers = [JSON, ("idempotency-key", "concurrent-registration")];
    let answers = futures::future::join_all(
        (0..20).map(|_| send(&app, "POST", "/v1/accounts", &headers, registration().to_string())),
    )
    .await;
    assert!(answers.iter().all(|a| a.status == StatusCode::CREATED && a.bytes == answers[0].bytes));
    assert_eq!(event_count(&pool).await, 2, "twenty concurrent identical requests append once");

    let bad_key =
        send(&app, "POST", "/v1/accounts", &[JSON, ("idempotency-key", "")], registration().to_string()).await;
    assert_eq!(bad_key.status, StatusCode::BAD_REQUEST);
}

/// A deadline can strike while the commit is already on its way, so a 503 does not
/// say whether the command took effect. The same Idempotency-Key settles it: the retry
/// replays the committed answer or runs the command for the first time, never twice.
#[sqlx::test(migrator = "vectis_event_store::MIGRATOR")]
async fn a_timed_out_command_is_settled_by_retrying_with_its_idempotency_key(pool: PgPool) {
    let (hasty, _) = command_api_with_timeout(pool.clone(), std::time::Duration::ZERO).await;
    let bearer = format!("Bearer {}", hasty.key);
    let headers = [JSON, ("authorization", bearer.as_str()), ("idempotency-key", "slow-1")];
    let answer = send(&hasty, "POST", "/v1/accounts", &headers, registration().to_string()).await;
    assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(answer.json()["type"], "/problems/timeout");
    assert!(answer.json()["detail"].as_str().expect("detail").contains("same Idempotency-Key"));

    // Same database, same API key, a sane deadline.
    let (patient, _) = command_api(pool.clone()).await;
    let retry = send(&patient, "POST", "/v1/accounts", &headers, registration().to_string()).await;
    assert_eq!(retry.status, StatusCode::CREATED);
    let again = send(&patient, "POST", "/v1/accounts", &headers, registration().to_string()).await;
    assert_eq!(again.bytes, retry.bytes);
    assert_eq!(event_count(&pool).await, 1, "exactly one registration, whichever way the first attempt went");
}

#[sqlx::test(migrator = "vectis_event_store::MIGRATOR")]
async fn every_response_carries_a_request_id(pool: PgPool) {
    let (app, _) = command_api(pool).await;
    let request = |id: Option<&str>| {
        let mut builder = axum::http::Request::builder()
            .method("POST")
            .uri("/v1/accounts")
            .header("content-type", "application/json")
            .header("authorization", format!("Bearer {}", app.key));
        if let Some(id) = id {
            builder = builder.header("x-request-id", id);
        }
        builder.body(axum::body::Body::from(registration().to_string())).expect("request")
    };
    use tower::ServiceExt;
    let echoed = app.router.clone().oneshot(request(Some("client-chosen-42"))).await.expect("response");
    assert_eq!(echoed.headers()["x-request-id"], "client-chosen-42");
    let generated = app.router.clone().oneshot(request(None)).await.expect("response");
    let id = generated.headers()["x-request-id"].to_str().expect("ascii");
    assert!(uuid::Uuid::parse_str(id).is_ok(), "{id}");
}
