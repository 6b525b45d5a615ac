//! What the workflows write and operators read (`vectis workflows list|show`, GraphQL
//! `workflows` and `workflow`): each workflow's instances and timers in its active
//! version, and the steps in the shared outbox. Reads only.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::{PgPool, Postgres, QueryBuilder};
use uuid::Uuid;

use crate::catalog::{workflow_named, WORKFLOWS};

/// Where an instance is, as operators see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, sqlx::Type)]
#[sqlx(type_name = "text", rename_all = "snake_case")]
#[serde(rename_all = "snake_case")]
pub enum InstanceStatus {
    /// Waiting for events, timers or its commands.
    Running,
    /// Nothing more to do (it may still wake if a late event arrives).
    Completed,
    /// Ended in a business failure (an order rejected, an approval timed out): done,
    /// but not a success.
    Failed,
    /// A command of it failed too often: waits for `vectis workflows retry|discard`.
    Parked,
}

impl InstanceStatus {
    pub const ALL: [Self; 4] = [Self::Running, Self::Completed, Self::Failed, Self::Parked];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Completed => "completed",
            Self::Failed => "failed",
            Self::Parked => "parked",
        }
    }
}

impl std::str::FromStr for InstanceStatus {
    type Err = WorkflowReadError;

    fn from_str(word: &str) -> Result<Self, Self::Err> {
        Self::ALL.into_iter().find(|s| s.as_str() == word).ok_or_else(|| WorkflowReadError::UnknownStatus(word.into()))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum WorkflowReadError {
    #[error("no workflow {0:?}; known: {known}", known = known_workflows())]
    UnknownWorkflow(String),
    #[error("{0:?} is not an instance status (one of: running, completed, failed, parked)")]
    UnknownStatus(String),
    #[error("no instance {0:?} of any workflow")]
    NoSuchInstance(String),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

fn known_workflows() -> String {
    WORKFLOWS.iter().map(|w| w.name).collect::<Vec<_>>().join(", ")
}

/// Where a page of instances starts: after this (started at, workflow, instance).
pub type InstancePosition = (DateTime<Utc>, String, String);

/// Which instances to list, oldest first (started at, then workflow, then id).
#[derive(Debug, Clone, Default)]
pub struct InstanceFilter {
    pub workflow: Option<String>,
    pub status: Option<InstanceStatus>,
    /// Started before this (`--older-than`: now minus the age).
    pub started_before: Option<DateTime<Utc>>,
    pub after: Option<InstancePosition>,
    pub limit: i64,
}

#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct InstanceSummary {
    pub workflow: String,
    pub instance_id: String,
    pub status: InstanceStatus,
    pub waiting_for: String,
    pub started_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub last_error: Option<String>,
}

impl InstanceSummary {
    /// The instance's id across workflows: `<workflow>/<instance>` (an order has an
    /// instance in the lifecycle and, if it needed approval, one in the approval).
    pub fn global_id(&self) -> String {
        format!("{}/{}", self.workflow, self.instance_id)
    }

    pub fn position(&self) -> InstancePosition {
        (self.started_at, self.workflow.clone(), self.instance_id.clone())
    }
}

#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct StepRecord {
    pub id: i64,
    pub step: String,
    pub command: serde_json::Value,
    pub status: String,
    pub attempts: i32,
    pub last_error: Option<String>,
    /// What it did: the stream, its new version, the event types, or the refusal.
    pub outcome: Option<serde_json::Value>,
    pub causation_id: Uuid,
    pub decided_at: DateTime<Utc>,
    pub completed_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct InstanceDetail {
    pub summary: InstanceSummary,
    pub state: serde_json::Value,
    pub correlation_id: Uuid,
    /// Pending timers: (name, due).
    pub timers: Vec<(String, DateTime<Utc>)>,
    pub fired_timers: Vec<String>,
    pub steps: Vec<StepRecord>,
}

#[derive(sqlx::FromRow)]
struct InstanceRow {
    #[sqlx(flatten)]
    summary: InstanceSummary,
    state: serde_json::Value,
    correlation_id: Uuid,
    fired_timers: serde_json::Value,
}

/// The workflows `name` names (all when `None`).
fn named(name: Option<&str>) -> Result<Vec<&'static str>, WorkflowReadError> {
    match name {
        None => Ok(WORKFLOWS.iter().map(|w| w.name).collect()),
        Some(name) => {
            workflow_named(name).map(|w| vec![w.name]).ok_or_else(|| WorkflowReadError::UnknownWorkflow(name.into()))
        }
    }
}

/// The schema of the workflow's active version (`None`: not installed yet).
pub async fn active_schema(pool: &PgPool, workflow: &str) -> Result<Option<String>, sqlx::Error> {
    let state = crate::state::state(&mut *pool.acquire().await?, workflow).await?;
    Ok(state.map(|s| crate::schema_name(workflow, s.active_version)))
}

/// The installed workflows `workflow` names (all when `None`), with their active
/// schemas: one read of the projections' states for all of them.
async fn installed(pool: &PgPool, workflow: Option<&str>) -> Result<Vec<(&'static str, String)>, WorkflowReadError> {
    let names = named(workflow)?;
    let states = crate::state::states(pool).await?;
    Ok(names
        .into_iter()
        .filter_map(|name| {
            let state = states.iter().find(|s| s.name == name)?;
            Some((name, crate::schema_name(name, state.active_version)))
        })
        .collect())
}

fn push_conditions(query: &mut QueryBuilder<'_, Postgres>, filter: &InstanceFilter) {
    query.push(" WHERE TRUE");
    if let Some(status) = filter.status {
        query.push(" AND status = ").push_bind(status.as_str());
    }
    if let Some(before) = filter.started_before {
        query.push(" AND started_at < ").push_bind(before);
    }
}

/// Instances matching `filter`, oldest first, up to its limit.
pub async fn list(pool: &PgPool, filter: &InstanceFilter) -> Result<Vec<InstanceSummary>, WorkflowReadError> {
    let mut found = Vec::new();
    for (name, schema) in installed(pool, filter.workflow.as_deref()).await? {
        let mut query = QueryBuilder::new("SELECT ");
        query
            .push_bind(name)
            .push("::text AS workflow, instance_id, status, waiting_for, started_at, updated_at, last_error FROM ");
        query.push(&schema).push(".instances");
        push_conditions(&mut query, filter);
        if let Some((started_at, workflow, instance_id)) = &filter.after {
            query.push(" AND (started_at, ").push_bind(name).push("::text, instance_id) > (");
            query.push_bind(*started_at).push(", ").push_bind(workflow.as_str()).push(", ");
            query.push_bind(instance_id.as_str()).push(")");
        }
        query.push(" ORDER BY started_at, instance_id LIMIT ").push_bind(filter.limit);
        found.extend(query.build_query_as::<InstanceSummary>().fetch_all(pool).await?);
    }
    found.sort_by_key(InstanceSummary::position);
    found.truncate(usize::try_from(filter.limit).unwrap_or(0));
    Ok(found)
}

/// How many instances match `filter` (its position and limit aside).
pub async fn count(pool: &PgPool, filter: &InstanceFilter) -> Result<i64, WorkflowReadError> {
    let mut total = 0;
    for (_, schema) in installed(pool, filter.workflow.as_deref()).await? {
        let mut query = QueryBuilder::new(format!("SELECT count(*) FROM {schema}.instances"));
        push_conditions(&mut query, filter);
        total += query.build_query_scalar::<i64>().fetch_one(pool).await?;
    }
    Ok(total)
}

/// One instance in full: `id` is `<workflow>/<instance>`, or a bare instance id of
/// `workflow` (when given) or of the first workflow that has it.
pub async fn show(pool: &PgPool, workflow: Option<&str>, id: &str) -> Result<InstanceDetail, WorkflowReadError> {
    let (workflow, instance_id) = match id.split_once('/') {
        Some((named, instance)) if workflow_named(named).is_some() => (Some(named), instance),
        _ => (workflow, id),
    };
    for (name, schema) in installed(pool, workflow).await? {
        let row: Option<InstanceRow> = sqlx::query_as(&format!(
            "SELECT $2::text AS workflow, instance_id, status, waiting_for, started_at, updated_at, last_error,
                    state, correlation_id, fired_timers
               FROM {schema}.instances WHERE instance_id = $1"
        ))
        .bind(instance_id)
        .bind(name)
        .fetch_optional(pool)
        .await?;
        let Some(row) = row else { continue };
        let timers: Vec<(String, DateTime<Utc>)> =
            sqlx::query_as(&format!("SELECT name, due_at FROM {schema}.timers WHERE instance_id = $1 ORDER BY due_at"))
                .bind(instance_id)
                .fetch_all(pool)
                .await?;
        let steps: Vec<StepRecord> = sqlx::query_as(
            "SELECT id, step, command, status, attempts, last_error, outcome, causation_id, decided_at, completed_at
               FROM workflow_outbox WHERE workflow = $1 AND instance_id = $2 ORDER BY id",
        )
        .bind(name)
        .bind(instance_id)
        .fetch_all(pool)
        .await?;
        return Ok(InstanceDetail {
            summary: row.summary,
            state: row.state,
            correlation_id: row.correlation_id,
            timers,
            fired_timers: serde_json::from_value(row.fired_timers).unwrap_or_default(),
            steps,
        });
    }
    Err(WorkflowReadError::NoSuchInstance(id.to_string()))
}
