//! The query API process: settings, wiring and lifetime. `main` only calls into here,
//! so tests build the same process on port 0.

use std::{net::SocketAddr, time::Duration};

use anyhow::Context;
use prometheus_client::registry::Registry;
use sqlx::PgPool;
use vectis_runtime::{
    auth::ApiKeys,
    database, env_duration, env_or, env_parse,
    http_metrics::HttpMetrics,
    http_service::HttpService,
    ops_router,
    pool_metrics::PoolCollector,
    rate_limit::{RateLimiter, TrustedProxies},
    DatabaseSettings, Environment, OpsState, Shutdown,
};
use vectis_search::{metrics::SearchMetrics, SearchEngine, SearchSettings};

use crate::{
    consistency::MAX_WAIT,
    db::ReadDb,
    http::{app, OperationMetrics, QueryState},
    schema,
};

#[derive(Debug, Clone)]
pub struct QueryApiSettings {
    /// `VECTIS_ENV`.
    pub environment: Environment,
    /// `DATABASE_URL`, `DB_MAX_CONNECTIONS`, `DB_ACQUIRE_TIMEOUT`.
    pub database: DatabaseSettings,
    /// `VECTIS_TOPIC_PREFIX`: the deployment's namespace, which its search indexes'
    /// names start with too.
    pub topic_prefix: String,
    /// `QUERY_API_ADDR` (default `0.0.0.0:8000`).
    pub addr: SocketAddr,
    /// `TRUSTED_PROXIES`, as for the command API.
    pub trusted_proxies: TrustedProxies,
    /// `MEILI_URL` / `MEILI_MASTER_KEY`, else the embedded index under `VECTIS_DATA_DIR`
    /// (the projectors process's settings).
    pub search: SearchSettings,
    /// `CONSISTENCY_WAIT` (default `2s`, at most `10s`): how long a query with a
    /// consistency token waits for the projections before answering `stale: true`.
    pub consistency_wait: Duration,
}

impl QueryApiSettings {
    pub fn from_env() -> anyhow::Result<Self> {
        let consistency_wait = env_duration("CONSISTENCY_WAIT", Duration::from_secs(2))?;
        anyhow::ensure!(consistency_wait <= MAX_WAIT, "CONSISTENCY_WAIT must be at most 10s");
        Ok(Self {
            environment: Environment::from_env()?,
            database: DatabaseSettings::from_env()?,
            topic_prefix: env_or("VECTIS_TOPIC_PREFIX", ""),
            addr: env_parse("QUERY_API_ADDR", SocketAddr::from(([0, 0, 0, 0], 8000)))?,
            trusted_proxies: env_parse("TRUSTED_PROXIES", TrustedProxies::none())?,
            search: SearchSettings::from_env(),
            consistency_wait,
        })
    }

    /// Introspection and GraphiQL: everywhere but production.
    pub fn explorable(&self) -> bool {
        self.environment != Environment::Production
    }
}

pub struct QueryApi(HttpService);

impl QueryApi {
    pub async fn build(settings: QueryApiSettings, shutdown: Shutdown) -> anyhow::Result<Self> {
        let pool = settings.database.pool().context("configuring the PostgreSQL pool")?;
        Self::build_with_pool(settings, pool, shutdown).await
    }

    pub async fn build_with_pool(settings: QueryApiSettings, pool: PgPool, shutdown: Shutdown) -> anyhow::Result<Self> {
        let mut registry = Registry::default();
        let http_metrics = HttpMetrics::register(&mut registry);
        let operations = OperationMetrics::register(&mut registry);
        registry.register_collector(Box::new(PoolCollector::new(pool.clone())));
        let db = ReadDb::new(pool.clone());
        db.register(&mut registry);
        let rate_limiter = RateLimiter::start(pool.clone(), settings.trusted_proxies.clone())
            .await
            .context("loading rate-limit policies")?;
        rate_limiter.register(&mut registry);
        let explorable = settings.explorable();
        let search = SearchEngine::new(&settings.search, &settings.topic_prefix, SearchMetrics::default())
            .context("configuring search")?;
        let state = QueryState {
            schema: schema::build(db.clone(), search.clone(), explorable),
            db,
            metrics: operations,
            introspection: explorable,
            consistency_wait: settings.consistency_wait,
        };
        // What it reads: PostgreSQL, and Meilisearch when that is the engine. Not the
        // broker: lag comes from what the projectors stored.
        let mut checks = vec![database::readiness_check(&pool)];
        checks.extend(search.readiness_check());
        let router = app(state, ApiKeys::new(pool.clone()), rate_limiter, http_metrics, explorable)
            .merge(ops_router(OpsState::new(registry, checks)));
        Ok(Self(HttpService::bind("the query API", settings.addr, router, shutdown).await?))
    }

    pub fn addr(&self) -> SocketAddr {
        self.0.addr()
    }

    /// Serves until the shutdown signal, then finishes the requests in flight.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        self.0.run_until_stopped().await
    }
}
