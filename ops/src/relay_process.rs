//! The relay process: settings, wiring and lifetime. `main` only calls into here, so
//! tests build the same process.

use std::{net::SocketAddr, time::Duration};

use anyhow::Context;
use prometheus_client::registry::Registry;
use vectis_consumer::{
    lag::LagProbe,
    lag_monitor::{GroupLagMetrics, LagMonitor},
};
use vectis_event_store::{
    archive::{
        export::DEFAULT_FILE_EVENTS,
        job::{ArchiveJob, ArchiveMetrics},
        storage::ArchiveStore,
    },
    relay::{Relay, RelaySettings},
    settings::StoreSettings,
    EventStore, RelayMetrics, StoreMetrics,
};
use vectis_read_side::catalog;
use vectis_runtime::{env_duration, env_or, env_parse, OpsState, Shutdown};

/// Largest relay batch: librdkafka's default local queue holds 100,000 messages.
pub const MAX_BATCH_SIZE: i64 = 50_000;

#[derive(Debug, Clone)]
pub struct RelayProcessSettings {
    pub store: StoreSettings,
    pub relay: RelaySettings,
    /// `RELAY_OPS_ADDR` (default `0.0.0.0:8003`): `/metrics`, `/health`, `/ready`.
    pub ops_addr: SocketAddr,
    /// `IDEMPOTENCY_PURGE_INTERVAL` (default 1h): how often expired idempotency
    /// records are deleted.
    pub purge_interval: Duration,
    /// `LAG_MONITOR_INTERVAL` (default 5s): how often every consumer group's lag is
    /// measured from outside it (`vectis_consumer_*` metrics).
    pub lag_interval: Duration,
    /// `LAG_WARN_EVENTS` (default 1000): a group whose lag rises past it is logged at WARN.
    pub lag_warn_events: i64,
    /// `ARCHIVE_URL` set: the archive job runs here.
    pub archive: Option<ArchiveSettings>,
}

#[derive(Debug, Clone)]
pub struct ArchiveSettings {
    /// `ARCHIVE_URL`: a directory or `s3://bucket/prefix` (credentials from `AWS_*`).
    pub location: String,
    /// `ARCHIVE_INTERVAL` (default 5m): the time between the end of one export and the
    /// start of the next.
    pub interval: Duration,
    /// `ARCHIVE_FILE_EVENTS` (default 10000): events per file.
    pub file_events: usize,
}

impl ArchiveSettings {
    fn from_env() -> anyhow::Result<Option<Self>> {
        let location = env_or("ARCHIVE_URL", "");
        if location.is_empty() {
            return Ok(None);
        }
        let interval = env_duration("ARCHIVE_INTERVAL", Duration::from_secs(300))?;
        anyhow::ensure!(interval >= Duration::from_secs(1), "ARCHIVE_INTERVAL must be at least 1s, not {interval:?}");
        let file_events = env_parse("ARCHIVE_FILE_EVENTS", DEFAULT_FILE_EVENTS)?;
        anyhow::ensure!(
            (1..=1_000_000).contains(&file_events),
            "ARCHIVE_FILE_EVENTS must be 1 to 1000000, not {file_events}"
        );
        Ok(Some(Self { location, interval, file_events }))
    }
}

impl RelayProcessSettings {
    pub fn from_env() -> anyhow::Result<Self> {
        let store = StoreSettings::from_env("vectis-relay")?;
        let mut relay = RelaySettings::new(store.kafka.clone());
        relay.name = env_or("RELAY_NAME", "default");
        relay.batch_size = env_parse("RELAY_BATCH_SIZE", 1000)?;
        // librdkafka queues at most 100,000 messages locally; a batch must fit.
        anyhow::ensure!(
            (1..=MAX_BATCH_SIZE).contains(&relay.batch_size),
            "RELAY_BATCH_SIZE must be between 1 and {MAX_BATCH_SIZE}, not {}",
            relay.batch_size
        );
        relay.poll_interval = env_duration("RELAY_POLL_INTERVAL", Duration::from_secs(5))?;
        relay.read_interval = env_duration("RELAY_READ_INTERVAL", relay.read_interval)?;
        // Every event waits up to this long: a second is already far past useful.
        anyhow::ensure!(
            relay.read_interval <= Duration::from_secs(1),
            "RELAY_READ_INTERVAL must be at most 1s, not {:?}",
            relay.read_interval
        );
        let ops_addr = env_parse("RELAY_OPS_ADDR", SocketAddr::from(([0, 0, 0, 0], 8003)))?;
        let purge_interval = env_duration("IDEMPOTENCY_PURGE_INTERVAL", Duration::from_secs(3600))?;
        let lag_interval = env_duration("LAG_MONITOR_INTERVAL", Duration::from_secs(5))?;
        anyhow::ensure!(
            lag_interval >= Duration::from_millis(100),
            "LAG_MONITOR_INTERVAL must be at least 100ms, not {lag_interval:?}"
        );
        let lag_warn_events = env_parse("LAG_WARN_EVENTS", 1000)?;
        let archive = ArchiveSettings::from_env()?;
        Ok(Self { store, relay, ops_addr, purge_interval, lag_interval, lag_warn_events, archive })
    }
}

