//! Idempotency keys and commit-order reads against a real PostgreSQL database.

use std::{sync::Arc, time::Duration};
use vectis_schemas::StreamId;

use sqlx::PgPool;
use uuid::Uuid;
use vectis_event_store::{
    AppendError, AppendRequest, EventMetadata, EventStore, ExpectedVersion, IdempotencyBegin, IdempotencyKey,
    StoredResponse,
};
use vectis_schemas::samples;
use vectis_test_support::store::read_all_committed_eventually;

const DAY: Duration = Duration::from_secs(24 * 3600);

fn store(pool: PgPool) -> EventStore {
    vectis_test_support::event_store(pool)
}

fn key(k: &str) -> IdempotencyKey {
    IdempotencyKey { scope: "client-a".into(), key: k.into() }
}

fn confirm(order_id: Uuid) -> AppendRequest {
    AppendRequest {
        stream_id: StreamId::order(order_id),
        expected: ExpectedVersion::Any,
        events: vec![samples::order_confirmed(order_id).into()],
        metadata: EventMetadata::default(),
    }
}

/// What a command endpoint would do: claim the key, append, store the response.
async fn run_command(store: &EventStore, key: IdempotencyKey, hash: &[u8], order_id: Uuid) -> StoredResponse {
    match store.begin_idempotent(key, hash, DAY).await.expect("begin") {
        IdempotencyBegin::Fresh(mut command) => {
            let outcome = command.append(confirm(order_id)).await.expect("append");
            let response = StoredResponse {
                status: 201,
                content_type: "application/json".into(),
                body: format!(
                    r#"{{"version":{},"event_id":"{}"}}"#,
                    outcome.stream_version, outcome.events[0].envelope.event_id
                )
                .into_bytes(),
            };
            command.complete(&response).await.expect("complete");
            response
        }
        IdempotencyBegin::Replay(response) => response,
        IdempotencyBegin::Mismatch => panic!("unexpected mismatch"),
        IdempotencyBegin::InProgress => panic!("unexpected in-progress"),
    }
}

async fn event_count(pool: &PgPool) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM events").fetch_one(pool).await.expect("count")
}

#[sqlx::test(migrator = "vectis_event_store::MIGRATOR")]
async fn same_key_and_request_replays_the_stored_response_byte_for_byte(pool: PgPool) {
    let store = store(pool.clone());
    let order = Uuid::now_v7();
    let first = run_command(&store, key("k1"), b"hash-1", order).await;
    let second = run_command(&store, key("k1"), b"hash-1", order).await;
    assert_eq!(first, second);
    assert_eq!(event_count(&pool).await, 1);

    // Another client's identical key is its own key.
    let other = IdempotencyKey { scope: "client-b".into(), key: "k1".into() };
    run_command(&store, other, b"hash-1", order).await;
    assert_eq!(event_count(&pool).await, 2);
}

#[sqlx::test(migrator = "vectis_event_store::MIGRATOR")]
async fn same_key_with_a_different_request_is_refused(pool: PgPool) {
    let store = store(pool.clone());
    run_command(&store, key("k1"), b"hash-1", Uuid::now_v7()).await;
    let outcome = store.begin_idempotent(key("k1"), b"hash-2", DAY).await.expect("begin");
    assert!(matches!(outcome, IdempotencyBegin::Mismatch));
    assert_eq!(event_count(&pool).await, 1);
}

#[sqlx::test(migrator = "vectis_event_store::MIGRATOR")]
async fn twenty_concurrent_duplicates_append_once_and_get_one_answer(pool: PgPool) {
    let store = store(pool.clone());
    let order = Uuid::now_v7();
    let barrier = Arc::new(tokio::sync::Barrier::new(20));
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let (store, barrier) = (store.clone(), barrier.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                run_command(&store, key("dup"), b"same", order).await
            })
        })
        .collect();
    let mut responses = Vec::new();
    for task in tasks {
        responses.push(task.await.expect("task"));
    }
    assert!(responses.windows(2).all(|w| w[0] == w[1]), "every duplicate gets the first response");
    assert_eq!(event_count(&pool).await, 1);
}

#[sqlx::test(migrator = "vectis_event_store::MIGRATOR")]
async fn a_rejected_command_stores_its_rejection_and_appends_nothing(pool: PgPool) {
    let store = store(pool.clone());
    let order = Uuid::now_v7();
    let IdempotencyBegin::Fresh(mut command) = store.begin_idempotent(key("k"), b"h", DAY).await.expect("begin") else {
        panic!("fresh key")
    };
    let mut request = confirm(order);
    request.expected = ExpectedVersion::Exact(7);
    let err = command.append(request).await.expect_err("conflict");
    assert!(matches!(err, AppendError::Conflict { .. }));
    let rejection = StoredResponse {
        status: 409,
        content_type: "application/problem+json".into(),
        body: b"{\"title\":\"conflict\"}".to_vec(),
    };
    command.complete(&rejection).await.expect("complete");
    assert_eq!(event_count(&pool).await, 0);
    match store.begin_idempotent(key("k"), b"h", DAY).await.expect("begin") {
        IdempotencyBegin::Replay(response) => assert_eq!(response, rejection),
        _ => panic!("expected the stored rejection"),
    }
}

