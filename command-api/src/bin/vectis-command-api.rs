//! The command API process.
use anyhow::Context;
use vectis_command_api::process::{CommandApi, CommandApiSettings};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings = CommandApiSettings::from_env().context("reading settings")?;
    vectis_runtime::telemetry::init_tracing(settings.store.environment, "info")?;
    let shutdown = vectis_runtime::Shutdown::new();
    shutdown.trigger_on_signals();
    let api = CommandApi::build(settings, shutdown).await?;
    tracing::info!(addr = %api.addr(), "command API listening: /v1/…, /metrics, /health, /ready");
    api.run_until_stopped().await
}
