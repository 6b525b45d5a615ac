//! The read side end to end: commands → event store → relay → broker → projector →
//! read models, against the real PostgreSQL and broker. The expected state of every
//! row comes from the write model's own aggregates (independent code), loaded from
//! the event store.

use std::{sync::Arc, time::Duration};
use vectis_consumer::handler::Handler;
use vectis_schemas::StreamId;

use sqlx::{Connection, PgPool};
use uuid::Uuid;

use vectis_command_api::{
    domain::{Account, AccountCommand},
    handling::CommandHandler,
};
use vectis_consumer::{lag::LagProbe, metrics::ConsumerMetrics};
use vectis_event_store::{relay, EventMetadata};
use vectis_projectors::{
    read_models::{
        self,
        accounts::{AccountRow, Accounts},
    },
    republish::{republish, RepublishError},
};
use vectis_read_side::Target;
use vectis_schemas::events::Money;
use vectis_test_support::{
    event_store, eventually, fresh_topics, http_get, produce, recreate_topics, start_projector, until, RelayHandle,
};
use vectis_test_support::{
    folds::{accounts_match_the_event_store, commerce_matches_the_event_store},
    workloads::{account_workload, commerce_workload},
};

async fn until_consistent(pool: &PgPool, handler: &CommandHandler, ids: &[Uuid], timeout: Duration) {
    eventually(timeout, "the read model to converge", || accounts_match_the_event_store(pool, handler, ids)).await
}

/// Fresh topics, a relay, an accounts projector, and `count` accounts projected.
struct AccountsProjected {
    kafka: vectis_event_store::kafka::KafkaSettings,
    handler: CommandHandler,
    relay: RelayHandle,
    metrics: ConsumerMetrics,
    projector: vectis_consumer::runtime::RunningConsumer,
    ids: Vec<Uuid>,
}

async fn accounts_projected(pool: &PgPool, count: usize) -> AccountsProjected {
    let kafka = fresh_topics().await.expect("topics");
    let handler = CommandHandler::new(event_store(pool.clone()));
    let relay = RelayHandle::start(pool.clone(), &kafka, 500);
    let metrics = ConsumerMetrics::default();
    let projector = start_projector(pool, &kafka, Arc::new(Accounts), &metrics).await;
    let ids = account_workload(&handler, count).await;
    until_consistent(pool, &handler, &ids, Duration::from_secs(60)).await;
    AccountsProjected { kafka, handler, relay, metrics, projector, ids }
}

#[sqlx::test(migrator = "vectis_event_store::MIGRATOR")]
async fn the_accounts_read_model_equals_the_fold_of_the_event_store(pool: PgPool) {
    let kafka = fresh_topics().await.expect("topics");
    let handler = CommandHandler::new(event_store(pool.clone()));
    let relay = RelayHandle::start(pool.clone(), &kafka, 500);
    let metrics = ConsumerMetrics::default();
    let projector = start_projector(&pool, &kafka, Arc::new(Accounts), &metrics).await;

    let ids = account_workload(&handler, 40).await;
    until_consistent(&pool, &handler, &ids, Duration::from_secs(60)).await;
    let events: i64 = sqlx::query_scalar("SELECT count(*) FROM events").fetch_one(&pool).await.expect("count");
    let label = ConsumerMetrics::label("accounts");
    assert_eq!(metrics.applied.get_or_create(&label).get(), events as u64, "every event applied once");
    assert_eq!(metrics.parked.get_or_create(&label).get(), 0);

    projector.stop().await.expect("clean stop");
    relay.stop().await;
}

