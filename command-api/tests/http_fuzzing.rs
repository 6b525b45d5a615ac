//! The property-based test of the command API: schemathesis (PyPI, pinned and installed
//! by `scripts/test`) reads the served OpenAPI document, generates requests from it,
//! valid and invalid, and follows its links from one call to the next (create an
//! account, approve it, place an order). Every check runs: no 5xx, every answer
//! documented with its content type and schema, data the document allows is accepted
//! and data it forbids refused, and the project's own check in
//! `tests/schemathesis/hooks.py`: a request the document allows is never refused for
//! a field rule the document does not state. A failure prints its reproduction (a
//! curl command and `st replay <id>`).

use std::{net::SocketAddr, path::Path, time::Duration};

use sqlx::PgPool;
use vectis_command_api::process::{CommandApi, CommandApiSettings};
use vectis_runtime::{
    auth::{ApiKeys, Scope},
    Shutdown,
};

/// Fixed, so a run is repeatable; `SCHEMATHESIS_SEED` explores other inputs.
const SEED: &str = "20261204";
const DEADLINE: Duration = Duration::from_secs(600);

fn schemathesis() -> String {
    std::env::var("SCHEMATHESIS").unwrap_or_else(|_| "st".into())
}

#[sqlx::test(migrator = "vectis_event_store::MIGRATOR")]
async fn generated_requests_find_the_document_and_the_server_in_agreement(pool: PgPool) {
    let (_, key) = ApiKeys::new(pool.clone()).create("schemathesis", &[Scope::Admin]).await.expect("a key");
    let mut settings = CommandApiSettings::from_env().expect("settings");
    settings.addr = SocketAddr::from(([127, 0, 0, 1], 0));
    let shutdown = Shutdown::new();
    let api = CommandApi::build_with_pool(settings, pool, shutdown.clone()).await.expect("builds");
    let base = format!("http://{}", api.addr());
    tokio::spawn(api.run_until_stopped());

    let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/schemathesis");
    let seed = std::env::var("SCHEMATHESIS_SEED").unwrap_or_else(|_| SEED.into());
    let authorization = format!("Authorization: Bearer {key}");
    let run = tokio::process::Command::new(schemathesis())
        .current_dir(&config)
        .env("SCHEMATHESIS_HOOKS", "hooks")
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .args(["run", &format!("{base}/openapi.json"), "-H", &authorization])
        // How many examples each phase generates is set in schemathesis.toml there.
        .args(["--checks", "all", "--seed", &seed])
        .args(["--generation-database", "none", "--no-color"])
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(DEADLINE, run)
        .await
        .unwrap_or_else(|_| panic!("schemathesis ran past {DEADLINE:?}"))
        .unwrap_or_else(|e| panic!("cannot run {} ({e}): run scripts/test, which installs it", schemathesis()));
    shutdown.trigger();
    let report = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "schemathesis found failures (seed {seed}):\n{report}");
    // The report's figures, for `--no-capture` runs.
    eprintln!("{report}");
    // Every phase ran, the stateful one following the document's links.
    for phase in ["Examples", "Coverage", "Fuzzing", "Stateful"] {
        assert!(report.contains(&format!("✅  {phase} (in")), "the {phase} phase did not pass:\n{report}");
    }
    let covered = report
        .lines()
        .find_map(|line| line.trim().strip_prefix("API Links:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse::<u32>().ok())
        .unwrap_or_else(|| panic!("no link coverage in the report:\n{report}"));
    assert!(covered >= 5, "the stateful phase followed only {covered} links:\n{report}");
}