pub struct RelayProcess {
    relay: Relay,
    store: EventStore,
    ops_addr: SocketAddr,
    ops_task: tokio::task::JoinHandle<()>,
    purge_interval: Duration,
    lag_monitor: LagMonitor,
    archive: Option<ArchiveJob>,
    shutdown: Shutdown,
}

impl RelayProcess {
    /// Loads and compiles every schema (a broken one stops startup, naming the file),
    /// connects, and starts serving the operational endpoints.
    pub async fn build(settings: RelayProcessSettings, shutdown: Shutdown) -> anyhow::Result<Self> {
        let pool = settings.store.pool().context("configuring the PostgreSQL pool")?;
        Self::build_with_pool(settings, pool, shutdown).await
    }

    /// `build` with a pool the caller made (tests pass their own database's pool).
    pub async fn build_with_pool(
        settings: RelayProcessSettings,
        pool: sqlx::PgPool,
        shutdown: Shutdown,
    ) -> anyhow::Result<Self> {
        let schemas = settings.store.load_schemas().context("loading event schemas")?;
        tracing::info!(schemas = schemas.len(), mode = %settings.store.schema_mode, "event schemas compiled");
        let mut registry = Registry::default();
        let relay_metrics = RelayMetrics::register(&mut registry);
        let store_metrics = StoreMetrics::register(&mut registry);
        registry.register_collector(Box::new(vectis_runtime::pool_metrics::PoolCollector::new(pool.clone())));
        let lag_monitor = LagMonitor {
            pool: pool.clone(),
            kafka: settings.store.kafka.clone(),
            probe: LagProbe::new(&settings.store.kafka).context("creating the lag probe")?,
            specs: catalog::ALL.iter().chain(catalog::WORKFLOWS.iter()).collect(),
            metrics: GroupLagMetrics::register(&mut registry),
            interval: settings.lag_interval,
            warn_above_events: settings.lag_warn_events,
        };
        let archive = match &settings.archive {
            None => None,
            Some(archive) => Some(ArchiveJob {
                pool: pool.clone(),
                store: ArchiveStore::create(&archive.location).context("ARCHIVE_URL")?,
                file_events: archive.file_events,
                interval: archive.interval,
                metrics: ArchiveMetrics::register(&mut registry),
            }),
        };
        let store = EventStore::new(pool.clone(), schemas, settings.store.schema_mode, store_metrics);
        let checks = vectis_event_store::readiness::checks(&pool, &settings.store.kafka);
        let (ops_addr, ops_task) =
            vectis_runtime::serve_ops(settings.ops_addr, OpsState::new(registry, checks), shutdown.clone()).await?;
        Ok(Self {
            relay: Relay::new(pool, settings.relay, relay_metrics),
            store,
            ops_addr,
            ops_task,
            purge_interval: settings.purge_interval,
            lag_monitor,
            archive,
            shutdown,
        })
    }

    pub fn ops_addr(&self) -> SocketAddr {
        self.ops_addr
    }

    /// Relays until the shutdown signal, then finishes the current batch and exits; or
    /// stops at once with a fatal relay error (a broker that lost the log).
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        let purge = tokio::spawn(purge_idempotency_records(self.store, self.purge_interval, self.shutdown.clone()));
        let lag_monitor = tokio::spawn(self.lag_monitor.run(self.shutdown.clone()));
        let archive = self.archive.map(|job| tokio::spawn(job.run(self.shutdown.clone())));
        let relayed = self.relay.run(self.shutdown.clone()).await;
        self.shutdown.trigger();
        let _ = purge.await;
        if let Some(archive) = archive {
            let _ = archive.await;
        }
        let _ = lag_monitor.await;
        let _ = self.ops_task.await;
        Ok(relayed?)
    }
}

async fn purge_idempotency_records(store: EventStore, every: Duration, shutdown: Shutdown) {
    loop {
        match store.purge_expired_idempotency_records().await {
            Ok(0) => {}
            Ok(purged) => tracing::info!(purged, "expired idempotency records deleted"),
            Err(error) => tracing::warn!(%error, "could not purge expired idempotency records"),
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = shutdown.wait() => return,
        }
    }
}
