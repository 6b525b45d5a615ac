//! The projectors process: every read model's projector, and `/metrics`, `/health`,
//! `/ready` on `PROJECTORS_OPS_ADDR`. `main` only calls into here.

use std::{collections::HashMap, net::SocketAddr, sync::Arc, time::Duration};

use anyhow::Context;
use prometheus_client::registry::Registry;
use sqlx::PgPool;
use vectis_event_store::settings::StoreSettings;
use vectis_runtime::{env_duration, env_or, env_parse, pool_metrics::PoolCollector, OpsState, Shutdown};

use futures::future::BoxFuture;
use vectis_consumer::{
    handler::Handler,
    lag::{LagProbe, ProjectionLag},
    lag_report::{AfterMeasure, LagReporter, Stalls},
    metrics::ConsumerMetrics,
    runtime::{GroupConsumer, RunningConsumer},
    settings::{ConsumerSettings, DEFAULT_STALL_AFTER},
};

use crate::{
    projection::Projection,
    read_models,
    search::{self, metrics::SearchMetrics, SearchEngine, SearchSettings},
    store,
};

#[derive(Debug, Clone)]
pub struct ProjectorsSettings {
    pub store: StoreSettings,
    /// `PROJECTORS_OPS_ADDR` (default `0.0.0.0:8002`).
    pub ops_addr: SocketAddr,
    /// `PROJECTIONS`: comma-separated names to run (default: every read model and
    /// every search index: `search_orders`, `search_accounts`, `search_products`).
    pub projections: Vec<String>,
    /// `MEILI_URL` / `MEILI_MASTER_KEY`, else the embedded engine under
    /// `VECTIS_DATA_DIR`.
    pub search: SearchSettings,
    /// `PROJECTOR_INSTANCE_ID`: enables static group membership; each projection's
    /// consumer gets `<id>.<projection>` as `group.instance.id`.
    pub instance_id: Option<String>,
    /// `PROJECTOR_MAX_BATCH` (default 5000).
    pub max_batch: usize,
    /// `PROJECTOR_LAG_INTERVAL_MS`: how often lag is measured for `/metrics`
    /// (default 5000).
    pub lag_interval: Duration,
    /// `PROJECTOR_STALL_AFTER` (default 30s): partitions with lag whose checkpoint has
    /// not moved for this long are stuck, and their consumer leaves and rejoins.
    pub stall_after: Duration,
}

impl ProjectorsSettings {
    pub fn from_env() -> anyhow::Result<Self> {
        let known = known_projections();
        let projections: Vec<String> = env_or("PROJECTIONS", &known.join(","))
            .split(',')
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect();
        for name in &projections {
            anyhow::ensure!(known.contains(&name.as_str()), "PROJECTIONS names {name:?}; known: {}", known.join(", "));
        }
        let max_batch = env_parse("PROJECTOR_MAX_BATCH", 5000usize)?;
        anyhow::ensure!((1..=100_000).contains(&max_batch), "PROJECTOR_MAX_BATCH must be 1 to 100000");
        Ok(Self {
            store: StoreSettings::from_env("vectis-projectors")?,
            ops_addr: env_parse("PROJECTORS_OPS_ADDR", SocketAddr::from(([0, 0, 0, 0], 8002)))?,
            projections,
            search: SearchSettings::from_env(),
            instance_id: std::env::var("PROJECTOR_INSTANCE_ID").ok().filter(|v| !v.trim().is_empty()),
            max_batch,
            lag_interval: Duration::from_millis(env_parse("PROJECTOR_LAG_INTERVAL_MS", 5000u64)?.max(100)),
            stall_after: env_duration("PROJECTOR_STALL_AFTER", DEFAULT_STALL_AFTER)?,
        })
    }
}

/// Every projection the process can run: the read models, then the search indexes.
pub fn known_projections() -> Vec<&'static str> {
    let read_models = read_models::all().into_iter().map(|p| p.name());
    read_models.chain(search::declarations().into_iter().map(|d| d.projection.name)).collect()
}

/// Every projection, search ones writing to `engine`.
pub fn all_projections(engine: &SearchEngine) -> Vec<Arc<dyn Projection>> {
    read_models::all().into_iter().chain(crate::search::projections(engine)).collect()
}

pub struct ProjectorsProcess {
    running: Vec<RunningConsumer>,
    ops_addr: SocketAddr,
    ops_task: tokio::task::JoinHandle<()>,
    lag_task: tokio::task::JoinHandle<()>,
    shutdown: Shutdown,
}

