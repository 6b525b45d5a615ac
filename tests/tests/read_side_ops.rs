//! The read side's operations against the real PostgreSQL and broker: dead-letter
//! retry, lag measurement, two instances sharing a projection, and a blue/green
//! rebuild while traffic keeps flowing.

use std::{
    sync::{
        atomic::{AtomicBool, AtomicI64, Ordering},
        Arc,
    },
    time::Duration,
};
use vectis_consumer::handler::Handler;

use sqlx::PgPool;
use uuid::Uuid;
use vectis_command_api::{
    domain::{Account, AccountCommand},
    handling::CommandHandler,
};
use vectis_consumer::{
    dead_letters::{self, DeadLetterError},
    lag::{LagProbe, ProjectionLag},
    metrics::ConsumerMetrics,
    settings::ConsumerSettings,
};
use vectis_event_store::EventMetadata;
use vectis_projectors::{
    read_models::{self, accounts::Accounts},
    rebuild, store,
};
use vectis_read_side::Target;
use vectis_schemas::events::Money;
use vectis_schemas::StreamId;
use vectis_test_support::{
    committed_offsets, event_store, eventually, fresh_topics, start_projector, workloads, RelayHandle,
};

/// Registers `count` accounts, changing the credit limit of every other one. Returns
/// the ids.
async fn register_accounts(handler: &CommandHandler, count: usize) -> Vec<Uuid> {
    let ids = workloads::register_accounts(handler, count).await;
    for (n, id) in ids.iter().enumerate().filter(|(n, _)| n % 2 == 0) {
        change_limit(handler, *id, 200_000 + n as i64).await;
    }
    ids
}

async fn change_limit(handler: &CommandHandler, id: Uuid, amount: i64) {
    let mut store = handler.store().clone();
    let change = AccountCommand::ChangeCreditLimit { credit_limit: Money::new(amount, "EUR") };
    handler
        .execute::<Account, _>(&mut store, &StreamId::account(id), None, &EventMetadata::default(), |_| change.clone())
        .await
        .expect("change limit");
}

/// (account, credit limit, version) as the write model folds them, for every account
/// in the event store.
async fn folded(pool: &PgPool, handler: &CommandHandler) -> Vec<(Uuid, i64, i64)> {
    let streams: Vec<String> =
        sqlx::query_scalar("SELECT DISTINCT stream_id FROM events WHERE stream_id LIKE 'account-%' ORDER BY 1")
            .fetch_all(pool)
            .await
            .expect("streams");
    let mut rows = Vec::new();
    for stream in streams {
        let loaded = handler.load::<Account>(&stream.parse().expect("a stream id")).await.expect("load");
        let account = loaded.state.expect("registered");
        rows.push((account.id, account.credit_limit.amount_minor, loaded.version));
    }
    rows.sort();
    rows
}

async fn projected(pool: &PgPool) -> Vec<(Uuid, i64, i64)> {
    sqlx::query_as("SELECT account_id, credit_limit_minor, version FROM read.accounts ORDER BY account_id")
        .fetch_all(pool)
        .await
        .expect("rows")
}

/// Waits until `read.accounts` equals the fold of the event store.
async fn until_equal_to_the_fold(pool: &PgPool, handler: &CommandHandler, timeout: Duration) {
    let expected = folded(pool, handler).await;
    eventually(timeout, "read.accounts to equal the fold of the event store", || async {
        let actual = projected(pool).await;
        if actual == expected {
            return Ok(());
        }
        let differences: Vec<_> = actual.iter().zip(&expected).filter(|(a, e)| a != e).take(3).collect();
        Err(format!("{} rows, {} expected; first differences: {differences:?}", actual.len(), expected.len()))
    })
    .await
}

/// Waits until `read.accounts` has a row.
async fn until_projected(pool: &PgPool, timeout: Duration) {
    eventually(timeout, "an account in read.accounts", || async {
        if projected(pool).await.is_empty() {
            Err("no rows".to_string())
        } else {
            Ok(())
        }
    })
    .await
}

/// Waits until the lag of `target` counts `events` (their records reached the broker),
/// and returns that measurement.
async fn lag_reaches(probe: &LagProbe, pool: &PgPool, target: &Target, events: i64) -> ProjectionLag {
    eventually(Duration::from_secs(30), &format!("a lag of {events} events"), || async {
        let lag = probe.measure(pool, target, Accounts.topics()).await.map_err(|e| e.to_string())?;
        if lag.events() >= events {
            Ok(lag)
        } else {
            Err(format!("{} events of lag", lag.events()))
        }
    })
    .await
}

