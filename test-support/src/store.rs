//! The event store and the relay as tests use them, and each test's own database.

use std::{sync::Arc, time::Duration};

use anyhow::Context;
use sqlx::PgPool;
use vectis_event_store::{
    kafka::KafkaSettings,
    relay::{Relay, RelayError, RelaySettings},
    EventStore, RelayMetrics, SnapshotPolicy, StoreMetrics,
};
use vectis_runtime::Shutdown;
use vectis_schemas::{SchemaCatalog, SchemaMode};

/// Tests snapshot every few events, so every test that runs commands also loads
/// aggregates from snapshots (the default, 100, would leave most tests below it).
pub const TEST_SNAPSHOT_EVERY: i64 = 3;

/// An event store in strict mode with the built-in schemas, snapshotting every
/// [`TEST_SNAPSHOT_EVERY`] events.
pub fn event_store(pool: PgPool) -> EventStore {
    event_store_in_mode(pool, SchemaMode::Strict).0
}

/// An event store in `mode` with the built-in schemas, and its metrics.
pub fn event_store_in_mode(pool: PgPool, mode: SchemaMode) -> (EventStore, StoreMetrics) {
    let catalog = Arc::new(SchemaCatalog::embedded().expect("built-in schemas compile"));
    let metrics = StoreMetrics::default();
    let policy = SnapshotPolicy { every: TEST_SNAPSHOT_EVERY, ..SnapshotPolicy::default() };
    (EventStore::new(pool, catalog, mode, metrics.clone()).with_snapshot_policy(policy), metrics)
}

/// A relay running in a task of the test.
pub struct RelayHandle {
    pub metrics: RelayMetrics,
    shutdown: Shutdown,
    task: tokio::task::JoinHandle<Result<(), RelayError>>,
}

impl RelayHandle {
    pub fn start(pool: PgPool, kafka: &KafkaSettings, batch_size: i64) -> Self {
        Self::start_polling_every(pool, kafka, batch_size, Duration::from_millis(200))
    }

    /// `start` with the fallback poll timer at `poll_interval`.
    pub fn start_polling_every(pool: PgPool, kafka: &KafkaSettings, batch_size: i64, poll_interval: Duration) -> Self {
        let mut settings = RelaySettings::new(kafka.clone());
        settings.batch_size = batch_size;
        settings.poll_interval = poll_interval;
        settings.standby_retry = Duration::from_millis(200);
        settings.retry_backoff = Duration::from_millis(200);
        let metrics = RelayMetrics::default();
        let relay = Relay::new(pool, settings, metrics.clone());
        let shutdown = Shutdown::new();
        let task = tokio::spawn(relay.run(shutdown.clone()));
        Self { metrics, shutdown, task }
    }

    pub fn is_leader(&self) -> bool {
        self.metrics.is_leader.get() == 1
    }

    /// Graceful stop: the current batch finishes, then the relay exits.
    pub async fn stop(self) {
        self.shutdown.trigger();
        let _ = self.task.await;
    }

    /// Waits (up to `deadline`) for the relay to stop by itself, and returns why.
    pub async fn stopped_by_itself(self, deadline: Duration) -> Result<(), RelayError> {
        tokio::time::timeout(deadline, self.task)
            .await
            .expect("the relay did not stop by itself in time")
            .expect("the relay task panicked")
    }

    /// A crash: the task is dropped wherever it is.
    pub async fn kill(self) {
        self.task.abort();
        let _ = self.task.await;
    }
}

/// DATABASE_URL with its database name replaced by `name`: how a child process (the
/// `vectis` CLI, a benchmark) reaches a test's own database.
pub fn database_url(name: &str) -> anyhow::Result<String> {
    let url = std::env::var("DATABASE_URL").context("DATABASE_URL")?;
    let (base, _) = url.rsplit_once('/').context("DATABASE_URL has no database name")?;
    Ok(format!("{base}/{name}"))
}

/// `read_all_committed` holds events back while any older transaction on the server
/// runs, including other tests' in other databases: waits (30 s at most) until at
/// least `expected` events are visible.
pub async fn read_all_committed_eventually(
    store: &EventStore,
    expected: usize,
) -> Vec<vectis_event_store::RecordedEvent> {
    crate::eventually(Duration::from_secs(30), &format!("{expected} committed events to be visible"), || async {
        let events = store.read_all_committed(0, 1000).await.map_err(|e| e.to_string())?;
        if events.len() >= expected {
            Ok(events)
        } else {
            Err(format!("{} visible", events.len()))
        }
    })
    .await
}
