//! Structured logs with `tracing`, to stdout. Level from `LOG_LEVEL` (default `info`;
//! any `EnvFilter` directive such as `info,vectis_event_store=debug` works); JSON in
//! production, human-readable elsewhere.

use tracing_subscriber::{fmt, EnvFilter};

use crate::{settings::env_or, Environment};

/// Installs the global subscriber. Call once, first thing in `main`. Services pass
/// `info` as `default_level`; command-line tools pass `warn` so logs do not drown
/// their output.
pub fn init_tracing(environment: Environment, default_level: &str) -> anyhow::Result<()> {
    let filter = EnvFilter::try_new(env_or("LOG_LEVEL", default_level))
        .map_err(|e| anyhow::anyhow!("LOG_LEVEL is not a valid filter: {e}"))?;
    // Colour only for a person at a terminal, never into files or log collectors.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let builder = fmt().with_env_filter(filter).with_target(true).with_ansi(ansi);
    let result = if environment == Environment::Production {
        builder.json().flatten_event(true).try_init()
    } else {
        builder.try_init()
    };
    result.map_err(|e| anyhow::anyhow!("tracing was already initialised: {e}"))
}
