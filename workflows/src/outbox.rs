//! Runs the steps workflows decided, from the outbox, each through the command side
//! under its idempotency key, in the order each instance decided them. A refusal is an
//! outcome (kept, visible); a failure is retried with backoff and, after
//! `max_attempts`, parks that step and its instance — other instances go on.

use std::{sync::Arc, time::Duration};

use futures::StreamExt;
use sqlx::PgPool;
use tokio::sync::Notify;
use uuid::Uuid;
use vectis_command_api::handling::CommandHandler;
use vectis_runtime::Shutdown;

use crate::{
    commands::{self, CommandResult, Decided, RunError, WorkflowCommand},
    metrics::WorkflowMetrics,
};

#[derive(Debug, Clone)]
pub struct OutboxSettings {
    /// Most steps claimed per round.
    pub batch: i64,
    /// Steps of a round run at once (`WORKFLOW_STEP_CONCURRENCY`): each is its own
    /// command on a connection of its own (the pool needs that many beside the
    /// consumers'); one instance's steps never run at once.
    pub concurrency: usize,
    /// How often an idle dispatcher looks for work others decided (a committed batch
    /// of this process wakes it at once).
    pub idle_poll: Duration,
    /// A failed step waits `retry_backoff` × 2^(attempts − 1), at most `max_retry_backoff`.
    pub retry_backoff: Duration,
    pub max_retry_backoff: Duration,
    /// Failures after which a step parks.
    pub max_attempts: i32,
    /// How long the idempotency record of a step is kept.
    pub idempotency_retention: Duration,
}

impl Default for OutboxSettings {
    fn default() -> Self {
        Self {
            batch: 64,
            concurrency: 4,
            idle_poll: Duration::from_secs(1),
            retry_backoff: Duration::from_millis(200),
            max_retry_backoff: Duration::from_secs(30),
            max_attempts: 8,
            idempotency_retention: Duration::from_secs(7 * 24 * 60 * 60),
        }
    }
}

/// Claims due steps whose instance has nothing earlier pending or parked: one
/// instance's steps run one at a time, in the order decided.
const CLAIM: &str =
    "SELECT o.id, o.workflow, o.instance_id, o.step, o.command, o.causation_id, o.correlation_id, o.attempts
       FROM workflow_outbox o
      WHERE o.status = 'pending' AND o.next_attempt_at <= now()
        AND NOT EXISTS (SELECT 1 FROM workflow_outbox e
                         WHERE e.workflow = o.workflow AND e.instance_id = o.instance_id AND e.id < o.id
                           AND e.status IN ('pending', 'parked'))
      ORDER BY o.id
      LIMIT $1
      FOR UPDATE SKIP LOCKED";

type Claimed = (i64, String, String, String, serde_json::Value, Uuid, Uuid, i32);

/// What running a claimed step came to.
enum Ran {
    Unreadable(String),
    Done(CommandResult),
    Failed(RunError),
}

pub struct Dispatcher {
    pub pool: PgPool,
    pub handler: CommandHandler,
    pub settings: OutboxSettings,
    pub wake: Arc<Notify>,
    pub metrics: WorkflowMetrics,
}

impl Dispatcher {
    /// Dispatches until `shutdown`; a round that fails (PostgreSQL away) is retried.
    pub async fn run(self, shutdown: Shutdown) {
        loop {
            let ran = match self.dispatch_once().await {
                Ok(ran) => ran,
                Err(error) => {
                    tracing::warn!(%error, "dispatching workflow steps failed; retrying");
                    0
                }
            };
            if ran > 0 {
                continue;
            }
            tokio::select! {
                () = shutdown.wait() => return,
                () = self.wake.notified() => {}
                () = tokio::time::sleep(self.settings.idle_poll) => {}
            }
        }
    }

