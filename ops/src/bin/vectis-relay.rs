//! The relay process: copies committed events from PostgreSQL to the broker.
use anyhow::Context;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings = vectis_ops::relay_process::RelayProcessSettings::from_env().context("reading settings")?;
    vectis_runtime::telemetry::init_tracing(settings.store.environment, "info")?;
    let shutdown = vectis_runtime::Shutdown::new();
    shutdown.trigger_on_signals();
    let relay = vectis_ops::relay_process::RelayProcess::build(settings, shutdown.clone()).await?;
    tracing::info!(ops = %relay.ops_addr(), "relay process started: /metrics, /health, /ready");
    relay.run_until_stopped().await
}
