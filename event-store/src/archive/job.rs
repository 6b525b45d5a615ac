//! The archive as a job: an export every `ARCHIVE_INTERVAL` (in `vectis-relay` when
//! `ARCHIVE_URL` is set), with metrics an alert can read. A failed run loses nothing:
//! the cursor stays where the last stored file left it, and the next run starts there.

use std::{sync::atomic::AtomicU64, time::Duration};

use prometheus_client::{
    metrics::{counter::Counter, gauge::Gauge},
    registry::Registry,
};
use sqlx::PgPool;
use vectis_runtime::{metric_names as names, Shutdown};

use super::{export, storage::ArchiveStore, ArchiveError};

/// `Default` gives unregistered metrics (for tests and tools).
#[derive(Clone, Debug, Default)]
pub struct ArchiveMetrics {
    pub last_position: Gauge,
    pub events_behind: Gauge,
    pub events_archived: Counter,
    pub bytes_written: Counter,
    pub failures: Counter,
    pub last_success: Gauge<f64, AtomicU64>,
}

impl ArchiveMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self::default();
        registry.register(
            names::ARCHIVE_LAST_POSITION,
            "The last global position the archive holds",
            m.last_position.clone(),
        );
        registry.register(
            names::ARCHIVE_EVENTS_BEHIND,
            "Committed events the archive does not hold yet",
            m.events_behind.clone(),
        );
        registry.register(names::ARCHIVE_EVENTS_ARCHIVED, "Events written to the archive", m.events_archived.clone());
        registry.register(
            names::ARCHIVE_BYTES_WRITTEN,
            "Bytes of archive files written to object storage",
            m.bytes_written.clone(),
        );
        registry.register(
            names::ARCHIVE_FAILURES,
            "Archive runs that failed (the next run resumes at the cursor)",
            m.failures.clone(),
        );
        registry.register(
            names::ARCHIVE_LAST_SUCCESS,
            "When an archive run last finished without error, in Unix seconds",
            m.last_success.clone(),
        );
        m
    }
}

pub struct ArchiveJob {
    pub pool: PgPool,
    pub store: ArchiveStore,
    pub file_events: usize,
    pub interval: Duration,
    pub metrics: ArchiveMetrics,
}

impl ArchiveJob {
    /// Exports now and then every `interval`, until the shutdown signal. Stopping
    /// mid-run is safe: files are whole or absent, and the cursor is behind them.
    pub async fn run(self, shutdown: Shutdown) {
        loop {
            tokio::select! {
                _ = self.run_once() => {}
                _ = shutdown.wait() => return,
            }
            tokio::select! {
                _ = tokio::time::sleep(self.interval) => {}
                _ = shutdown.wait() => return,
            }
        }
    }

    /// One export, its outcome logged and counted, then the gauges measured.
    pub async fn run_once(&self) -> Result<export::Manifest, ArchiveError> {
        let (mut events_before, mut bytes_before) = (0, 0);
        let metrics = &self.metrics;
        let outcome = export::export(&self.pool, &self.store, self.file_events, |progress| {
            metrics.events_archived.inc_by(progress.events_done - events_before);
            metrics.bytes_written.inc_by(progress.bytes_done - bytes_before);
            (events_before, bytes_before) = (progress.events_done, progress.bytes_done);
            metrics.last_position.set(progress.cursor);
        })
        .await;
        match &outcome {
            Ok(manifest) => {
                if let Some(last) = manifest.files.last() {
                    tracing::info!(
                        archive = %self.store.location,
                        events = manifest.events,
                        files = manifest.files.len(),
                        bytes = manifest.bytes,
                        through = last.last,
                        "archived"
                    );
                }
                metrics.last_success.set(chrono::Utc::now().timestamp_micros() as f64 / 1e6);
            }
            Err(ArchiveError::Busy { .. }) => tracing::debug!("another export of this archive is running"),
            Err(error) => {
                metrics.failures.inc();
                tracing::warn!(archive = %self.store.location, %error, "archive run failed; the next run resumes at the cursor");
            }
        }
        if let Err(error) = self.measure().await {
            tracing::warn!(%error, "could not measure the archive's position");
        }
        outcome
    }

    async fn measure(&self) -> Result<(), ArchiveError> {
        let cursor = export::cursor(&self.pool, &self.store.location).await?;
        let behind: i64 = sqlx::query_scalar("SELECT count(*) FROM events WHERE global_position > $1")
            .bind(cursor)
            .fetch_one(&self.pool)
            .await?;
        self.metrics.last_position.set(cursor);
        self.metrics.events_behind.set(behind);
        Ok(())
    }
}