#[sqlx::test(migrator = "vectis_event_store::MIGRATOR")]
async fn a_retried_dead_letter_applies_it_and_the_events_behind_it_in_order(pool: PgPool) {
    let kafka = fresh_topics().await.expect("topics");
    let handler = CommandHandler::new(event_store(pool.clone()));
    let relay = RelayHandle::start(pool.clone(), &kafka, 500);
    let metrics = ConsumerMetrics::default();
    let projector = start_projector(&pool, &kafka, Arc::new(Accounts), &metrics).await;
    let ids = register_accounts(&handler, 2).await;
    until_equal_to_the_fold(&pool, &handler, Duration::from_secs(60)).await;
    let (broken, healthy) = (ids[0], ids[1]);

    // A defect in the read model: it refuses two values. (A batch writes each row's
    // final state once, so the refusal is on any value the broken stream ends at.)
    sqlx::raw_sql(
        "CREATE FUNCTION refuse_666() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN IF NEW.credit_limit_minor IN (666666, 777777) THEN RAISE EXCEPTION 'credit limit 666666 refused'; END IF;
               RETURN NEW; END $$;
         CREATE TRIGGER refuse_666 BEFORE UPDATE ON proj_accounts_v1.accounts
            FOR EACH ROW EXECUTE FUNCTION refuse_666();",
    )
    .execute(&pool)
    .await
    .expect("defect");
    change_limit(&handler, broken, 666_666).await;
    eventually(Duration::from_secs(30), "the refused event to park", || async {
        let parked = dead_letters::list(&pool, Some("accounts"), false).await.map_err(|e| e.to_string())?;
        if parked.is_empty() {
            Err("nothing parked".to_string())
        } else {
            Ok(())
        }
    })
    .await;
    change_limit(&handler, broken, 777_777).await;
    change_limit(&handler, healthy, 555_555).await;

    let letters =
        eventually(Duration::from_secs(60), "the later event to park behind, the other stream going on", || async {
            let letters = dead_letters::list(&pool, Some("accounts"), false).await.map_err(|e| e.to_string())?;
            let healthy_applied =
                projected(&pool).await.iter().any(|(id, limit, _)| *id == healthy && *limit == 555_555);
            if letters.len() == 2 && healthy_applied {
                Ok(letters)
            } else {
                Err(format!("{} parked, the healthy stream applied: {healthy_applied}", letters.len()))
            }
        })
        .await;
    assert!(letters.iter().all(|l| l.letter.stream_id.as_deref() == Some(StreamId::account(broken).as_str())));
    assert!(letters[0].letter.error.contains("credit limit 666666 refused"), "{letters:?}");
    assert!(letters[1].letter.error.contains("waiting behind"), "{letters:?}");

    // Retried before the cause is fixed: still parked, with the error.
    let outcome = dead_letters::retry(&pool, &read_models::all(), letters[0].id).await.expect("retry");
    assert_eq!((outcome.applied, outcome.still_parked), (0, 2));
    assert!(outcome.error.expect("error").contains("refused"));

    sqlx::raw_sql("DROP TRIGGER refuse_666 ON proj_accounts_v1.accounts").execute(&pool).await.expect("fix");
    let outcome = dead_letters::retry(&pool, &read_models::all(), letters[0].id).await.expect("retry");
    assert_eq!((outcome.applied, outcome.already_applied, outcome.still_parked, outcome.error), (2, 0, 0, None));
    until_equal_to_the_fold(&pool, &handler, Duration::from_secs(5)).await;
    assert!(projected(&pool).await.contains(&(broken, 777_777, 4)), "both events applied, in order");

    // The stream flows again; resolved letters cannot be retried or discarded twice.
    change_limit(&handler, broken, 888_888).await;
    until_equal_to_the_fold(&pool, &handler, Duration::from_secs(30)).await;
    assert!(dead_letters::list(&pool, None, false).await.expect("list").is_empty());
    assert!(matches!(
        dead_letters::retry(&pool, &read_models::all(), letters[1].id).await,
        Err(DeadLetterError::NotParked { .. })
    ));
    assert!(matches!(dead_letters::discard(&pool, letters[0].id).await, Err(DeadLetterError::NotParked { .. })));
    assert!(matches!(dead_letters::get(&pool, 999_999).await, Err(DeadLetterError::NotFound(999_999))));
    projector.stop().await.expect("clean stop");
    relay.stop().await;
}

