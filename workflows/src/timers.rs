//! Durable timers: pending timers live in the active version's `timers` table; the
//! scheduler fires those due, each in a transaction that locks its instance, folds the
//! firing into the state, records what the instance now wants (its steps into the
//! outbox) and deletes the timer. A timer fires at or after its due time, once: after a
//! downtime every overdue timer fires once. A version being rebuilt fires nothing.

use std::{collections::BTreeSet, sync::Arc, time::Duration};

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use tokio::sync::Notify;
use uuid::Uuid;
use vectis_consumer::checkpoints::{lock_current, RowLock};
use vectis_read_side::Target;
use vectis_runtime::Shutdown;

use crate::{
    instances::{self, Changes},
    metrics::WorkflowMetrics,
    workflow::Workflow,
};

/// How often an idle scheduler looks for timers others armed, and the longest it
/// sleeps towards the next due time (so a timer armed elsewhere is not missed).
pub const DEFAULT_TIMER_POLL: Duration = Duration::from_secs(1);

pub struct Scheduler<W: Workflow> {
    pub pool: PgPool,
    pub workflow: Arc<W>,
    pub wake: Arc<Notify>,
    pub outbox: Arc<Notify>,
    pub poll: Duration,
    /// Most timers fired per transaction.
    pub batch: i64,
    pub metrics: WorkflowMetrics,
}

impl<W: Workflow> Scheduler<W> {
    pub async fn run(self, shutdown: Shutdown) {
        loop {
            let next = match self.fire_due().await {
                Ok(Some(fired)) if fired > 0 => continue,
                Ok(_) => self.next_due().await.unwrap_or(None),
                Err(error) => {
                    tracing::warn!(workflow = self.workflow.spec().name, %error, "firing timers failed; retrying");
                    None
                }
            };
            let wait =
                next.map(|due| (due - Utc::now()).to_std().unwrap_or(self.poll)).unwrap_or(self.poll).min(self.poll);
            tokio::select! {
                () = shutdown.wait() => return,
                () = self.wake.notified() => {}
                () = tokio::time::sleep(wait) => {}
            }
        }
    }

    async fn active(&self) -> Result<Option<Target>, sqlx::Error> {
        let name = self.workflow.spec().name;
        let state = vectis_read_side::state::state(&mut *self.pool.acquire().await?, name).await?;
        Ok(state.map(|s| Target { projection: name, version: s.active_version }))
    }

    /// When the earliest pending timer of the active version is due.
    pub async fn next_due(&self) -> Result<Option<DateTime<Utc>>, sqlx::Error> {
        let Some(target) = self.active().await? else { return Ok(None) };
        sqlx::query_scalar(&format!("SELECT min(due_at) FROM {}.timers", target.schema())).fetch_one(&self.pool).await
    }

    /// Fires the due timers of the active version (up to a batch); `None` when the
    /// workflow is not installed or its version moved on meanwhile.
    pub async fn fire_due(&self) -> Result<Option<usize>, sqlx::Error> {
        let Some(target) = self.active().await? else { return Ok(None) };
        let schema = target.schema();
        let mut tx = vectis_runtime::database::begin(&self.pool).await?;
        if !lock_current(&mut tx, &target, RowLock::Share).await? {
            return Ok(None);
        }
        let due: Vec<String> = sqlx::query_scalar(&format!(
            "SELECT DISTINCT instance_id FROM (SELECT instance_id FROM {schema}.timers
                WHERE due_at <= now() ORDER BY due_at LIMIT $1) d"
        ))
        .bind(self.batch)
        .fetch_all(&mut *tx)
        .await?;
        if due.is_empty() {
            return Ok(Some(0));
        }
        // Instances first, then their timers: the order a batch of events locks them in.
        let mut records = instances::load(&mut tx, &schema, &due).await?;
        let now = Utc::now();
        let workflow = self.workflow.as_ref();
        let mut changes = Changes::default();
        let mut fired = 0;
        let ids: BTreeSet<String> = due.into_iter().collect();
        for id in ids {
            let Some(mut record) = records.remove(&id) else { continue };
            let Ok(mut state) = serde_json::from_value::<W::State>(record.state.clone()) else {
                tracing::error!(workflow = workflow.spec().name, instance = %id, "unreadable instance state; its timers wait");
                continue;
            };
            let due_now: Vec<(String, Uuid)> = record
                .timers
                .iter()
                .filter(|(_, (due, _))| *due <= now)
                .map(|(name, (_, causation))| (name.clone(), *causation))
                .collect();
            let Some(causation) = due_now.first().map(|(_, c)| *c) else { continue };
            for (name, _) in &due_now {
                tracing::debug!(workflow = workflow.spec().name, instance = %id, timer = %name, "timer fired");
                state = workflow.timer_fired(state, name, now);
                record.timers.remove(name);
                record.fired.push(name.clone());
                changes.cancel.push((id.clone(), name.clone()));
                fired += 1;
            }
            changes.reconcile(workflow, record, &state, now, causation, true);
        }
        instances::save(&mut tx, workflow.spec().name, &schema, &changes).await?;
        tx.commit().await?;
        self.metrics.count_transitions(workflow.spec().name, &changes.transitions);
        if !changes.outbox.is_empty() {
            self.outbox.notify_one();
        }
        Ok(Some(fired))
    }
}
