//! Projectors started inside a test, and waiting until they caught up with the log.

use std::{sync::Arc, time::Duration};

use sqlx::PgPool;
use vectis_event_store::kafka::KafkaSettings;

/// Installs `projection` (first time) and starts its projector at the active version,
/// with batches of at most 500 records.
pub async fn start_projector(
    pool: &PgPool,
    kafka: &KafkaSettings,
    projection: Arc<dyn vectis_projectors::projection::Projection>,
    metrics: &vectis_consumer::metrics::ConsumerMetrics,
) -> vectis_consumer::runtime::RunningConsumer {
    use vectis_consumer::{runtime::GroupConsumer, settings::ConsumerSettings};
    let version = vectis_projectors::store::install(pool, projection.as_ref()).await.expect("install");
    let mut settings = ConsumerSettings::new(kafka.clone());
    settings.max_batch = 500;
    GroupConsumer::new(pool.clone(), projection, version, settings, metrics.clone()).start().expect("projector starts")
}

/// Waits until the relay has published every committed event and each of
/// `projections` (at version 1) has applied all of them: waiting for one row or
/// document would not do, as others may be on other partitions and later events of a
/// stream may not be applied yet.
pub async fn until_caught_up(
    pool: &PgPool,
    kafka: &KafkaSettings,
    projections: &[Arc<dyn vectis_projectors::projection::Projection>],
) {
    let probe = vectis_consumer::lag::LagProbe::new(kafka).expect("lag probe");
    crate::eventually(Duration::from_secs(60), "the relay and the projections to catch up", || async {
        let (last, relayed): (i64, i64) = sqlx::query_as(
            "SELECT (SELECT coalesce(max(global_position), 0) FROM events),
                    (SELECT coalesce(max(global_position), 0) FROM relay_cursors)",
        )
        .fetch_one(pool)
        .await
        .map_err(|e| e.to_string())?;
        let mut behind = Vec::new();
        if relayed < last {
            behind.push(format!("relay at {relayed} of {last}"));
        }
        for projection in projections {
            let target = vectis_read_side::Target { projection: projection.name(), version: 1 };
            let lag = probe.measure(pool, &target, projection.topics()).await.map_err(|e| e.to_string())?;
            if lag.events() > 0 {
                behind.push(format!("{} {} events behind", projection.name(), lag.events()));
            }
        }
        if behind.is_empty() {
            Ok(())
        } else {
            Err(behind.join(", "))
        }
    })
    .await
}
