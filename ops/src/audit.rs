//! The operator-actions trail: every action an operator takes on the log or its
//! consumers is recorded when it starts (who, what, on what, why) and completed with
//! its outcome; `vectis audit list` prints it.

use std::process::ExitCode;

use anyhow::Context;
use chrono::{DateTime, Utc};
use clap::Subcommand;
use serde_json::Value;
use sqlx::PgPool;

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Operator actions, newest first: when, who, what, on what, why, and the outcome.
    List {
        #[arg(long, default_value_t = 50)]
        limit: i64,
        /// Only this action (`events.republish`, `projections.reset`).
        #[arg(long)]
        action: Option<String>,
        /// One JSON object per line, details included.
        #[arg(long)]
        json: bool,
    },
}

/// Who runs the CLI: `cli:<os user>`.
pub fn cli_actor() -> String {
    let user = std::env::var("USER").or_else(|_| std::env::var("LOGNAME")).unwrap_or_else(|_| "unknown".into());
    format!("cli:{user}")
}

/// An action on record, started; [`Recorded::finish`] completes it.
#[must_use = "finish the record with the action's outcome"]
pub struct Recorded {
    id: i64,
}

/// Records that `actor` starts `action` on `target` because of `reason`.
pub async fn record(
    pool: &PgPool,
    actor: &str,
    action: &str,
    target: &str,
    details: &Value,
    reason: &str,
) -> anyhow::Result<Recorded> {
    anyhow::ensure!(!reason.trim().is_empty(), "--reason must say why (it goes on record with the action)");
    let id = sqlx::query_scalar(
        "INSERT INTO operator_actions (actor, action, target, details, reason)
         VALUES ($1, $2, $3, $4, $5) RETURNING action_id",
    )
    .bind(actor)
    .bind(action)
    .bind(target)
    .bind(details)
    .bind(reason.trim())
    .fetch_one(pool)
    .await
    .context("recording the action in operator_actions")?;
    Ok(Recorded { id })
}

impl Recorded {
    /// Completes the record: `done` with what came of it, or `failed: <error>`.
    pub async fn finish<T>(
        self,
        pool: &PgPool,
        outcome: &anyhow::Result<T>,
        details: Option<&Value>,
    ) -> anyhow::Result<()> {
        let outcome = match outcome {
            Ok(_) => "done".to_string(),
            Err(error) => format!("failed: {error:#}"),
        };
        sqlx::query(
            "UPDATE operator_actions
                SET outcome = $2, finished_at = now(), details = details || coalesce($3, '{}'::jsonb)
              WHERE action_id = $1",
        )
        .bind(self.id)
        .bind(outcome)
        .bind(details)
        .execute(pool)
        .await
        .context("completing the action's record")?;
        Ok(())
    }
}

#[derive(Debug, sqlx::FromRow, serde::Serialize)]
pub struct ActionRow {
    pub action_id: i64,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    pub actor: String,
    pub action: String,
    pub target: String,
    pub details: Value,
    pub reason: String,
    pub outcome: String,
}

pub async fn list(pool: &PgPool, limit: i64, action: Option<&str>) -> anyhow::Result<Vec<ActionRow>> {
    Ok(sqlx::query_as(
        "SELECT action_id, started_at, finished_at, actor, action, target, details, reason, outcome
           FROM operator_actions WHERE $2::text IS NULL OR action = $2
          ORDER BY action_id DESC LIMIT $1",
    )
    .bind(limit)
    .bind(action)
    .fetch_all(pool)
    .await?)
}

pub async fn audit(pool: &PgPool, command: AuditCommand) -> anyhow::Result<ExitCode> {
    let AuditCommand::List { limit, action, json } = command;
    anyhow::ensure!((1..=10_000).contains(&limit), "--limit must be 1 to 10000");
    let rows = list(pool, limit, action.as_deref()).await?;
    if json {
        for row in &rows {
            println!("{}", serde_json::to_string(row)?);
        }
        return Ok(ExitCode::SUCCESS);
    }
    println!("id\tstarted\tactor\taction\ttarget\toutcome\treason");
    for row in &rows {
        println!(
            "{}\t{}\t{}\t{}\t{}\t{}\t{}",
            row.action_id,
            row.started_at.format("%Y-%m-%d %H:%M:%S"),
            row.actor,
            row.action,
            row.target,
            row.outcome,
            row.reason
        );
    }
    Ok(ExitCode::SUCCESS)
}
