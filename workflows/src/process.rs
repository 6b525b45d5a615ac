//! The workflows process (`vectis-workflows`): each workflow's consumer group, its
//! timer scheduler, the outbox dispatcher, and `/metrics`, `/health`, `/ready` on
//! `WORKFLOWS_OPS_ADDR`. `main` only calls into here.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use anyhow::Context;
use prometheus_client::registry::Registry;
use sqlx::PgPool;
use tokio::task::JoinHandle;
use vectis_command_api::handling::CommandHandler;
use vectis_consumer::{
    metrics::ConsumerMetrics,
    runtime::{GroupConsumer, RunningConsumer},
    settings::ConsumerSettings,
    tables,
};
use vectis_event_store::{settings::StoreSettings, EventStore, StoreMetrics};
use vectis_read_side::catalog::{ORDER_LIFECYCLE, WORKFLOWS};
use vectis_runtime::{env_duration, env_parse, pool_metrics::PoolCollector, OpsState, Shutdown};

use crate::{
    handler::{Wakers, WorkflowHandler},
    instances,
    metrics::WorkflowMetrics,
    order_lifecycle::{OrderLifecycle, DEFAULT_RESERVATION_TTL},
    outbox::{Dispatcher, OutboxSettings},
    timers::{Scheduler, DEFAULT_TIMER_POLL},
    workflow::Workflow,
};

/// The order lifecycle's tables are `read.order_lifecycle_instances` and `…_timers`.
pub const ORDER_LIFECYCLE_VIEWS: &str = "order_lifecycle_";

#[derive(Debug, Clone)]
pub struct WorkflowsSettings {
    pub store: StoreSettings,
    /// `WORKFLOWS_OPS_ADDR` (default `0.0.0.0:8004`).
    pub ops_addr: SocketAddr,
    /// `RESERVATION_TTL` (default `15m`): how long an order's stock is held unconfirmed.
    pub reservation_ttl: Duration,
    /// `WORKFLOW_TIMER_POLL` (default `1s`): how often an idle scheduler looks for
    /// timers armed by another process.
    pub timer_poll: Duration,
    /// `WORKFLOW_INSTANCE_ID`: static group membership, as `PROJECTOR_INSTANCE_ID`.
    pub instance_id: Option<String>,
    pub outbox: OutboxSettings,
    /// `WORKFLOW_METRICS_INTERVAL_MS` (default 5000).
    pub metrics_interval: Duration,
}

impl WorkflowsSettings {
    pub fn from_env() -> anyhow::Result<Self> {
        let reservation_ttl = env_duration("RESERVATION_TTL", DEFAULT_RESERVATION_TTL)?;
        anyhow::ensure!(reservation_ttl >= Duration::from_secs(1), "RESERVATION_TTL must be at least 1s");
        let mut outbox = OutboxSettings::default();
        outbox.max_attempts = env_parse("WORKFLOW_STEP_MAX_ATTEMPTS", outbox.max_attempts)?;
        anyhow::ensure!(outbox.max_attempts >= 1, "WORKFLOW_STEP_MAX_ATTEMPTS must be at least 1");
        Ok(Self {
            store: StoreSettings::from_env("vectis-workflows")?,
            ops_addr: env_parse("WORKFLOWS_OPS_ADDR", SocketAddr::from(([0, 0, 0, 0], 8004)))?,
            reservation_ttl,
            timer_poll: env_duration("WORKFLOW_TIMER_POLL", DEFAULT_TIMER_POLL)?.max(Duration::from_millis(10)),
            instance_id: std::env::var("WORKFLOW_INSTANCE_ID").ok().filter(|v| !v.trim().is_empty()),
            outbox,
            metrics_interval: Duration::from_millis(env_parse("WORKFLOW_METRICS_INTERVAL_MS", 5000u64)?.max(100)),
        })
    }
}

/// Installs version 1 of the order lifecycle's tables unless installed; its active version.
pub async fn install_order_lifecycle(pool: &PgPool) -> Result<i32, sqlx::Error> {
    tables::install(pool, ORDER_LIFECYCLE.name, &instances::table_set(ORDER_LIFECYCLE_VIEWS)).await
}

