//! The projectors process: every read model's projector, and `/metrics`, `/health`,
//! `/ready` on `PROJECTORS_OPS_ADDR`. `main` only calls into here.

use std::{collections::HashMap, net::SocketAddr, sync::Arc, time::Duration};
use vectis_read_side::Target;

use anyhow::Context;
use prometheus_client::registry::Registry;
use sqlx::PgPool;
use vectis_event_store::settings::StoreSettings;
use vectis_runtime::{env_duration, env_or, env_parse, pool_metrics::PoolCollector, OpsState, Shutdown};

use vectis_consumer::{
    lag::{LagProbe, ProjectionLag, Watermarks, TOPIC_RECREATED_FIX},
    metrics::ConsumerMetrics,
    runtime::{GroupConsumer, RejoinRequests, RunningConsumer},
    settings::{ConsumerSettings, DEFAULT_STALL_AFTER},
    stall::{describe, ProgressWatch, StalledPartition},
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
        let probe = LagProbe::new(&settings.store.kafka).context("creating the lag probe")?;
        let lag_task = tokio::spawn(report_lag(
            pool.clone(),
            probe,
            projections,
            Stalls { after: settings.stall_after, rejoins },
            metrics,
            engine.clone(),
            settings.lag_interval,
            shutdown.clone(),
        ));
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

/// Where stuck partitions are reported: after how long without progress, and each
/// projector's rejoin requests.
struct Stalls {
    after: Duration,
    rejoins: HashMap<&'static str, RejoinRequests>,
}

/// Measures the lag of each projection's active version every `interval` and
/// publishes it as metrics, until shutdown; for a search index also its freshness
/// (the same measure: how old the oldest event not yet searchable is) and its size.
/// Partitions with lag that stopped advancing are logged and their projector asked to
/// rejoin its group.
#[allow(clippy::too_many_arguments)]
async fn report_lag(
    pool: PgPool,
    probe: LagProbe,
    projections: Vec<Arc<dyn Projection>>,
    stalls: Stalls,
    metrics: ConsumerMetrics,
    engine: SearchEngine,
    interval: Duration,
    shutdown: Shutdown,
) {
    // Reported when it changes, not on every measurement.
    let mut beyond_log: HashMap<&'static str, Vec<(String, i32)>> = HashMap::new();
    let mut watches: HashMap<&'static str, ProgressWatch> = HashMap::new();
    let mut stalled_reported: HashMap<&'static str, Vec<(String, i32)>> = HashMap::new();
    let mut topics: Vec<&str> = projections.iter().flat_map(|p| p.topics().iter().copied()).collect();
    topics.sort_unstable();
    topics.dedup();
    loop {
        // Each topic's watermarks once a round, whichever projections read it.
        let watermarks = probe.watermarks(&topics).await;
        for projection in &projections {
            let index = SearchEngine::index_of(projection.name());
            let lag = match &watermarks {
                Ok(watermarks) => active_lag_at(&pool, &probe, projection.as_ref(), watermarks).await,
                Err(error) => Err(anyhow::anyhow!("reading the broker's watermarks: {error}")),
            };
            match lag {
                Ok(lag) => {
                    metrics.record_lag(&lag);
                    if let Err(error) = lag.save(&pool).await {
                        tracing::warn!(projection = projection.name(), %error, "cannot store the measured lag");
                    }
                    report_beyond_log(&lag, beyond_log.entry(projection.name()).or_default());
                    let watch = watches.entry(projection.name()).or_insert_with(|| ProgressWatch::new(stalls.after));
                    let measured = watch.observe(&lag, std::time::Instant::now());
                    metrics.record_progress(projection.name(), &measured);
                    report_stalled(&lag, &measured.stalled, stalled_reported.entry(projection.name()).or_default());
                    if let (false, Some(rejoins)) = (measured.stalled.is_empty(), stalls.rejoins.get(projection.name()))
                    {
                        rejoins.request(measured.stalled);
                    }
                    if let Some(index) = index {
                        engine.metrics().freshness.get_or_create(&SearchMetrics::label(index.name)).set(lag.seconds());
                    }
                }
                Err(error) => tracing::warn!(projection = projection.name(), %error, "cannot measure lag"),
            }
            if let Some(index) = index {
                match engine.document_count(&pool, index).await {
                    Ok(count) => {
                        engine.metrics().documents.get_or_create(&SearchMetrics::label(index.name)).set(count as i64);
                    }
                    Err(error) => tracing::warn!(index = index.name, %error, "cannot count the index's documents"),
                }
            }
        }
        tokio::select! {
            () = tokio::time::sleep(interval) => {}
            () = shutdown.wait() => return,
        }
    }
}

/// Logs, when the set changes, the partitions whose checkpoint is beyond the broker's
/// end of them (`reported` holds the set last logged).
fn report_beyond_log(lag: &ProjectionLag, reported: &mut Vec<(String, i32)>) {
    let now: Vec<(String, i32)> = lag.beyond_log().iter().map(|p| (p.topic.clone(), p.partition)).collect();
    if now == *reported {
        return;
    }
    for partition in lag.beyond_log() {
        tracing::error!(
            projection = lag.target.projection, version = lag.target.version,
            topic = %partition.topic, partition = partition.partition,
            checkpoint = partition.next_offset, high_watermark = partition.high_watermark,
            "checkpoint beyond the end of the partition: {TOPIC_RECREATED_FIX}"
        );
    }
    if now.is_empty() {
        tracing::info!(projection = lag.target.projection, "no checkpoint is beyond the end of its partition any more");
    }
    *reported = now;
}

/// Logs, when the set changes, the partitions with lag that stopped advancing
/// (`reported` holds the set last logged).
fn report_stalled(lag: &ProjectionLag, stalled: &[StalledPartition], reported: &mut Vec<(String, i32)>) {
    let now: Vec<(String, i32)> = stalled.iter().map(|s| (s.topic.clone(), s.partition)).collect();
    if now == *reported {
        return;
    }
    if now.is_empty() {
        tracing::info!(projection = lag.target.projection, "every partition with lag advances again");
    } else {
        tracing::warn!(
            projection = lag.target.projection, version = lag.target.version,
            partitions = %describe(stalled),
            "partitions with lag stopped advancing; asking their consumer to rejoin its group"
        );
    }
    *reported = now;
}

/// The lag of the version readers see, against `watermarks` read for its topics.
async fn active_lag_at(
    pool: &PgPool,
    probe: &LagProbe,
    projection: &dyn Projection,
    watermarks: &Watermarks,
) -> anyhow::Result<ProjectionLag> {
    let mut conn = pool.acquire().await?;
    let state = vectis_read_side::state::state(&mut conn, projection.name())
        .await?
        .ok_or_else(|| anyhow::anyhow!("projection {} is not installed", projection.name()))?;
    drop(conn);
    let target = Target { projection: projection.name(), version: state.active_version };
    Ok(probe.measure_at(pool, &target, projection.topics(), watermarks).await?)
}