    /// One round: claims due steps (at most one per instance: its earliest), runs them
    /// concurrently, records what each did. Returns how many ran.
    pub async fn dispatch_once(&self) -> Result<usize, sqlx::Error> {
        let mut tx = vectis_runtime::database::begin(&self.pool).await?;
        let claimed: Vec<Claimed> = sqlx::query_as(CLAIM).bind(self.settings.batch).fetch_all(&mut *tx).await?;
        let count = claimed.len();
        let ran: Vec<(Claimed, Ran)> = futures::stream::iter(claimed)
            .map(|claimed| async move {
                let ran = self.run_step(&claimed).await;
                (claimed, ran)
            })
            .buffer_unordered(self.settings.concurrency.max(1))
            .collect()
            .await;
        for ((id, workflow, instance_id, step, _, _, _, attempts), ran) in ran {
            let label = WorkflowMetrics::label(&workflow);
            match ran {
                // Written by this build's own code: only a newer build's rows get here.
                Ran::Unreadable(error) => {
                    self.park(&mut tx, id, &workflow, &instance_id, &format!("unreadable command: {error}")).await?;
                }
                Ran::Done(result) => {
                    let status = if result.is_refusal() { "refused" } else { "done" };
                    if result.is_refusal() {
                        tracing::info!(workflow, instance = instance_id, step, refusal = ?result.refusal, "workflow step refused");
                    }
                    self.metrics.steps.get_or_create(&WorkflowMetrics::step_label(&workflow, status)).inc();
                    sqlx::query(
                        "UPDATE workflow_outbox SET status = $2, outcome = $3, attempts = attempts + 1,
                                last_error = NULL, completed_at = now() WHERE id = $1",
                    )
                    .bind(id)
                    .bind(status)
                    .bind(serde_json::to_value(&result).unwrap_or_default())
                    .execute(&mut *tx)
                    .await?;
                }
                Ran::Failed(error) => {
                    self.metrics.steps_failed.get_or_create(&label).inc();
                    let attempts = attempts + 1;
                    if attempts >= self.settings.max_attempts || matches!(error, RunError::KeyReused) {
                        tracing::error!(workflow, instance = instance_id, step, %error, attempts, "workflow step failed too often: parked");
                        self.park(&mut tx, id, &workflow, &instance_id, &error.to_string()).await?;
                    } else {
                        tracing::warn!(workflow, instance = instance_id, step, %error, attempts, "workflow step failed; retrying");
                        let backoff = self.backoff(attempts);
                        sqlx::query(
                            "UPDATE workflow_outbox SET attempts = $2, last_error = $3,
                                    next_attempt_at = now() + make_interval(secs => $4) WHERE id = $1",
                        )
                        .bind(id)
                        .bind(attempts)
                        .bind(error.to_string())
                        .bind(backoff.as_secs_f64())
                        .execute(&mut *tx)
                        .await?;
                    }
                }
            }
        }
        tx.commit().await?;
        Ok(count)
    }

    /// Runs one claimed step through the command side (its own transaction).
    async fn run_step(&self, claimed: &Claimed) -> Ran {
        let (_, workflow, instance_id, step, command, causation_id, correlation_id, _) = claimed;
        let command: WorkflowCommand = match serde_json::from_value(command.clone()) {
            Ok(command) => command,
            Err(error) => return Ran::Unreadable(error.to_string()),
        };
        let decided = Decided {
            workflow,
            instance_id,
            step,
            command: &command,
            causation_id: *causation_id,
            correlation_id: *correlation_id,
        };
        match commands::run(&self.handler, &decided, self.settings.idempotency_retention).await {
            Ok(result) => Ran::Done(result),
            Err(error) => Ran::Failed(error),
        }
    }

    fn backoff(&self, attempts: i32) -> Duration {
        let doublings = u32::try_from(attempts.saturating_sub(1)).unwrap_or(0).min(16);
        (self.settings.retry_backoff * 2u32.pow(doublings)).min(self.settings.max_retry_backoff)
    }

    /// Parks step `id` and marks its instance parked in the workflow's active version.
    async fn park(
        &self,
        conn: &mut sqlx::PgConnection,
        id: i64,
        workflow: &str,
        instance_id: &str,
        error: &str,
    ) -> Result<(), sqlx::Error> {
        sqlx::query(
            "UPDATE workflow_outbox SET status = 'parked', attempts = attempts + 1, last_error = $2 WHERE id = $1",
        )
        .bind(id)
        .bind(error)
        .execute(&mut *conn)
        .await?;
        if let Some(schema) = crate::instances::active_schema(conn, workflow).await? {
            sqlx::query(&format!(
                "UPDATE {schema}.instances SET status = 'parked', last_error = $2, updated_at = now() WHERE instance_id = $1"
            ))
            .bind(instance_id)
            .bind(error)
            .execute(&mut *conn)
            .await?;
        }
        self.metrics.parked.get_or_create(&WorkflowMetrics::label(workflow)).inc();
        Ok(())
    }
}
