//! The PostgreSQL pool every process opens, from the environment, and its readiness
//! check. Each default is documented in the README.

use std::time::Duration;

use sqlx::{postgres::PgPoolOptions, PgPool, Postgres, Transaction};

use crate::{env_duration, env_or, env_parse, ReadinessCheck, Secret, SettingsError};

pub const DEFAULT_DATABASE_URL: &str = "postgres://vectis:vectis@127.0.0.1:5432/vectis";

#[derive(Debug, Clone)]
pub struct DatabaseSettings {
    /// `DATABASE_URL`.
    pub url: Secret<String>,
    /// `DB_MAX_CONNECTIONS` (default 10).
    pub max_connections: u32,
    /// `DB_ACQUIRE_TIMEOUT` (default 5s).
    pub acquire_timeout: Duration,
}

impl DatabaseSettings {
    pub fn from_env() -> Result<Self, SettingsError> {
        Ok(Self {
            url: Secret::new(env_or("DATABASE_URL", DEFAULT_DATABASE_URL)),
            max_connections: env_parse("DB_MAX_CONNECTIONS", 10)?,
            acquire_timeout: env_duration("DB_ACQUIRE_TIMEOUT", Duration::from_secs(5))?,
        })
    }

    /// A connection pool. Connects lazily, so a process can start (and report not
    /// ready) while PostgreSQL is still coming up.
    pub fn pool(&self) -> Result<PgPool, sqlx::Error> {
        PgPoolOptions::new()
            .max_connections(self.max_connections)
            .acquire_timeout(self.acquire_timeout)
            .connect_lazy(self.url.expose())
    }
}

/// `/ready`'s check of PostgreSQL: one `SELECT 1` within 2 s.
pub fn readiness_check(pool: &PgPool) -> ReadinessCheck {
    let pool = pool.clone();
    ReadinessCheck::new("postgres", Duration::from_secs(2), move || {
        let pool = pool.clone();
        async move { sqlx::query("SELECT 1").execute(&pool).await.map(|_| ()).map_err(|e| e.to_string()) }
    })
}

/// `pool.begin()`, safe to cancel. sqlx 0.8.6 leaves a session inside a transaction it
/// will never roll back when the future is dropped while `BEGIN` is unanswered, and the
/// pool hands that session to the next borrower, whose writes then commit with nothing
/// (transact-rs/sqlx#4393). A caller is dropped when its client hangs up or its task
/// is aborted; so the `BEGIN` runs on a task of its own, which always finishes: a
/// transaction nobody is left to receive is dropped there, after `BEGIN` was answered,
/// and is rolled back as any dropped transaction is.
pub async fn begin(pool: &PgPool) -> Result<Transaction<'static, Postgres>, sqlx::Error> {
    let pool = pool.clone();
    #[allow(clippy::disallowed_methods)] // the one place that may, on a task of its own
    let beginning = tokio::spawn(async move { pool.begin().await });
    // The task only fails to finish when the runtime shuts down.
    beginning.await.map_err(|_| sqlx::Error::PoolClosed)?
}
