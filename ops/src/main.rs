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
            // Each cause once: some libraries' messages already hold their source's.
            let mut message = String::new();
            for cause in error.chain().map(ToString::to_string) {
                if !message.contains(&cause) {
                    message.push_str(if message.is_empty() { "" } else { ": " });
                    message.push_str(&cause);
                }
            }
            eprintln!("error: {message}");
            std::process::ExitCode::FAILURE
        }
    }
}
