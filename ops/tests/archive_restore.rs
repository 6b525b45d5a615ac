//! `vectis archive restore` as the disaster-recovery path: a shop's log exported,
//! restored into a new database, compared with the original row by row; then the
//! relay publishes the restored store to fresh topics, the projections rebuild from
//! them, and every read model equals the original's.

use std::{ffi::OsStr, sync::Arc};

use sqlx::PgPool;
use vectis_command_api::handling::CommandHandler;
use vectis_consumer::metrics::ConsumerMetrics;
use vectis_event_store::kafka::KafkaSettings;
use vectis_projectors::{projection::Projection, read_models};
use vectis_test_support::{
    cli::{self, CliOutput},
    database_url, event_store,
    files::copy_dir,
    fresh_topics, start_projector, until_caught_up,
    workloads::{account_workload, commerce_workload},
    RelayHandle,
};

async fn vectis(pool: &PgPool, kafka: &KafkaSettings, args: &[&str]) -> CliOutput {
    cli::run(env!("CARGO_BIN_EXE_vectis"), pool, kafka, &[("ARCHIVE_FILE_EVENTS", OsStr::new("40"))], args).await
}

/// The relay and every read model's projector on `pool`, until they have applied the
/// whole log; then stopped.
async fn project_everything(pool: &PgPool, kafka: &KafkaSettings) {
    let relay = RelayHandle::start(pool.clone(), kafka, 500);
    let metrics = ConsumerMetrics::default();
    let projections: Vec<Arc<dyn Projection>> = read_models::all();
    let mut projectors = Vec::new();
    for projection in &projections {
        projectors.push(start_projector(pool, kafka, projection.clone(), &metrics).await);
    }
    until_caught_up(pool, kafka, &projections).await;
    for projector in projectors {
        projector.stop().await.expect("clean stop");
    }
    relay.stop().await;
}

/// A table's rows as JSON, in a stable order.
async fn rows(pool: &PgPool, query: &str) -> Vec<serde_json::Value> {
    sqlx::query_scalar(&format!("SELECT to_jsonb(t) FROM ({query}) t ORDER BY to_jsonb(t)::text"))
        .fetch_all(pool)
        .await
        .unwrap_or_else(|e| panic!("{query}: {e}"))
}

const EVENT_COLUMNS: &str = "SELECT global_position, event_id, stream_id, stream_version, topic, event_type,
                                    schema_version, data, metadata, recorded_at FROM events";

