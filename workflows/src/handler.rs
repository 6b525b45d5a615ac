//! A workflow on the consumer runtime: each batch folds its events into the instances
//! they belong to and records what those instances now want, in the batch's own
//! transaction (so with its checkpoint). Only the active version issues steps; a
//! version being rebuilt replays the log into its state and decides nothing anew.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use chrono::Utc;
use futures::{future::BoxFuture, FutureExt};
use sqlx::PgConnection;
use tokio::sync::Notify;
use vectis_consumer::{
    event::ProjectedEvent,
    handler::{ApplyError, Handler},
};
use vectis_read_side::ProjectionSpec;

use crate::{
    instances::{self, Changes, InstanceRecord, Transition},
    metrics::WorkflowMetrics,
    workflow::Workflow,
};

/// Wakes the outbox dispatcher and the timer scheduler after a batch committed.
#[derive(Debug, Clone, Default)]
pub struct Wakers {
    pub outbox: Arc<Notify>,
    pub timers: Arc<Notify>,
}

pub struct WorkflowHandler<W: Workflow> {
    pub workflow: Arc<W>,
    pub wakers: Wakers,
    metrics: WorkflowMetrics,
    /// Status changes of batches applied but not yet committed: counted on commit.
    /// (A batch whose commit fails after it applied is retried and counted again: the
    /// counters are at least once on a database failure, exact otherwise.)
    transitions: Mutex<Vec<Transition>>,
}

impl<W: Workflow> WorkflowHandler<W> {
    pub fn new(workflow: Arc<W>, wakers: Wakers, metrics: WorkflowMetrics) -> Self {
        Self { workflow, wakers, metrics, transitions: Mutex::default() }
    }

    async fn apply_events(
        &self,
        conn: &mut PgConnection,
        schema: &str,
        events: &[ProjectedEvent],
    ) -> Result<(), sqlx::Error> {
        let workflow = self.workflow.as_ref();
        let live = is_active(conn, workflow.spec().name, schema).await?;
        let mut by_instance: Vec<(String, Vec<&ProjectedEvent>)> = Vec::new();
        let mut index: HashMap<String, usize> = HashMap::new();
        for event in events {
            let Some(instance) = workflow.instance_of(event) else { continue };
            match index.get(&instance) {
                Some(&at) => by_instance[at].1.push(event),
                None => {
                    index.insert(instance.clone(), by_instance.len());
                    by_instance.push((instance, vec![event]));
                }
            }
        }
        if by_instance.is_empty() {
            return Ok(());
        }
        let ids: Vec<String> = by_instance.iter().map(|(id, _)| id.clone()).collect();
        let mut stored = instances::load(conn, schema, &ids).await?;
        let now = Utc::now();
        let mut changes = Changes::default();
        for (id, events) in by_instance {
            let existing = stored.remove(&id);
            let mut state: Option<W::State> =
                existing.as_ref().and_then(|r| serde_json::from_value(r.state.clone()).ok());
            for event in &events {
                state = workflow.evolve(state, event);
            }
            let Some(state) = state else { continue };
            let last = events.last().map(|e| e.event_id).unwrap_or_default();
            let record = existing.unwrap_or_else(|| InstanceRecord {
                instance_id: id.clone(),
                state: serde_json::Value::Null,
                issued: vec![],
                fired: vec![],
                correlation_id: events[0].correlation_id,
                last_event_id: last,
                started_at: events[0].occurred_at,
                status: None,
                timers: HashMap::new(),
            });
            let record = InstanceRecord { last_event_id: last, ..record };
            changes.reconcile(workflow, record, &state, now, last, live);
        }
        instances::save(conn, workflow.spec().name, schema, &changes).await?;
        self.transitions.lock().unwrap_or_else(|e| e.into_inner()).extend(changes.transitions);
        Ok(())
    }
}

/// Whether the version in `schema` is the one that acts (the active one). The batch
/// holds the workflow's row in `projections` (shared), so this cannot change under it.
pub async fn is_active(conn: &mut PgConnection, name: &str, schema: &str) -> Result<bool, sqlx::Error> {
    Ok(instances::active_schema(conn, name).await?.as_deref() == Some(schema))
}

impl<W: Workflow> Handler for WorkflowHandler<W> {
    fn spec(&self) -> &'static ProjectionSpec {
        self.workflow.spec()
    }

    fn apply<'a>(
        &'a self,
        conn: &'a mut PgConnection,
        schema: &'a str,
        events: &'a [ProjectedEvent],
    ) -> BoxFuture<'a, Result<(), ApplyError>> {
        async move { Ok(self.apply_events(conn, schema, events).await?) }.boxed()
    }

    fn committed(&self) {
        let transitions = std::mem::take(&mut *self.transitions.lock().unwrap_or_else(|e| e.into_inner()));
        self.metrics.count_transitions(self.workflow.spec().name, &transitions);
        self.wakers.outbox.notify_one();
        self.wakers.timers.notify_one();
    }
}