#[sqlx::test(migrator = "vectis_event_store::MIGRATOR")]
async fn an_abandoned_command_frees_its_key_and_leaves_nothing(pool: PgPool) {
    let store = store(pool.clone());
    let order = Uuid::now_v7();
    {
        let IdempotencyBegin::Fresh(mut command) = store.begin_idempotent(key("k"), b"h", DAY).await.expect("begin")
        else {
            panic!("fresh key")
        };
        command.append(confirm(order)).await.expect("append");
        // Dropped without complete: the infrastructure failed after the append.
    }
    assert_eq!(event_count(&pool).await, 0);
    run_command(&store, key("k"), b"h", order).await;
    assert_eq!(event_count(&pool).await, 1);
}

#[sqlx::test(migrator = "vectis_event_store::MIGRATOR")]
async fn records_are_kept_a_day_and_expired_ones_are_replaced_or_purged(pool: PgPool) {
    let store = store(pool.clone());
    // Asking for less than a day still keeps the record a day.
    let IdempotencyBegin::Fresh(command) =
        store.begin_idempotent(key("short"), b"h", Duration::from_secs(1)).await.expect("begin")
    else {
        panic!("fresh")
    };
    command
        .complete(&StoredResponse { status: 200, content_type: "text/plain".into(), body: b"ok".to_vec() })
        .await
        .expect("complete");
    let kept_for: f64 = sqlx::query_scalar(
        "SELECT EXTRACT(EPOCH FROM expires_at - created_at)::float8 FROM idempotency_records WHERE idempotency_key = 'short'",
    )
    .fetch_one(&pool)
    .await
    .expect("row");
    assert!(kept_for >= DAY.as_secs_f64() - 1.0, "kept {kept_for}s");

    run_command(&store, key("old"), b"h-old", Uuid::now_v7()).await;
    sqlx::query(
        "UPDATE idempotency_records SET expires_at = now() - interval '1 second' WHERE idempotency_key = 'old'",
    )
    .execute(&pool)
    .await
    .expect("age it");
    // An expired key is fresh again, even with another request.
    assert!(matches!(
        store.begin_idempotent(key("old"), b"h-new", DAY).await.expect("begin"),
        IdempotencyBegin::Fresh(_)
    ));
    sqlx::query(
        "UPDATE idempotency_records SET expires_at = now() - interval '1 second' WHERE idempotency_key = 'short'",
    )
    .execute(&pool)
    .await
    .expect("age it");
    assert_eq!(store.purge_expired_idempotency_records().await.expect("purge"), 2);
}

/// The heart of the relay's correctness, at the store level: an event whose
/// transaction is still open holds back every later event, even committed ones.
#[sqlx::test(migrator = "vectis_event_store::MIGRATOR")]
async fn an_open_transaction_holds_back_later_commits_until_it_ends(pool: PgPool) {
    let store = store(pool.clone());
    let first = store.append(confirm(Uuid::now_v7())).await.expect("e1");

    // A: takes a global position and stays open.
    let IdempotencyBegin::Fresh(mut open) = store.begin_idempotent(key("a"), b"a", DAY).await.expect("begin") else {
        panic!("fresh")
    };
    let late = open.append(confirm(Uuid::now_v7())).await.expect("e2 in open tx");
    // B: commits a later position.
    let later = store.append(confirm(Uuid::now_v7())).await.expect("e3");
    assert!(late.events[0].envelope.global_position < later.events[0].envelope.global_position);

    // Other tests' transactions may hold back even `first`; nothing past A may show.
    let visible = store.read_all_committed(0, 100).await.expect("read");
    let late_position = late.events[0].envelope.global_position;
    assert!(visible.iter().all(|e| e.envelope.global_position < late_position), "nothing at or past A is visible");

    open.complete(&StoredResponse { status: 201, content_type: "application/json".into(), body: b"{}".to_vec() })
        .await
        .expect("commit A");
    let visible: Vec<_> = read_all_committed_eventually(&store, 3).await.iter().map(|e| e.envelope.event_id).collect();
    assert_eq!(
        visible,
        [first.events[0].envelope.event_id, late.events[0].envelope.event_id, later.events[0].envelope.event_id]
    );
}

