//! `vectis projections` and `vectis dlq` as an operator runs them: the real binary
//! against a test's own database and topics, with a projector running.

use std::time::Duration;
use vectis_schemas::StreamId;

use sqlx::PgPool;
use uuid::Uuid;
use vectis_consumer::metrics::ConsumerMetrics;
use vectis_event_store::{kafka::KafkaSettings, AppendRequest, EventMetadata, ExpectedVersion};
use vectis_projectors::read_models::accounts::Accounts;
use vectis_schemas::samples;
use vectis_test_support::{
    cli::{self, CliOutput},
    event_store, fresh_topics, produce, start_projector, RelayHandle,
};

/// Runs `vectis <args>` against the test's database and topics.
async fn vectis(pool: &PgPool, kafka: &KafkaSettings, args: &[&str]) -> CliOutput {
    cli::run(env!("CARGO_BIN_EXE_vectis"), pool, kafka, &[], args).await
}

/// The row `vectis projections status` prints for `projection`, split on whitespace.
fn status_row(stdout: &str, projection: &str) -> Vec<String> {
    stdout
        .lines()
        .find(|line| line.split_whitespace().next() == Some(projection))
        .unwrap_or_else(|| panic!("no {projection} row in:\n{stdout}"))
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

async fn wait_for(pool: &PgPool, sql: &str, wanted: i64) {
    for _ in 0..300 {
        let value: i64 = sqlx::query_scalar(sql).fetch_one(pool).await.expect("query");
        if value == wanted {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out waiting for {sql} = {wanted}");
}

#[sqlx::test(migrator = "vectis_event_store::MIGRATOR")]
async fn an_operator_sees_status_handles_a_dead_letter_and_rebuilds_with_the_cli(pool: PgPool) {
    let kafka = fresh_topics().await.expect("topics");
    let store = event_store(pool.clone());
    for n in 0..3 {
        let id = Uuid::now_v7();
        store
            .append(AppendRequest {
                stream_id: StreamId::account(id),
                expected: ExpectedVersion::NoStream,
                events: vec![samples::account_registered(id, &format!("Buyer {n}")).into()],
                metadata: EventMetadata::default(),
            })
            .await
            .expect("append");
    }
    let relay = RelayHandle::start(pool.clone(), &kafka, 100);
    let projector = start_projector(&pool, &kafka, std::sync::Arc::new(Accounts), &ConsumerMetrics::default()).await;
    wait_for(&pool, "SELECT count(*) FROM read.accounts", 3).await;
    let poisoned = StreamId::account(Uuid::now_v7()).to_string();
    produce(&kafka, vectis_schemas::topics::ACCOUNTS.name, &[(poisoned.clone(), b"{not json".to_vec())]).await;
    wait_for(&pool, "SELECT count(*) FROM projection_dead_letters WHERE status = 'parked'", 1).await;

    // Caught up, with one parked event: lag 0 events, 0.0 s.
    let status = vectis(&pool, &kafka, &["projections", "status"]).await;
    assert_eq!(status.code, 0, "{}", status.stderr);
    assert_eq!(status_row(&status.stdout, "accounts"), ["accounts", "1", "serving", "0", "0.0", "1"]);

    let list = vectis(&pool, &kafka, &["dlq", "list"]).await;
    assert_eq!(list.code, 0, "{}", list.stderr);
    let line = list.stdout.lines().find(|l| l.contains(&poisoned)).unwrap_or_else(|| panic!("{}", list.stdout));
    assert!(line.contains("parked") && line.contains("undecodable"), "{line}");
    let id = line.split('\t').next().expect("id column").to_string();

    let show = vectis(&pool, &kafka, &["dlq", "show", &id]).await;
    assert_eq!(show.code, 0, "{}", show.stderr);
    assert!(show.stdout.contains(&format!("stream:         {poisoned}")), "{}", show.stdout);
    assert!(show.stdout.contains("{not json"), "the payload is shown: {}", show.stdout);

    let discard = vectis(&pool, &kafka, &["dlq", "discard", &id]).await;
    assert_eq!((discard.code, discard.stdout.trim()), (0, format!("discarded {id}").as_str()), "{}", discard.stderr);
    let list = vectis(&pool, &kafka, &["dlq", "list"]).await;
    assert!(!list.stdout.contains(&poisoned), "a discarded event is no longer listed: {}", list.stdout);
    let again = vectis(&pool, &kafka, &["dlq", "discard", &id]).await;
    assert_eq!(again.code, 2, "discarding twice is refused: {}", again.stdout);
    assert!(again.stderr.starts_with("refused:"), "{}", again.stderr);
    let missing = vectis(&pool, &kafka, &["dlq", "show", "999999"]).await;
    assert_eq!(missing.code, 2);
    assert!(missing.stderr.contains("999999"), "{}", missing.stderr);

    // Rebuild while the projector runs: readers move to version 2 with the same rows.
    let rebuild = vectis(&pool, &kafka, &["projections", "rebuild", "accounts", "--progress-every", "0.2"]).await;
    assert_eq!(rebuild.code, 0, "{}\n{}", rebuild.stdout, rebuild.stderr);
    assert!(rebuild.stdout.contains("accounts: readers now use version 2"), "{}", rebuild.stdout);
    assert!(rebuild.stdout.contains("events done"), "progress is shown: {}", rebuild.stdout);
    wait_for(&pool, "SELECT count(*) FROM read.accounts", 3).await;
    let status = vectis(&pool, &kafka, &["projections", "status"]).await;
    // The new version replayed the log, undecodable record included: it parks again,
    // under version 2 (version 1's dead letters went with version 1).
    assert_eq!(status_row(&status.stdout, "accounts"), ["accounts", "2", "serving", "0", "0.0", "1"]);

    let unknown = vectis(&pool, &kafka, &["projections", "rebuild", "nope"]).await;
    assert_ne!(unknown.code, 0);
    assert!(unknown.stderr.contains("known: accounts, inventory, orders"), "{}", unknown.stderr);

    projector.stop().await.expect("projector stops");
    relay.stop().await;
}
