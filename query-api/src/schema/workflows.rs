//! `workflows(filter, first, after)` and `workflow(id)`: the process managers'
//! instances as `vectis workflows list|show` shows them (the same read-side reads),
//! with their steps, their outcomes and their pending timers.

use async_graphql::{ComplexObject, Context, Enum, Error, InputObject, Json, SimpleObject};
use chrono::{DateTime, Utc};
use tokio::sync::OnceCell;
use uuid::Uuid;
use vectis_read_side::{
    catalog::workflow_named,
    workflows::{self as read, InstanceFilter, InstanceStatus, InstanceSummary, WorkflowReadError},
};

use crate::{
    db::ReadDb,
    errors::bad_input,
    pagination::{self, Page},
};

/// The read side's instance status as GraphQL shows it (conversions both ways derived).
#[derive(Enum, Copy, Clone, Debug, PartialEq, Eq)]
#[graphql(remote = "InstanceStatus")]
pub enum WorkflowStatus {
    /// Waiting for events, timers or its commands.
    Running,
    /// Nothing more to do.
    Completed,
    /// Ended in a business failure (an order rejected, an approval timed out).
    Failed,
    /// A step failed too often: waits for `vectis workflows retry|discard`.
    Parked,
}

#[derive(InputObject, Default, Debug, Clone)]
pub struct WorkflowFilter {
    /// A workflow type: order_lifecycle, order_approval, account_approval, reservation_expiry,
    /// recurring_order.
    pub workflow: Option<String>,
    pub status: Option<WorkflowStatus>,
    /// Only instances started before this time (those waiting longer than an age).
    pub started_before: Option<DateTime<Utc>>,
}

/// One instance of a workflow.
#[derive(SimpleObject)]
#[graphql(complex)]
pub struct WorkflowInstance {
    /// `<workflow>/<instance>`: what `workflow(id)` takes.
    pub id: String,
    pub workflow: String,
    /// The order's or account's id.
    pub instance_id: String,
    pub status: WorkflowStatus,
    /// What it waits for, in words.
    pub waiting_for: String,
    pub started_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// Why its last step failed, while it is parked.
    pub last_error: Option<String>,
    #[graphql(skip)]
    detail: OnceCell<read::InstanceDetail>,
}

impl From<InstanceSummary> for WorkflowInstance {
    fn from(summary: InstanceSummary) -> Self {
        Self {
            id: summary.global_id(),
            workflow: summary.workflow,
            instance_id: summary.instance_id,
            status: summary.status.into(),
            waiting_for: summary.waiting_for,
            started_at: summary.started_at,
            updated_at: summary.updated_at,
            last_error: summary.last_error,
            detail: OnceCell::new(),
        }
    }
}

#[derive(SimpleObject, Debug, Clone)]
pub struct WorkflowTimer {
    pub name: String,
    pub due_at: DateTime<Utc>,
}

/// A step the instance decided, and what running it did.
#[derive(SimpleObject, Debug, Clone)]
pub struct WorkflowStep {
    pub name: String,
    /// The command, as the outbox keeps it.
    pub command: Json<serde_json::Value>,
    /// pending, done, refused, parked or discarded.
    pub status: String,
    pub attempts: i32,
    pub last_error: Option<String>,
    /// The stream, its new version and the event types appended, or the refusal.
    pub outcome: Option<Json<serde_json::Value>>,
    /// The event that led to it.
    pub causation_id: Uuid,
    pub decided_at: DateTime<Utc>,
    pub completed_at: Option<DateTime<Utc>>,
}

impl WorkflowInstance {
    /// The instance's steps, timers and state: read once, when first asked for.
    async fn detail(&self, ctx: &Context<'_>) -> Result<&read::InstanceDetail, Error> {
        let db = ctx.data_unchecked::<ReadDb>();
        self.detail
            .get_or_try_init(|| async {
                db.counted_as(3, async {
                    read::show(&db.pool, Some(&self.workflow), &self.instance_id).await.map_err(into_sqlx)
                })
                .await
            })
            .await
    }
}

#[ComplexObject]
impl WorkflowInstance {
    /// The business conversation it belongs to (the order's correlation id).
    async fn correlation_id(&self, ctx: &Context<'_>) -> Result<Uuid, Error> {
        Ok(self.detail(ctx).await?.correlation_id)
    }

