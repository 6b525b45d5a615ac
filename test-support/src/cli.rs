//! Running a project binary (the `vectis` CLI) as an operator would, against a test's
//! own database and topics.

use std::{ffi::OsStr, process::Command};

use sqlx::PgPool;
use vectis_event_store::kafka::KafkaSettings;

use crate::database_url;

pub struct CliOutput {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `bin <args>` with the test's database and topics, plus `env` (off the test's
/// runtime thread, so projector tasks keep running meanwhile). Search is the embedded
/// engine unless `env` says otherwise.
pub async fn run(bin: &str, pool: &PgPool, kafka: &KafkaSettings, env: &[(&str, &OsStr)], args: &[&str]) -> CliOutput {
    let database: String = sqlx::query_scalar("SELECT current_database()").fetch_one(pool).await.expect("name");
    let mut command = Command::new(bin);
    command
        .args(args)
        .env("DATABASE_URL", database_url(&database).expect("DATABASE_URL"))
        .env("KAFKA_BROKERS", &kafka.brokers)
        .env("VECTIS_TOPIC_PREFIX", kafka.naming.prefix())
        .env_remove("MEILI_URL")
        .env("LOG_LEVEL", "warn")
        .envs(env.iter().copied());
    let output = tokio::task::spawn_blocking(move || command.output()).await.expect("joined").expect("runs");
    CliOutput {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}
