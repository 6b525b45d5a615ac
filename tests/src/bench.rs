//! What the benchmark binaries share: a database of their own, percentiles.

use std::time::Duration;

use anyhow::Context;
use sqlx::{postgres::PgPoolOptions, Executor, PgPool};
use uuid::Uuid;
use vectis_event_store::MIGRATOR;

use crate::database_url;

/// Operations done, how long they took in all, and each one's latency.
pub struct Figures {
    pub operations: usize,
    pub elapsed: Duration,
    pub latencies: Vec<Duration>,
}

impl Figures {
    /// Sorts `latencies` for the percentiles.
    pub fn new(operations: usize, elapsed: Duration, mut latencies: Vec<Duration>) -> Self {
        latencies.sort_unstable();
        Self { operations, elapsed, latencies }
    }

    pub fn per_second(&self) -> f64 {
        self.operations as f64 / self.elapsed.as_secs_f64()
    }

    pub fn percentile_ms(&self, p: f64) -> f64 {
        if self.latencies.is_empty() {
            return 0.0;
        }
        let index = ((self.latencies.len() as f64 - 1.0) * p).round() as usize;
        self.latencies[index].as_secs_f64() * 1000.0
    }
}

/// A migrated database of its own, next to DATABASE_URL's; drop it with
/// [`drop_database`].
pub async fn create_database(max_connections: u32) -> anyhow::Result<(PgPool, String)> {
    let url = std::env::var("DATABASE_URL").context("DATABASE_URL")?;
    let admin = PgPoolOptions::new().max_connections(1).connect(&url).await?;
    let name = format!("vectis_bench_{}", Uuid::new_v4().simple());
    admin.execute(format!("CREATE DATABASE {name}").as_str()).await?;
    let pool = PgPoolOptions::new().max_connections(max_connections).connect(&database_url(&name)?).await?;
    MIGRATOR.run(&pool).await?;
    Ok((pool, name))
}

pub async fn drop_database(name: &str) -> anyhow::Result<()> {
    let url = std::env::var("DATABASE_URL").context("DATABASE_URL")?;
    let admin = PgPoolOptions::new().max_connections(1).connect(&url).await?;
    admin.execute(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)").as_str()).await?;
    Ok(())
}

/// `name` as a whole number from the environment, or `default`.
pub fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|s| s.parse().ok()).unwrap_or(default)
}