pub struct WorkflowsProcess {
    running: Vec<RunningConsumer>,
    tasks: Vec<JoinHandle<()>>,
    ops_addr: SocketAddr,
    shutdown: Shutdown,
}

impl WorkflowsProcess {
    pub async fn build(settings: WorkflowsSettings, shutdown: Shutdown) -> anyhow::Result<Self> {
        let pool = settings.store.pool().context("configuring the PostgreSQL pool")?;
        Self::build_with_pool(settings, pool, shutdown).await
    }

    pub async fn build_with_pool(
        settings: WorkflowsSettings,
        pool: PgPool,
        shutdown: Shutdown,
    ) -> anyhow::Result<Self> {
        let schemas = settings.store.load_schemas().context("loading event schemas")?;
        let mut registry = Registry::default();
        let store_metrics = StoreMetrics::register(&mut registry);
        let consumer_metrics = ConsumerMetrics::register(&mut registry);
        let metrics = WorkflowMetrics::register(&mut registry);
        registry.register_collector(Box::new(PoolCollector::new(pool.clone())));
        let store = EventStore::new(pool.clone(), schemas, settings.store.schema_mode, store_metrics);
        let wakers = Wakers::default();
        let mut tasks = Vec::new();

        let lifecycle = OrderLifecycle::new(settings.reservation_ttl);
        let version = install_order_lifecycle(&pool).await.context("installing the order lifecycle's tables")?;
        let running = vec![start_consumer(&settings, &pool, lifecycle.clone(), version, &wakers, &consumer_metrics)?];
        tasks.push(tokio::spawn(
            Scheduler {
                pool: pool.clone(),
                workflow: lifecycle,
                wake: wakers.timers.clone(),
                outbox: wakers.outbox.clone(),
                poll: settings.timer_poll,
                batch: 100,
            }
            .run(shutdown.clone()),
        ));
        tasks.push(tokio::spawn(
            Dispatcher {
                pool: pool.clone(),
                handler: CommandHandler::new(store),
                settings: settings.outbox.clone(),
                wake: wakers.outbox.clone(),
                metrics: metrics.clone(),
            }
            .run(shutdown.clone()),
        ));
        tasks.push(tokio::spawn(metrics.measure(
            pool.clone(),
            WORKFLOWS.iter().collect(),
            settings.metrics_interval,
            shutdown.clone(),
        )));
        let checks = vectis_event_store::readiness::checks(&pool, &settings.store.kafka);
        let (ops_addr, ops_task) =
            vectis_runtime::serve_ops(settings.ops_addr, OpsState::new(registry, checks), shutdown.clone()).await?;
        tasks.push(ops_task);
        Ok(Self { running, tasks, ops_addr, shutdown })
    }

    pub fn ops_addr(&self) -> SocketAddr {
        self.ops_addr
    }

    /// Runs until the shutdown signal; each consumer then finishes its batch and
    /// leaves its group, the dispatcher its round.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        self.shutdown.wait().await;
        let mut outcome = Ok(());
        for consumer in self.running {
            if let Err(error) = consumer.stop().await {
                tracing::error!(%error, "a workflow consumer did not stop cleanly");
                outcome = Err(error);
            }
        }
        for task in self.tasks {
            let _ = task.await;
        }
        outcome
    }
}

fn start_consumer<W: Workflow>(
    settings: &WorkflowsSettings,
    pool: &PgPool,
    workflow: Arc<W>,
    version: i32,
    wakers: &Wakers,
    metrics: &ConsumerMetrics,
) -> anyhow::Result<RunningConsumer> {
    let name = workflow.spec().name;
    let mut consumer_settings = ConsumerSettings::new(settings.store.kafka.clone());
    consumer_settings.group_instance_id = settings.instance_id.as_ref().map(|id| format!("{id}.{name}"));
    let handler = Arc::new(WorkflowHandler::new(workflow, wakers.clone()));
    let consumer = GroupConsumer::new(pool.clone(), handler, version, consumer_settings, metrics.clone());
    let running = consumer.start().with_context(|| format!("starting the {name} workflow"))?;
    tracing::info!(workflow = name, version, "workflow running");
    Ok(running)
}
