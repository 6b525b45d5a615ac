//! Blue/green rebuild of a projection (DESIGN.md, "Projectors"): a new version of its
//! tables is built from the earliest offset by a consumer group of its own, under its
//! own checkpoints, while the active version keeps serving and updating. Once the new
//! version has applied at least everything the active one has, one transaction points
//! the `read` views at it and makes it active; the old version's projectors notice on
//! their next batch (or idle check) and move over, its tables are dropped and its
//! consumer group deleted.
//!
//! The state lives in `projections.building_version`, so a rebuild that is interrupted
//! resumes where its checkpoints stopped when run again.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use rdkafka::{
    admin::{AdminClient, AdminOptions},
    client::DefaultClientContext,
    types::RDKafkaErrorCode,
};
use sqlx::PgPool;
use vectis_event_store::kafka::KafkaSettings;
use vectis_read_side::Target;

use vectis_consumer::{
    checkpoints::{self, RowLock},
    lag::{LagError, LagProbe, ProjectionLag},
    metrics::ConsumerMetrics,
    runtime::GroupConsumer,
    settings::{group_id, ConsumerSettings, DEFAULT_IDLE_RETIREMENT_CHECK},
};

use crate::{projection::Projection, store};

#[derive(Debug, thiserror::Error)]
pub enum RebuildError {
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    #[error("measuring progress: {0}")]
    Lag(#[from] LagError),
    #[error("starting the rebuild's consumer: {0}")]
    Consumer(#[from] rdkafka::error::KafkaError),
    #[error("the rebuild's projector failed: {0}")]
    Projector(#[from] anyhow::Error),
    #[error("interrupted; run the rebuild again to resume version {0}")]
    Interrupted(i32),
}

/// Where a rebuild is.
#[derive(Debug, Clone)]
pub struct Progress {
    pub target: Target,
    /// Events applied (or skipped) by the new version so far.
    pub events_done: i64,
    /// Events still to go, up to the current high watermarks.
    pub events_left: i64,
    /// Rate over the last measurement interval.
    pub events_per_second: f64,
    pub eta: Option<Duration>,
    pub lag: ProjectionLag,
}

/// Starts version `active + 1` (or the highest version built so far, plus one) of
/// `projection`, or resumes the one already being built. Returns it.
pub async fn begin(pool: &PgPool, projection: &dyn Projection) -> Result<Target, sqlx::Error> {
    store::install(pool, projection).await?;
    let mut tx = vectis_runtime::database::begin(pool).await?;
    let state = vectis_read_side::state::state(&mut tx, projection.name()).await?.ok_or(sqlx::Error::RowNotFound)?;
    let version = match state.building_version {
        Some(version) => {
            tracing::info!(projection = projection.name(), version, "resuming the rebuild");
            version
        }
        None => {
            // Past every version that ever had checkpoints: a new version never starts
            // from a dropped one's leftovers.
            let highest: Option<i32> =
                sqlx::query_scalar("SELECT max(version) FROM projection_checkpoints WHERE projection = $1")
                    .bind(projection.name())
                    .fetch_one(&mut *tx)
                    .await?;
            let version = state.active_version.max(highest.unwrap_or(0)) + 1;
            sqlx::query(
                "UPDATE projections SET building_version = $2, building_started_at = now(), updated_at = now()
                  WHERE name = $1",
            )
            .bind(projection.name())
            .bind(version)
            .execute(&mut *tx)
            .await?;
            tracing::info!(projection = projection.name(), version, "rebuild started");
            version
        }
    };
    let target = Target { projection: projection.name(), version };
    store::create_tables(&mut tx, projection, &target).await?;
    tx.commit().await?;
    // A rebuild interrupted after its switch may have left the retired version behind.
    let leftovers: Vec<i32> = sqlx::query_scalar(
        "SELECT DISTINCT version FROM projection_checkpoints WHERE projection = $1 AND version NOT IN ($2, $3)",
    )
    .bind(projection.name())
    .bind(state.active_version)
    .bind(version)
    .fetch_all(pool)
    .await?;
    for version in leftovers {
        drop_version(pool, projection, &Target { projection: projection.name(), version }).await?;
    }
    Ok(target)
}

/// Makes `building` the active version if it has applied at least everything the
/// active version has, on every partition; returns the retired version. The row lock
/// waits for batches in flight and holds new ones until the switch commits, so the
/// comparison holds at the moment readers move.
pub async fn try_switch(
    pool: &PgPool,
    projection: &dyn Projection,
    building: &Target,
) -> Result<Option<i32>, sqlx::Error> {
    let mut tx = vectis_runtime::database::begin(pool).await?;
    if !checkpoints::lock_current(&mut tx, building, RowLock::Exclusive).await? {
        return Ok(None);
    }
    let state = vectis_read_side::state::state(&mut tx, projection.name()).await?.ok_or(sqlx::Error::RowNotFound)?;
    if state.building_version != Some(building.version) {
        return Ok(None);
    }
    let behind: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM projection_checkpoints active
           LEFT JOIN projection_checkpoints building
                  ON building.projection = active.projection AND building.version = $3
                 AND building.topic = active.topic AND building.partition = active.partition
          WHERE active.projection = $1 AND active.version = $2
            AND COALESCE(building.next_offset, -1) < active.next_offset",
    )
    .bind(projection.name())
    .bind(state.active_version)
    .bind(building.version)
    .fetch_one(&mut *tx)
    .await?;
    if behind > 0 {
        return Ok(None);
    }
    store::point_views(&mut tx, projection, building).await?;
    sqlx::query(
        "UPDATE projections SET active_version = $2, building_version = NULL, building_started_at = NULL,
                updated_at = now()
          WHERE name = $1",
    )
    .bind(projection.name())
    .bind(building.version)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    tracing::info!(
        projection = projection.name(),
        active = building.version,
        retired = state.active_version,
        "readers switched to the rebuilt version"
    );
    Ok(Some(state.active_version))
}

/// Drops a retired version: its tables, checkpoints and dead letters, and what it wrote
/// outside PostgreSQL (a search index). Its projectors stop touching it at their next
/// batch (they find it retired under the row lock).
pub async fn drop_version(pool: &PgPool, projection: &dyn Projection, retired: &Target) -> Result<(), sqlx::Error> {
    let mut tx = vectis_runtime::database::begin(pool).await?;
    if checkpoints::lock_current(&mut tx, retired, RowLock::Exclusive).await? {
        // Still in use: never drop what readers or a rebuild may need.
        return Ok(());
    }
    sqlx::query(&format!("DROP SCHEMA IF EXISTS {} CASCADE", retired.schema())).execute(&mut *tx).await?;
    for table in ["projection_checkpoints", "projection_dead_letters"] {
        sqlx::query(&format!("DELETE FROM {table} WHERE projection = $1 AND version = $2"))
            .bind(retired.projection)
            .bind(retired.version)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    if let Err(error) = projection.drop_version_outside(retired.version).await {
        // Nothing reads it any more; it only takes space until an operator removes it.
        tracing::warn!(projection = retired.projection, version = retired.version, %error, "cannot remove the retired version's search index");
    }
    Ok(())
}

/// Runs a rebuild to the end: builds (or resumes) the new version, reports progress
/// every `interval`, switches readers once caught up, drops the old version. Returns
/// the new active version. Stops with [`RebuildError::Interrupted`] (resumable) when
/// `interrupted` resolves first.
pub async fn run(
    pool: &PgPool,
    projection: Arc<dyn Projection>,
    settings: ConsumerSettings,
    interval: Duration,
    on_progress: impl FnMut(&Progress),
    interrupted: impl std::future::Future<Output = ()>,
) -> Result<i32, RebuildError> {
    let target = begin(pool, projection.as_ref()).await?;
    catch_up_and_switch(pool, projection, target, settings, interval, on_progress, interrupted).await
}

/// Runs the new version `target` from its checkpoints (the earliest offsets where it
/// has none) until it has caught up, then switches readers to it and drops the old
/// version; as [`run`] after [`begin`].
pub async fn catch_up_and_switch(
    pool: &PgPool,
    projection: Arc<dyn Projection>,
    target: Target,
    settings: ConsumerSettings,
    interval: Duration,
    mut on_progress: impl FnMut(&Progress),
    interrupted: impl std::future::Future<Output = ()>,
) -> Result<i32, RebuildError> {
    let probe = LagProbe::new(&settings.kafka)?;
    let kafka = settings.kafka.clone();
    // The rebuild's own metrics are not exported: its latencies are replay, not service.
    let projector =
        GroupConsumer::new(pool.clone(), projection.clone(), target.version, settings, ConsumerMetrics::default())
            .start()?;
    tokio::pin!(interrupted);
    let mut previous: Option<(i64, Instant)> = None;
    // Caught up means at least up to where the log ended when the rebuild started.
    let mut goal = None;
    let outcome = loop {
        let lag = probe.measure(pool, &target, projection.topics()).await?;
        // For readers of `projection_lag` only: a failure to store it must not stop the rebuild.
        if let Err(error) = lag.save(pool).await {
            tracing::warn!(projection = target.projection, version = target.version, %error, "cannot store the measured lag");
        }
        let goal = goal.get_or_insert_with(|| lag.high_watermarks());
        let reached_goal = lag.reached(goal);
        let done: i64 = lag.partitions.iter().map(|p| p.next_offset).sum();
        let now = Instant::now();
        let rate = previous
            .map(|(before, at)| (done - before) as f64 / now.duration_since(at).as_secs_f64().max(1e-3))
            .unwrap_or(0.0);
        previous = Some((done, now));
        let left = lag.events();
        let eta = (rate > 0.0).then(|| Duration::from_secs_f64(left as f64 / rate));
        on_progress(&Progress {
            target: target.clone(),
            events_done: done,
            events_left: left,
            events_per_second: rate,
            eta,
            lag,
        });
        if reached_goal {
            if let Some(retired) = try_switch(pool, projection.as_ref(), &target).await? {
                break Ok(retired);
            }
        }
        tokio::select! {
            () = tokio::time::sleep(interval) => {}
            () = &mut interrupted => break Err(RebuildError::Interrupted(target.version)),
        }
    };
    // The projectors process now serves the new version; this one leaves its group.
    projector.stop().await?;
    let retired = Target { projection: projection.name(), version: outcome? };
    drop_version(pool, projection.as_ref(), &retired).await?;
    delete_retired_group(&kafka, &group_id(&kafka, projection.spec().kind, &retired)).await;
    tracing::info!(
        projection = projection.name(),
        version = target.version,
        retired = retired.version,
        "rebuild finished"
    );
    Ok(target.version)
}

/// Deletes a retired version's consumer group, so Kafka tools stop showing a group
/// whose lag only grows. Its members leave at their next batch or idle check, so this
/// first gives them time to (Tansu deletes a group that still has members, which they
/// would then recreate); Kafka and Redpanda refuse while members remain, so it retries
/// for a while, then leaves the group with a warning: it holds nothing the system needs.
async fn delete_retired_group(kafka: &KafkaSettings, group: &str) {
    tokio::time::sleep(DEFAULT_IDLE_RETIREMENT_CHECK * 2).await;
    let admin: AdminClient<DefaultClientContext> = match kafka.client_config().create() {
        Ok(admin) => admin,
        Err(error) => {
            tracing::warn!(group, %error, "cannot delete the retired consumer group");
            return;
        }
    };
    let options = AdminOptions::new().request_timeout(Some(Duration::from_secs(5)));
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let outcome = admin.delete_groups(&[group], &options).await.map(|mut results| results.pop());
        match outcome {
            Ok(Some(Ok(_))) => {
                tracing::info!(group, "retired consumer group deleted");
                return;
            }
            Ok(Some(Err((_, RDKafkaErrorCode::GroupIdNotFound)))) => return,
            Ok(Some(Err((_, RDKafkaErrorCode::NonEmptyGroup)))) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            other => {
                tracing::warn!(group, outcome = ?other, "the retired consumer group is left; delete it with Kafka tools");
                return;
            }
        }
    }
}
