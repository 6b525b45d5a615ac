//! The workflows process: runs the platform's business processes.
use anyhow::Context;
use vectis_workflows::process::{WorkflowsProcess, WorkflowsSettings};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings = WorkflowsSettings::from_env().context("reading settings")?;
    vectis_runtime::telemetry::init_tracing(settings.store.environment, "info")?;
    let shutdown = vectis_runtime::Shutdown::new();
    shutdown.trigger_on_signals();
    let process = WorkflowsProcess::build(settings, shutdown).await?;
    tracing::info!(ops = %process.ops_addr(), "workflows started: /metrics, /health, /ready");
    process.run_until_stopped().await
}
