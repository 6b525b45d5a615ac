//! Readiness checks every process that uses the event store shares.

use std::time::Duration;

use vectis_runtime::ReadinessCheck;

use crate::kafka::{self, KafkaSettings};

/// PostgreSQL and the broker, checked in parallel, each with a timeout.
pub fn checks(pool: &sqlx::PgPool, kafka_settings: &KafkaSettings) -> Vec<ReadinessCheck> {
    let pool = pool.clone();
    let kafka_settings = kafka_settings.clone();
    vec![
        vectis_runtime::database::readiness_check(&pool),
        ReadinessCheck::new("broker", Duration::from_secs(3), move || {
            let kafka_settings = kafka_settings.clone();
            async move { kafka::broker_reachable(&kafka_settings, Duration::from_secs(2)).await }
        }),
    ]
}
