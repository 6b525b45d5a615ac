//! Moving to a broker that lost the log, as an operator meets it with the real binaries:
//! `vectis projections status` names the partitions whose checkpoint is beyond the new
//! log and the fix, the real `vectis-relay` process stops with the same advice instead of
//! starting the log mid-way, and `vectis relay republish` puts it right.

use std::{ffi::OsStr, sync::Arc, time::Duration};
use vectis_schemas::StreamId;

use sqlx::PgPool;
use uuid::Uuid;
use vectis_consumer::metrics::ConsumerMetrics;
use vectis_event_store::{AppendRequest, EventMetadata, ExpectedVersion};
use vectis_projectors::read_models::accounts::Accounts;
use vectis_schemas::samples;
use vectis_test_support::{
    cli, event_store, fresh_topics, recreate_topics, start_projector, until_caught_up, RelayHandle,
};

#[sqlx::test(migrator = "vectis_event_store::MIGRATOR")]
async fn an_operator_is_told_the_log_is_gone_and_republishes_it_from_the_event_store(pool: PgPool) {
    let kafka = fresh_topics().await.expect("topics");
    let store = event_store(pool.clone());
    for _ in 0..20 {
        let account = Uuid::now_v7();
        let request = AppendRequest {
            stream_id: StreamId::account(account),
            expected: ExpectedVersion::Any,
            events: vec![
                samples::account_registered(account, "Acme").into(),
                samples::account_approved(account).into(),
            ],
            metadata: EventMetadata::default(),
        };
        store.append(request).await.expect("append");
    }
    let relay = RelayHandle::start(pool.clone(), &kafka, 500);
    let projector = start_projector(&pool, &kafka, Arc::new(Accounts), &ConsumerMetrics::default()).await;
    until_caught_up(&pool, &kafka, &[Arc::new(Accounts)]).await;
    projector.stop().await.expect("clean stop");
    relay.stop().await;

    recreate_topics(&kafka).await.expect("a new broker's empty topics");
    let status = cli::run(env!("CARGO_BIN_EXE_vectis"), &pool, &kafka, &[], &["projections", "status"]).await;
    assert_eq!(status.code, 1, "{}{}", status.stdout, status.stderr);
    assert!(status.stderr.contains("checkpoint beyond the end of"), "{}", status.stderr);
    assert!(status.stderr.contains("vectis relay republish"), "{}", status.stderr);

    let relay_env: [(&str, &OsStr); 1] = [("RELAY_OPS_ADDR", OsStr::new("127.0.0.1:0"))];
    let relay = tokio::time::timeout(
        Duration::from_secs(60),
        cli::run(env!("CARGO_BIN_EXE_vectis-relay"), &pool, &kafka, &relay_env, &[]),
    )
    .await
    .expect("the relay stops by itself");
    assert_ne!(relay.code, 0, "the relay must not go on: {}", relay.stderr);
    assert!(relay.stderr.contains("vectis relay republish"), "{}{}", relay.stdout, relay.stderr);

    let last: i64 = sqlx::query_scalar("SELECT max(global_position) FROM events").fetch_one(&pool).await.expect("max");
    let republished = cli::run(env!("CARGO_BIN_EXE_vectis"), &pool, &kafka, &[], &["relay", "republish"]).await;
    assert_eq!(republished.code, 0, "{}", republished.stderr);
    assert!(
        republished.stdout.contains(&format!("rewound from global position {last} to 0")),
        "{}",
        republished.stdout
    );

    let relay = RelayHandle::start(pool.clone(), &kafka, 500);
    let projector = start_projector(&pool, &kafka, Arc::new(Accounts), &ConsumerMetrics::default()).await;
    until_caught_up(&pool, &kafka, &[Arc::new(Accounts)]).await;
    let status = cli::run(env!("CARGO_BIN_EXE_vectis"), &pool, &kafka, &[], &["projections", "status"]).await;
    assert_eq!(status.code, 0, "{}{}", status.stdout, status.stderr);
    let accounts: i64 = sqlx::query_scalar("SELECT count(*) FROM read.accounts WHERE status = 'approved'")
        .fetch_one(&pool)
        .await
        .expect("count");
    assert_eq!(accounts, 20);
    projector.stop().await.expect("clean stop");
    relay.stop().await;
}
