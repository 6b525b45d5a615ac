//! Rate limiting through the command API: bursts beyond a policy's capacity get 429s
//! that append nothing, a spoofed `X-Forwarded-For` from an untrusted peer changes
//! nothing, a trusted proxy's does, and a policy change applies without a restart.

use std::{net::IpAddr, time::Duration};

use axum::http::StatusCode;
use sqlx::PgPool;
use vectis_runtime::rate_limit::{PolicyError, PolicyRow, TrustedProxies};
use vectis_test_support::command_api::{command_api, command_api_configured, send, Answer, TestApi, JSON, PEER};
use vectis_test_support::until;

const REGISTER: &str = r#"{"name":"Acme","email":"buyer@acme.example","credit_limit":{"amount_minor":100,"currency":"EUR"},"approval_threshold":{"amount_minor":50,"currency":"EUR"}}"#;

/// Replaces every policy with one for `POST /v1/accounts`: `capacity` at once, then
/// one request per 100 s, so no token comes back while a test runs.
async fn limit_registrations(pool: &PgPool, capacity: i32) {
    sqlx::query("DELETE FROM rate_limit_policies").execute(pool).await.expect("delete");
    sqlx::query(
        "INSERT INTO rate_limit_policies (client, endpoint, capacity, refill_per_second) VALUES ('*', 'POST /v1/accounts', $1, 0.01)",
    )
    .bind(capacity)
    .execute(pool)
    .await
    .expect("policy");
}

async fn register(api: &TestApi, forwarded_for: Option<&str>) -> Answer {
    let mut headers = vec![JSON];
    if let Some(hops) = forwarded_for {
        headers.push(("x-forwarded-for", hops));
    }
    send(api, "POST", "/v1/accounts", &headers, REGISTER).await
}

fn header(answer: &Answer, name: &str) -> String {
    answer.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_else(|| panic!("no {name} header")).to_string()
}

async fn events_in_store(pool: &PgPool) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM events").fetch_one(pool).await.expect("count")
}

#[sqlx::test(migrator = "vectis_event_store::MIGRATOR")]
async fn a_burst_beyond_capacity_is_refused_with_429_and_appends_nothing(pool: PgPool) {
    limit_registrations(&pool, 3).await;
    let (api, metrics) = command_api(pool.clone()).await;

    for remaining in ["2", "1", "0"] {
        let answer = register(&api, None).await;
        assert_eq!(answer.status, StatusCode::CREATED);
        assert_eq!(header(&answer, "ratelimit-limit"), "3");
        assert_eq!(header(&answer, "ratelimit-remaining"), remaining);
        assert_eq!(header(&answer, "ratelimit-policy"), "3;w=300");
    }
    let refused = register(&api, None).await;
    assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(refused.content_type, "application/problem+json");
    assert_eq!(refused.json()["type"], "/problems/rate-limited");
    assert_eq!(header(&refused, "retry-after"), "100", "one token per 100 s");
    assert_eq!(header(&refused, "ratelimit-remaining"), "0");
    assert_eq!(events_in_store(&pool).await, 3, "the refused command appended nothing");

    // Another endpoint has no policy here and is not limited.
    let stream = send(&api, "GET", "/v1/streams/account-00000000-0000-0000-0000-000000000000", &[], "").await;
    assert_eq!(stream.status, StatusCode::NOT_FOUND);
    assert!(stream.headers.get("ratelimit-limit").is_none());

    assert_eq!(api.rate_limiter.refusals("POST", "/v1/accounts"), 1);
    assert_eq!(metrics.requests_total("POST", "/v1/accounts", 429), 1);
}

