//! Snapshots, the state cache and recall against a real PostgreSQL event store: what
//! a command decides never depends on where its state came from.

use std::time::Duration;

use chrono::Utc;
use sqlx::PgPool;
use uuid::Uuid;
use vectis_command_api::{
    domain::{DomainError, InventoryCommand, InventoryItem},
    handling::{CommandError, CommandHandler, Loaded},
};
use vectis_event_store::{
    metrics::{SnapshotHitLabels, SnapshotMissLabels},
    EventMetadata, IdempotencyBegin, IdempotencyKey, SnapshotPolicy,
};
use vectis_schemas::{events::Money, StreamId};
use vectis_test_support::{event_store, eventually};

const SKU: &str = "SNAP-1";

fn handler_every(pool: &PgPool, every: i64) -> CommandHandler {
    CommandHandler::new(event_store(pool.clone()).with_snapshot_policy(SnapshotPolicy { every, ..Default::default() }))
}

fn stream() -> StreamId {
    StreamId::inventory_item(SKU).expect("a SKU")
}

async fn run(handler: &CommandHandler, command: InventoryCommand) -> Result<i64, CommandError> {
    let mut store = handler.store().clone();
    let outcome = handler
        .execute::<InventoryItem, _>(&mut store, &stream(), None, &EventMetadata::default(), move |_| command.clone())
        .await?;
    Ok(outcome.stream_version)
}

fn create() -> InventoryCommand {
    InventoryCommand::Create {
        sku: SKU.into(),
        name: "Snapshot bolt".into(),
        description: String::new(),
        unit_price: Money::new(100, "EUR"),
    }
}

fn receive(quantity: i64) -> InventoryCommand {
    InventoryCommand::Receive { quantity, reference: None }
}

fn reserve(reservation_id: Uuid, quantity: i64) -> InventoryCommand {
    let now = Utc::now();
    InventoryCommand::Reserve {
        reservation_id,
        order_id: Uuid::now_v7(),
        quantity,
        expires_at: now + Duration::from_secs(600),
        now,
    }
}

async fn snapshot_at(pool: &PgPool) -> Option<(i64, i32)> {
    sqlx::query_as("SELECT stream_version, state_version FROM snapshots WHERE stream_id = $1")
        .bind(stream().as_str())
        .fetch_optional(pool)
        .await
        .expect("snapshots")
}

async fn wait_for_snapshot(pool: &PgPool, version: i64) {
    eventually(Duration::from_secs(10), "the snapshot", || async move {
        match snapshot_at(pool).await {
            Some((at, _)) if at == version => Ok(()),
            other => Err(format!("snapshot {other:?}")),
        }
    })
    .await
}

fn hits(handler: &CommandHandler, source: &'static str) -> u64 {
    let labels = SnapshotHitLabels { aggregate: "inventory_item".into(), source };
    handler.store().metrics().snapshot_hits.get_or_create(&labels).get()
}

fn misses(handler: &CommandHandler, reason: &'static str) -> u64 {
    let labels = SnapshotMissLabels { aggregate: "inventory_item".into(), reason };
    handler.store().metrics().snapshot_misses.get_or_create(&labels).get()
}

async fn load(handler: &CommandHandler) -> Loaded<InventoryItem> {
    handler.load::<InventoryItem>(&stream()).await.expect("load")
}

/// 250 events with a snapshot every 100: a process that never saw the stream folds
/// the 50 after the snapshot at 200, and its state equals the full fold's.
#[sqlx::test(migrator = "vectis_event_store::MIGRATOR")]
async fn loading_folds_only_the_events_after_the_newest_snapshot(pool: PgPool) {
    let writer = handler_every(&pool, 100);
    run(&writer, create()).await.expect("create");
    for _ in 1..250 {
        run(&writer, receive(1)).await.expect("receive");
    }
    wait_for_snapshot(&pool, 200).await;
    let fresh = handler_every(&pool, 100);
    let loaded = load(&fresh).await;
    assert_eq!((loaded.version, loaded.snapshot_version), (250, 200));
    assert_eq!(loaded.state.as_ref().map(|item| item.on_hand), Some(249));
    assert_eq!((hits(&fresh, "store"), misses(&fresh, "none")), (1, 0));
    let unsnapshotted = CommandHandler::new(
        event_store(pool.clone()).with_snapshot_policy(SnapshotPolicy { every: 0, cache_bytes: 0 }),
    );
    sqlx::query("DELETE FROM snapshots").execute(&pool).await.expect("purge");
    let full = load(&unsnapshotted).await;
    assert_eq!((full.version, full.snapshot_version), (250, 0));
    assert_eq!(full.state, loaded.state, "snapshot + tail = the full fold");
    assert_eq!(misses(&unsnapshotted, "none"), 1);
}

