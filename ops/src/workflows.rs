//! `vectis workflows`: the process managers' instances for operators. Each subcommand
//! is one call into `vectis_workflows::operations`; this module only parses and prints.

use std::{process::ExitCode, time::Duration};

use clap::Subcommand;
use sqlx::PgPool;
use vectis_workflows::operations::{self, InstanceFilter};

#[derive(Debug, Subcommand)]
pub enum WorkflowsCommand {
    /// Instances, oldest first: workflow, id, status, age, what each waits for.
    List {
        /// Only this workflow type (order_lifecycle).
        #[arg(long = "type")]
        workflow: Option<String>,
        /// running, completed, failed or parked.
        #[arg(long)]
        state: Option<String>,
        /// Only those started longer ago than this, e.g. `15m`, `2h`, `3d`.
        #[arg(long, value_parser = humantime::parse_duration)]
        older_than: Option<Duration>,
        #[arg(long, default_value_t = 100)]
        limit: i64,
    },
    /// One instance: its state, steps with their outcomes, pending timers, last error.
    Show {
        id: String,
        #[arg(long = "type")]
        workflow: Option<String>,
    },
    /// Run an instance's parked steps again, once their cause is fixed.
    Retry {
        id: String,
        #[arg(long = "type")]
        workflow: Option<String>,
    },
    /// Give up on an instance's parked steps: they never run; its later steps go on.
    Discard {
        id: String,
        #[arg(long = "type")]
        workflow: Option<String>,
    },
}

pub async fn workflows(pool: &PgPool, command: WorkflowsCommand) -> anyhow::Result<ExitCode> {
    match command {
        WorkflowsCommand::List { workflow, state, older_than, limit } => {
            anyhow::ensure!((1..=10_000).contains(&limit), "--limit must be 1 to 10000");
            let filter = InstanceFilter { workflow, status: state, older_than, limit };
            let instances = operations::list(pool, &filter).await?;
            println!("WORKFLOW\tINSTANCE\tSTATUS\tAGE\tWAITING FOR");
            let now = chrono::Utc::now();
            for instance in &instances {
                let age = (now - instance.started_at).to_std().unwrap_or_default();
                let age = humantime::format_duration(Duration::from_secs(age.as_secs()));
                println!(
                    "{}\t{}\t{}\t{age}\t{}",
                    instance.workflow,
                    instance.instance_id,
                    instance.status.as_str(),
                    instance.waiting_for
                );
            }
            eprintln!("{} instances", instances.len());
        }
        WorkflowsCommand::Show { id, workflow } => {
            let detail = operations::show(pool, workflow.as_deref(), &id).await?;
            let summary = &detail.summary;
            println!("{} {}: {}", summary.workflow, summary.instance_id, summary.status.as_str());
            println!("waiting for: {}", summary.waiting_for);
            println!("started {}, updated {}", summary.started_at.to_rfc3339(), summary.updated_at.to_rfc3339());
            println!("correlation {}", detail.correlation_id);
            if let Some(error) = &summary.last_error {
                println!("last error: {error}");
            }
            println!("steps:");
            for step in &detail.steps {
                let outcome = step.outcome.as_ref().map(|o| o.to_string()).unwrap_or_default();
                println!(
                    "  #{} {} [{}] {} attempt(s), caused by {}: {}{}",
                    step.id,
                    step.step,
                    step.status,
                    step.attempts,
                    step.causation_id,
                    step.command,
                    if outcome.is_empty() { String::new() } else { format!(" → {outcome}") }
                );
                if let Some(error) = &step.last_error {
                    println!("      error: {error}");
                }
            }
            println!("pending timers:");
            for (name, due) in &detail.timers {
                println!("  {name} due {}", due.to_rfc3339());
            }
            if !detail.fired_timers.is_empty() {
                println!("fired timers: {}", detail.fired_timers.join(", "));
            }
            println!("state: {}", detail.state);
        }
        WorkflowsCommand::Retry { id, workflow } => {
            let steps = operations::retry(pool, workflow.as_deref(), &id).await?;
            println!("{steps} parked steps of {id} will run again");
        }
        WorkflowsCommand::Discard { id, workflow } => {
            let steps = operations::discard(pool, workflow.as_deref(), &id).await?;
            println!("{steps} parked steps of {id} discarded; its later steps go on");
        }
    }
    Ok(ExitCode::SUCCESS)
}
