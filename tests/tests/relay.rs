//! The relay against real PostgreSQL and the real broker: what reaches the topics,
//! in which order, across late commits, crashes and a second relay.

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    time::Duration,
};

use sqlx::PgPool;
use uuid::Uuid;
use vectis_event_store::{
    AppendRequest, EventMetadata, EventStore, ExpectedVersion, IdempotencyBegin, IdempotencyKey, NewEvent,
    StoredResponse,
};
use vectis_schemas::samples;
use vectis_schemas::StreamId;
use vectis_test_support::{
    event_store, eventually, fresh_topics, store::read_all_committed_eventually, until, ConsumedRecord, RelayHandle,
    TopicReader,
};

const WAIT: Duration = Duration::from_secs(60);

fn append_request(stream_id: StreamId, events: Vec<NewEvent>) -> AppendRequest {
    AppendRequest { stream_id, expected: ExpectedVersion::Any, events, metadata: EventMetadata::default() }
}

async fn confirm_order(store: &EventStore) -> i64 {
    let order = Uuid::now_v7();
    let outcome = store
        .append(append_request(StreamId::order(order), vec![samples::order_confirmed(order).into()]))
        .await
        .expect("append");
    outcome.events[0].envelope.global_position
}

/// Per partition, global positions must rise: that is commit order within a partition.
fn assert_global_order_per_partition(records: &[ConsumedRecord]) {
    let mut last: HashMap<(String, i32), i64> = HashMap::new();
    for record in records {
        let position = record.envelope().global_position;
        let previous = last.insert((record.topic.clone(), record.partition), position);
        assert!(previous.is_none_or(|p| p < position), "partition {} went back to {position}", record.partition);
    }
}

#[sqlx::test(migrator = "vectis_event_store::MIGRATOR")]
async fn an_outside_kafka_client_sees_the_envelope_key_and_headers(pool: PgPool) {
    let kafka = fresh_topics().await.expect("topics");
    let store = event_store(pool.clone());
    let account = Uuid::now_v7();
    let order = Uuid::now_v7();
    let traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    let metadata =
        EventMetadata { correlation_id: Uuid::now_v7(), causation_id: None, traceparent: Some(traceparent.into()) };
    for (stream, events) in [
        (
            StreamId::account(account),
            vec![samples::account_registered(account, "Acme").into(), samples::account_approved(account).into()],
        ),
        (StreamId::inventory_item("SKU-1").expect("a SKU"), vec![samples::item_created("SKU-1").into()]),
        (StreamId::order(order), vec![samples::order_placed(order, account, "SKU-1", 3).into()]),
    ] {
        store
            .append(AppendRequest {
                stream_id: stream,
                expected: ExpectedVersion::NoStream,
                events,
                metadata: metadata.clone(),
            })
            .await
            .expect("append");
    }
    let relay = RelayHandle::start(pool.clone(), &kafka, 100);
    let mut reader = TopicReader::new(&kafka).expect("reader");
    let records = reader.read_at_least(4, WAIT).await.to_vec();
    relay.stop().await;

    // Other tests' transactions on the server hold the settled horizon back a while.
    let stored = read_all_committed_eventually(&store, records.len()).await;
    assert_eq!(records.len(), stored.len());
    for event in &stored {
        let record = records
            .iter()
            .find(|r| r.envelope().event_id == event.envelope.event_id)
            .unwrap_or_else(|| panic!("{} reached no topic", event.envelope.event_type));
        assert_eq!(record.topic, kafka.naming.physical(&event.topic));
        assert_eq!(record.key.as_deref(), Some(event.envelope.stream_id.as_str()));
        assert_eq!(record.envelope(), event.envelope, "the value is the stored envelope, as JSON");
        let value: serde_json::Value = serde_json::from_slice(&record.payload).expect("plain JSON");
        assert_eq!(value["event_type"], event.envelope.event_type.as_str());
        assert_eq!(record.headers["event_type"], event.envelope.event_type);
        assert_eq!(record.headers["schema_version"], event.envelope.schema_version.to_string());
        assert_eq!(record.headers["event_id"], event.envelope.event_id.to_string());
        assert_eq!(record.headers["content-type"], "application/json");
        assert_eq!(record.headers["traceparent"], traceparent);
    }
    let account_partitions: HashSet<i32> =
        records.iter().filter(|r| r.topic.ends_with("vectis.accounts")).map(|r| r.partition).collect();
    assert_eq!(account_partitions.len(), 1, "one stream, one partition");
}

