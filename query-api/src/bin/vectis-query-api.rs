//! The query API process: GraphQL on `QUERY_API_ADDR` (default :8000).
use anyhow::Context;
use vectis_query_api::process::{QueryApi, QueryApiSettings};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings = QueryApiSettings::from_env().context("reading settings")?;
    vectis_runtime::telemetry::init_tracing(settings.environment, "info")?;
    let shutdown = vectis_runtime::Shutdown::new();
    shutdown.trigger_on_signals();
    let api = QueryApi::build(settings, shutdown).await?;
    tracing::info!(addr = %api.addr(), "query API listening: /graphql, /metrics, /health, /ready");
    api.run_until_stopped().await
}
