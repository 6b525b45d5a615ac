//! Appends against a real PostgreSQL database, a fresh one per test (`sqlx::test`).

use std::sync::Arc;
use vectis_schemas::StreamId;

use serde_json::json;

use sqlx::PgPool;
use uuid::Uuid;
use vectis_event_store::{
    AppendError, AppendRequest, EventMetadata, EventStore, ExpectedVersion, NewEvent, StoreMetrics,
};
use vectis_schemas::{samples, SchemaMode, SchemaViolation};
use vectis_test_support::store::read_all_committed_eventually;

fn store(pool: PgPool, mode: SchemaMode) -> (EventStore, StoreMetrics) {
    vectis_test_support::store::event_store_in_mode(pool, mode)
}

fn request(stream_id: &StreamId, expected: ExpectedVersion, events: Vec<NewEvent>) -> AppendRequest {
    AppendRequest { stream_id: stream_id.clone(), expected, events, metadata: EventMetadata::default() }
}

async fn count(pool: &PgPool, sql: &str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(pool).await.expect("count")
}

#[sqlx::test(migrator = "vectis_event_store::MIGRATOR")]
async fn sixteen_concurrent_appenders_with_the_same_expected_version_one_wins(pool: PgPool) {
    let (store, _) = store(pool.clone(), SchemaMode::Strict);
    let order_id = Uuid::now_v7();
    let stream = StreamId::order(order_id);
    let placed = samples::order_placed(order_id, Uuid::now_v7(), "SKU-1", 2);
    store.append(request(&stream, ExpectedVersion::NoStream, vec![placed.into()])).await.expect("first append");

    let barrier = Arc::new(tokio::sync::Barrier::new(16));
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let (store, stream, barrier) = (store.clone(), stream.clone(), barrier.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                store
                    .append(request(
                        &stream,
                        ExpectedVersion::Exact(1),
                        vec![samples::order_confirmed(order_id).into()],
                    ))
                    .await
            })
        })
        .collect();
    let mut wins = 0;
    for task in tasks {
        match task.await.expect("task") {
            Ok(outcome) => {
                wins += 1;
                assert_eq!(outcome.stream_version, 2);
            }
            Err(AppendError::Conflict { expected, actual, .. }) => {
                assert_eq!(expected, ExpectedVersion::Exact(1));
                assert_eq!(actual, Some(2));
            }
            Err(other) => panic!("expected a conflict, got {other}"),
        }
    }
    assert_eq!(wins, 1);
    let versions: Vec<i64> =
        store.read_stream(&stream, 1).await.expect("read").iter().map(|e| e.envelope.stream_version).collect();
    assert_eq!(versions, [1, 2]);
}

