//! The command API process through a real socket: a command, /ready and /metrics.

use std::{net::SocketAddr, time::Duration};

use sqlx::PgPool;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use vectis_command_api::process::{CommandApi, CommandApiSettings};
use vectis_runtime::{
    auth::{ApiKeys, Scope},
    Shutdown,
};

/// Status, lower-cased head (status line and headers), and body.
async fn http_full(addr: SocketAddr, method: &str, path: &str, key: &str, body: &str) -> (u16, String, String) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nAuthorization: Bearer {key}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut response = String::new();
    stream.read_to_string(&mut response).await.expect("read");
    let status = response.split_whitespace().nth(1).and_then(|s| s.parse().ok()).expect("status line");
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    (status, head.to_ascii_lowercase(), body.to_string())
}

async fn http(addr: SocketAddr, method: &str, path: &str, key: &str, body: &str) -> (u16, String) {
    let (status, _, body) = http_full(addr, method, path, key, body).await;
    (status, body)
}

#[sqlx::test(migrator = "vectis_event_store::MIGRATOR")]
async fn the_process_serves_commands_metrics_and_readiness(pool: PgPool) {
    let mut settings = CommandApiSettings::from_env().expect("settings");
    settings.addr = SocketAddr::from(([127, 0, 0, 1], 0));
    let shutdown = Shutdown::new();
    let (_, key) = ApiKeys::new(pool.clone()).create("process-test", &[Scope::AccountsWrite]).await.expect("key");
    let api = CommandApi::build_with_pool(settings, pool, shutdown.clone()).await.expect("builds");
    let addr = api.addr();
    let serving = tokio::spawn(api.run_until_stopped());

    let body = r#"{"name":"Acme","email":"buyer@acme.example","credit_limit":{"amount_minor":100,"currency":"EUR"},"approval_threshold":{"amount_minor":50,"currency":"EUR"}}"#;
    let (status, head, answer) = http_full(addr, "POST", "/v1/accounts", &key, body).await;
    assert_eq!(status, 201, "{answer}");
    // The migration's default policy, counted against this socket's peer address.
    for header in ["ratelimit-limit: 200\r\n", "ratelimit-remaining: 199\r\n"] {
        assert!(head.contains(header), "no {header:?} in {head}");
    }
    assert_eq!(http(addr, "GET", "/health", "", "").await.0, 200);
    // Ready once both dependencies answer: a probe is asked again, and one metadata fetch
    // from a test broker busy with the whole suite's clients can fail.
    vectis_test_support::eventually(Duration::from_secs(10), "the process to be ready", || async {
        let (status, ready) = http(addr, "GET", "/ready", "", "").await;
        if status == 200 {
            Ok(())
        } else {
            Err(format!("{status}: {ready}"))
        }
    })
    .await;
    let (_, metrics) = http(addr, "GET", "/metrics", "", "").await;
    for line in [
        r#"http_requests_total{method="POST",route="/v1/accounts",status="201"} 1"#,
        r#"vectis_events_appended_total{topic="vectis.accounts",event_type="AccountRegistered"} 1"#,
        "http_request_duration_seconds_bucket",
        "http_response_size_bytes_sum",
        "http_requests_inprogress",
        "vectis_db_pool_connections_in_use",
        "vectis_db_pool_connections_idle",
        "vectis_db_pool_connections_max",
    ] {
        assert!(metrics.contains(line), "/metrics lacks {line}:\n{metrics}");
    }
    shutdown.trigger();
    tokio::time::timeout(Duration::from_secs(10), serving).await.expect("stops").expect("task").expect("clean exit");
}