/// Transaction A takes a global position and stays open while B commits later ones.
/// Nothing past A may be published until A ends; then everything committed is. (The
/// relay runs throughout, as in production: what it can prove was settled before A
/// began goes out while A is open.)
async fn late_commit_scenario(pool: PgPool, a_commits: bool) {
    let kafka = fresh_topics().await.expect("topics");
    let store = event_store(pool.clone());
    let relay = RelayHandle::start(pool.clone(), &kafka, 100);
    let mut reader = TopicReader::new(&kafka).expect("reader");
    let before = confirm_order(&store).await;
    reader.read_at_least(1, WAIT).await;

    let key = IdempotencyKey { scope: "test".into(), key: "late".into() };
    let IdempotencyBegin::Fresh(mut open) =
        store.begin_idempotent(key, b"late", Duration::from_secs(86_400)).await.expect("begin")
    else {
        panic!("fresh key")
    };
    let order = Uuid::now_v7();
    let late = open
        .append(append_request(StreamId::order(order), vec![samples::order_confirmed(order).into()]))
        .await
        .expect("append in A")
        .events[0]
        .envelope
        .global_position;
    let mut after = Vec::new();
    for _ in 0..3 {
        after.push(confirm_order(&store).await);
    }
    assert!(after.iter().all(|p| *p > late));

    // Several relay polls and notifications happen in this window.
    let seen = reader.read_for(Duration::from_millis(1500)).await;
    assert_eq!(
        seen.iter().map(|r| r.envelope().global_position).collect::<Vec<_>>(),
        [before],
        "nothing past the open transaction may be published"
    );
    assert_eq!(relay.metrics.published_total(), 1);
    // The open transaction shows as relay backlog and lag, not as lost events.
    assert_eq!(relay.metrics.backlog_events.get(), after.len() as i64);
    assert!(relay.metrics.lag_seconds.get() > 0.0);

    let mut expected = vec![before];
    if a_commits {
        open.complete(&StoredResponse { status: 201, content_type: "application/json".into(), body: b"{}".to_vec() })
            .await
            .expect("commit A");
        expected.push(late);
    } else {
        drop(open);
    }
    expected.extend(&after);
    let records = reader.read_at_least(expected.len(), WAIT).await.to_vec();
    relay.stop().await;

    let mut published: Vec<i64> = records.iter().map(|r| r.envelope().global_position).collect();
    published.sort_unstable();
    assert_eq!(published, expected, "every committed event, once; the aborted one never");
    assert_global_order_per_partition(&records);
}

#[sqlx::test(migrator = "vectis_event_store::MIGRATOR")]
async fn a_late_commit_holds_back_later_events_and_none_is_skipped(pool: PgPool) {
    late_commit_scenario(pool, true).await;
}

#[sqlx::test(migrator = "vectis_event_store::MIGRATOR")]
async fn a_late_abort_releases_later_events_and_none_is_skipped(pool: PgPool) {
    late_commit_scenario(pool, false).await;
}

/// Appends `per_stream` events to each of `streams` inventory streams; returns the
/// stream ids.
async fn fill(store: &EventStore, streams: usize, per_stream: usize) -> Vec<StreamId> {
    let mut ids = Vec::new();
    for s in 0..streams {
        let sku = format!("SKU-{s:04}");
        let stream = StreamId::inventory_item(&sku).expect("a SKU");
        let mut events = vec![samples::item_created(&sku).into()];
        events.extend((1..per_stream).map(|_| NewEvent::from(samples::stock_received(&sku, 1))));
        store.append(append_request(stream.clone(), events)).await.expect("fill");
        ids.push(stream);
    }
    ids
}

async fn relay_cursor(pool: &PgPool) -> i64 {
    sqlx::query_scalar("SELECT coalesce(max(global_position), 0) FROM relay_cursors")
        .fetch_one(pool)
        .await
        .expect("cursor")
}

