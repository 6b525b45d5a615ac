//! The workflows' metrics (DESIGN.md, "Operability"): steps run, refused, failed and
//! parked as counters; instances by status, timers pending and overdue, the oldest
//! overdue timer and the outbox backlog as gauges measured from PostgreSQL, so they
//! hold whichever process did the work.

use std::{sync::atomic::AtomicU64, time::Duration};

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, gauge::Gauge},
    registry::Registry,
};
use sqlx::PgPool;
use vectis_read_side::ProjectionSpec;
use vectis_runtime::{metric_names as names, Shutdown};

use crate::{instances::Transition, workflow::InstanceStatus};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WorkflowLabel {
    pub workflow: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StepLabel {
    pub workflow: String,
    /// `done` or `refused`.
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StatusLabel {
    pub workflow: String,
    pub status: String,
}

#[derive(Clone, Debug, Default)]
pub struct WorkflowMetrics {
    pub steps: Family<StepLabel, Counter>,
    pub steps_failed: Family<WorkflowLabel, Counter>,
    pub parked: Family<WorkflowLabel, Counter>,
    pub started: Family<WorkflowLabel, Counter>,
    pub ended: Family<StatusLabel, Counter>,
    pub instances: Family<StatusLabel, Gauge>,
    pub oldest_running: Family<WorkflowLabel, Gauge<f64, AtomicU64>>,
    pub timers_pending: Family<WorkflowLabel, Gauge>,
    pub timers_overdue: Family<WorkflowLabel, Gauge>,
    pub oldest_overdue: Family<WorkflowLabel, Gauge<f64, AtomicU64>>,
    pub outbox_pending: Family<WorkflowLabel, Gauge>,
}

impl WorkflowMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self::default();
        registry.register(
            names::WORKFLOW_STEPS,
            "Workflow steps run, by outcome (done, refused by the domain)",
            metrics.steps.clone(),
        );
        registry.register(
            names::WORKFLOW_STEPS_FAILED,
            "Workflow step runs that failed (retried, then parked)",
            metrics.steps_failed.clone(),
        );
        registry.register(
            names::WORKFLOW_STEPS_PARKED,
            "Workflow steps parked after failing too often",
            metrics.parked.clone(),
        );
        registry.register(
            names::WORKFLOW_INSTANCES_STARTED,
            "Workflow instances started (by this process)",
            metrics.started.clone(),
        );
        registry.register(
            names::WORKFLOW_INSTANCES_ENDED,
            "Workflow instances that ended, by status: completed, or failed (an order rejected, an approval timed out)",
            metrics.ended.clone(),
        );
        registry.register(names::WORKFLOW_INSTANCES, "Workflow instances by status", metrics.instances.clone());
        registry.register(
            names::WORKFLOW_OLDEST_RUNNING_SECONDS,
            "Age of the oldest running instance (for approvals: the oldest pending approval)",
            metrics.oldest_running.clone(),
        );
        registry.register(
            names::WORKFLOW_TIMERS_PENDING,
            "Durable timers waiting to fire",
            metrics.timers_pending.clone(),
        );
        registry.register(
            names::WORKFLOW_TIMERS_OVERDUE,
            "Durable timers past their due time",
            metrics.timers_overdue.clone(),
        );
        registry.register(
            names::WORKFLOW_OLDEST_TIMER_OVERDUE_SECONDS,
            "How long the most overdue timer is past its due time",
            metrics.oldest_overdue.clone(),
        );
        registry.register(
            names::WORKFLOW_OUTBOX_PENDING,
            "Decided workflow steps not run yet",
            metrics.outbox_pending.clone(),
        );
        metrics
    }

    /// Creates the workflow's failure counters at 0, so the failure ratio and its
    /// alert have a series before the first failure.
    pub fn initialise(&self, workflow: &str) {
        let label = Self::label(workflow);
        for counter in [&self.steps_failed, &self.parked, &self.started] {
            let _ = counter.get_or_create(&label);
        }
    }

    pub fn label(workflow: &str) -> WorkflowLabel {
        WorkflowLabel { workflow: workflow.to_string() }
    }

    pub fn step_label(workflow: &str, outcome: &str) -> StepLabel {
        StepLabel { workflow: workflow.to_string(), outcome: outcome.to_string() }
    }

    /// Counts instances that started and ended in a committed change.
    pub fn count_transitions(&self, workflow: &str, transitions: &[Transition]) {
        for (from, to) in transitions {
            if from.is_none() {
                self.started.get_or_create(&Self::label(workflow)).inc();
            }
            if matches!(to, InstanceStatus::Completed | InstanceStatus::Failed) {
                self.ended.get_or_create(&StatusLabel { workflow: workflow.into(), status: to.as_str().into() }).inc();
            }
        }
    }

    /// Measures the gauges of `workflows` every `interval` until `shutdown`.
    pub async fn measure(
        self,
        pool: PgPool,
        workflows: Vec<&'static ProjectionSpec>,
        interval: Duration,
        shutdown: Shutdown,
    ) {
        loop {
            for spec in &workflows {
                if let Err(error) = self.measure_once(&pool, spec.name).await {
                    tracing::debug!(workflow = spec.name, %error, "measuring the workflow's gauges failed");
                }
            }
            tokio::select! {
                () = shutdown.wait() => return,
                () = tokio::time::sleep(interval) => {}
            }
        }
    }

    pub async fn measure_once(&self, pool: &PgPool, workflow: &str) -> Result<(), sqlx::Error> {
        let mut conn = pool.acquire().await?;
        let Some(schema) = crate::instances::active_schema(&mut conn, workflow).await? else { return Ok(()) };
        drop(conn);
        let by_status: Vec<(String, i64, Option<f64>)> = sqlx::query_as(&format!(
            "SELECT status, count(*), extract(epoch FROM now() - min(started_at))::float8
               FROM {schema}.instances GROUP BY status"
        ))
        .fetch_all(pool)
        .await?;
        let oldest_running = by_status.iter().find(|(s, ..)| s == "running").and_then(|(.., age)| *age);
        self.oldest_running.get_or_create(&Self::label(workflow)).set(oldest_running.unwrap_or(0.0).max(0.0));
        for status in ["running", "completed", "failed", "parked"] {
            let count = by_status.iter().find(|(s, ..)| s == status).map(|(_, n, _)| *n).unwrap_or(0);
            self.instances.get_or_create(&StatusLabel { workflow: workflow.into(), status: status.into() }).set(count);
        }
        let (pending, overdue, oldest): (i64, i64, Option<f64>) = sqlx::query_as(&format!(
            "SELECT count(*), count(*) FILTER (WHERE due_at <= now()),
                    extract(epoch FROM now() - min(due_at) FILTER (WHERE due_at <= now()))::float8
               FROM {schema}.timers"
        ))
        .fetch_one(pool)
        .await?;
        let label = Self::label(workflow);
        self.timers_pending.get_or_create(&label).set(pending);
        self.timers_overdue.get_or_create(&label).set(overdue);
        self.oldest_overdue.get_or_create(&label).set(oldest.unwrap_or(0.0));
        let backlog: i64 =
            sqlx::query_scalar("SELECT count(*) FROM workflow_outbox WHERE workflow = $1 AND status = 'pending'")
                .bind(workflow)
                .fetch_one(pool)
                .await?;
        self.outbox_pending.get_or_create(&label).set(backlog);
        Ok(())
    }
}