/// A snapshot written by other aggregate code (another state version) is never
/// trusted, even when it is newer: it is ignored, counted, and the next snapshot
/// replaces it.
#[sqlx::test(migrator = "vectis_event_store::MIGRATOR")]
async fn a_snapshot_from_another_state_version_is_ignored_and_replaced(pool: PgPool) {
    let writer = handler_every(&pool, 3);
    run(&writer, create()).await.expect("create");
    for _ in 0..5 {
        run(&writer, receive(10)).await.expect("receive");
    }
    wait_for_snapshot(&pool, 6).await;
    // What an older build would have left: another state version, and a state that
    // is wrong for this code.
    sqlx::query(
        "UPDATE snapshots SET state_version = state_version - 1,
                state = jsonb_set(state, '{on_hand}', '999999') WHERE stream_id = $1",
    )
    .bind(stream().as_str())
    .execute(&pool)
    .await
    .expect("tamper");
    let fresh = handler_every(&pool, 3);
    let loaded = load(&fresh).await;
    assert_eq!(loaded.state.as_ref().map(|item| item.on_hand), Some(50), "folded from the events");
    assert_eq!((misses(&fresh, "state_version"), hits(&fresh, "store")), (1, 0));
    assert_eq!(loaded.snapshot_version, 0, "the ignored snapshot does not count as taken");
    run(&fresh, receive(1)).await.expect("receive");
    let pool_ref = &pool;
    eventually(Duration::from_secs(10), "the replacement", || async move {
        match snapshot_at(pool_ref).await {
            Some((7, version)) if version == InventoryItem::STATE_VERSION => Ok(()),
            other => Err(format!("snapshot {other:?}")),
        }
    })
    .await;
    let after = load(&handler_every(&pool, 3)).await;
    assert_eq!(after.state.map(|item| item.on_hand), Some(51));
}

/// A command that appended inside a transaction which then rolled back leaves its
/// state in the cache; the next command reads past it, not from it.
#[sqlx::test(migrator = "vectis_event_store::MIGRATOR")]
async fn a_state_cached_from_a_rolled_back_append_is_never_served(pool: PgPool) {
    let handler = handler_every(&pool, 0);
    run(&handler, create()).await.expect("create");
    run(&handler, receive(10)).await.expect("receive");
    let key = IdempotencyKey { scope: "test".into(), key: "rolled-back".into() };
    let IdempotencyBegin::Fresh(mut command) =
        handler.store().begin_idempotent(key, b"h", Duration::from_secs(86_400)).await.expect("begin")
    else {
        panic!("a fresh key")
    };
    handler
        .execute::<InventoryItem, _>(&mut command, &stream(), None, &EventMetadata::default(), |_| receive(500))
        .await
        .expect("receive inside the transaction");
    drop(command); // rolls back
    assert_eq!(run(&handler, receive(1)).await.expect("receive"), 3, "version 3 is this command's");
    let loaded = load(&handler).await;
    assert_eq!(loaded.state.map(|item| item.on_hand), Some(11), "the rolled-back 500 never counted");
    assert!(hits(&handler, "cache") >= 1, "the cache served the other loads");
}

/// The state keeps only held reservations, yet a command naming one that closed or
/// was rejected long ago (and many snapshots ago) gets the answer it always got.
#[sqlx::test(migrator = "vectis_event_store::MIGRATOR")]
async fn a_reservation_the_state_let_go_of_is_answered_from_the_store(pool: PgPool) {
    let handler = handler_every(&pool, 3);
    run(&handler, create()).await.expect("create");
    run(&handler, receive(10)).await.expect("receive");
    let (released, committed, rejected) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
    run(&handler, reserve(released, 2)).await.expect("reserve");
    run(&handler, InventoryCommand::Release { reservation_id: released, reason: None }).await.expect("release");
    run(&handler, reserve(committed, 3)).await.expect("reserve");
    run(&handler, InventoryCommand::Commit { reservation_id: committed }).await.expect("commit");
    run(&handler, reserve(rejected, 50)).await.expect("a rejection is an outcome");
    for _ in 0..10 {
        run(&handler, receive(1)).await.expect("receive");
    }
    let item = load(&handler_every(&pool, 3)).await.state.expect("item");
    assert!(item.reservations.is_empty(), "no closed reservation is carried: {:?}", item.reservations);
    assert_eq!(item.on_hand, 17);

    let refused = |result: Result<i64, CommandError>| match result {
        Err(CommandError::Domain(error)) => error,
        other => panic!("expected a refusal, got {other:?}"),
    };
    let fresh = handler_every(&pool, 3);
    assert_eq!(
        refused(run(&fresh, InventoryCommand::Release { reservation_id: released, reason: None }).await),
        DomainError::InvalidState(format!(
            "cannot release reservation {released}: it is released, and only a held reservation can be"
        ))
    );
    assert_eq!(
        refused(run(&fresh, reserve(committed, 1)).await),
        DomainError::AlreadyExists(format!("reservation {committed} already exists on {SKU} and is committed"))
    );
    assert_eq!(
        refused(run(&fresh, reserve(rejected, 1)).await),
        DomainError::AlreadyExists(format!("reservation {rejected} was already rejected on {SKU}"))
    );
    assert_eq!(
        refused(run(&fresh, InventoryCommand::Expire { reservation_id: rejected, now: Utc::now() }).await),
        DomainError::InvalidState(format!(
            "cannot expire reservation {rejected}: it was rejected, and only a held reservation can be"
        ))
    );
    let unknown = Uuid::now_v7();
    assert!(matches!(
        refused(run(&fresh, InventoryCommand::Commit { reservation_id: unknown }).await),
        DomainError::NotFound(_)
    ));
    run(&fresh, reserve(Uuid::now_v7(), 5)).await.expect("a new reservation still holds stock");
    assert_eq!(load(&fresh).await.state.map(|item| item.available()), Some(12));
}
