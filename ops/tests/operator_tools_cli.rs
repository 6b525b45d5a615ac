//! The operator tools for debugging with Kafka tools, as an operator runs them (the
//! real `vectis` binary against a test's own database and topics, a relay and a
//! projector running): `events show`, `events republish`, `projections reset`, and
//! the trail they leave in `audit list`.

use std::{sync::Arc, time::Duration};

use serde_json::Value;
use sqlx::PgPool;
use uuid::Uuid;
use vectis_consumer::metrics::{ConsumerMetrics, ProjectionLabel};
use vectis_event_store::kafka::KafkaSettings;
use vectis_projectors::read_models::accounts::Accounts;
use vectis_schemas::{topics::ACCOUNTS, StreamId};
use vectis_test_support::{
    cli::{self, CliOutput},
    eventually, fresh_topics,
    shop::Shop,
    start_projector, RelayHandle, TopicReader,
};

async fn vectis(pool: &PgPool, kafka: &KafkaSettings, args: &[&str]) -> CliOutput {
    cli::run(env!("CARGO_BIN_EXE_vectis"), pool, kafka, &[], args).await
}

/// Registers `count` accounts, one event each; returns their ids in order.
async fn register_accounts(pool: &PgPool, count: usize) -> Vec<Uuid> {
    let shop = Shop::new(pool);
    let mut ids = Vec::new();
    for n in 0..count {
        ids.push(shop.account(&format!("Buyer {n}"), &format!("buyer{n}@example.com"), vec![]).await);
    }
    ids
}

async fn accounts_read_model(pool: &PgPool) -> Vec<(Uuid, String, String)> {
    sqlx::query_as("SELECT account_id, name, status FROM read.accounts ORDER BY account_id")
        .fetch_all(pool)
        .await
        .expect("read.accounts")
}

async fn until_rows(pool: &PgPool, wanted: usize) {
    eventually(Duration::from_secs(30), "the accounts read model", || async {
        let rows = accounts_read_model(pool).await.len();
        if rows == wanted {
            Ok(())
        } else {
            Err(format!("{rows} rows"))
        }
    })
    .await;
}

fn audit_rows(output: &CliOutput) -> Vec<Value> {
    output.stdout.lines().map(|line| serde_json::from_str(line).expect("one JSON object per line")).collect()
}

