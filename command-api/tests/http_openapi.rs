//! The OpenAPI document: served without a key, valid OpenAPI 3.1 by an independent
//! validator, complete (every endpoint of the API, with its scope), and true — real
//! requests and responses of a whole order lifecycle match the schemas it documents.

use std::process::Command;

use axum::{body::Body, http::StatusCode};
use serde_json::{json, Value};
use sqlx::PgPool;
use vectis_test_support::{
    command_api::{command_api, send, Answer, TestApi, JSON},
    shop::mark_stock_held,
};

async fn document(api: &TestApi) -> Value {
    let answer = send(api, "GET", "/openapi.json", &[("authorization", "")], Body::empty()).await;
    assert_eq!(answer.status, StatusCode::OK);
    answer.json()
}

/// The command API's operations as the issue lists them, with the scope each needs.
const OPERATIONS: [(&str, &str, &str); 26] = [
    ("post", "/v1/accounts", "accounts:write"),
    ("post", "/v1/accounts/{id}/approve", "admin"),
    ("post", "/v1/accounts/{id}/reject", "admin"),
    ("post", "/v1/accounts/{id}/suspend", "admin"),
    ("post", "/v1/accounts/{id}/reinstate", "admin"),
    ("put", "/v1/accounts/{id}/credit-limit", "accounts:write"),
    ("put", "/v1/accounts/{id}/approval-threshold", "accounts:write"),
    ("post", "/v1/inventory/items", "inventory:write"),
    ("post", "/v1/inventory/items/{sku}/receipts", "inventory:write"),
    ("post", "/v1/inventory/items/{sku}/adjustments", "inventory:write"),
    ("post", "/v1/inventory/items/{sku}/reservations", "inventory:write"),
    ("post", "/v1/inventory/items/{sku}/reservations/{id}/release", "inventory:write"),
    ("post", "/v1/inventory/items/{sku}/reservations/{id}/commit", "inventory:write"),
    ("post", "/v1/orders", "orders:write"),
    ("post", "/v1/orders/{id}/approve", "admin"),
    ("post", "/v1/orders/{id}/reject", "admin"),
    ("post", "/v1/orders/{id}/confirm", "orders:write"),
    ("post", "/v1/orders/{id}/cancel", "orders:write"),
    ("post", "/v1/orders/{id}/ship", "orders:write"),
    ("post", "/v1/orders/{id}/deliver", "orders:write"),
    ("post", "/v1/accounts/{id}/recurring-orders", "orders:write"),
    ("post", "/v1/accounts/{id}/recurring-orders/{recurring_order_id}/pause", "orders:write"),
    ("post", "/v1/accounts/{id}/recurring-orders/{recurring_order_id}/resume", "orders:write"),
    ("post", "/v1/accounts/{id}/recurring-orders/{recurring_order_id}/cancel", "orders:write"),
    ("get", "/v1/streams/{stream_id}", "admin"),
    ("put", "/v1/inventory/items/{sku}/price", "inventory:write"),
];

#[sqlx::test(migrator = "vectis_event_store::MIGRATOR")]
async fn the_document_lists_every_operation_with_its_scope_and_shared_answers(pool: PgPool) {
    let (api, _) = command_api(pool).await;
    let doc = document(&api).await;
    assert_eq!(doc["openapi"], "3.1.0");
    let documented: usize =
        doc["paths"].as_object().expect("paths").values().map(|item| item.as_object().map_or(0, |m| m.len())).sum();
    // The operations above, and the two of /v1/imports (whose scope is the import's kind's).
    assert_eq!(documented, 28, "exactly the API's operations are documented");
    for (method, path, scope) in OPERATIONS {
        let operation = &doc["paths"][path][method];
        assert!(operation.is_object(), "{method} {path} is not documented");
        assert_eq!(operation["security"], json!([{ "api_key": [scope] }]), "{method} {path}");
        for status in ["401", "403", "429", "500", "503"] {
            assert!(operation["responses"][status].is_object(), "{method} {path} lacks {status}");
        }
        if method != "get" {
            for status in ["400", "409", "413", "415", "422"] {
                assert!(operation["responses"][status].is_object(), "{method} {path} lacks {status}");
            }
            let headers: Vec<&str> = operation["parameters"]
                .as_array()
                .expect("parameters")
                .iter()
                .filter(|p| p["in"] == "header")
                .filter_map(|p| p["name"].as_str())
                .collect();
            assert_eq!(headers, ["If-Match", "Idempotency-Key", "X-Correlation-Id", "traceparent"], "{method} {path}");
            // The headers the server checks say what it accepts (an empty value is refused).
            for header in ["If-Match", "Idempotency-Key"] {
                let schema = operation["parameters"]
                    .as_array()
                    .and_then(|ps| ps.iter().find(|p| p["name"] == header))
                    .map(|p| &p["schema"])
                    .expect("documented");
                assert!(
                    schema["pattern"].is_string() && schema["minLength"] == 1,
                    "{method} {path} {header}: {schema}"
                );
            }
        }
        if path.contains('{') {
            assert!(operation["responses"]["404"].is_object(), "{method} {path} lacks 404");
        }
    }
    assert_eq!(doc["components"]["securitySchemes"]["api_key"]["scheme"], "bearer");
    // A body that may be left out is optional, not nullable.
    let release = &doc["paths"]["/v1/inventory/items/{sku}/reservations/{id}/release"]["post"]["requestBody"];
    assert!(release.get("required").is_none(), "{release}");
    assert_eq!(release["content"]["application/json"]["schema"], json!({"$ref": "#/components/schemas/Release"}));
    let retry_after = &doc["paths"]["/v1/orders"]["post"]["responses"]["429"]["headers"]["Retry-After"];
    assert!(retry_after.is_object(), "429 documents Retry-After");
}