#[sqlx::test(migrator = "vectis_event_store::MIGRATOR")]
async fn limiting_runs_before_authentication(pool: PgPool) {
    limit_registrations(&pool, 1).await;
    let (api, _) = command_api(pool.clone()).await;
    let unknown_key = [JSON, ("authorization", "Bearer vk_unknown")];
    assert_eq!(send(&api, "POST", "/v1/accounts", &unknown_key, REGISTER).await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(send(&api, "POST", "/v1/accounts", &unknown_key, REGISTER).await.status, StatusCode::TOO_MANY_REQUESTS);
}

#[sqlx::test(migrator = "vectis_event_store::MIGRATOR")]
async fn a_spoofed_forwarded_for_from_an_untrusted_peer_is_ignored(pool: PgPool) {
    limit_registrations(&pool, 2).await;
    let (api, _) = command_api(pool.clone()).await;
    assert_eq!(register(&api, Some("198.51.100.1")).await.status, StatusCode::CREATED);
    assert_eq!(register(&api, Some("198.51.100.2")).await.status, StatusCode::CREATED);
    let answer = register(&api, Some("198.51.100.3")).await;
    assert_eq!(answer.status, StatusCode::TOO_MANY_REQUESTS, "every request counts against the peer itself");
}

#[sqlx::test(migrator = "vectis_event_store::MIGRATOR")]
async fn behind_a_trusted_proxy_each_forwarded_client_has_its_own_bucket(pool: PgPool) {
    limit_registrations(&pool, 1).await;
    let trusted: TrustedProxies = PEER.to_string().parse().expect("trusted");
    let (api, _) = command_api_configured(pool.clone(), Duration::from_secs(30), trusted, PEER).await;

    assert_eq!(register(&api, Some("198.51.100.1")).await.status, StatusCode::CREATED);
    assert_eq!(register(&api, Some("198.51.100.1")).await.status, StatusCode::TOO_MANY_REQUESTS);
    // A client that prepends a made-up hop is still itself: the proxy appended it.
    assert_eq!(register(&api, Some("203.0.113.50, 198.51.100.1")).await.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(register(&api, Some("198.51.100.2")).await.status, StatusCode::CREATED);
    // No header: the proxy itself is the client.
    assert_eq!(register(&api, None).await.status, StatusCode::CREATED);
    assert_eq!(register(&api, None).await.status, StatusCode::TOO_MANY_REQUESTS);
}

#[sqlx::test(migrator = "vectis_event_store::MIGRATOR")]
async fn a_policy_change_takes_effect_without_a_restart(pool: PgPool) {
    limit_registrations(&pool, 1).await;
    let (api, _) = command_api(pool.clone()).await;
    assert_eq!(register(&api, None).await.status, StatusCode::CREATED);
    assert_eq!(register(&api, None).await.status, StatusCode::TOO_MANY_REQUESTS);

    // Raise the limit for this client only (as `vectis rate-limits set` does); the
    // running service hears of it.
    PolicyRow::set(&pool, &PEER.to_string(), "*", 1000, 1000.0, "raised for a test").await.expect("policy");
    let peer: IpAddr = PEER;
    until(Duration::from_secs(10), "the new policy to load", || {
        api.rate_limiter.policies().governing(peer, "POST /v1/accounts").map(|p| p.capacity) == Some(1000)
    })
    .await;
    let answer = register(&api, None).await;
    assert_eq!(answer.status, StatusCode::CREATED);
    assert_eq!(header(&answer, "ratelimit-limit"), "1000");

    // Delete every policy: nothing is limited any more.
    sqlx::query("DELETE FROM rate_limit_policies").execute(&pool).await.expect("delete");
    until(Duration::from_secs(10), "the deletion to be noticed", || api.rate_limiter.policies().is_empty()).await;
    assert!(register(&api, None).await.headers.get("ratelimit-limit").is_none());
}

#[sqlx::test(migrator = "vectis_event_store::MIGRATOR")]
async fn a_malformed_policy_is_refused_by_the_table(pool: PgPool) {
    for (client, endpoint, capacity) in
        [("10.0.0.1/8", "*", 10), ("not-an-address", "*", 10), ("*", "/v1/orders", 10), ("*", "*", 0)]
    {
        let inserted = sqlx::query(
            "INSERT INTO rate_limit_policies (client, endpoint, capacity, refill_per_second) VALUES ($1, $2, $3, 1)",
        )
        .bind(client)
        .bind(endpoint)
        .bind(capacity)
        .execute(&pool)
        .await;
        assert!(inserted.is_err(), "({client}, {endpoint}, {capacity}) was accepted");
    }
}

#[sqlx::test(migrator = "vectis_event_store::MIGRATOR")]
async fn setting_a_malformed_policy_is_refused_with_the_reason(pool: PgPool) {
    for (client, endpoint, capacity, rate, reason) in [
        ("10.0.0.0/33", "*", 10, 1.0, "prefix length"),
        ("gateway", "*", 10, 1.0, "not an IP address"),
        ("*", "/v1/orders", 10, 1.0, "METHOD /route"),
        ("*", "*", 0, 1.0, "capacity"),
        ("*", "*", 10, 0.0, "refill rate"),
    ] {
        match PolicyRow::set(&pool, client, endpoint, capacity, rate, "").await {
            Err(PolicyError::Invalid { reason: said, .. }) => assert!(said.contains(reason), "{said}"),
            other => panic!("({client}, {endpoint}, {capacity}, {rate}): {other:?}"),
        }
    }
    let rows = PolicyRow::list(&pool).await.expect("list");
    assert_eq!(rows.len(), 1, "only the migration's default: {rows:?}");
    assert!(PolicyRow::delete(&pool, "*", "*").await.expect("delete"));
    assert!(!PolicyRow::delete(&pool, "*", "*").await.expect("delete"), "already gone");
}