#[sqlx::test(migrator = "vectis_event_store::MIGRATOR")]
async fn a_restored_store_equals_the_original_and_rebuilds_the_same_read_models(pool: PgPool) {
    let kafka = fresh_topics().await.expect("topics");
    let handler = CommandHandler::new(event_store(pool.clone()));
    let accounts = account_workload(&handler, 20).await;
    let (_, orders) = commerce_workload(&handler, &accounts).await;
    assert!(orders.len() >= 8, "orders in every state");
    project_everything(&pool, &kafka).await;

    let dir = std::env::temp_dir().join(format!("vectis-restore-{}", uuid::Uuid::now_v7()));
    let location = dir.to_string_lossy().into_owned();
    let export = vectis(&pool, &kafka, &["archive", "export", "--to", &location]).await;
    assert_eq!(export.code, 0, "{}\n{}", export.stdout, export.stderr);

    let restored_name = format!("vectis_restored_{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    let into = database_url(&restored_name).expect("url");
    // A copy of the archive whose last file is damaged: the restore refuses it after
    // writing the files before it, and the store stays empty (one transaction).
    let damaged = dir.with_extension("damaged");
    copy_dir(&dir, &damaged);
    let mut files: Vec<_> =
        std::fs::read_dir(damaged.join("events")).expect("files").map(|e| e.expect("entry").path()).collect();
    files.sort();
    assert!(files.len() >= 3, "several files: {files:?}");
    let last = files.last().expect("a file");
    let mut bytes = std::fs::read(last).expect("read");
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(last, bytes).expect("damage");
    let refused = vectis(&pool, &kafka, &["archive", "restore", &damaged.to_string_lossy(), "--into", &into]).await;
    assert_eq!(refused.code, 1, "{}\n{}", refused.stdout, refused.stderr);
    assert!(refused.stderr.contains("is damaged, nothing was restored"), "{}", refused.stderr);
    assert!(refused.stderr.contains("SHA-256 differs from its manifest's"), "{}", refused.stderr);
    let target = PgPool::connect(&into).await.expect("the restored database");
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM events").fetch_one(&target).await.expect("count");
    assert_eq!(left, 0, "a refused restore leaves nothing");
    let _ = std::fs::remove_dir_all(&damaged);

    let restore = vectis(&pool, &kafka, &["archive", "restore", &location, "--into", &into]).await;
    assert_eq!(restore.code, 0, "{}\n{}", restore.stdout, restore.stderr);
    let (events, streams): (i64, i64) =
        sqlx::query_as("SELECT (SELECT count(*) FROM events), (SELECT count(*) FROM streams)")
            .fetch_one(&pool)
            .await
            .expect("query");
    let last: i64 =
        sqlx::query_scalar("SELECT max(global_position) FROM events").fetch_one(&pool).await.expect("query");
    assert!(
        restore.stdout.starts_with(&format!("restored {events} events of {streams} streams from ")),
        "{}",
        restore.stdout
    );
    assert!(restore.stdout.contains(&format!("through global position {last}")), "{}", restore.stdout);
    assert!(refused.stderr.contains("created the database"), "the first run created it: {}", refused.stderr);
    assert!(!restore.stdout.contains("vectis:vectis@"), "no password printed: {}", restore.stdout);

    // Row by row: ids, streams, versions, positions, data, metadata, times.
    assert_eq!(rows(&target, EVENT_COLUMNS).await, rows(&pool, EVENT_COLUMNS).await);
    let stream_rows = "SELECT stream_id, version FROM streams";
    assert_eq!(rows(&target, stream_rows).await, rows(&pool, stream_rows).await);

    // A new append continues after the restored positions.
    let next: i64 = sqlx::query_scalar("SELECT nextval(pg_get_serial_sequence('events', 'global_position'))")
        .fetch_one(&target)
        .await
        .expect("url");
    assert_eq!(next, last + 1);

    // Fresh topics, the relay and the projections on the restored store: the same read models.
    let fresh = fresh_topics().await.expect("fresh topics");
    project_everything(&target, &fresh).await;
    for projection in read_models::all() {
        for table in projection.tables() {
            let query = format!("SELECT * FROM read.{table}");
            let (restored, original) = (rows(&target, &query).await, rows(&pool, &query).await);
            if ["accounts", "inventory_items", "orders", "order_lines"].contains(table) {
                assert!(!original.is_empty(), "read.{table} has rows");
            }
            assert_eq!(restored, original, "read.{table}");
        }
    }

    // Restoring into a store that holds events is refused, and writes nothing.
    let again = vectis(&pool, &kafka, &["archive", "restore", &location, "--into", &into]).await;
    assert_eq!(again.code, 1);
    assert!(
        again.stderr.contains(&format!("the target event store is not empty ({events} events, {streams} streams)")),
        "{}",
        again.stderr
    );
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM events").fetch_one(&target).await.expect("query");
    assert_eq!(count, events);
    // PostgreSQL would cut a longer name to 63 bytes: maybe another database's name.
    let long = database_url(&format!("{restored_name}_{}", "x".repeat(60))).expect("url");
    let too_long = vectis(&pool, &kafka, &["archive", "restore", &location, "--into", &long]).await;
    assert!(too_long.stderr.contains("longer than PostgreSQL's 63 bytes"), "{}", too_long.stderr);

    target.close().await;
    sqlx::query(&format!("DROP DATABASE \"{restored_name}\" WITH (FORCE)")).execute(&pool).await.expect("drop");
    let _ = std::fs::remove_dir_all(&dir);
}
