//! Lag, measured and acted on, for every consumer group of a process (projectors,
//! search, workflows): each handler's active version measured against the broker's
//! watermarks every interval, published as metrics and stored for readers; partitions
//! whose checkpoint is beyond the log, or with lag that stopped advancing, logged when
//! that changes, and a stuck consumer asked to rejoin its group.

use std::{collections::HashMap, sync::Arc, time::Duration};

use futures::future::BoxFuture;
use sqlx::PgPool;
use vectis_read_side::Target;
use vectis_runtime::Shutdown;

use crate::{
    handler::Handler,
    lag::{LagProbe, ProjectionLag, Watermarks, TOPIC_RECREATED_FIX},
    metrics::ConsumerMetrics,
    runtime::RejoinRequests,
    stall::{describe, ProgressWatch, StalledPartition},
};

/// Where stuck partitions are reported: after how long without progress, and each
/// consumer's rejoin requests.
pub struct Stalls {
    pub after: Duration,
    pub rejoins: HashMap<&'static str, RejoinRequests>,
}

/// What a process does with each measurement beyond the shared metrics (a search
/// index's freshness and size). `lag` is `None` when it could not be measured.
pub trait AfterMeasure: Send + Sync {
    fn after<'a>(&'a self, handler: &'static str, lag: Option<&'a ProjectionLag>) -> BoxFuture<'a, ()>;
}

/// Nothing beyond the shared metrics.
pub struct NothingMore;

impl AfterMeasure for NothingMore {
    fn after<'a>(&'a self, _: &'static str, _: Option<&'a ProjectionLag>) -> BoxFuture<'a, ()> {
        Box::pin(async {})
    }
}

pub struct LagReporter {
    pub pool: PgPool,
    pub probe: LagProbe,
    pub handlers: Vec<Arc<dyn Handler>>,
    pub stalls: Stalls,
    pub metrics: ConsumerMetrics,
    pub interval: Duration,
}

impl LagReporter {
    /// Measures the lag of each handler's active version every `interval` and
    /// publishes it as metrics, until shutdown. Partitions with lag that stopped
    /// advancing are logged and their consumer asked to rejoin its group.
    pub async fn run(self, after: impl AfterMeasure, shutdown: Shutdown) {
        // Reported when it changes, not on every measurement.
        let mut beyond_log: HashMap<&'static str, Vec<(String, i32)>> = HashMap::new();
        let mut watches: HashMap<&'static str, ProgressWatch> = HashMap::new();
        let mut stalled_reported: HashMap<&'static str, Vec<(String, i32)>> = HashMap::new();
        let mut topics: Vec<&str> = self.handlers.iter().flat_map(|p| p.topics().iter().copied()).collect();
        topics.sort_unstable();
        topics.dedup();
        loop {
            // Each topic's watermarks once a round, whichever handlers read it.
            let watermarks = self.probe.watermarks(&topics).await;
            for handler in &self.handlers {
                let name = handler.name();
                let lag = match &watermarks {
                    Ok(watermarks) => active_lag_at(&self.pool, &self.probe, handler.as_ref(), watermarks).await,
                    Err(error) => Err(anyhow::anyhow!("reading the broker's watermarks: {error}")),
                };
                match &lag {
                    Ok(lag) => {
                        self.metrics.record_lag(lag);
                        if let Err(error) = lag.save(&self.pool).await {
                            tracing::warn!(projection = name, %error, "cannot store the measured lag");
                        }
                        // Reads nothing more unless a partition looked beyond the log.
                        match self.probe.confirm_beyond_log(&self.pool, lag).await {
                            Ok(confirmed) => report_beyond_log(&confirmed, beyond_log.entry(name).or_default()),
                            Err(error) => {
                                tracing::warn!(projection = name, %error, "cannot confirm a checkpoint beyond the log")
                            }
                        }
                        let watch = watches.entry(name).or_insert_with(|| ProgressWatch::new(self.stalls.after));
                        let measured = watch.observe(lag, std::time::Instant::now());
                        self.metrics.record_progress(name, &measured);
                        report_stalled(lag, &measured.stalled, stalled_reported.entry(name).or_default());
                        if let (false, Some(rejoins)) = (measured.stalled.is_empty(), self.stalls.rejoins.get(name)) {
                            rejoins.request(measured.stalled);
                        }
                    }
                    Err(error) => tracing::warn!(projection = name, %error, "cannot measure lag"),
                }
                after.after(name, lag.as_ref().ok()).await;
            }
            tokio::select! {
                () = tokio::time::sleep(self.interval) => {}
                () = shutdown.wait() => return,
            }
        }
    }
}

/// Logs, when the set changes, the partitions whose checkpoint is beyond the broker's
/// end of them (`reported` holds the set last logged).
fn report_beyond_log(lag: &ProjectionLag, reported: &mut Vec<(String, i32)>) {
    let now: Vec<(String, i32)> = lag.beyond_log().iter().map(|p| (p.topic.clone(), p.partition)).collect();
    if now == *reported {
        return;
    }
    for partition in lag.beyond_log() {
        tracing::error!(
            projection = lag.target.projection, version = lag.target.version,
            topic = %partition.topic, partition = partition.partition,
            checkpoint = partition.next_offset, high_watermark = partition.high_watermark,
            "checkpoint beyond the end of the partition: {TOPIC_RECREATED_FIX}"
        );
    }
    if now.is_empty() {
        tracing::info!(projection = lag.target.projection, "no checkpoint is beyond the end of its partition any more");
    }
    *reported = now;
}

/// Logs, when the set changes, the partitions with lag that stopped advancing
/// (`reported` holds the set last logged).
fn report_stalled(lag: &ProjectionLag, stalled: &[StalledPartition], reported: &mut Vec<(String, i32)>) {
    let now: Vec<(String, i32)> = stalled.iter().map(|s| (s.topic.clone(), s.partition)).collect();
    if now == *reported {
        return;
    }
    if now.is_empty() {
        tracing::info!(projection = lag.target.projection, "every partition with lag advances again");
    } else {
        tracing::warn!(
            projection = lag.target.projection, version = lag.target.version,
            partitions = %describe(stalled),
            "partitions with lag stopped advancing; asking their consumer to rejoin its group"
        );
    }
    *reported = now;
}

/// The lag of the version readers see, against `watermarks` read for its topics.
async fn active_lag_at(
    pool: &PgPool,
    probe: &LagProbe,
    handler: &dyn Handler,
    watermarks: &Watermarks,
) -> anyhow::Result<ProjectionLag> {
    let mut conn = pool.acquire().await?;
    let state = vectis_read_side::state::state(&mut conn, handler.name())
        .await?
        .ok_or_else(|| anyhow::anyhow!("projection {} is not installed", handler.name()))?;
    drop(conn);
    let target = Target { projection: handler.name(), version: state.active_version };
    Ok(probe.measure_at(pool, &target, handler.topics(), watermarks).await?)
}
