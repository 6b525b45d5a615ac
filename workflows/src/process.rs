//! The workflows process (`vectis-workflows`): each workflow's consumer group, its
//! timer scheduler, the outbox dispatcher, and `/metrics`, `/health`, `/ready` on
//! `WORKFLOWS_OPS_ADDR`. `main` only calls into here.

use std::{collections::HashMap, net::SocketAddr, sync::Arc, time::Duration};

use anyhow::Context;
use prometheus_client::registry::Registry;
use sqlx::PgPool;
use tokio::task::JoinHandle;
use vectis_command_api::handling::CommandHandler;
use vectis_consumer::{
    handler::Handler,
    lag::LagProbe,
    lag_report::{LagReporter, NothingMore, Stalls},
    metrics::ConsumerMetrics,
    runtime::{GroupConsumer, RunningConsumer},
    settings::{ConsumerSettings, DEFAULT_STALL_AFTER},
    tables,
};
use vectis_event_store::{settings::StoreSettings, EventStore, StoreMetrics};
use vectis_read_side::catalog::WORKFLOWS;
use vectis_runtime::{env_duration, env_parse, pool_metrics::PoolCollector, OpsState, Shutdown};

use crate::{
    approvals::{ApprovalDeadline, DEFAULT_ACCOUNT_APPROVAL_TIMEOUT, DEFAULT_ORDER_APPROVAL_TIMEOUT},
    handler::{Wakers, WorkflowHandler},
    instances,
    metrics::WorkflowMetrics,
    order_lifecycle::{OrderLifecycle, DEFAULT_RESERVATION_TTL},
    outbox::{Dispatcher, OutboxSettings},
    recurring_orders::RecurringOrders,
    reservation_expiry::ReservationExpiry,
    timers::{Scheduler, DEFAULT_TIMER_POLL},
    workflow::Workflow,
};

/// The order lifecycle's tables are `read.order_lifecycle_instances` and `…_timers`.
pub const ORDER_LIFECYCLE_VIEWS: &str = "order_lifecycle_";
/// `read.order_approval_instances`, `…_timers`.
pub const ORDER_APPROVAL_VIEWS: &str = "order_approval_";
/// `read.account_approval_instances`, `…_timers`.
pub const ACCOUNT_APPROVAL_VIEWS: &str = "account_approval_";
/// `read.reservation_expiry_instances`, `…_timers`.
pub const RESERVATION_EXPIRY_VIEWS: &str = "reservation_expiry_";
/// `read.recurring_order_instances`, `…_timers`.
pub const RECURRING_ORDER_VIEWS: &str = "recurring_order_";

