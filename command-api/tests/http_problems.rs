//! Every refusal is a problem document, including those axum would answer in plain
//! text: a path parameter of the wrong shape, a path no route has, a method a route
//! does not take.

use axum::{body::Body, http::StatusCode};
use sqlx::PgPool;
use vectis_test_support::command_api::{command_api, send};

#[sqlx::test(migrator = "vectis_event_store::MIGRATOR")]
async fn bad_paths_unknown_routes_and_wrong_methods_are_problems(pool: PgPool) {
    let (app, _) = command_api(pool).await;
    for (method, uri, status, kind) in [
        ("POST", "/v1/orders/not-a-uuid/approve", StatusCode::BAD_REQUEST, "/problems/invalid-path"),
        ("POST", "/v1/orders/%3D%C3%9C/approve", StatusCode::BAD_REQUEST, "/problems/invalid-path"),
        (
            "POST",
            "/v1/accounts/G0000000-0000-0000-0000-000000000000/reinstate",
            StatusCode::BAD_REQUEST,
            "/problems/invalid-path",
        ),
        ("GET", "/v1/nothing-here", StatusCode::NOT_FOUND, "/problems/no-route"),
        ("DELETE", "/v1/orders", StatusCode::METHOD_NOT_ALLOWED, "/problems/method-not-allowed"),
    ] {
        let answer = send(&app, method, uri, &[], Body::empty()).await;
        assert_eq!(answer.status, status, "{method} {uri}");
        assert_eq!(answer.content_type, "application/problem+json", "{method} {uri}");
        let problem = answer.json();
        assert_eq!(problem["type"], kind, "{method} {uri}: {problem}");
        assert_eq!(problem["status"], status.as_u16());
        assert!(problem["detail"].as_str().is_some_and(|d| !d.is_empty()), "{problem}");
    }
    let bad_id = send(&app, "POST", "/v1/orders/not-a-uuid/approve", &[], Body::empty()).await.json();
    assert!(bad_id["detail"].as_str().is_some_and(|d| d.contains("id") || d.contains("UUID")), "{bad_id}");
}