    /// Its state as the workflow keeps it.
    async fn state(&self, ctx: &Context<'_>) -> Result<Json<serde_json::Value>, Error> {
        Ok(Json(self.detail(ctx).await?.state.clone()))
    }

    /// Steps in the order they were decided.
    async fn steps(&self, ctx: &Context<'_>) -> Result<Vec<WorkflowStep>, Error> {
        let steps = &self.detail(ctx).await?.steps;
        Ok(steps
            .iter()
            .map(|s| WorkflowStep {
                name: s.step.clone(),
                command: Json(s.command.clone()),
                status: s.status.clone(),
                attempts: s.attempts,
                last_error: s.last_error.clone(),
                outcome: s.outcome.clone().map(Json),
                causation_id: s.causation_id,
                decided_at: s.decided_at,
                completed_at: s.completed_at,
            })
            .collect())
    }

    /// Timers waiting to fire, soonest first.
    async fn pending_timers(&self, ctx: &Context<'_>) -> Result<Vec<WorkflowTimer>, Error> {
        let timers = &self.detail(ctx).await?.timers;
        Ok(timers.iter().map(|(name, due_at)| WorkflowTimer { name: name.clone(), due_at: *due_at }).collect())
    }

    async fn fired_timers(&self, ctx: &Context<'_>) -> Result<Vec<String>, Error> {
        Ok(self.detail(ctx).await?.fired_timers.clone())
    }
}

/// The reads here name only known workflows (checked first), so what is left to fail
/// is the database.
fn into_sqlx(error: WorkflowReadError) -> sqlx::Error {
    match error {
        WorkflowReadError::Database(error) => error,
        other => sqlx::Error::Protocol(other.to_string()),
    }
}

#[derive(Default)]
pub struct WorkflowQueries;

/// The cursor list of workflow instances, oldest first.
const LIST: &str = "workflows";

#[async_graphql::Object]
impl WorkflowQueries {
    /// Instances of every workflow (or of `filter.workflow`), oldest first.
    #[graphql(complexity = "pagination::complexity(first, child_complexity)")]
    async fn workflows(
        &self,
        ctx: &Context<'_>,
        filter: Option<WorkflowFilter>,
        first: Option<i32>,
        after: Option<String>,
    ) -> Result<Page<WorkflowInstance>, Error> {
        let db = ctx.data_unchecked::<ReadDb>();
        let filter = filter.unwrap_or_default();
        let limit = pagination::page_size(first)?;
        let position: Option<read::InstancePosition> = pagination::decode(LIST, after.as_deref())?;
        let had_cursor = position.is_some();
        let filter = InstanceFilter {
            workflow: filter.workflow,
            status: filter.status.map(Into::into),
            started_before: filter.started_before,
            after: position,
            limit: limit + 1,
        };
        if let Some(name) = filter.workflow.as_deref().filter(|name| workflow_named(name).is_none()) {
            return Err(bad_input(WorkflowReadError::UnknownWorkflow(name.into()).to_string()));
        }
        let rows = db.counted_as(2, async { read::list(&db.pool, &filter).await.map_err(into_sqlx) }).await?;
        let total = db.counted_as(2, async { read::count(&db.pool, &filter).await.map_err(into_sqlx) }).await?;
        let rows: Vec<WorkflowInstance> = rows.into_iter().map(Into::into).collect();
        Ok(pagination::page(LIST, rows, limit, total, had_cursor, |i: &WorkflowInstance| {
            (i.started_at, i.workflow.clone(), i.instance_id.clone())
        }))
    }

    /// One instance: `<workflow>/<instance>` (a `WorkflowInstance.id`), or a bare
    /// instance id (the order lifecycle's, when an order has several).
    async fn workflow(&self, ctx: &Context<'_>, id: String) -> Result<Option<WorkflowInstance>, Error> {
        let db = ctx.data_unchecked::<ReadDb>();
        let found = db
            .counted_as(3, async {
                match read::show(&db.pool, None, &id).await {
                    Ok(detail) => Ok(Some(detail)),
                    Err(WorkflowReadError::NoSuchInstance(_)) => Ok(None),
                    Err(error) => Err(into_sqlx(error)),
                }
            })
            .await?;
        Ok(found.map(|detail| {
            let instance = WorkflowInstance::from(detail.summary.clone());
            let _ = instance.detail.set(detail);
            instance
        }))
    }
}