/// Something done with each workflow, typed.
pub trait WorkflowVisitor {
    fn visit<W: Workflow>(&mut self, workflow: Arc<W>, views: &'static str);
}

/// Visits every workflow this build runs, configured by `settings`: the one list of them.
pub fn visit_workflows(settings: &WorkflowsSettings, visitor: &mut impl WorkflowVisitor) {
    visitor.visit(OrderLifecycle::new(settings.reservation_ttl), ORDER_LIFECYCLE_VIEWS);
    visitor.visit(ApprovalDeadline::orders(settings.order_approval_timeout), ORDER_APPROVAL_VIEWS);
    visitor.visit(ApprovalDeadline::accounts(settings.account_approval_timeout), ACCOUNT_APPROVAL_VIEWS);
    visitor.visit(ReservationExpiry::new(), RESERVATION_EXPIRY_VIEWS);
    visitor.visit(Arc::new(RecurringOrders), RECURRING_ORDER_VIEWS);
}

#[derive(Debug, Clone)]
pub struct WorkflowsSettings {
    pub store: StoreSettings,
    /// `WORKFLOWS_OPS_ADDR` (default `0.0.0.0:8004`).
    pub ops_addr: SocketAddr,
    /// `RESERVATION_TTL` (default `15m`): how long an order's stock is held unconfirmed.
    pub reservation_ttl: Duration,
    /// `ORDER_APPROVAL_TIMEOUT` (default `72h`): how long an order above its account's
    /// approval threshold waits for staff before it is rejected "approval timed out".
    pub order_approval_timeout: Duration,
    /// `ACCOUNT_APPROVAL_TIMEOUT` (default `14days`, `0` disables): the same for a
    /// registered account.
    pub account_approval_timeout: Duration,
    /// `WORKFLOW_TIMER_POLL` (default `1s`): how often an idle scheduler looks for
    /// timers armed by another process.
    pub timer_poll: Duration,
    /// `WORKFLOW_INSTANCE_ID`: static group membership, as `PROJECTOR_INSTANCE_ID`.
    pub instance_id: Option<String>,
    pub outbox: OutboxSettings,
    /// `WORKFLOW_METRICS_INTERVAL_MS` (default 5000): how often the workflow gauges
    /// and the consumers' lag are measured.
    pub metrics_interval: Duration,
    /// `WORKFLOW_STALL_AFTER` (default 30s): as `PROJECTOR_STALL_AFTER`, for the
    /// workflows' consumers.
    pub stall_after: Duration,
}

impl WorkflowsSettings {
    pub fn from_env() -> anyhow::Result<Self> {
        let reservation_ttl = env_duration("RESERVATION_TTL", DEFAULT_RESERVATION_TTL)?;
        anyhow::ensure!(reservation_ttl >= Duration::from_secs(1), "RESERVATION_TTL must be at least 1s");
        let mut outbox = OutboxSettings::default();
        outbox.max_attempts = env_parse("WORKFLOW_STEP_MAX_ATTEMPTS", outbox.max_attempts)?;
        anyhow::ensure!(outbox.max_attempts >= 1, "WORKFLOW_STEP_MAX_ATTEMPTS must be at least 1");
        outbox.concurrency = env_parse("WORKFLOW_STEP_CONCURRENCY", outbox.concurrency)?;
        anyhow::ensure!((1..=256).contains(&outbox.concurrency), "WORKFLOW_STEP_CONCURRENCY must be 1 to 256");
        let order_approval_timeout = env_duration("ORDER_APPROVAL_TIMEOUT", DEFAULT_ORDER_APPROVAL_TIMEOUT)?;
        anyhow::ensure!(order_approval_timeout >= Duration::from_secs(1), "ORDER_APPROVAL_TIMEOUT must be at least 1s");
        // `0` (which humantime reads as zero) disables the deadline.
        let account_approval_timeout = env_duration("ACCOUNT_APPROVAL_TIMEOUT", DEFAULT_ACCOUNT_APPROVAL_TIMEOUT)?;
        Ok(Self {
            order_approval_timeout,
            account_approval_timeout,
            store: StoreSettings::from_env("vectis-workflows")?,
            ops_addr: env_parse("WORKFLOWS_OPS_ADDR", SocketAddr::from(([0, 0, 0, 0], 8004)))?,
            reservation_ttl,
            timer_poll: env_duration("WORKFLOW_TIMER_POLL", DEFAULT_TIMER_POLL)?.max(Duration::from_millis(10)),
            instance_id: std::env::var("WORKFLOW_INSTANCE_ID").ok().filter(|v| !v.trim().is_empty()),
            outbox,
            metrics_interval: Duration::from_millis(env_parse("WORKFLOW_METRICS_INTERVAL_MS", 5000u64)?.max(100)),
            stall_after: env_duration("WORKFLOW_STALL_AFTER", DEFAULT_STALL_AFTER)?,
        })
    }
}

/// The handler of the workflow `name` with this process's settings, and the prefix of
/// its views, for a rebuild of its state (which decides and fires nothing, so it needs
/// no wakers and exports no metrics). `None`: no such workflow.
pub fn rebuild_handler(name: &str, settings: &WorkflowsSettings) -> Option<(Arc<dyn Handler>, &'static str)> {
    struct Find<'a> {
        name: &'a str,
        found: Option<(Arc<dyn Handler>, &'static str)>,
    }
    impl WorkflowVisitor for Find<'_> {
        fn visit<W: Workflow>(&mut self, workflow: Arc<W>, views: &'static str) {
            if workflow.spec().name == self.name {
                let handler = WorkflowHandler::new(workflow, Wakers::default(), WorkflowMetrics::default());
                self.found = Some((Arc::new(handler), views));
            }
        }
    }
    let mut find = Find { name, found: None };
    visit_workflows(settings, &mut find);
    find.found
}

/// What every workflow of the process shares.
struct Launcher<'a> {
    settings: &'a WorkflowsSettings,
    pool: &'a PgPool,
    wakers: &'a Wakers,
    consumer_metrics: &'a ConsumerMetrics,
    metrics: &'a WorkflowMetrics,
    shutdown: &'a Shutdown,
}

impl Launcher<'_> {
    /// Starts the workflow's consumer group (its tables installed at `version`) and its
    /// timer scheduler.
    fn start<W: Workflow>(&self, workflow: Arc<W>, version: i32) -> anyhow::Result<Launched> {
        self.metrics.initialise(workflow.spec().name);
        let handler = Arc::new(WorkflowHandler::new(workflow.clone(), self.wakers.clone(), self.metrics.clone()));
        let running = start_consumer(self.settings, self.pool, handler.clone(), version, self.consumer_metrics)?;
        let scheduler = Scheduler {
            pool: self.pool.clone(),
            workflow,
            wake: self.wakers.timers.clone(),
            outbox: self.wakers.outbox.clone(),
            poll: self.settings.timer_poll,
            batch: 100,
            metrics: self.metrics.clone(),
        };
        Ok((running, handler, tokio::spawn(scheduler.run(self.shutdown.clone()))))
    }
}

