//! `vectis snapshots` as an operator runs it: the real binary against a test's own
//! database.

use std::time::Duration;

use sqlx::PgPool;
use vectis_command_api::domain::{InventoryCommand, InventoryItem};
use vectis_event_store::{kafka::KafkaSettings, EventMetadata};
use vectis_schemas::{events::Money, StreamId, TopicNaming};
use vectis_test_support::{
    cli::{self, CliOutput},
    command_api::handler,
    eventually,
};

async fn vectis(pool: &PgPool, args: &[&str]) -> CliOutput {
    // Snapshots never touch the broker.
    let kafka = KafkaSettings::new("127.0.0.1:1".to_string(), TopicNaming::with_prefix(String::new()));
    cli::run(env!("CARGO_BIN_EXE_vectis"), pool, &kafka, &[], args).await
}

fn row<'a>(stdout: &'a str, aggregate: &str, state_version: &str) -> Option<Vec<&'a str>> {
    stdout
        .lines()
        .map(|line| line.split_whitespace().collect::<Vec<_>>())
        .find(|cells| cells.first() == Some(&aggregate) && cells.get(1) == Some(&state_version))
}

#[sqlx::test(migrator = "vectis_event_store::MIGRATOR")]
async fn status_shows_snapshots_by_state_version_and_purge_removes_the_stale_ones(pool: PgPool) {
    let handler = handler(pool.clone());
    let stream = StreamId::inventory_item("CLI-1").expect("a SKU");
    let mut store = handler.store().clone();
    let create = InventoryCommand::Create {
        sku: "CLI-1".into(),
        name: "Bolt".into(),
        description: String::new(),
        unit_price: Money::new(100, "EUR"),
    };
    handler
        .execute::<InventoryItem, _>(&mut store, &stream, None, &EventMetadata::default(), |_| create.clone())
        .await
        .expect("create");
    for _ in 0..5 {
        handler
            .execute::<InventoryItem, _>(&mut store, &stream, None, &EventMetadata::default(), |_| {
                InventoryCommand::Receive { quantity: 1, reference: None }
            })
            .await
            .expect("receive");
    }
    let (pool_ref, stream_ref) = (&pool, &stream);
    eventually(Duration::from_secs(10), "the snapshot at 6", || async move {
        let at: Option<i64> = sqlx::query_scalar("SELECT stream_version FROM snapshots WHERE stream_id = $1")
            .bind(stream_ref.as_str())
            .fetch_optional(pool_ref)
            .await
            .map_err(|e| e.to_string())?;
        (at == Some(6)).then_some(()).ok_or(format!("at {at:?}"))
    })
    .await;
    // Another build's snapshot of another stream.
    sqlx::query(
        "INSERT INTO snapshots (stream_id, aggregate, state_version, stream_version, last_event_id, state)
         VALUES ('inventory-OLD-1', 'inventory_item', 0, 1, gen_random_uuid(), '{}')",
    )
    .execute(&pool)
    .await
    .expect("an old snapshot");

    let status = vectis(&pool, &["snapshots", "status"]).await;
    assert_eq!(status.code, 0, "{}", status.stderr);
    let current = InventoryItem::STATE_VERSION.to_string();
    let trusted = row(&status.stdout, "inventory_item", &current).unwrap_or_else(|| panic!("{}", status.stdout));
    assert_eq!((trusted[2], trusted[5]), ("1", "yes"), "{}", status.stdout);
    let stale = row(&status.stdout, "inventory_item", "0").unwrap_or_else(|| panic!("{}", status.stdout));
    assert_eq!((stale[2], stale[5]), ("1", "no"), "{}", status.stdout);

    let unknown = vectis(&pool, &["snapshots", "purge", "--aggregate", "invoice", "--stale"]).await;
    assert_ne!(unknown.code, 0);
    assert!(unknown.stderr.contains("no aggregate invoice"), "{}", unknown.stderr);

    let purge = vectis(&pool, &["snapshots", "purge", "--aggregate", "inventory_item", "--stale"]).await;
    assert_eq!((purge.code, purge.stdout.trim()), (0, "purged 1 snapshots"), "{}", purge.stderr);
    let status = vectis(&pool, &["snapshots", "status"]).await;
    assert!(row(&status.stdout, "inventory_item", "0").is_none(), "{}", status.stdout);
    assert!(row(&status.stdout, "inventory_item", &current).is_some(), "{}", status.stdout);

    let purge_all = vectis(&pool, &["snapshots", "purge"]).await;
    assert_eq!(purge_all.stdout.trim(), "purged 1 snapshots");
    let loaded = vectis_test_support::command_api::handler(pool.clone())
        .load::<InventoryItem>(&stream)
        .await
        .expect("a load with no snapshot and no cache");
    assert_eq!(loaded.state.map(|item| item.on_hand), Some(5), "the state is the same without snapshots");
}