#[sqlx::test(migrator = "vectis_event_store::MIGRATOR")]
async fn lag_counts_unapplied_events_and_their_age_and_is_zero_when_caught_up(pool: PgPool) {
    let kafka = fresh_topics().await.expect("topics");
    let handler = CommandHandler::new(event_store(pool.clone()));
    let relay = RelayHandle::start(pool.clone(), &kafka, 500);
    store::install(&pool, &Accounts).await.expect("install");
    let target = Target { projection: "accounts", version: 1 };
    let probe = LagProbe::new(&kafka).expect("probe");

    // A quiet log is not lagging.
    let quiet = probe.measure(&pool, &target, Accounts.topics()).await.expect("measure");
    assert_eq!((quiet.events(), quiet.seconds()), (0, 0.0));
    assert_eq!(quiet.partitions.len(), 6, "every partition measured");

    register_accounts(&handler, 20).await;
    let events: i64 = sqlx::query_scalar("SELECT count(*) FROM events").fetch_one(&pool).await.expect("count");
    let first_event_age = tokio::time::Instant::now();
    lag_reaches(&probe, &pool, &target, events).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let lag = probe.measure(&pool, &target, Accounts.topics()).await.expect("measure");
    assert_eq!(lag.events(), events, "nothing applied: every event lags");
    let waited = first_event_age.elapsed().as_secs_f64();
    assert!(lag.seconds() >= 1.5 && lag.seconds() < waited + 30.0, "lag {}s after waiting {waited}s", lag.seconds());

    let metrics = ConsumerMetrics::default();
    let projector = start_projector(&pool, &kafka, Arc::new(Accounts), &metrics).await;
    until_equal_to_the_fold(&pool, &handler, Duration::from_secs(60)).await;
    let lag = probe.measure(&pool, &target, Accounts.topics()).await.expect("measure");
    assert_eq!((lag.events(), lag.seconds()), (0, 0.0), "caught up");
    metrics.record_lag(&lag);
    assert_eq!(metrics.lag_seconds.get_or_create(&ConsumerMetrics::label("accounts")).get(), 0.0);
    projector.stop().await.expect("clean stop");
    relay.stop().await;
}

