//! PostgreSQL pool gauges, read at scrape time: connections in use, idle, and the
//! configured maximum.

use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeMetric},
    metrics::gauge::ConstGauge,
};
use sqlx::PgPool;

use crate::metric_names as names;

#[derive(Debug)]
pub struct PoolCollector {
    pool: PgPool,
}

impl PoolCollector {
    /// Register with `registry.register_collector(Box::new(PoolCollector::new(pool)))`.
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }
}

impl Collector for PoolCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let size = i64::from(self.pool.size());
        let idle = i64::try_from(self.pool.num_idle()).unwrap_or(i64::MAX);
        let max = i64::from(self.pool.options().get_max_connections());
        for (name, help, value) in [
            (names::DB_POOL_IN_USE, "Pooled PostgreSQL connections in use", size - idle),
            (names::DB_POOL_IDLE, "Pooled PostgreSQL connections idle", idle),
            (names::DB_POOL_MAX, "Most PostgreSQL connections the pool opens", max),
        ] {
            let gauge = ConstGauge::new(value);
            let metric = encoder.encode_descriptor(name, help, None, gauge.metric_type())?;
            gauge.encode(metric)?;
        }
        Ok(())
    }
}