#[sqlx::test(migrator = "vectis_event_store::MIGRATOR")]
async fn killed_and_restarted_projectors_lose_nothing_and_apply_nothing_twice(pool: PgPool) {
    let kafka = fresh_topics().await.expect("topics");
    let handler = CommandHandler::new(event_store(pool.clone()));
    let relay = RelayHandle::start(pool.clone(), &kafka, 200);
    let metrics = ConsumerMetrics::default();
    // Four writers, about 20,000 events in all.
    let writers: Vec<_> = (0..4)
        .map(|_| {
            let handler = handler.clone();
            tokio::spawn(async move { account_workload(&handler, 2_100).await })
        })
        .collect();
    // Kill the projector 20 times at varying points while events keep arriving.
    for round in 0..20u64 {
        let projector = start_projector(&pool, &kafka, Arc::new(Accounts), &metrics).await;
        tokio::time::sleep(Duration::from_millis(300 + (round * 389) % 1_100)).await;
        projector.kill().await;
    }
    let mut ids = Vec::new();
    for writer in writers {
        ids.extend(writer.await.expect("workload"));
    }
    let events: i64 = sqlx::query_scalar("SELECT count(*) FROM events").fetch_one(&pool).await.expect("count");
    assert!(events >= 20_000, "{events} events");
    let projector = start_projector(&pool, &kafka, Arc::new(Accounts), &metrics).await;
    until_consistent(&pool, &handler, &ids, Duration::from_secs(180)).await;
    let label = ConsumerMetrics::label("accounts");
    assert_eq!(metrics.parked.get_or_create(&label).get(), 0, "nothing parked");
    projector.stop().await.expect("clean stop");
    relay.stop().await;
}

#[sqlx::test(migrator = "vectis_event_store::MIGRATOR")]
async fn every_read_model_equals_the_fold_after_a_mixed_workload(pool: PgPool) {
    let kafka = fresh_topics().await.expect("topics");
    let handler = CommandHandler::new(event_store(pool.clone()));
    let relay = RelayHandle::start(pool.clone(), &kafka, 500);
    let metrics = ConsumerMetrics::default();
    let mut projectors = Vec::new();
    for projection in read_models::all() {
        projectors.push(start_projector(&pool, &kafka, projection, &metrics).await);
    }
    let accounts = account_workload(&handler, 20).await;
    let (skus, orders) = commerce_workload(&handler, &accounts).await;
    assert!(orders.len() >= 8, "the workload places orders in every state");

    until_consistent(&pool, &handler, &accounts, Duration::from_secs(60)).await;
    eventually(Duration::from_secs(60), "the read models to equal the fold of the event store", || {
        commerce_matches_the_event_store(&pool, &handler, &skus, &orders)
    })
    .await;
    let events: i64 = sqlx::query_scalar("SELECT count(*) FROM events").fetch_one(&pool).await.expect("count");
    let applied: u64 = ["accounts", "inventory", "orders"]
        .iter()
        .map(|p| metrics.applied.get_or_create(&ConsumerMetrics::label(p)).get())
        .sum();
    assert_eq!(applied, events as u64, "every event applied exactly once");
    for projector in projectors {
        projector.stop().await.expect("clean stop");
    }
    relay.stop().await;
}