/// The case a `tx_id < xmin` filter gets wrong: B takes its transaction id first, A a
/// later one; A then takes the lower position and stays open while B commits the
/// higher one. B's event must wait for A's, or A's would be skipped for good.
#[sqlx::test(migrator = "vectis_event_store::MIGRATOR")]
async fn a_lower_position_held_by_a_younger_transaction_holds_back_an_older_ones_commit(pool: PgPool) {
    let store = store(pool.clone());
    let done = StoredResponse { status: 201, content_type: "application/json".into(), body: b"{}".to_vec() };
    // Claiming an idempotency key writes a row, which assigns the transaction id.
    let IdempotencyBegin::Fresh(mut older) = store.begin_idempotent(key("b"), b"b", DAY).await.expect("B") else {
        panic!("fresh")
    };
    let IdempotencyBegin::Fresh(mut younger) = store.begin_idempotent(key("a"), b"a", DAY).await.expect("A") else {
        panic!("fresh")
    };
    let low = younger.append(confirm(Uuid::now_v7())).await.expect("A appends").events[0].envelope.clone();
    let high = older.append(confirm(Uuid::now_v7())).await.expect("B appends").events[0].envelope.clone();
    assert!(low.global_position < high.global_position);
    older.complete(&done).await.expect("B commits");

    let visible = store.read_all_committed(0, 100).await.expect("read");
    assert!(
        visible.iter().all(|e| e.envelope.global_position < low.global_position),
        "B's event showed while A's lower position was still open: {:?}",
        visible.iter().map(|e| e.envelope.global_position).collect::<Vec<_>>()
    );
    younger.complete(&done).await.expect("A commits");
    let visible: Vec<_> = read_all_committed_eventually(&store, 2).await.iter().map(|e| e.envelope.event_id).collect();
    assert_eq!(visible, [low.event_id, high.event_id]);
}

#[sqlx::test(migrator = "vectis_event_store::MIGRATOR")]
async fn an_aborted_transaction_stops_holding_back_later_commits(pool: PgPool) {
    let store = store(pool.clone());
    let IdempotencyBegin::Fresh(mut open) = store.begin_idempotent(key("a"), b"a", DAY).await.expect("begin") else {
        panic!("fresh")
    };
    open.append(confirm(Uuid::now_v7())).await.expect("in open tx");
    let later = store.append(confirm(Uuid::now_v7())).await.expect("committed");
    assert!(store.read_all_committed(0, 100).await.expect("read").is_empty());
    drop(open);
    // The rollback reaches the server asynchronously.
    let visible = read_all_committed_eventually(&store, 1).await;
    assert_eq!(visible.iter().map(|e| e.envelope.event_id).collect::<Vec<_>>(), [later.events[0].envelope.event_id]);
}

#[sqlx::test(migrator = "vectis_event_store::MIGRATOR")]
async fn a_duplicate_stops_waiting_for_a_stuck_first_request(pool: PgPool) {
    let store = store(pool.clone()).with_idempotency_wait(Duration::from_millis(200));
    let IdempotencyBegin::Fresh(stuck) = store.begin_idempotent(key("k"), b"h", DAY).await.expect("begin") else {
        panic!("fresh key")
    };
    let started = std::time::Instant::now();
    let duplicate = store.begin_idempotent(key("k"), b"h", DAY).await.expect("answers");
    assert!(matches!(duplicate, IdempotencyBegin::InProgress));
    assert!(started.elapsed() < Duration::from_secs(5));
    drop(stuck);
    // Once the first request gave up, the key is free again.
    assert!(matches!(store.begin_idempotent(key("k"), b"h", DAY).await.expect("begin"), IdempotencyBegin::Fresh(_)));
}

/// A client that hangs up drops its command wherever it is, also while the
/// transaction's `BEGIN` is on the wire (sqlx 0.8.6 then leaves the session inside a
/// transaction it never rolls back, and hands it to the next borrower: transact-rs/sqlx
/// #4393). The next command on that connection must still commit what it appends.
#[sqlx::test(migrator = "vectis_event_store::MIGRATOR")]
#[allow(clippy::disallowed_methods)] // the pool that cancels is the one under test
async fn a_command_dropped_while_it_begins_leaves_the_next_ones_appends_committed(pool: PgPool) {
    // One connection, so every command after a cancelled one gets the same session.
    let single = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect_with((*pool.connect_options()).clone())
        .await
        .expect("a pool of one");
    let store = store(single);
    for attempt in 0..300u64 {
        let cancelled = {
            let store = store.clone();
            tokio::spawn(async move {
                let _ = store.begin_idempotent(key(&format!("dropped-{attempt}")), b"h", DAY).await;
            })
        };
        // Let it run a different number of steps each time, with time between them for
        // PostgreSQL to answer, then drop it: some drops land while BEGIN is unanswered.
        for _ in 0..attempt % 8 {
            tokio::task::yield_now().await;
            let started = std::time::Instant::now();
            while started.elapsed() < Duration::from_micros(150) {
                std::hint::spin_loop();
            }
        }
        cancelled.abort();
        let _ = cancelled.await;

        let before = event_count(&pool).await;
        store.append(confirm(Uuid::now_v7())).await.expect("append");
        assert_eq!(event_count(&pool).await, before + 1, "attempt {attempt}: an acknowledged append is committed");
    }
}
