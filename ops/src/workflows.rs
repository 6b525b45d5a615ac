//! `vectis workflows`: the process managers' instances for operators. Each subcommand
//! is one call into `vectis_workflows::operations`; this module only parses and prints.

use std::{process::ExitCode, sync::Arc, time::Duration};

use clap::Subcommand;
use futures::future::BoxFuture;
use sqlx::PgConnection;
use vectis_consumer::{
    event::ProjectedEvent,
    handler::{ApplyError, Handler},
};
use vectis_event_store::settings::StoreSettings;
use vectis_projectors::projection::Projection;
use vectis_read_side::ProjectionSpec;
use vectis_workflows::{
    instances,
    operations::{self, InstanceFilter, OperationError},
    process::{rebuild_handler, WorkflowsSettings},
};

use crate::read_side;

#[derive(Debug, Subcommand)]
pub enum WorkflowsCommand {
    /// Instances, oldest first: workflow, id, status, age, what each waits for.
    List {
        /// Only this workflow type (order_lifecycle, order_approval, account_approval,
        /// reservation_expiry, recurring_order).
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
        /// An instance id (an order id), or `<workflow>/<instance>`.
        id: String,
        #[arg(long = "type")]
        workflow: Option<String>,
    },
    /// Run an instance's parked steps again, once their cause is fixed.
    Retry {
        /// An instance id (an order id), or `<workflow>/<instance>`.
        id: String,
        #[arg(long = "type")]
        workflow: Option<String>,
    },
    /// Give up on an instance's parked steps: they never run; its later steps go on.
    Discard {
        /// An instance id (an order id), or `<workflow>/<instance>`.
        id: String,
        #[arg(long = "type")]
        workflow: Option<String>,
    },
    /// Rebuild a workflow's state blue/green from the earliest offset, as projections
    /// are: the new version replays the log and decides nothing, fires nothing; once it
    /// has caught up with the active version, it becomes the one that acts. Uses the
    /// workflows' settings from the environment (`RESERVATION_TTL`, the approval timeouts).
    Rebuild {
        /// order_lifecycle, order_approval, account_approval, reservation_expiry or recurring_order.
        name: String,
        #[command(flatten)]
        options: read_side::RebuildOptions,
    },
}

/// A workflow's state as the rebuild machinery sees a projection: its handler, its
/// tables (instances, timers) and their views.
struct WorkflowState {
    handler: Arc<dyn Handler>,
    views: &'static str,
}

impl Handler for WorkflowState {
    fn spec(&self) -> &'static ProjectionSpec {
        self.handler.spec()
    }

    fn apply<'a>(
        &'a self,
        conn: &'a mut PgConnection,
        schema: &'a str,
        events: &'a [ProjectedEvent],
    ) -> BoxFuture<'a, Result<(), ApplyError>> {
        self.handler.apply(conn, schema, events)
    }
}

impl Projection for WorkflowState {
    fn tables_ddl(&self) -> &'static str {
        instances::TABLES_DDL
    }

    fn tables(&self) -> &'static [&'static str] {
        instances::TABLES
    }

    fn view_prefix(&self) -> &'static str {
        self.views
    }
}

pub async fn workflows(settings: StoreSettings, command: WorkflowsCommand) -> anyhow::Result<ExitCode> {
    let pool = &settings.pool()?;
    match command {
        WorkflowsCommand::Rebuild { name, options } => {
            let workflow_settings = WorkflowsSettings::from_env()?;
            let Some((handler, views)) = rebuild_handler(&name, &workflow_settings) else {
                anyhow::bail!("{}", OperationError::UnknownWorkflow(name));
            };
            let state = Arc::new(WorkflowState { handler, views });
            return read_side::rebuild_to_the_end(pool, &settings, state, &options).await;
        }
        WorkflowsCommand::List { workflow, state, older_than, limit } => {
            anyhow::ensure!((1..=10_000).contains(&limit), "--limit must be 1 to 10000");
            let status = state.map(|word| word.parse()).transpose()?;
            let started_before = older_than
                .map(|age| chrono::Duration::from_std(age).map(|age| chrono::Utc::now() - age))
                .transpose()
                .map_err(|_| anyhow::anyhow!("--older-than is too long"))?;
            let filter = InstanceFilter { workflow, status, started_before, limit, after: None };
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