/// A workflow's consumer, its handler and its timer scheduler's task.
type Launched = (RunningConsumer, Arc<dyn Handler>, JoinHandle<()>);

/// Each workflow's name and the prefix of its tables.
#[derive(Default)]
struct Tables(Vec<(&'static str, &'static str)>);

impl WorkflowVisitor for Tables {
    fn visit<W: Workflow>(&mut self, workflow: Arc<W>, views: &'static str) {
        self.0.push((workflow.spec().name, views));
    }
}

/// Starts every workflow at the version of its installed tables.
struct StartAll<'a> {
    launcher: &'a Launcher<'a>,
    versions: HashMap<&'static str, i32>,
    started: Vec<anyhow::Result<Launched>>,
}

impl WorkflowVisitor for StartAll<'_> {
    fn visit<W: Workflow>(&mut self, workflow: Arc<W>, _views: &'static str) {
        let name = workflow.spec().name;
        let started = match self.versions.get(name) {
            Some(version) => self.launcher.start(workflow, *version),
            None => Err(anyhow::anyhow!("the tables of the {name} workflow are not installed")),
        };
        self.started.push(started);
    }
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
        // Each consumer holds a connection for its batch, the dispatcher one for its
        // round and one per step it runs, the scheduler one while it fires.
        let needed = settings.outbox.concurrency as u32 + WORKFLOWS.len() as u32 + 2;
        if pool.options().get_max_connections() < needed {
            tracing::warn!(
                pool = pool.options().get_max_connections(),
                needed,
                "DB_MAX_CONNECTIONS is below what WORKFLOW_STEP_CONCURRENCY needs: steps will wait for connections"
            );
        }
        let mut registry = Registry::default();
        let store_metrics = StoreMetrics::register(&mut registry);
        let consumer_metrics = ConsumerMetrics::register(&mut registry);
        let metrics = WorkflowMetrics::register(&mut registry);
        registry.register_collector(Box::new(PoolCollector::new(pool.clone())));
        let store = EventStore::new(pool.clone(), schemas, settings.store.schema_mode, store_metrics)
            .with_snapshot_policy(settings.store.snapshots);
        let wakers = Wakers::default();
        let mut tasks = Vec::new();

        let launcher = Launcher {
            settings: &settings,
            pool: &pool,
            wakers: &wakers,
            consumer_metrics: &consumer_metrics,
            metrics: &metrics,
            shutdown: &shutdown,
        };
        // Install every workflow's tables (version 1, unless installed), then start them.
        let mut workflow_tables = Tables::default();
        visit_workflows(&settings, &mut workflow_tables);
        let mut versions = HashMap::new();
        for (name, views) in workflow_tables.0 {
            let version = tables::install(&pool, name, &instances::table_set(views))
                .await
                .with_context(|| format!("installing the tables of the {name} workflow"))?;
            versions.insert(name, version);
        }
        let mut all = StartAll { launcher: &launcher, versions, started: Vec::new() };
        visit_workflows(&settings, &mut all);
        let mut launched = Vec::new();
        for started in all.started {
            let (running, handler, scheduler) = started?;
            tasks.push(scheduler);
            launched.push((running, handler));
        }
        let rejoins = launched.iter().map(|(running, handler)| (handler.name(), running.rejoin_requests())).collect();
        let (running, handlers): (Vec<RunningConsumer>, Vec<Arc<dyn Handler>>) = launched.into_iter().unzip();
        // Lag and stuck consumers, as the projectors measure theirs.
        let reporter = LagReporter {
            pool: pool.clone(),
            probe: LagProbe::new(&settings.store.kafka).context("creating the lag probe")?,
            handlers,
            stalls: Stalls { after: settings.stall_after, rejoins },
            metrics: consumer_metrics.clone(),
            interval: settings.metrics_interval,
        };
        tasks.push(tokio::spawn(reporter.run(NothingMore, shutdown.clone())));
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
    handler: Arc<WorkflowHandler<W>>,
    version: i32,
    metrics: &ConsumerMetrics,
) -> anyhow::Result<RunningConsumer> {
    let name = handler.workflow.spec().name;
    let mut consumer_settings = ConsumerSettings::new(settings.store.kafka.clone());
    consumer_settings.group_instance_id = settings.instance_id.as_ref().map(|id| format!("{id}.{name}"));
    consumer_settings.stall_after = settings.stall_after;
    let consumer = GroupConsumer::new(pool.clone(), handler, version, consumer_settings, metrics.clone());
    let running = consumer.start().with_context(|| format!("starting the {name} workflow"))?;
    tracing::info!(workflow = name, version, "workflow running");
    Ok(running)
}