impl ProjectorsProcess {
    pub async fn build(settings: ProjectorsSettings, shutdown: Shutdown) -> anyhow::Result<Self> {
        let pool = settings.store.pool().context("configuring the PostgreSQL pool")?;
        Self::build_with_pool(settings, pool, shutdown).await
    }

    /// Installs each projection's tables (first start), joins the consumer groups and
    /// serves the operational endpoints.
    pub async fn build_with_pool(
        settings: ProjectorsSettings,
        pool: PgPool,
        shutdown: Shutdown,
    ) -> anyhow::Result<Self> {
        let mut registry = Registry::default();
        let metrics = ConsumerMetrics::register(&mut registry);
        registry.register_collector(Box::new(PoolCollector::new(pool.clone())));
        let search_metrics = SearchMetrics::register(&mut registry);
        let engine = SearchEngine::new(&settings.search, settings.store.kafka.naming.prefix(), search_metrics)
            .context("configuring search")?;
        tracing::info!(engine = engine.backend().kind(), "search engine");
        let projections: Vec<Arc<dyn Projection>> = all_projections(&engine)
            .into_iter()
            .filter(|p| settings.projections.iter().any(|n| n == p.name()))
            .collect();
        let mut running = Vec::new();
        let mut rejoins = HashMap::new();
        for projection in projections.clone() {
            let version = store::install(&pool, projection.as_ref())
                .await
                .with_context(|| format!("installing the {} read model", projection.name()))?;
            let mut projector_settings = ConsumerSettings::new(settings.store.kafka.clone());
            projector_settings.max_batch = settings.max_batch;
            projector_settings.stall_after = settings.stall_after;
            projector_settings.group_instance_id =
                settings.instance_id.as_ref().map(|id| format!("{id}.{}", projection.name()));
            let name = projection.name();
            let projector = GroupConsumer::new(pool.clone(), projection, version, projector_settings, metrics.clone());
            let started = projector.start().with_context(|| format!("starting the {name} projector"))?;
            rejoins.insert(name, started.rejoin_requests());
            running.push(started);
            tracing::info!(projection = name, version, "projector running");
        }
        let reporter = LagReporter {
            pool: pool.clone(),
            probe: LagProbe::new(&settings.store.kafka).context("creating the lag probe")?,
            handlers: projections.into_iter().map(|p| p as Arc<dyn Handler>).collect(),
            stalls: Stalls { after: settings.stall_after, rejoins },
            metrics,
            interval: settings.lag_interval,
        };
        let lag_task = tokio::spawn(reporter.run(SearchFigures(engine.clone(), pool.clone()), shutdown.clone()));
        let mut checks = vectis_event_store::readiness::checks(&pool, &settings.store.kafka);
        checks.extend(engine.readiness_check());
        let (ops_addr, ops_task) =
            vectis_runtime::serve_ops(settings.ops_addr, OpsState::new(registry, checks), shutdown.clone()).await?;
        Ok(Self { running, ops_addr, ops_task, lag_task, shutdown })
    }

    pub fn ops_addr(&self) -> SocketAddr {
        self.ops_addr
    }

    /// Projects until the shutdown signal; then each projector finishes its batch,
    /// commits it and leaves its group.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        self.shutdown.wait().await;
        let mut outcome = Ok(());
        for projector in self.running {
            if let Err(error) = projector.stop().await {
                tracing::error!(%error, "a projector did not stop cleanly");
                outcome = Err(error);
            }
        }
        let _ = self.ops_task.await;
        let _ = self.lag_task.await;
        outcome
    }
}

/// A search index's freshness (the lag's age: how old the oldest event not yet
/// searchable is) and size, beside the shared lag metrics.
struct SearchFigures(SearchEngine, PgPool);

impl AfterMeasure for SearchFigures {
    fn after<'a>(&'a self, handler: &'static str, lag: Option<&'a ProjectionLag>) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            let Some(index) = SearchEngine::index_of(handler) else { return };
            if let Some(lag) = lag {
                self.0.metrics().freshness.get_or_create(&SearchMetrics::label(index.name)).set(lag.seconds());
            }
            match self.0.document_count(&self.1, index).await {
                Ok(count) => {
                    self.0.metrics().documents.get_or_create(&SearchMetrics::label(index.name)).set(count as i64);
                }
                Err(error) => tracing::warn!(index = index.name, %error, "cannot count the index's documents"),
            }
        })
    }
}