/// The schema of `field` in component `name`, through a `$ref` or a nullable `oneOf`.
fn field_schema<'a>(doc: &'a Value, name: &str, field: &str) -> &'a Value {
    let schema = &doc["components"]["schemas"][name]["properties"][field];
    match schema["oneOf"].as_array() {
        Some(options) => options.iter().find(|s| s["type"] != "null").expect("a non-null option"),
        None => schema,
    }
}

#[sqlx::test(migrator = "vectis_event_store::MIGRATOR")]
async fn every_rule_the_server_checks_is_a_constraint_in_the_document(pool: PgPool) {
    let (api, _) = command_api(pool).await;
    let doc = document(&api).await;
    let money = &doc["components"]["schemas"]["Money"]["properties"];
    assert_eq!(money["currency"]["pattern"], "^[A-Z]{3}$");
    assert_eq!(money["amount_minor"]["minimum"], 0);
    assert_eq!(field_schema(&doc, "CreateItem", "sku")["pattern"], "^[A-Z0-9][A-Z0-9._-]{0,63}$");
    for (body, field, max) in [
        ("RegisterAccount", "name", 200),
        ("Reason", "reason", 1000),
        ("Ship", "carrier", 100),
        ("Ship", "tracking_number", 100),
        ("Cancel", "reason", 1000),
        ("ChangePrice", "reason", 200),
    ] {
        let schema = field_schema(&doc, body, field);
        assert_eq!(
            (schema["minLength"].as_u64(), schema["maxLength"].as_u64()),
            (Some(1), Some(max)),
            "{body}.{field}"
        );
        assert!(schema["pattern"].is_string(), "{body}.{field}: blank text is refused, and the document says so");
    }
    for (body, field) in [("Receive", "quantity"), ("Reserve", "quantity"), ("Line", "quantity")] {
        let schema = field_schema(&doc, body, field);
        assert_eq!(
            (schema["minimum"].as_i64(), schema["maximum"].as_i64()),
            (Some(1), Some(1_000_000_000)),
            "{body}.{field}"
        );
    }
    let lines = &doc["components"]["schemas"]["LineList"];
    assert_eq!((lines["minItems"].as_u64(), lines["maxItems"].as_u64()), (Some(1), Some(500)));
    assert_eq!(field_schema(&doc, "ScheduleRecurringOrder", "max_runs")["minimum"], 1);
    let days = &doc["components"]["schemas"]["Day"]["enum"];
    assert_eq!(days.as_array().map(Vec::len), Some(7), "{days}");
    let kind = doc["paths"]["/v1/imports"]["post"]["parameters"]
        .as_array()
        .and_then(|ps| ps.iter().find(|p| p["name"] == "kind"))
        .expect("kind is documented");
    assert_eq!(kind["required"], true);
}