#[sqlx::test(migrator = "vectis_event_store::MIGRATOR")]
async fn the_projectors_process_projects_and_serves_metrics_and_readiness(pool: PgPool) {
    use vectis_projectors::process::{ProjectorsProcess, ProjectorsSettings};
    let kafka = fresh_topics().await.expect("topics");
    let mut settings = ProjectorsSettings::from_env().expect("settings");
    settings.store.kafka = kafka.clone();
    settings.ops_addr = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    settings.lag_interval = Duration::from_millis(200);
    let search_dir = std::env::temp_dir().join(format!("vectis-process-test-{}", Uuid::now_v7().simple()));
    settings.search = vectis_projectors::search::SearchSettings::Embedded { root: search_dir.clone() };
    let shutdown = vectis_runtime::Shutdown::new();
    let process = ProjectorsProcess::build_with_pool(settings, pool.clone(), shutdown.clone()).await.expect("builds");
    let addr = process.ops_addr();
    let running = tokio::spawn(process.run_until_stopped());
    let relay = RelayHandle::start(pool.clone(), &kafka, 500);
    let handler = CommandHandler::new(event_store(pool.clone()));
    let ids = account_workload(&handler, 5).await;
    until_consistent(&pool, &handler, &ids, Duration::from_secs(60)).await;

    assert_eq!(http_get(addr, "/health").await.0, 200);
    let (status, ready) = http_get(addr, "/ready").await;
    assert_eq!(status, 200, "{ready}");
    let events: i64 = sqlx::query_scalar("SELECT count(*) FROM events").fetch_one(&pool).await.expect("count");
    // Caught up: every partition of every projection at lag 0, in events and seconds:
    // 4 read models and 3 search indexes on 6 partitions per topic (search orders
    // reads orders and accounts).
    let partitions = 6 * (4 + 2 + 1 + 1);
    eventually(Duration::from_secs(30), &format!("lag 0 on all {partitions} partitions in /metrics"), || async {
        let (_, metrics) = http_get(addr, "/metrics").await;
        let lag_events: Vec<&str> =
            metrics.lines().filter(|l| l.starts_with("vectis_projection_lag_events{")).collect();
        let caught_up = lag_events.len() == partitions
            && lag_events.iter().all(|l| l.ends_with(" 0"))
            && metrics.contains(r#"vectis_projection_lag_seconds{projection="accounts"} 0.0"#)
            && metrics.contains(r#"vectis_search_freshness_seconds{index="accounts"} 0.0"#)
            && metrics.contains(r#"vectis_search_documents{index="accounts"} 5"#);
        if caught_up {
            Ok(())
        } else {
            Err(metrics)
        }
    })
    .await;
    // Stored too, for readers without a broker client (the query API's `projections`).
    for spec in vectis_read_side::catalog::ALL {
        let target = Target { projection: spec.name, version: 1 };
        eventually(Duration::from_secs(30), &format!("{}'s stored lag to be 0", spec.name), || async {
            let stored = vectis_read_side::state::measured_lag(&pool, &target).await.map_err(|e| e.to_string())?;
            if stored.as_ref().is_some_and(|lag| lag.events == 0 && lag.seconds_at(chrono::Utc::now()) == 0.0) {
                Ok(())
            } else {
                Err(format!("stored lag {stored:?}"))
            }
        })
        .await;
    }
    let (_, metrics) = http_get(addr, "/metrics").await;
    for line in [
        format!(r#"vectis_projection_events_applied_total{{projection="accounts"}} {events}"#),
        "vectis_projection_end_to_end_latency_seconds_bucket".to_string(),
        "vectis_projection_batch_duration_seconds_count".to_string(),
        "vectis_db_pool_connections_in_use".to_string(),
        r#"vectis_search_documents_indexed_total{index="accounts"}"#.to_string(),
        r#"vectis_search_documents{index="products"} 0"#.to_string(),
    ] {
        assert!(metrics.contains(&line), "/metrics lacks {line}:\n{metrics}");
    }
    shutdown.trigger();
    tokio::time::timeout(Duration::from_secs(30), running).await.expect("stops").expect("task").expect("clean exit");
    relay.stop().await;
    let _ = std::fs::remove_dir_all(search_dir);
}

#[sqlx::test(migrator = "vectis_event_store::MIGRATOR")]
async fn ready_reports_a_configured_meilisearch_that_does_not_answer(pool: PgPool) {
    use vectis_projectors::{
        process::{ProjectorsProcess, ProjectorsSettings},
        search::SearchSettings,
    };
    let kafka = fresh_topics().await.expect("topics");
    let mut settings = ProjectorsSettings::from_env().expect("settings");
    settings.store.kafka = kafka.clone();
    settings.ops_addr = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    settings.projections = vec!["accounts".into()];
    // Nothing listens on the discard port.
    settings.search = SearchSettings::Meilisearch { url: "http://127.0.0.1:9".into(), master_key: None };
    let shutdown = vectis_runtime::Shutdown::new();
    let process = ProjectorsProcess::build_with_pool(settings, pool.clone(), shutdown.clone()).await.expect("builds");
    let (status, body) = http_get(process.ops_addr(), "/ready").await;
    assert_eq!(status, 503, "{body}");
    let body: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(body["checks"]["meilisearch"]["status"], "failing", "{body}");
    assert_eq!(body["checks"]["postgres"]["status"], "ok", "{body}");
    let running = tokio::spawn(process.run_until_stopped());
    shutdown.trigger();
    tokio::time::timeout(Duration::from_secs(30), running).await.expect("stops").expect("task").expect("clean exit");
}

/// Produces records as-is (same key, so the same partition as the relay's).
async fn read_model_snapshot(pool: &PgPool) -> Vec<AccountRow> {
    sqlx::query_as("SELECT * FROM read.accounts ORDER BY account_id").fetch_all(pool).await.expect("rows")
}

#[sqlx::test(migrator = "vectis_event_store::MIGRATOR")]
async fn republished_duplicates_change_nothing(pool: PgPool) {
    let kafka = fresh_topics().await.expect("topics");
    let handler = CommandHandler::new(event_store(pool.clone()));
    let relay = RelayHandle::start(pool.clone(), &kafka, 500);
    let metrics = ConsumerMetrics::default();
    let projector = start_projector(&pool, &kafka, Arc::new(Accounts), &metrics).await;
    let ids = account_workload(&handler, 10).await;
    until_consistent(&pool, &handler, &ids, Duration::from_secs(60)).await;
    let before = read_model_snapshot(&pool).await;

    // What a relay crash between publishing and advancing its cursor does: the same
    // records again.
    let events: i64 = sqlx::query_scalar("SELECT count(*) FROM events").fetch_one(&pool).await.expect("count");
    let mut reader = vectis_test_support::TopicReader::new(&kafka).expect("reader");
    let copies: Vec<(String, Vec<u8>)> = reader
        .read_at_least(events as usize, Duration::from_secs(30))
        .await
        .iter()
        .map(|r| (r.key.clone().expect("key"), r.payload.clone()))
        .collect();
    produce(&kafka, vectis_schemas::topics::ACCOUNTS.name, &copies).await;
    let label = ConsumerMetrics::label("accounts");
    vectis_test_support::until(Duration::from_secs(30), "every copy skipped", || {
        metrics.duplicates.get_or_create(&label).get() == events as u64
    })
    .await;
    assert_eq!(read_model_snapshot(&pool).await, before, "duplicates changed nothing");
    assert_eq!(metrics.applied.get_or_create(&label).get(), events as u64);
    projector.stop().await.expect("clean stop");
    relay.stop().await;
}

#[sqlx::test(migrator = "vectis_event_store::MIGRATOR")]
async fn a_poison_record_parks_its_stream_and_other_streams_go_on(pool: PgPool) {
    let kafka = fresh_topics().await.expect("topics");
    let handler = CommandHandler::new(event_store(pool.clone()));
    let relay = RelayHandle::start(pool.clone(), &kafka, 500);
    let metrics = ConsumerMetrics::default();
    let projector = start_projector(&pool, &kafka, Arc::new(Accounts), &metrics).await;
    let ids = account_workload(&handler, 2).await;
    until_consistent(&pool, &handler, &ids, Duration::from_secs(60)).await;
    let (poisoned, healthy) = (ids[0], ids[1]);

    // A record of the first account's stream that is not an event at all...
    produce(
        &kafka,
        vectis_schemas::topics::ACCOUNTS.name,
        &[(StreamId::account(poisoned).to_string(), b"{not json".to_vec())],
    )
    .await;
    // ...then real events for both accounts.
    let metadata = EventMetadata::default();
    let mut store = handler.store().clone();
    for id in [poisoned, healthy] {
        let change = AccountCommand::ChangeCreditLimit { credit_limit: Money::new(777_777, "EUR") };
        handler
            .execute::<Account, _>(&mut store, &StreamId::account(id), None, &metadata, |_| change.clone())
            .await
            .expect("command");
    }
    let limits = eventually(Duration::from_secs(30), "the healthy stream applied and two events parked", || async {
        let limits: Vec<(Uuid, i64)> = sqlx::query_as("SELECT account_id, credit_limit_minor FROM read.accounts")
            .fetch_all(&pool)
            .await
            .map_err(|e| e.to_string())?;
        let parked: i64 = sqlx::query_scalar("SELECT count(*) FROM projection_dead_letters WHERE status = 'parked'")
            .fetch_one(&pool)
            .await
            .map_err(|e| e.to_string())?;
        if limits.contains(&(healthy, 777_777)) && parked == 2 {
            Ok(limits)
        } else {
            Err(format!("limits {limits:?}, {parked} parked"))
        }
    })
    .await;
    assert!(!limits.contains(&(poisoned, 777_777)), "the poisoned stream's later event waits");
    let letters: Vec<(String, Option<i64>, String)> =
        sqlx::query_as("SELECT stream_id, stream_version, error FROM projection_dead_letters ORDER BY \"offset\"")
            .fetch_all(&pool)
            .await
            .expect("letters");
    assert_eq!(letters.len(), 2);
    assert!(letters.iter().all(|(stream, _, _)| *stream == StreamId::account(poisoned).as_str()));
    assert!(letters[0].2.starts_with("undecodable"), "{letters:?}");
    assert!(letters[1].2.contains("waiting behind"), "{letters:?}");
    assert_eq!(metrics.parked.get_or_create(&ConsumerMetrics::label("accounts")).get(), 2);
    projector.stop().await.expect("clean stop");
    relay.stop().await;
}

/// A new broker, as consumers with old offsets see it: the topics are recreated empty.
/// The projector holds the partitions whose checkpoint is beyond the new log instead of
/// waiting to skip to it; the relay refuses to start the log mid-way; `republish`
/// (refused while anything runs) rewinds the relay and discards the old checkpoints;
/// then the read model is the fold of the event store again, every event applied once.
#[sqlx::test(migrator = "vectis_event_store::MIGRATOR")]
async fn a_recreated_log_is_held_and_reported_until_republished_from_the_event_store(pool: PgPool) {
    let AccountsProjected { kafka, handler, relay, metrics, projector, mut ids } = accounts_projected(&pool, 30).await;
    projector.stop().await.expect("clean stop");
    relay.stop().await;
    let applied_before = metrics.applied.get_or_create(&ConsumerMetrics::label("accounts")).get();

    recreate_topics(&kafka).await.expect("recreate the topics");
    let projector = start_projector(&pool, &kafka, Arc::new(Accounts), &metrics).await;
    let probe = LagProbe::new(&kafka).expect("lag probe");
    let target = Target { projection: "accounts", version: 1 };
    // A topic created a moment ago may not be listed with its partitions yet.
    let lag = eventually(Duration::from_secs(30), "the lag of the recreated topics", || async {
        probe.measure(&pool, &target, Accounts.topics()).await.map_err(|e| e.to_string())
    })
    .await;
    assert!(!lag.beyond_log().is_empty(), "the checkpoints are beyond the recreated log: {lag:?}");
    assert!(lag.beyond_log().iter().all(|p| p.high_watermark == 0));

    // What reaches a held partition is not read: these records do not decode, so a
    // projector that read one would park it.
    let sentinels: Vec<(String, Vec<u8>)> =
        (0..6).map(|n| (format!("sentinel-{n}"), b"not an event envelope".to_vec())).collect();
    produce(&kafka, vectis_schemas::topics::ACCOUNTS.name, &sentinels).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let label = ConsumerMetrics::label("accounts");
    assert_eq!(metrics.applied.get_or_create(&label).get(), applied_before, "nothing applied while held");
    assert_eq!(metrics.parked.get_or_create(&label).get(), 0, "nothing read while held");
    let lag = probe.measure(&pool, &target, Accounts.topics()).await.expect("lag");
    assert!(!lag.beyond_log().is_empty(), "still reported beyond the log: {lag:?}");

    let relay = RelayHandle::start(pool.clone(), &kafka, 500);
    let stopped = relay.stopped_by_itself(Duration::from_secs(30)).await;
    // The sentinels are on the topics, yet fewer records than the events published.
    let error = stopped.expect_err("the relay refuses to start the log mid-way").to_string();
    assert!(error.contains("vectis relay republish"), "{error}");
    assert!(error.contains(&format!("have taken {} records", sentinels.len())), "{error}");

    let refused = republish(&pool, &kafka, "default").await.expect_err("a projector is running");
    assert!(matches!(refused, RepublishError::ConsumersRunning(_)), "{refused}");
    projector.stop().await.expect("clean stop");
    let mut running_relay = pool.acquire().await.expect("connection");
    assert!(relay::try_lock(&mut running_relay, "default").await.expect("lock"), "as a running relay does");
    let refused = republish(&pool, &kafka, "default").await.expect_err("the relay is running");
    assert!(matches!(refused, RepublishError::RelayRunning(_)), "{refused}");
    running_relay.detach().close().await.expect("the lock is released");
    let last: i64 = sqlx::query_scalar("SELECT max(global_position) FROM events").fetch_one(&pool).await.expect("max");
    let done = republish(&pool, &kafka, "default").await.expect("republish");
    assert_eq!(done.relay_cursor_was, last);
    assert!(done.checkpoints_discarded > 0);

    let relay = RelayHandle::start(pool.clone(), &kafka, 500);
    let projector = start_projector(&pool, &kafka, Arc::new(Accounts), &metrics).await;
    ids.extend(account_workload(&handler, 10).await);
    until_consistent(&pool, &handler, &ids, Duration::from_secs(60)).await;
    let events: i64 = sqlx::query_scalar("SELECT count(*) FROM events").fetch_one(&pool).await.expect("count");
    assert_eq!(metrics.applied.get_or_create(&label).get(), events as u64, "every event applied once");
    assert!(metrics.applied.get_or_create(&label).get() > applied_before);
    // Read from the start once republished: the undecodable records are parked, no more.
    assert_eq!(metrics.parked.get_or_create(&label).get(), sentinels.len() as u64, "only the sentinels parked");
    let lag = probe.measure(&pool, &target, Accounts.topics()).await.expect("lag");
    assert!(lag.beyond_log().is_empty() && lag.events() == 0, "{lag:?}");
    projector.stop().await.expect("clean stop");
    relay.stop().await;
}

/// The action the stall watch takes (the watch itself is unit-tested in
/// `vectis_projectors::stall`): a projector asked to rejoin because a partition it holds
/// stopped advancing leaves its group, joins again with a new consumer, counts it, and
/// goes on projecting with nothing lost or applied twice.
#[sqlx::test(migrator = "vectis_event_store::MIGRATOR")]
async fn a_projector_asked_to_rejoin_leaves_joins_again_and_loses_nothing(pool: PgPool) {
    use vectis_consumer::stall::StalledPartition;
    let AccountsProjected { kafka, handler, relay, metrics, projector, mut ids } = accounts_projected(&pool, 30).await;

    let label = ConsumerMetrics::label("accounts");
    let writer = {
        let handler = handler.clone();
        tokio::spawn(async move { account_workload(&handler, 200).await })
    };
    projector.rejoin_requests().request(vec![StalledPartition {
        topic: kafka.naming.physical("vectis.accounts"),
        partition: 0,
        lag: 1,
        since_progress: Duration::from_secs(60),
    }]);
    until(Duration::from_secs(10), "the projector to rejoin", || metrics.rejoins.get_or_create(&label).get() > 0).await;
    ids.extend(writer.await.expect("writer"));
    until_consistent(&pool, &handler, &ids, Duration::from_secs(60)).await;
    let events: i64 = sqlx::query_scalar("SELECT count(*) FROM events").fetch_one(&pool).await.expect("count");
    assert_eq!(metrics.applied.get_or_create(&label).get(), events as u64, "every event applied once");
    assert_eq!(metrics.rejoins.get_or_create(&label).get(), 1, "one request, one rejoin");
    projector.stop().await.expect("clean stop");
    relay.stop().await;
}
