//! The command API process: settings, wiring and lifetime. `main` only calls into
//! here, so tests build the same process on port 0.

use std::{net::SocketAddr, time::Duration};

use anyhow::Context;
use prometheus_client::registry::Registry;
use sqlx::PgPool;
use vectis_event_store::{readiness, settings::StoreSettings, EventStore, StoreMetrics};
use vectis_runtime::{
    auth::ApiKeys,
    env_duration, env_parse,
    http_metrics::HttpMetrics,
    http_service::HttpService,
    ops_router,
    pool_metrics::PoolCollector,
    rate_limit::{RateLimiter, TrustedProxies},
    OpsState, Shutdown,
};

use crate::{
    handling::CommandHandler,
    http::{
        app,
        command::DEFAULT_IDEMPOTENCY_RETENTION,
        imports::{ImportWorker, DEFAULT_IMPORT_MAX_BYTES},
        AppState,
    },
    imports::{Importer, DEFAULT_BATCH_ROWS},
};

#[derive(Debug, Clone)]
pub struct CommandApiSettings {
    pub store: StoreSettings,
    /// `COMMAND_API_ADDR` (default `0.0.0.0:8001`).
    pub addr: SocketAddr,
    /// `IDEMPOTENCY_RETENTION` (default and minimum `24h`).
    pub idempotency_retention: Duration,
    /// `REQUEST_TIMEOUT` (default `10s`).
    pub request_timeout: Duration,
    /// `RECURRING_ORDER_MIN_INTERVAL` (default 1h).
    pub recurring_min_interval: Duration,
    /// `TRUSTED_PROXIES`: addresses and CIDR blocks whose `X-Forwarded-For` names the
    /// client for rate limiting (default: none).
    pub trusted_proxies: TrustedProxies,
    /// `IMPORT_MAX_BYTES`: the largest file `POST /v1/imports` takes (default 64 MiB).
    pub import_max_bytes: usize,
    /// `IMPORT_BATCH_ROWS`: rows of an import per transaction (default 1000).
    pub import_batch_rows: usize,
}

impl CommandApiSettings {
    pub fn from_env() -> anyhow::Result<Self> {
        let idempotency_retention = env_duration("IDEMPOTENCY_RETENTION", DEFAULT_IDEMPOTENCY_RETENTION)?;
        anyhow::ensure!(
            idempotency_retention >= DEFAULT_IDEMPOTENCY_RETENTION,
            "IDEMPOTENCY_RETENTION must be at least 24h: clients retry within a day"
        );
        Ok(Self {
            store: StoreSettings::from_env("vectis-command-api")?,
            addr: env_parse("COMMAND_API_ADDR", SocketAddr::from(([0, 0, 0, 0], 8001)))?,
            idempotency_retention,
            request_timeout: env_duration("REQUEST_TIMEOUT", Duration::from_secs(10))?,
            recurring_min_interval: env_duration("RECURRING_ORDER_MIN_INTERVAL", Duration::from_secs(3600))?,
            trusted_proxies: env_parse("TRUSTED_PROXIES", TrustedProxies::none())?,
            import_max_bytes: env_parse("IMPORT_MAX_BYTES", DEFAULT_IMPORT_MAX_BYTES)?,
            import_batch_rows: env_parse("IMPORT_BATCH_ROWS", DEFAULT_BATCH_ROWS)?,
        })
    }
}

pub struct CommandApi(HttpService);

impl CommandApi {
    pub async fn build(settings: CommandApiSettings, shutdown: Shutdown) -> anyhow::Result<Self> {
        let pool = settings.store.pool().context("configuring the PostgreSQL pool")?;
        Self::build_with_pool(settings, pool, shutdown).await
    }

    /// Compiles every schema (a broken one stops startup, naming the file), wires the
    /// command routes and the operational endpoints, and binds the listener.
    pub async fn build_with_pool(
        settings: CommandApiSettings,
        pool: PgPool,
        shutdown: Shutdown,
    ) -> anyhow::Result<Self> {
        let schemas = settings.store.load_schemas().context("loading event schemas")?;
        tracing::info!(schemas = schemas.len(), mode = %settings.store.schema_mode, "event schemas compiled");
        let mut registry = Registry::default();
        let store_metrics = StoreMetrics::register(&mut registry);
        let http_metrics = HttpMetrics::register(&mut registry);
        registry.register_collector(Box::new(PoolCollector::new(pool.clone())));
        let store = EventStore::new(pool.clone(), schemas, settings.store.schema_mode, store_metrics)
            .with_snapshot_policy(settings.store.snapshots);
        let rate_limiter =
            RateLimiter::start(pool.clone(), settings.trusted_proxies).await.context("loading rate-limit policies")?;
        rate_limiter.register(&mut registry);
        let handler = CommandHandler::new(store);
        let imports =
            ImportWorker::new(Importer::new(handler.clone(), settings.import_batch_rows), settings.import_max_bytes);
        if let Err(error) = imports.resume_unfinished().await {
            tracing::warn!(%error, "cannot look for uploaded imports to resume; they resume when uploaded again");
        }
        let state = AppState {
            imports,
            handler,
            keys: ApiKeys::new(pool.clone()),
            rate_limiter,
            idempotency_retention: settings.idempotency_retention,
            request_timeout: settings.request_timeout,
            recurring_min_interval: settings.recurring_min_interval,
        };
        let checks = readiness::checks(&pool, &settings.store.kafka);
        let router = app(state, http_metrics).merge(ops_router(OpsState::new(registry, checks)));
        Ok(Self(HttpService::bind("the command API", settings.addr, router, shutdown).await?))
    }

    pub fn addr(&self) -> SocketAddr {
        self.0.addr()
    }

    /// Serves until the shutdown signal, then finishes the requests in flight.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        self.0.run_until_stopped().await
    }
}
