//! What operators do with workflows (`vectis workflows …`): list instances by type,
//! status and age and show one with its steps, their outcomes and its pending timers
//! (reads of the read-side contract, which GraphQL shares); retry or discard an
//! instance's parked steps.

use sqlx::PgPool;

pub use vectis_read_side::workflows::{
    list, show, InstanceDetail, InstanceFilter, InstanceSummary, StepRecord, WorkflowReadError as OperationError,
};

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
    let summary = show(pool, workflow, instance_id).await?.summary;
    let (workflow, instance_id) = (summary.workflow, summary.instance_id.as_str());
    let Some(schema) = vectis_read_side::workflows::active_schema(pool, &workflow).await? else {
        return Err(OperationError::NoSuchInstance(instance_id.to_string()));
    };
    let mut tx = vectis_runtime::database::begin(pool).await?;
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
