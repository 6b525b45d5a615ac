//! The projectors process: builds the PostgreSQL read models from the topics.
use anyhow::Context;
use vectis_projectors::process::{ProjectorsProcess, ProjectorsSettings};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings = ProjectorsSettings::from_env().context("reading settings")?;
    vectis_runtime::telemetry::init_tracing(settings.store.environment, "info")?;
    let shutdown = vectis_runtime::Shutdown::new();
    shutdown.trigger_on_signals();
    let process = ProjectorsProcess::build(settings, shutdown).await?;
    tracing::info!(ops = %process.ops_addr(), "projectors started: /metrics, /health, /ready");
    process.run_until_stopped().await
}
