//! `vectis`: the operator CLI.
use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = vectis_ops::cli::Cli::parse();
    if let Err(e) = vectis_runtime::telemetry::init_tracing(
        vectis_runtime::Environment::from_env().unwrap_or(vectis_runtime::Environment::Development),
        "warn",
    ) {
        eprintln!("{e:#}");
    }
    match vectis_ops::cli::run(cli).await {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