#[sqlx::test(migrator = "vectis_event_store::MIGRATOR")]
async fn two_instances_share_the_partitions_and_one_takes_over_when_the_other_stops(pool: PgPool) {
    let kafka = fresh_topics().await.expect("topics");
    let handler = CommandHandler::new(event_store(pool.clone()));
    let relay = RelayHandle::start(pool.clone(), &kafka, 200);
    let (first_metrics, second_metrics) = (ConsumerMetrics::default(), ConsumerMetrics::default());
    let first = start_projector(&pool, &kafka, Arc::new(Accounts), &first_metrics).await;
    let second = start_projector(&pool, &kafka, Arc::new(Accounts), &second_metrics).await;
    let label = ConsumerMetrics::label("accounts");
    let applied = |m: &ConsumerMetrics| m.applied.get_or_create(&label).get();

    // Joining the group takes a rebalance or two: write until both have applied some.
    eventually(Duration::from_secs(60), "both instances to apply events", || async {
        if applied(&first_metrics) > 0 && applied(&second_metrics) > 0 {
            return Ok(());
        }
        register_accounts(&handler, 10).await;
        Err(format!("applied {} and {}", applied(&first_metrics), applied(&second_metrics)))
    })
    .await;
    until_equal_to_the_fold(&pool, &handler, Duration::from_secs(90)).await;

    // The first leaves while events keep coming: the second takes its partitions over.
    let writing = {
        let handler = handler.clone();
        tokio::spawn(async move { register_accounts(&handler, 120).await })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    first.stop().await.expect("clean stop");
    let first_total = applied(&first_metrics);
    writing.await.expect("writes");
    until_equal_to_the_fold(&pool, &handler, Duration::from_secs(90)).await;
    let events: i64 = sqlx::query_scalar("SELECT count(*) FROM events").fetch_one(&pool).await.expect("count");
    assert_eq!(applied(&first_metrics), first_total, "the stopped instance applied nothing more");
    assert_eq!(first_total + applied(&second_metrics), events as u64, "every event applied exactly once");
    second.stop().await.expect("clean stop");
    relay.stop().await;
}

#[sqlx::test(migrator = "vectis_event_store::MIGRATOR")]
async fn a_rebuild_under_traffic_switches_readers_atomically_to_tables_equal_to_the_fold(pool: PgPool) {
    let kafka = fresh_topics().await.expect("topics");
    let handler = CommandHandler::new(event_store(pool.clone()));
    let relay = RelayHandle::start(pool.clone(), &kafka, 500);
    let metrics = ConsumerMetrics::default();
    let projector = start_projector(&pool, &kafka, Arc::new(Accounts), &metrics).await;
    register_accounts(&handler, 150).await;
    until_equal_to_the_fold(&pool, &handler, Duration::from_secs(90)).await;

    // Readers: accounts are only ever added, so a count that drops means a reader saw
    // an empty or half-built table.
    let reading = Arc::new(AtomicBool::new(true));
    let lowest_after_peak = Arc::new(AtomicI64::new(i64::MAX));
    let reader = {
        let (pool, reading, dropped_to) = (pool.clone(), reading.clone(), lowest_after_peak.clone());
        tokio::spawn(async move {
            let mut peak = 0i64;
            let mut reads = 0u64;
            while reading.load(Ordering::Relaxed) {
                let count: i64 =
                    sqlx::query_scalar("SELECT count(*) FROM read.accounts").fetch_one(&pool).await.expect("read");
                if count < peak {
                    dropped_to.fetch_min(count, Ordering::Relaxed);
                }
                peak = peak.max(count);
                reads += 1;
            }
            reads
        })
    };
    let writing = {
        let handler = handler.clone();
        tokio::spawn(async move { register_accounts(&handler, 150).await })
    };
    let mut settings = ConsumerSettings::new(kafka.clone());
    settings.max_batch = 200;
    let mut progress_lines = Vec::new();
    let version = rebuild::run(
        &pool,
        Arc::new(Accounts),
        settings,
        Duration::from_millis(200),
        |p| progress_lines.push((p.events_done, p.events_left)),
        std::future::pending(),
    )
    .await
    .expect("rebuild");
    assert_eq!(version, 2);
    writing.await.expect("writes");
    // The old version's projector followed the switch and keeps the new tables fresh.
    register_accounts(&handler, 5).await;
    until_equal_to_the_fold(&pool, &handler, Duration::from_secs(90)).await;
    reading.store(false, Ordering::Relaxed);
    let reads = reader.await.expect("reader");
    assert_eq!(lowest_after_peak.load(Ordering::Relaxed), i64::MAX, "a reader saw fewer accounts than before");
    assert!(reads > 10, "readers read throughout ({reads} reads)");
    assert!(!progress_lines.is_empty(), "progress reported");

    let state = vectis_read_side::state::states(&pool).await.expect("states");
    assert_eq!((state[0].active_version, state[0].building_version), (2, None));
    let old_schema: Option<String> =
        sqlx::query_scalar("SELECT nspname::text FROM pg_namespace WHERE nspname = 'proj_accounts_v1'")
            .fetch_optional(&pool)
            .await
            .expect("schema");
    assert_eq!(old_schema, None, "the old version is dropped");
    let old_checkpoints: i64 =
        sqlx::query_scalar("SELECT count(*) FROM projection_checkpoints WHERE projection = 'accounts' AND version = 1")
            .fetch_one(&pool)
            .await
            .expect("count");
    assert_eq!(old_checkpoints, 0);
    // Kafka tools no longer show offsets of the retired version's group (deleted), and
    // do show the new version's. (Tansu 0.6 cannot list or describe groups.)
    let v1 = format!("{}vectis.projection.accounts", kafka.naming.prefix());
    let accounts = vectis_schemas::topics::ACCOUNTS.name;
    assert!(committed_offsets(&kafka, &v1, accounts).await.iter().all(Option::is_none), "v1's group is deleted");
    assert!(committed_offsets(&kafka, &format!("{v1}.v2"), accounts).await.iter().any(Option::is_some));
    projector.stop().await.expect("clean stop");
    relay.stop().await;
}

#[sqlx::test(migrator = "vectis_event_store::MIGRATOR")]
async fn a_projector_starts_at_its_postgresql_checkpoint_not_at_the_brokers_offsets(pool: PgPool) {
    let kafka = fresh_topics().await.expect("topics");
    let handler = CommandHandler::new(event_store(pool.clone()));
    let relay = RelayHandle::start(pool.clone(), &kafka, 500);
    store::install(&pool, &Accounts).await.expect("install");
    let target = Target { projection: "accounts", version: 1 };
    let probe = LagProbe::new(&kafka).expect("probe");
    register_accounts(&handler, 10).await;
    let events: i64 = sqlx::query_scalar("SELECT count(*) FROM events").fetch_one(&pool).await.expect("count");
    let lag = lag_reaches(&probe, &pool, &target, events).await;
    // Checkpoints past everything on the log, and no offsets committed in the group:
    // a projector that ignored PostgreSQL would start at the beginning.
    let mut conn = pool.acquire().await.expect("connection");
    vectis_consumer::checkpoints::save_checkpoints(&mut conn, &target, &lag.high_watermarks())
        .await
        .expect("checkpoints");
    drop(conn);
    let projector = start_projector(&pool, &kafka, Arc::new(Accounts), &ConsumerMetrics::default()).await;
    let newcomer = register_accounts(&handler, 1).await[0];
    until_projected(&pool, Duration::from_secs(60)).await;
    let rows = projected(&pool).await;
    assert_eq!(rows.iter().map(|r| r.0).collect::<Vec<_>>(), vec![newcomer], "only what follows the checkpoints");
    projector.stop().await.expect("clean stop");
    relay.stop().await;
}