#[sqlx::test(migrator = "vectis_event_store::MIGRATOR")]
async fn writers_that_retry_on_conflict_leave_a_gapless_stream(pool: PgPool) {
    let (store, _) = store(pool, SchemaMode::Strict);
    let sku = "GAPLESS-1";
    let stream = StreamId::inventory_item(sku).expect("a SKU");
    store
        .append(request(&stream, ExpectedVersion::NoStream, vec![samples::item_created(sku).into()]))
        .await
        .expect("create");
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let (store, stream) = (store.clone(), stream.clone());
            tokio::spawn(async move {
                let mut appended = 0;
                while appended < 5 {
                    let version = store.stream_version(&stream).await.expect("version").expect("exists");
                    let event = samples::stock_received(sku, 1).into();
                    match store.append(request(&stream, ExpectedVersion::Exact(version), vec![event])).await {
                        Ok(_) => appended += 1,
                        Err(AppendError::Conflict { .. }) => {}
                        Err(other) => panic!("{other}"),
                    }
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("task");
    }
    let versions: Vec<i64> =
        store.read_stream(&stream, 1).await.expect("read").iter().map(|e| e.envelope.stream_version).collect();
    assert_eq!(versions, (1..=81).collect::<Vec<_>>());
}

#[sqlx::test(migrator = "vectis_event_store::MIGRATOR")]
async fn expected_version_rules(pool: PgPool) {
    let (store, _) = store(pool, SchemaMode::Strict);
    let account = Uuid::now_v7();
    let stream = StreamId::account(account);
    let registered = || NewEvent::from(samples::account_registered(account, "Acme"));
    let approved = || NewEvent::from(samples::account_approved(account));

    let err =
        store.append(request(&stream, ExpectedVersion::Exact(3), vec![registered()])).await.expect_err("no stream");
    assert!(matches!(err, AppendError::Conflict { actual: None, .. }), "{err}");

    let created = store.append(request(&stream, ExpectedVersion::Exact(0), vec![registered()])).await.expect("creates");
    assert_eq!(created.stream_version, 1);

    let err = store.append(request(&stream, ExpectedVersion::NoStream, vec![registered()])).await.expect_err("exists");
    assert!(matches!(err, AppendError::Conflict { actual: Some(1), .. }), "{err}");
    assert_eq!(err.to_string(), format!("stream {stream} is at version 1, expected no stream"));

    let two = store.append(request(&stream, ExpectedVersion::Any, vec![approved(), approved()])).await.expect("any");
    assert_eq!(two.stream_version, 3);
    assert_eq!(two.events.iter().map(|e| e.envelope.stream_version).collect::<Vec<_>>(), [2, 3]);
    assert!(two.events[0].envelope.global_position < two.events[1].envelope.global_position);
    assert_eq!(two.events[0].topic, "vectis.accounts");

    let err = store.append(request(&stream, ExpectedVersion::Exact(2), vec![approved()])).await.expect_err("stale");
    assert!(matches!(err, AppendError::Conflict { actual: Some(3), .. }));
    store.append(request(&stream, ExpectedVersion::Exact(3), vec![approved()])).await.expect("current");

    let err = store.append(request(&stream, ExpectedVersion::Any, vec![])).await.expect_err("empty");
    assert!(matches!(err, AppendError::NoEvents));
}

#[sqlx::test(migrator = "vectis_event_store::MIGRATOR")]
async fn strict_mode_rejects_an_invalid_event_and_appends_nothing(pool: PgPool) {
    let (store, metrics) = store(pool.clone(), SchemaMode::Strict);
    let order_id = Uuid::now_v7();
    let stream = StreamId::order(order_id);
    let valid = NewEvent::from(samples::order_confirmed(order_id));
    let invalid = NewEvent::new("OrderShipped", json!({"order_id": order_id, "carrier": 42}));
    let err = store.append(request(&stream, ExpectedVersion::Any, vec![valid, invalid])).await.expect_err("strict");
    match err {
        AppendError::Schema(SchemaViolation::Invalid { event_type, errors, .. }) => {
            assert_eq!(event_type, "OrderShipped");
            let paths: Vec<_> = errors.iter().map(|e| e.path.as_str()).collect();
            assert!(paths.contains(&"/carrier"), "{paths:?}");
            assert!(paths.contains(&""), "missing tracking_number is reported at the root: {paths:?}");
        }
        other => panic!("expected a schema violation, got {other}"),
    }
    assert_eq!(count(&pool, "SELECT count(*) FROM events").await, 0);
    assert_eq!(count(&pool, "SELECT count(*) FROM streams").await, 0);
    assert_eq!(violations(&metrics, "vectis.orders", "OrderShipped"), 1);
}

fn violations(metrics: &StoreMetrics, topic: &str, event_type: &str) -> u64 {
    metrics
        .schema_violations
        .get_or_create(&vectis_event_store::metrics::TopicEventLabels {
            topic: topic.into(),
            event_type: event_type.into(),
        })
        .get()
}

#[sqlx::test(migrator = "vectis_event_store::MIGRATOR")]
async fn warn_mode_appends_an_invalid_event_and_counts_it(pool: PgPool) {
    let (store, metrics) = store(pool.clone(), SchemaMode::Warn);
    let order_id = Uuid::now_v7();
    let stream = StreamId::order(order_id);
    let invalid = NewEvent::new("OrderShipped", json!({"order_id": order_id, "carrier": 42}));
    let outcome = store.append(request(&stream, ExpectedVersion::Any, vec![invalid])).await.expect("warn appends");
    assert_eq!(outcome.stream_version, 1);
    assert_eq!(count(&pool, "SELECT count(*) FROM events WHERE event_type = 'OrderShipped'").await, 1);
    assert_eq!(violations(&metrics, "vectis.orders", "OrderShipped"), 1);
    let appended = metrics
        .events_appended
        .get_or_create(&vectis_event_store::metrics::TopicEventLabels {
            topic: "vectis.orders".into(),
            event_type: "OrderShipped".into(),
        })
        .get();
    assert_eq!(appended, 1);
}

#[sqlx::test(migrator = "vectis_event_store::MIGRATOR")]
async fn unknown_types_and_misrouted_streams_are_refused_in_every_mode(pool: PgPool) {
    let (store, _) = store(pool.clone(), SchemaMode::Warn);
    let err = store
        .append(request(
            &StreamId::order(Uuid::now_v7()),
            ExpectedVersion::Any,
            vec![NewEvent::new("OrderTeleported", json!({}))],
        ))
        .await
        .expect_err("unknown type");
    assert!(matches!(err, AppendError::Schema(SchemaViolation::UnknownEventType { .. })), "{err}");

    let account = Uuid::now_v7();
    let err = store
        .append(request(
            &StreamId::order(account),
            ExpectedVersion::Any,
            vec![samples::account_approved(account).into()],
        ))
        .await
        .expect_err("account event in an order stream");
    assert!(matches!(err, AppendError::StreamTopicMismatch { topic: "vectis.accounts", .. }), "{err}");
    assert!(err.is_rejection());
    assert_eq!(count(&pool, "SELECT count(*) FROM events").await, 0);
}

#[sqlx::test(migrator = "vectis_event_store::MIGRATOR")]
async fn reads_return_what_was_appended_with_metadata_and_upcasting(pool: PgPool) {
    let (store, _) = store(pool, SchemaMode::Strict);
    let sku = "READ-1";
    let stream = StreamId::inventory_item(sku).expect("a SKU");
    let metadata = EventMetadata {
        correlation_id: Uuid::now_v7(),
        causation_id: Some(Uuid::now_v7()),
        traceparent: Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into()),
    };
    let old_style = NewEvent::from_parts("StockAdjusted", 1, json!({"sku": sku, "delta": -1, "reason": "dropped it"}));
    store
        .append(AppendRequest {
            stream_id: stream.clone(),
            expected: ExpectedVersion::NoStream,
            events: vec![samples::item_created(sku).into(), old_style],
            metadata: metadata.clone(),
        })
        .await
        .expect("append");
    let events = store.read_stream(&stream, 1).await.expect("read");
    assert_eq!(events.len(), 2);
    assert_eq!(events[0].envelope.correlation_id, metadata.correlation_id);
    assert_eq!(events[0].envelope.causation_id, metadata.causation_id);
    assert_eq!(events[0].traceparent, metadata.traceparent);
    assert_eq!(events[1].envelope.schema_version, 1, "stored as written");
    let upcast = events[1].upcast().expect("upcasts");
    assert_eq!(upcast.schema_version, 2);
    assert_eq!(upcast.data, json!({"sku": sku, "delta": -1, "reason": "other", "note": "dropped it"}));

    assert_eq!(store.read_stream(&stream, 2).await.expect("read").len(), 1);
    let all = read_all_committed_eventually(&store, 2).await;
    let after_first = store.read_all_committed(all[0].envelope.global_position, 10).await.expect("after");
    assert_eq!(after_first, all[1..]);
    assert_eq!(store.stream_version(&stream).await.expect("v"), Some(2));
    assert_eq!(store.stream_version(&StreamId::inventory_item("NOPE").expect("a SKU")).await.expect("v"), None);
}