#[sqlx::test(migrator = "vectis_event_store::MIGRATOR")]
async fn an_operator_finds_an_event_on_its_topic_and_republishes_it_as_a_duplicate(pool: PgPool) {
    let kafka = fresh_topics().await.expect("topics");
    let ids = register_accounts(&pool, 5).await;
    let relay = RelayHandle::start(pool.clone(), &kafka, 100);
    let metrics = ConsumerMetrics::default();
    let projector = start_projector(&pool, &kafka, Arc::new(Accounts), &metrics).await;
    until_rows(&pool, 5).await;
    let before = accounts_read_model(&pool).await;
    let mut reader = TopicReader::new(&kafka).expect("reader");
    let published = reader.read_at_least(5, Duration::from_secs(20)).await.to_vec();

    // `show` names the partition and offset a Kafka client finds the event at.
    let stream = StreamId::account(ids[2]).to_string();
    let original = published.iter().find(|r| r.key.as_deref() == Some(stream.as_str())).expect("relayed");
    let event_id = original.headers["event_id"].clone();
    let show = vectis(&pool, &kafka, &["events", "show", &event_id, "--json"]).await;
    assert_eq!(show.code, 0, "{}", show.stderr);
    let shown: Value = serde_json::from_str(&show.stdout).expect("JSON");
    assert_eq!(shown["topic"], kafka.naming.physical(ACCOUNTS.name));
    assert_eq!(
        (shown["partition"].as_i64(), shown["offset"].as_i64()),
        (Some(original.partition.into()), Some(original.offset))
    );
    assert_eq!(shown["envelope"]["event_id"], event_id.as_str());
    assert_eq!(shown["headers"]["event_type"], "AccountRegistered");
    let by_stream = vectis(&pool, &kafka, &["events", "show", "--stream", &stream, "--version", "1"]).await;
    assert_eq!(by_stream.code, 0, "{}", by_stream.stderr);
    let topic_line = format!(
        "topic     {} partition {} offset {}",
        shown["topic"].as_str().unwrap_or_default(),
        original.partition,
        original.offset
    );
    assert!(by_stream.stdout.contains(&topic_line), "{}", by_stream.stdout);
    assert!(by_stream.stdout.contains("header    event_id: "), "{}", by_stream.stdout);

    // Republish: the same key, value and headers, plus `republished-at`.
    let reason = "checking the search projector's handling of AccountRegistered";
    let republish = vectis(&pool, &kafka, &["events", "republish", "--event-id", &event_id, "--reason", reason]).await;
    assert_eq!(republish.code, 0, "{}\n{}", republish.stdout, republish.stderr);
    assert!(
        republish.stdout.starts_with(&format!("republished {event_id} (AccountRegistered v1 of {stream})")),
        "{}",
        republish.stdout
    );
    let all = reader.read_at_least(6, Duration::from_secs(20)).await;
    let copy = all.iter().find(|r| r.headers.contains_key("republished-at")).expect("the copy is on the topic");
    assert_eq!((copy.key.as_deref(), copy.partition), (Some(stream.as_str()), original.partition));
    assert!(copy.offset > original.offset);
    assert_eq!(copy.payload, original.payload, "the same value");
    for header in ["event_type", "schema_version", "event_id", "content-type"] {
        assert_eq!(copy.headers[header], original.headers[header], "{header}");
    }
    // The projector skips it as the duplicate it is: nothing changes.
    let duplicates = || metrics.duplicates.get_or_create(&ProjectionLabel { projection: "accounts".into() }).get();
    eventually(Duration::from_secs(20), "the projector to skip the copy", || async {
        if duplicates() >= 1 {
            Ok(())
        } else {
            Err(format!("{} duplicates", duplicates()))
        }
    })
    .await;
    assert_eq!(accounts_read_model(&pool).await, before);

    // On record: who, what, on what, why, and where the copy landed.
    let audit = vectis(&pool, &kafka, &["audit", "list", "--json"]).await;
    assert_eq!(audit.code, 0, "{}", audit.stderr);
    let rows = audit_rows(&audit);
    assert_eq!(rows.len(), 1, "{rows:?}");
    let row = &rows[0];
    assert_eq!((row["action"].as_str(), row["target"].as_str()), (Some("events.republish"), Some(event_id.as_str())));
    assert_eq!((row["reason"].as_str(), row["outcome"].as_str()), (Some(reason), Some("done")));
    assert!(row["actor"].as_str().is_some_and(|a| a.starts_with("cli:")), "{row}");
    assert_eq!(row["details"]["offset"].as_i64(), Some(copy.offset));
    let table = vectis(&pool, &kafka, &["audit", "list"]).await;
    assert!(
        table.stdout.lines().nth(1).is_some_and(|l| l.contains("events.republish") && l.contains(reason)),
        "{}",
        table.stdout
    );

    // Refusals say what is wrong and record nothing.
    let no_reason = vectis(&pool, &kafka, &["events", "republish", "--event-id", &event_id]).await;
    assert_eq!(no_reason.code, 2, "{}", no_reason.stderr);
    assert!(no_reason.stderr.contains("--reason"), "{}", no_reason.stderr);
    let blank = vectis(&pool, &kafka, &["events", "republish", "--event-id", &event_id, "--reason", "  "]).await;
    assert_ne!(blank.code, 0);
    assert!(blank.stderr.contains("--reason must say why"), "{}", blank.stderr);
    let unknown = Uuid::now_v7().to_string();
    let missing = vectis(&pool, &kafka, &["events", "republish", "--event-id", &unknown, "--reason", "x"]).await;
    assert_eq!(missing.code, 2);
    assert!(missing.stderr.contains(&unknown), "{}", missing.stderr);
    let missing = vectis(&pool, &kafka, &["events", "show", &unknown]).await;
    assert_eq!(missing.code, 2);
    assert_eq!(audit_rows(&vectis(&pool, &kafka, &["audit", "list", "--json"]).await).len(), 1);

    projector.stop().await.expect("projector stops");
    relay.stop().await;
}

