//! The read side end to end: commands → event store → relay → broker → projector →
//! read models, against the real PostgreSQL and broker. The expected state of every
//! row comes from the write model's own aggregates (independent code), loaded from
//! the event store.

use std::{sync::Arc, time::Duration};

use sqlx::PgPool;
use uuid::Uuid;
use vectis_command_api::{
    domain::{Account, AccountCommand, AccountStatus},
    handling::CommandHandler,
};
use vectis_event_store::{kafka::KafkaSettings, EventMetadata};
use vectis_projectors::{
    metrics::ProjectorMetrics,
    projection::Projection,
    read_models::accounts::{AccountRow, Accounts},
    runtime::{Projector, ProjectorSettings, RunningProjector},
    store,
};
use vectis_schemas::{events::Money, samples::account_stream};
use vectis_tests::{event_store, fresh_topics, RelayHandle};

async fn start_projector(
    pool: &PgPool,
    kafka: &KafkaSettings,
    projection: Arc<dyn Projection>,
    metrics: &ProjectorMetrics,
) -> RunningProjector {
    let version = store::install(pool, projection.as_ref()).await.expect("install");
    let mut settings = ProjectorSettings::new(kafka.clone());
    settings.max_batch = 500;
    Projector::new(pool.clone(), projection, version, settings, metrics.clone()).start().expect("projector starts")
}

/// Runs account commands: `count` registrations, then approvals, suspensions,
/// rejections and limit changes on some of them. Returns the account ids.
async fn account_workload(handler: &CommandHandler, count: usize) -> Vec<Uuid> {
    let metadata = EventMetadata::default();
    let mut store = handler.store().clone();
    let mut ids = Vec::new();
    for n in 0..count {
        let id = Uuid::now_v7();
        let register = AccountCommand::Register {
            account_id: id,
            name: format!("Account {n}"),
            email: format!("buyer{n}@example.com"),
            credit_limit: Money::new(100_000 + n as i64, "EUR"),
            approval_threshold: Money::new(10_000, "EUR"),
        };
        handler
            .execute::<Account, _>(&mut store, &account_stream(id), None, &metadata, |_| register.clone())
            .await
            .expect("register");
        ids.push(id);
    }
    for (n, id) in ids.iter().enumerate() {
        let commands = match n % 5 {
            0 => vec![AccountCommand::Approve { by: "key:staff".into() }],
            1 => vec![
                AccountCommand::Approve { by: "key:staff".into() },
                AccountCommand::Suspend { by: "key:staff".into(), reason: "late payments".into() },
            ],
            2 => vec![AccountCommand::Reject { by: "key:staff".into(), reason: "unknown company".into() }],
            3 => vec![
                AccountCommand::Approve { by: "key:staff".into() },
                AccountCommand::ChangeCreditLimit { credit_limit: Money::new(5_000_000, "EUR") },
                AccountCommand::ChangeApprovalThreshold { approval_threshold: Money::new(250_000, "EUR") },
            ],
            _ => vec![],
        };
        for command in commands {
            handler
                .execute::<Account, _>(&mut store, &account_stream(*id), None, &metadata, |_| command.clone())
                .await
                .expect("command");
        }
    }
    ids
}

fn status_name(status: &AccountStatus) -> &'static str {
    match status {
        AccountStatus::PendingApproval => "pending_approval",
        AccountStatus::Approved => "approved",
        AccountStatus::Rejected => "rejected",
        AccountStatus::Suspended => "suspended",
    }
}

/// Every account row equals the write model's state at the same version.
async fn accounts_match_the_event_store(pool: &PgPool, handler: &CommandHandler, ids: &[Uuid]) -> Result<(), String> {
    let rows: Vec<AccountRow> = sqlx::query_as("SELECT * FROM read.accounts ORDER BY account_id")
        .fetch_all(pool)
        .await
        .map_err(|e| e.to_string())?;
    if rows.len() != ids.len() {
        return Err(format!("{} rows for {} accounts", rows.len(), ids.len()));
    }
    for row in rows {
        let loaded = handler.load::<Account>(&account_stream(row.account_id)).await.map_err(|e| e.to_string())?;
        let account = loaded.state.ok_or("row without account")?;
        let expected = (
            status_name(&account.status),
            account.name.as_str(),
            account.email.as_str(),
            account.credit_limit.amount_minor,
            account.approval_threshold.amount_minor,
            loaded.version,
        );
        let actual = (
            row.status.as_str(),
            row.name.as_str(),
            row.email.as_str(),
            row.credit_limit_minor,
            row.approval_threshold_minor,
            row.version,
        );
        if expected != actual {
            return Err(format!("account {}: expected {expected:?}, read model has {actual:?}", row.account_id));
        }
    }
    Ok(())
}

async fn until_consistent(pool: &PgPool, handler: &CommandHandler, ids: &[Uuid], timeout: Duration) {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        match accounts_match_the_event_store(pool, handler, ids).await {
            Ok(()) => return,
            Err(difference) if tokio::time::Instant::now() >= deadline => {
                panic!("the read model did not converge within {timeout:?}: {difference}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

#[sqlx::test(migrator = "vectis_event_store::MIGRATOR")]
async fn the_accounts_read_model_equals_the_fold_of_the_event_store(pool: PgPool) {
    let kafka = fresh_topics().await.expect("topics");
    let handler = CommandHandler::new(event_store(pool.clone()));
    let relay = RelayHandle::start(pool.clone(), &kafka, 500);
    let metrics = ProjectorMetrics::default();
    let projector = start_projector(&pool, &kafka, Arc::new(Accounts), &metrics).await;

    let ids = account_workload(&handler, 40).await;
    until_consistent(&pool, &handler, &ids, Duration::from_secs(60)).await;
    let events: i64 = sqlx::query_scalar("SELECT count(*) FROM events").fetch_one(&pool).await.expect("count");
    let label = ProjectorMetrics::label("accounts");
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
    let metrics = ProjectorMetrics::default();
    let writing = {
        let handler = handler.clone();
        tokio::spawn(async move { account_workload(&handler, 150).await })
    };
    // Kill the projector at varying points while events keep arriving.
    for round in 0..8u64 {
        let projector = start_projector(&pool, &kafka, Arc::new(Accounts), &metrics).await;
        tokio::time::sleep(Duration::from_millis(300 + 137 * round)).await;
        projector.kill().await;
    }
    let ids = writing.await.expect("workload");
    let projector = start_projector(&pool, &kafka, Arc::new(Accounts), &metrics).await;
    until_consistent(&pool, &handler, &ids, Duration::from_secs(90)).await;
    let label = ProjectorMetrics::label("accounts");
    assert_eq!(metrics.parked.get_or_create(&label).get(), 0, "nothing parked");
    projector.stop().await.expect("clean stop");
    relay.stop().await;
}