#[sqlx::test(migrator = "vectis_event_store::MIGRATOR")]
async fn creating_operations_link_to_what_can_be_done_next(pool: PgPool) {
    let (api, _) = command_api(pool).await;
    let doc = document(&api).await;
    let mut operations = std::collections::HashMap::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for operation in item.as_object().expect("methods").values() {
            operations.insert(operation["operationId"].as_str().expect("an id").to_string(), (path.clone(), operation));
        }
    }
    let mut links = 0;
    for (source, (_, operation)) in &operations {
        for (status, response) in operation["responses"].as_object().expect("responses") {
            for (name, link) in response["links"].as_object().into_iter().flatten() {
                links += 1;
                let target = link["operationId"].as_str().expect("links name their target");
                let (target_path, _) =
                    operations.get(target).unwrap_or_else(|| panic!("{source} {status} {name}: no {target}"));
                // Every path parameter of the target is filled in by the link.
                for parameter in target_path.split('{').skip(1).filter_map(|p| p.split('}').next()) {
                    assert!(link["parameters"][parameter].is_string(), "{source} → {target} lacks {parameter}");
                }
            }
        }
    }
    for (source, status, name) in [
        ("accounts_register", "201", "Approve"),
        ("accounts_register", "201", "PlaceOrder"),
        ("inventory_create", "201", "Receive"),
        ("inventory_reserve", "201", "Commit"),
        ("orders_place", "201", "Confirm"),
        ("orders_confirm", "200", "Ship"),
        ("recurring_orders_schedule", "201", "Pause"),
        ("imports_start_import", "202", "Status"),
    ] {
        let link = &operations[source].1["responses"][status]["links"][name];
        assert!(link.is_object(), "{source} {status} has no {name} link");
    }
    assert!(links >= 30, "{links} links");
}

/// `openapi-spec-validator` (PyPI), installed by `scripts/test`; the path can be set
/// with `OPENAPI_SPEC_VALIDATOR`.
fn spec_validator() -> String {
    std::env::var("OPENAPI_SPEC_VALIDATOR").unwrap_or_else(|_| "openapi-spec-validator".into())
}

#[sqlx::test(migrator = "vectis_event_store::MIGRATOR")]
async fn the_document_is_valid_openapi_3_1(pool: PgPool) {
    let (api, _) = command_api(pool).await;
    let doc = document(&api).await;
    let file = std::env::temp_dir().join(format!("vectis-openapi-{}.json", uuid::Uuid::now_v7()));
    std::fs::write(&file, serde_json::to_vec_pretty(&doc).expect("json")).expect("write");
    let validator = spec_validator();
    let output = Command::new(&validator).arg("--schema").arg("3.1").arg(&file).output().unwrap_or_else(|e| {
        panic!("cannot run {validator} ({e}): run scripts/test, which installs it, or set OPENAPI_SPEC_VALIDATOR")
    });
    let _ = std::fs::remove_file(&file);
    let report = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "openapi-spec-validator refused the document:\n{report}");
    assert!(report.contains("OK"), "{report}");
}

#[sqlx::test(migrator = "vectis_event_store::MIGRATOR")]
async fn the_interactive_page_is_served(pool: PgPool) {
    let (api, _) = command_api(pool).await;
    let page = send(&api, "GET", "/docs/", &[], Body::empty()).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(String::from_utf8_lossy(&page.bytes).contains("swagger-ui"));
    let initializer = send(&api, "GET", "/docs/swagger-initializer.js", &[], Body::empty()).await;
    assert_eq!(initializer.status, StatusCode::OK);
    assert!(String::from_utf8_lossy(&initializer.bytes).contains("/openapi.json"), "the page loads the document");
}

/// Checks `instance` against the document's schema at `pointer` (a JSON pointer into
/// the document); the document is the root so its `#/components/...` references resolve.
fn conforms(doc: &Value, pointer: &str, instance: &Value) {
    let mut root = doc.clone();
    // A URI fragment: the braces of path templates must be percent-encoded.
    root["$ref"] = json!(format!("#{}", pointer.replace('{', "%7B").replace('}', "%7D")));
    let validator = jsonschema::options()
        .with_draft(jsonschema::Draft::Draft202012)
        .build(&root)
        .unwrap_or_else(|e| panic!("the schema at {pointer} does not compile: {e}"));
    let errors: Vec<String> =
        validator.iter_errors(instance).map(|e| format!("{} at {}", e, e.instance_path)).collect();
    assert!(errors.is_empty(), "{instance} does not match {pointer}: {errors:?}");
}

fn escape(path: &str) -> String {
    path.replace('~', "~0").replace('/', "~1")
}

/// Sends a command and checks the request body, and the response under its status,
/// against what the document says.
async fn exchange(api: &TestApi, doc: &Value, method: &str, template: &str, uri: &str, body: Option<Value>) -> Answer {
    let operation = format!("/paths/{}/{method}", escape(template));
    let answer = match &body {
        Some(body) => {
            conforms(doc, &format!("{operation}/requestBody/content/application~1json/schema"), body);
            send(api, &method.to_uppercase(), uri, &[JSON], body.to_string()).await
        }
        None => send(api, &method.to_uppercase(), uri, &[], Body::empty()).await,
    };
    let status = answer.status.as_str().to_string();
    let media = if answer.status.is_success() { "application~1json" } else { "application~1problem+json" };
    assert!(
        doc.pointer(&format!("{operation}/responses/{status}")).is_some(),
        "{method} {template} answered {status}, which it does not document"
    );
    conforms(doc, &format!("{operation}/responses/{status}/content/{media}/schema"), &answer.json());
    answer
}