#[sqlx::test(migrator = "vectis_event_store::MIGRATOR")]
async fn an_operator_resets_a_projection_to_a_position_and_a_time(pool: PgPool) {
    let kafka = fresh_topics().await.expect("topics");
    register_accounts(&pool, 6).await;
    let relay = RelayHandle::start(pool.clone(), &kafka, 100);
    let projector = start_projector(&pool, &kafka, Arc::new(Accounts), &ConsumerMetrics::default()).await;
    until_rows(&pool, 6).await;
    let before = accounts_read_model(&pool).await;

    // From position 4: four events folded from the store, the other two replayed.
    let reason = "replaying after the accounts projector fix";
    let reset = vectis(
        &pool,
        &kafka,
        &["projections", "reset", "accounts", "--to-position", "4", "--reason", reason, "--progress-every", "0.2"],
    )
    .await;
    assert_eq!(reset.code, 0, "{}\n{}", reset.stdout, reset.stderr);
    assert!(
        reset.stdout.contains("accounts v2: the state at global position 4 folded from the event store (4 events)"),
        "{}",
        reset.stdout
    );
    assert!(
        reset.stdout.contains("accounts: readers now use version 2, replayed from global position 4"),
        "{}",
        reset.stdout
    );
    until_rows(&pool, 6).await;
    assert_eq!(accounts_read_model(&pool).await, before, "the same read model");
    let versions: Vec<i32> =
        sqlx::query_scalar("SELECT DISTINCT version FROM projection_checkpoints WHERE projection = 'accounts'")
            .fetch_all(&pool)
            .await
            .expect("checkpoints");
    assert_eq!(versions, [2], "the old version is dropped");

    // The replay started past position 4 on every partition: its starting offsets
    // leave out exactly the four records at or below it.
    let audit = audit_rows(&vectis(&pool, &kafka, &["audit", "list", "--json", "--action", "projections.reset"]).await);
    let row = &audit[0];
    assert_eq!(
        (row["target"].as_str(), row["reason"].as_str(), row["outcome"].as_str()),
        (Some("accounts"), Some(reason), Some("done"))
    );
    assert_eq!(row["details"]["position"], 4);
    let skipped: i64 =
        row["details"]["offsets"].as_array().expect("offsets").iter().filter_map(|o| o["offset"].as_i64()).sum();
    assert_eq!(skipped, 4, "{row}");

    // From a time before the first event: nothing folded, everything replayed.
    let reset = vectis(
        &pool,
        &kafka,
        &["projections", "reset", "accounts", "--to-time", "2000-01-01T00:00:00Z", "--reason", "full replay"],
    )
    .await;
    assert_eq!(reset.code, 0, "{}\n{}", reset.stdout, reset.stderr);
    assert!(
        reset.stdout.contains("accounts v3: the state at global position 0 folded from the event store (0 events)"),
        "{}",
        reset.stdout
    );
    until_rows(&pool, 6).await;
    assert_eq!(accounts_read_model(&pool).await, before);

    // Refused: past the log's end, without a reason, or with both points.
    let past =
        vectis(&pool, &kafka, &["projections", "reset", "accounts", "--to-position", "99", "--reason", "x"]).await;
    assert_eq!(past.code, 2, "{}", past.stderr);
    assert!(past.stderr.contains("position 99 is past the log, which ends at 6"), "{}", past.stderr);
    let no_reason = vectis(&pool, &kafka, &["projections", "reset", "accounts", "--to-position", "1"]).await;
    assert_eq!(no_reason.code, 2);
    let both = vectis(
        &pool,
        &kafka,
        &[
            "projections",
            "reset",
            "accounts",
            "--to-position",
            "1",
            "--to-time",
            "2000-01-01T00:00:00Z",
            "--reason",
            "x",
        ],
    )
    .await;
    assert_eq!(both.code, 2, "{}", both.stderr);
    assert_eq!(
        audit_rows(&vectis(&pool, &kafka, &["audit", "list", "--json"]).await).len(),
        2,
        "refusals leave no record"
    );

    projector.stop().await.expect("projector stops");
    relay.stop().await;
}
