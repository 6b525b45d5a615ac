//! The relay process as an operator meets it: startup refuses broken schemas, and a
//! running process answers /health, /ready and /metrics.

use std::{net::SocketAddr, path::Path, process::Command, time::Duration};

use sqlx::PgPool;
use vectis_event_store::kafka::KafkaSettings;
use vectis_ops::relay_process::{ArchiveSettings, RelayProcess, RelayProcessSettings};
use vectis_runtime::Shutdown;
use vectis_test_support::{files::copy_dir, fresh_topics, http_get, s3::S3Server, shop::Shop};

#[test]
fn a_broken_schema_file_stops_startup_with_a_message_naming_it() {
    let dir = std::env::temp_dir().join(format!("vectis-broken-schemas-{}", uuid::Uuid::new_v4()));
    copy_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../schemas/events"), &dir);
    std::fs::write(dir.join("inventory/StockReserved.v1.json"), r#"{"type": "object", "required": "sku"}"#)
        .expect("break it");
    for binary in [env!("CARGO_BIN_EXE_vectis-relay"), env!("CARGO_BIN_EXE_vectis")] {
        let mut command = Command::new(binary);
        if binary.ends_with("vectis") {
            command.args(["schemas", "check"]);
        }
        let output = command
            .env("VECTIS_SCHEMA_DIR", &dir)
            .env("RELAY_OPS_ADDR", "127.0.0.1:0")
            .env("DATABASE_URL", "postgres://nobody@127.0.0.1:1/none")
            .output()
            .expect("runs");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{binary} must not start");
        assert!(stderr.contains("StockReserved.v1.json"), "{binary} names the file: {stderr}");
    }
    std::fs::remove_dir_all(&dir).ok();
}

fn settings(brokers: &str) -> RelayProcessSettings {
    let mut settings = RelayProcessSettings::from_env().expect("settings");
    settings.ops_addr = SocketAddr::from(([127, 0, 0, 1], 0));
    settings.store.kafka.brokers = brokers.to_string();
    settings.relay.kafka.brokers = brokers.to_string();
    settings
}

#[sqlx::test(migrator = "vectis_event_store::MIGRATOR")]
async fn a_running_relay_serves_health_ready_and_metrics(pool: PgPool) {
    let shutdown = Shutdown::new();
    let brokers = std::env::var("KAFKA_BROKERS").unwrap_or_else(|_| "127.0.0.1:9092".into());
    let process = RelayProcess::build_with_pool(settings(&brokers), pool, shutdown.clone()).await.expect("builds");
    let addr = process.ops_addr();
    let running = tokio::spawn(process.run_until_stopped());

    assert_eq!(http_get(addr, "/health").await.0, 200);
    let (status, body) = http_get(addr, "/ready").await;
    assert_eq!(status, 200, "{body}");
    let mut metrics = String::new();
    for _ in 0..50 {
        metrics = http_get(addr, "/metrics").await.1;
        if metrics.contains("vectis_relay_is_leader 1") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for name in ["vectis_relay_is_leader 1", "vectis_relay_backlog_events", "vectis_relay_lag_seconds", "# EOF"] {
        assert!(metrics.contains(name), "/metrics lacks {name}:\n{metrics}");
    }
    shutdown.trigger();
    tokio::time::timeout(Duration::from_secs(10), running).await.expect("stops promptly").expect("task").expect("ok");
}

#[sqlx::test(migrator = "vectis_event_store::MIGRATOR")]
async fn ready_is_503_and_names_the_broker_when_it_is_down(pool: PgPool) {
    let shutdown = Shutdown::new();
    let process = RelayProcess::build_with_pool(settings("127.0.0.1:1"), pool, shutdown.clone()).await.expect("builds");
    let addr = process.ops_addr();
    let running = tokio::spawn(process.run_until_stopped());
    assert_eq!(http_get(addr, "/health").await.0, 200, "liveness does not depend on the broker");
    let (status, body) = http_get(addr, "/ready").await;
    assert_eq!(status, 503);
    let body: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(body["checks"]["postgres"]["status"], "ok");
    assert_eq!(body["checks"]["broker"]["status"], "failing");
    shutdown.trigger();
    tokio::time::timeout(Duration::from_secs(10), running).await.expect("stops promptly").expect("task").expect("ok");
}

/// Polls the relay's /metrics until `wanted` holds (at most 30 s); returns the text.
async fn metrics_until(addr: SocketAddr, what: &str, wanted: impl Fn(&str) -> bool) -> String {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let metrics = http_get(addr, "/metrics").await.1;
        if wanted(&metrics) {
            return metrics;
        }
        assert!(tokio::time::Instant::now() < deadline, "{what}; /metrics:\n{metrics}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn relay_archiving_to(
    pool: &PgPool,
    kafka: &KafkaSettings,
    location: &str,
) -> (SocketAddr, Shutdown, tokio::task::JoinHandle<anyhow::Result<()>>) {
    let mut settings = settings(&kafka.brokers);
    settings.store.kafka = kafka.clone();
    settings.relay.kafka = kafka.clone();
    settings.archive =
        Some(ArchiveSettings { location: location.into(), interval: Duration::from_millis(200), file_events: 5 });
    let shutdown = Shutdown::new();
    let process = RelayProcess::build_with_pool(settings, pool.clone(), shutdown.clone()).await.expect("builds");
    let addr = process.ops_addr();
    (addr, shutdown, tokio::spawn(process.run_until_stopped()))
}

#[sqlx::test(migrator = "vectis_event_store::MIGRATOR")]
async fn the_relay_archives_every_interval_and_counts_what_fails(pool: PgPool) {
    // Topics of its own: the relay publishes what the test appends.
    let kafka = fresh_topics().await.expect("topics");
    let shop = Shop::new(&pool);
    for n in 0..7 {
        shop.account(&format!("Buyer {n}"), &format!("buyer{n}@example.com"), vec![]).await;
    }
    let dir = std::env::temp_dir().join(format!("vectis-archive-job-{}", uuid::Uuid::now_v7()));
    let (addr, shutdown, running) = relay_archiving_to(&pool, &kafka, &dir.to_string_lossy()).await;
    metrics_until(addr, "the first run archives the 7 events", |m| {
        m.contains("vectis_archive_last_position 7\n") && m.contains("vectis_archive_events_behind 0\n")
    })
    .await;
    // Events appended while it runs: the next interval takes them.
    for n in 7..12 {
        shop.account(&format!("Buyer {n}"), &format!("buyer{n}@example.com"), vec![]).await;
    }
    let metrics = metrics_until(addr, "a later run archives the 5 new events", |m| {
        m.contains("vectis_archive_last_position 12\n")
    })
    .await;
    for line in ["vectis_archive_events_archived_total 12\n", "vectis_archive_failures_total 0\n"] {
        assert!(metrics.contains(line), "{line}: {metrics}");
    }
    assert!(metrics.contains("vectis_archive_bytes_written_total "), "{metrics}");
    assert!(metrics.contains("vectis_archive_last_success_timestamp_seconds "), "{metrics}");
    let files = std::fs::read_dir(dir.join("events")).expect("files").count();
    assert_eq!(files, 3, "5 + 2 events, then 5 more");
    shutdown.trigger();
    tokio::time::timeout(Duration::from_secs(10), running).await.expect("stops promptly").expect("task").expect("ok");

    // A store that refuses every run: failures counted, the events reported behind.
    let s3 = S3Server::start().await;
    let bucket = s3.bucket();
    // The test binary's own environment: the S3 client reads it (no other test here uses it).
    for (key, value) in S3Server::env(&s3.endpoint, "a-wrong-secret") {
        std::env::set_var(key, value);
    }
    let (addr, shutdown, running) = relay_archiving_to(&pool, &kafka, &format!("s3://{bucket}/vectis")).await;
    let metrics = metrics_until(addr, "failed runs are counted", |m| {
        !m.contains("vectis_archive_failures_total 0\n") && m.contains("vectis_archive_events_behind 12\n")
    })
    .await;
    assert!(metrics.contains("vectis_archive_last_position 0\n"), "{metrics}");
    shutdown.trigger();
    tokio::time::timeout(Duration::from_secs(10), running).await.expect("stops promptly").expect("task").expect("ok");
    let _ = std::fs::remove_dir_all(&dir);
}