#[sqlx::test(migrator = "vectis_event_store::MIGRATOR")]
async fn real_requests_and_responses_match_the_documented_schemas(pool: PgPool) {
    let (api, _) = command_api(pool.clone()).await;
    let doc = document(&api).await;
    let money = |amount: i64| json!({"amount_minor": amount, "currency": "EUR"});

    let registered = exchange(&api, &doc, "post", "/v1/accounts", "/v1/accounts", Some(json!({
        "name": "Acme", "email": "buyer@acme.example", "credit_limit": money(100_000), "approval_threshold": money(100)
    }))).await;
    let account = registered.json()["stream_id"].as_str().expect("stream").trim_start_matches("account-").to_string();
    exchange(&api, &doc, "post", "/v1/accounts/{id}/approve", &format!("/v1/accounts/{account}/approve"), None).await;
    exchange(
        &api,
        &doc,
        "put",
        "/v1/accounts/{id}/credit-limit",
        &format!("/v1/accounts/{account}/credit-limit"),
        Some(json!({"credit_limit": money(200_000)})),
    )
    .await;
    exchange(
        &api,
        &doc,
        "post",
        "/v1/inventory/items",
        "/v1/inventory/items",
        Some(json!({
            "sku": "BOLT-M8", "name": "Bolt", "description": "M8 hex bolt", "unit_price": money(42)
        })),
    )
    .await;
    exchange(
        &api,
        &doc,
        "post",
        "/v1/inventory/items/{sku}/receipts",
        "/v1/inventory/items/BOLT-M8/receipts",
        Some(json!({"quantity": 10, "reference": "PO-1"})),
    )
    .await;
    exchange(
        &api,
        &doc,
        "post",
        "/v1/inventory/items/{sku}/adjustments",
        "/v1/inventory/items/BOLT-M8/adjustments",
        Some(json!({"delta": -1, "reason": "damaged", "note": "dropped"})),
    )
    .await;
    let reserved = exchange(
        &api,
        &doc,
        "post",
        "/v1/inventory/items/{sku}/reservations",
        "/v1/inventory/items/BOLT-M8/reservations",
        Some(json!({"order_id": uuid::Uuid::now_v7(), "quantity": 2, "expires_at": "2999-01-01T00:00:00Z"})),
    )
    .await;
    let reservation = reserved.json()["events"][0]["data"]["reservation_id"].as_str().expect("id").to_string();
    exchange(
        &api,
        &doc,
        "post",
        "/v1/inventory/items/{sku}/reservations/{id}/release",
        &format!("/v1/inventory/items/BOLT-M8/reservations/{reservation}/release"),
        Some(json!({"reason": "changed"})),
    )
    .await;

    let placed = exchange(
        &api,
        &doc,
        "post",
        "/v1/orders",
        "/v1/orders",
        Some(json!({
            "account_id": account, "lines": [{"sku": "BOLT-M8", "quantity": 3}]
        })),
    )
    .await;
    let order = placed.json()["stream_id"].as_str().expect("stream").trim_start_matches("order-").to_string();
    exchange(&api, &doc, "post", "/v1/orders/{id}/approve", &format!("/v1/orders/{order}/approve"), None).await;
    // The order lifecycle's step (no workflow runs here): every line's stock held.
    mark_stock_held(&pool, order.parse().expect("uuid")).await;
    exchange(&api, &doc, "post", "/v1/orders/{id}/confirm", &format!("/v1/orders/{order}/confirm"), None).await;
    exchange(
        &api,
        &doc,
        "post",
        "/v1/orders/{id}/ship",
        &format!("/v1/orders/{order}/ship"),
        Some(json!({"carrier": "DHL", "tracking_number": "JD0001"})),
    )
    .await;
    exchange(&api, &doc, "get", "/v1/streams/{stream_id}", &format!("/v1/streams/order-{order}"), None).await;

    // Refusals are documented problems too: a request the document allows, over the
    // account's credit limit.
    let over_limit = json!({"account_id": account, "lines": [{"sku": "BOLT-M8", "quantity": 1_000_000}]});
    let invalid = exchange(&api, &doc, "post", "/v1/orders", "/v1/orders", Some(over_limit)).await;
    assert_eq!(invalid.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(invalid.json()["type"], "/problems/business-rule");
    let state =
        exchange(&api, &doc, "post", "/v1/orders/{id}/confirm", &format!("/v1/orders/{order}/confirm"), None).await;
    assert_eq!(state.status, StatusCode::CONFLICT);
    let missing = exchange(
        &api,
        &doc,
        "post",
        "/v1/orders/{id}/deliver",
        &format!("/v1/orders/{}/deliver", uuid::Uuid::now_v7()),
        None,
    )
    .await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
}
