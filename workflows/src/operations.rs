//! What operators do with workflows (`vectis workflows …`, and what GraphQL shows):
//! list instances by type, status and age; show one with its steps, their outcomes and
//! its pending timers; retry or discard an instance's parked steps.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use uuid::Uuid;
use vectis_read_side::{
    catalog::{workflow_named, WORKFLOWS},
    ProjectionSpec,
};

use crate::workflow::InstanceStatus;

#[derive(Debug, thiserror::Error)]
pub enum OperationError {
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

/// Which instances to list.
#[derive(Debug, Clone, Default)]
pub struct InstanceFilter {
    pub workflow: Option<String>,
    pub status: Option<String>,
    /// Started longer ago than this.
    pub older_than: Option<Duration>,
    pub limit: i64,
}

#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct InstanceSummary {
    #[sqlx(default)]
    pub workflow: String,
    pub instance_id: String,
    pub status: InstanceStatus,
    pub waiting_for: String,
    pub started_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub last_error: Option<String>,
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

fn workflows(name: Option<&str>) -> Result<Vec<&'static ProjectionSpec>, OperationError> {
    match name {
        None => Ok(WORKFLOWS.iter().collect()),
        Some(name) => workflow_named(name).map(|w| vec![w]).ok_or_else(|| OperationError::UnknownWorkflow(name.into())),
    }
}

/// The schema of the workflow's active version (`None`: not installed yet).
async fn active_schema(pool: &PgPool, workflow: &str) -> Result<Option<String>, sqlx::Error> {
    crate::instances::active_schema(&mut *pool.acquire().await?, workflow).await
}

/// Instances matching `filter`, oldest first.
pub async fn list(pool: &PgPool, filter: &InstanceFilter) -> Result<Vec<InstanceSummary>, OperationError> {
    if let Some(status) = &filter.status {
        if !["running", "completed", "failed", "parked"].contains(&status.as_str()) {
            return Err(OperationError::UnknownStatus(status.clone()));
        }
    }
    let mut found = Vec::new();
    for spec in workflows(filter.workflow.as_deref())? {
        let Some(schema) = active_schema(pool, spec.name).await? else { continue };
        let rows: Vec<InstanceSummary> = sqlx::query_as(&format!(
            "SELECT instance_id, status, waiting_for, started_at, updated_at, last_error FROM {schema}.instances
              WHERE ($1::text IS NULL OR status = $1)
                AND ($2::float8 IS NULL OR started_at < now() - make_interval(secs => $2))
              ORDER BY started_at, instance_id LIMIT $3"
        ))
        .bind(&filter.status)
        .bind(filter.older_than.map(|d| d.as_secs_f64()))
        .bind(filter.limit)
        .fetch_all(pool)
        .await?;
        found.extend(rows.into_iter().map(|r| InstanceSummary { workflow: spec.name.to_string(), ..r }));
    }
    found.sort_by(|a, b| (a.started_at, &a.instance_id).cmp(&(b.started_at, &b.instance_id)));
    found.truncate(usize::try_from(filter.limit).unwrap_or(0));
    Ok(found)
}

/// One instance in full (of `workflow`, or of whichever workflow has it).
pub async fn show(pool: &PgPool, workflow: Option<&str>, instance_id: &str) -> Result<InstanceDetail, OperationError> {
    for spec in workflows(workflow)? {
        let Some(schema) = active_schema(pool, spec.name).await? else { continue };
        let row: Option<InstanceRow> = sqlx::query_as(&format!(
            "SELECT instance_id, status, waiting_for, started_at, updated_at, last_error, state, correlation_id,
                    fired_timers
               FROM {schema}.instances WHERE instance_id = $1"
        ))
        .bind(instance_id)
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
        .bind(spec.name)
        .bind(instance_id)
        .fetch_all(pool)
        .await?;
        return Ok(InstanceDetail {
            summary: InstanceSummary { workflow: spec.name.to_string(), ..row.summary },
            state: row.state,
            correlation_id: row.correlation_id,
            timers,
            fired_timers: serde_json::from_value(row.fired_timers).unwrap_or_default(),
            steps,
        });
    }
    Err(OperationError::NoSuchInstance(instance_id.to_string()))
}

/// Runs the instance's parked steps again (their cause fixed); returns how many.
pub async fn retry(pool: &PgPool, workflow: Option<&str>, instance_id: &str) -> Result<u64, OperationError> {
    resolve_parked(pool, workflow, instance_id, "pending").await
}

/// Gives up on the instance's parked steps: they never run; its later steps go on.
pub async fn discard(pool: &PgPool, workflow: Option<&str>, instance_id: &str) -> Result<u64, OperationError> {
    resolve_parked(pool, workflow, instance_id, "discarded").await
}

async fn resolve_parked(
    pool: &PgPool,
    workflow: Option<&str>,
    instance_id: &str,
    to: &str,
) -> Result<u64, OperationError> {
    let workflow = show(pool, workflow, instance_id).await?.summary.workflow;
    let Some(schema) = active_schema(pool, &workflow).await? else {
        return Err(OperationError::NoSuchInstance(instance_id.to_string()));
    };
    let mut tx = pool.begin().await?;
    let changed = sqlx::query(
        "UPDATE workflow_outbox
            SET status = $3, attempts = CASE WHEN $3 = 'pending' THEN 0 ELSE attempts END,
                next_attempt_at = now(), completed_at = CASE WHEN $3 = 'discarded' THEN now() END
          WHERE workflow = $1 AND instance_id = $2 AND status = 'parked'",
    )
    .bind(&workflow)
    .bind(instance_id)
    .bind(to)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    // Running again: its next batch or step records what it is then.
    sqlx::query(&format!(
        "UPDATE {schema}.instances SET status = 'running', last_error = NULL, updated_at = now()
          WHERE instance_id = $1 AND status = 'parked'"
    ))
    .bind(instance_id)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(changed)
}