#[sqlx::test(migrator = "vectis_event_store::MIGRATOR")]
async fn a_relay_killed_mid_batch_republishes_only_a_suffix_and_loses_nothing(pool: PgPool) {
    let kafka = fresh_topics().await.expect("topics");
    let store = event_store(pool.clone());
    let (streams, per_stream) = (40, 100);
    fill(&store, streams, per_stream).await;
    let total = streams * per_stream;

    // Every event is sent at once (the window holds them all); the cursor follows the
    // acknowledged prefix. Kill the relay once the broker has acknowledged part of it.
    let relay = RelayHandle::start(pool.clone(), &kafka, total as i64);
    // Polled every millisecond, not with `until`'s 20 ms: the kill must land mid-batch.
    let deadline = tokio::time::Instant::now() + WAIT;
    while relay.metrics.published_total() == 0 {
        assert!(tokio::time::Instant::now() < deadline, "relay published nothing");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let metrics = relay.metrics.clone();
    relay.kill().await;
    let acknowledged = metrics.published_total();
    assert!(
        acknowledged > 0 && acknowledged < total as u64,
        "killed mid-batch ({acknowledged} of {total} acknowledged)"
    );
    // Events are counted as acknowledged once the cursor has moved over them (positions
    // run from 1 in this database).
    let cursor_at_kill = relay_cursor(&pool).await;
    assert!(
        cursor_at_kill >= acknowledged as i64 && cursor_at_kill < total as i64,
        "the cursor ({cursor_at_kill}) covers exactly the acknowledged prefix ({acknowledged} of {total})"
    );

    let relay = RelayHandle::start(pool.clone(), &kafka, 1000);
    let last: i64 = sqlx::query_scalar("SELECT max(global_position) FROM events").fetch_one(&pool).await.expect("last");
    eventually(WAIT, "the relay to catch up", || async {
        let cursor = relay_cursor(&pool).await;
        if cursor >= last {
            Ok(())
        } else {
            Err(format!("cursor at {cursor} of {last}"))
        }
    })
    .await;
    relay.stop().await;
    let mut reader = TopicReader::new(&kafka).expect("reader");
    reader.read_at_least(total, WAIT).await;
    let records = reader.read_for(Duration::from_secs(2)).await.to_vec();

    // Per stream: the versions seen are 1..=k from the first run, then a re-published
    // suffix j..=end with j <= k+1. Duplicates only there; nothing missing; order kept.
    let mut by_stream: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for record in &records {
        let envelope = record.envelope();
        by_stream.entry(envelope.stream_id).or_default().push(envelope.stream_version);
    }
    assert_eq!(by_stream.len(), streams);
    let end = per_stream as i64;
    let mut duplicates = 0;
    for (stream, versions) in &by_stream {
        let restart = versions.windows(2).position(|w| w[1] <= w[0]).map_or(versions.len(), |i| i + 1);
        let (first_run, second_run) = versions.split_at(restart);
        assert!(first_run.iter().copied().eq(1..=first_run.len() as i64), "{stream}: first run in order");
        match second_run.first() {
            Some(&resume) => {
                assert!(resume <= first_run.len() as i64 + 1, "{stream}: the suffix leaves a gap");
                assert!(second_run.iter().copied().eq(resume..=end), "{stream}: suffix in order and complete");
                duplicates += first_run.len() as i64 - resume + 1;
            }
            None => assert_eq!(first_run.len() as i64, end, "{stream}: nothing missing"),
        }
    }
    assert_eq!(duplicates as usize, records.len() - total, "every extra record is a re-published duplicate");
    assert!(
        duplicates <= total as i64 - cursor_at_kill,
        "only events past the cursor were published again ({duplicates} duplicates, cursor {cursor_at_kill} of {total})"
    );
}

#[sqlx::test(migrator = "vectis_event_store::MIGRATOR")]
async fn two_relays_one_publishes_and_the_other_takes_over_without_loss(pool: PgPool) {
    let kafka = fresh_topics().await.expect("topics");
    let store = event_store(pool.clone());
    let first = RelayHandle::start(pool.clone(), &kafka, 100);
    let second = RelayHandle::start(pool.clone(), &kafka, 100);
    until(WAIT, "one relay leads", || first.is_leader() || second.is_leader()).await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(first.is_leader() ^ second.is_leader(), "exactly one relay holds the lock");

    for _ in 0..30 {
        confirm_order(&store).await;
    }
    let mut reader = TopicReader::new(&kafka).expect("reader");
    reader.read_at_least(30, WAIT).await;
    let (leader, standby) = if first.is_leader() { (first, second) } else { (second, first) };
    assert_eq!(leader.metrics.published_total(), 30);
    assert_eq!(standby.metrics.published_total(), 0, "the standby publishes nothing");

    leader.stop().await;
    until(WAIT, "the standby takes over", || standby.is_leader()).await;
    for _ in 0..30 {
        confirm_order(&store).await;
    }
    let records = reader.read_at_least(60, WAIT).await.to_vec();
    let total_after_quiet_period = reader.read_for(Duration::from_millis(500)).await.len();
    standby.stop().await;

    assert_eq!(total_after_quiet_period, 60, "a graceful hand-over publishes nothing twice");
    let positions: HashSet<i64> = records.iter().map(|r| r.envelope().global_position).collect();
    let stored: HashSet<i64> =
        read_all_committed_eventually(&store, 60).await.iter().map(|e| e.envelope.global_position).collect();
    assert_eq!(positions, stored);
}

#[sqlx::test(migrator = "vectis_event_store::MIGRATOR")]
async fn a_commit_wakes_the_idle_relay_without_waiting_for_its_timer(pool: PgPool) {
    let kafka = fresh_topics().await.expect("topics");
    let store = event_store(pool.clone());
    let relay = RelayHandle::start_polling_every(pool.clone(), &kafka, 100, Duration::from_secs(600));
    until(WAIT, "relay leads", || relay.is_leader()).await;
    let mut reader = TopicReader::new(&kafka).expect("reader");
    // Let the relay go idle on an empty store, waiting on LISTEN or its 10-minute timer.
    reader.read_for(Duration::from_millis(500)).await;
    for expected in 1..=3 {
        confirm_order(&store).await;
        reader.read_at_least(expected, Duration::from_secs(10)).await;
    }
    relay.stop().await;
}

#[tokio::test]
async fn provisioning_is_idempotent_and_reports_partition_mismatches() {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    use vectis_event_store::kafka::{provision_topics, KafkaSettings};
    use vectis_schemas::TopicNaming;

    let kafka = KafkaSettings::new(
        vectis_test_support::brokers(),
        TopicNaming::with_prefix(format!("test-{}.", Uuid::new_v4().simple())),
    );
    // Someone created the orders topic by hand with too few partitions.
    let admin: AdminClient<_> = kafka.client_config().create().expect("admin");
    let orders = kafka.naming.physical("vectis.orders");
    admin
        .create_topics([&NewTopic::new(&orders, 2, TopicReplication::Fixed(1))], &AdminOptions::new())
        .await
        .expect("create")
        .into_iter()
        .for_each(|r| {
            r.expect("created");
        });

    let report = provision_topics(&kafka).await.expect("provision");
    assert_eq!(report.created.len(), 2);
    assert_eq!(report.partition_mismatches.len(), 1);
    assert_eq!(report.partition_mismatches[0].topic, orders);
    assert_eq!((report.partition_mismatches[0].registry, report.partition_mismatches[0].broker), (6, 2));

    let again = provision_topics(&kafka).await.expect("provision again");
    assert!(again.created.is_empty(), "nothing created twice");
    assert_eq!(again.already_present.len(), 3);
    assert!(!again.is_consistent());
}

/// Eight writers appending at once, many events per stream: every committed event
/// reaches the topics, once.
#[sqlx::test(migrator = "vectis_event_store::MIGRATOR")]
async fn with_concurrent_writers_every_committed_event_reaches_the_topics(pool: PgPool) {
    let kafka = fresh_topics().await.expect("topics");
    let store = event_store(pool.clone());
    let relay = RelayHandle::start(pool.clone(), &kafka, 200);
    let writers: Vec<_> = (0..8)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move {
                let orders: Vec<Uuid> = (0..50).map(|_| Uuid::now_v7()).collect();
                for n in 0..2_500 {
                    let order = orders[n % orders.len()];
                    let event = samples::order_confirmed(order).into();
                    store.append(append_request(StreamId::order(order), vec![event])).await.expect("append");
                }
            })
        })
        .collect();
    for writer in writers {
        writer.await.expect("writer");
    }
    let positions: Vec<i64> =
        sqlx::query_scalar("SELECT global_position FROM events ORDER BY 1").fetch_all(&pool).await.expect("positions");
    let mut reader = TopicReader::new(&kafka).expect("reader");
    let records = reader.read_at_least(positions.len(), Duration::from_secs(120)).await.to_vec();
    let published: HashSet<i64> = records.iter().map(|r| r.envelope().global_position).collect();
    let missing: Vec<i64> = positions.iter().copied().filter(|p| !published.contains(p)).collect();
    assert!(
        missing.is_empty(),
        "{} of {} events missing from the topics (relay acknowledged {}): {missing:?}",
        missing.len(),
        positions.len(),
        relay.metrics.published_total()
    );
    assert_eq!(records.len(), positions.len(), "each once");
    assert_global_order_per_partition(&records);
    relay.stop().await;
}
