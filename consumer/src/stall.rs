//! Stall detection: from successive lag measurements (checkpoints in PostgreSQL against
//! the broker's watermarks, so a dead consumer's partitions count too), which
//! partitions are idle (nothing to do), progressing, or stuck (lag above 0 and the
//! checkpoint unmoved for the stall time).

use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use crate::lag::ProjectionLag;

/// A partition with lag whose checkpoint has not moved for the stall time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StalledPartition {
    pub topic: String,
    pub partition: i32,
    pub lag: i64,
    pub since_progress: Duration,
}

impl std::fmt::Display for StalledPartition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}[{}] (lag {}, no progress for {} s)",
            self.topic,
            self.partition,
            self.lag,
            self.since_progress.as_secs()
        )
    }
}

/// `stalled` for a log line.
pub fn describe(stalled: &[StalledPartition]) -> String {
    stalled.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
}

/// When each partition of one projection version last made progress.
#[derive(Debug)]
pub struct ProgressWatch {
    stall_after: Duration,
    /// The checkpoint last seen, and when the partition last advanced or was caught up.
    partitions: HashMap<(String, i32), (i64, Instant)>,
    version: Option<i32>,
}

impl ProgressWatch {
    pub fn new(stall_after: Duration) -> Self {
        Self { stall_after, partitions: HashMap::new(), version: None }
    }

    /// Takes a measurement made at `now`; returns each partition's time since progress
    /// (zero while it has nothing to do) and the stalled partitions. A partition seen
    /// for the first time counts from now; so does every partition after a version
    /// switch.
    pub fn observe(&mut self, lag: &ProjectionLag, now: Instant) -> Progress {
        if self.version != Some(lag.target.version) {
            self.partitions.clear();
            self.version = Some(lag.target.version);
        }
        let mut progress = Progress::default();
        for partition in &lag.partitions {
            let key = (partition.topic.clone(), partition.partition);
            let behind = partition.events();
            let entry = self.partitions.entry(key).or_insert((partition.next_offset, now));
            if behind == 0 || entry.0 != partition.next_offset {
                *entry = (partition.next_offset, now);
            }
            let since_progress = now.saturating_duration_since(entry.1);
            progress.since_progress.push((partition.topic.clone(), partition.partition, since_progress));
            if behind > 0 && since_progress >= self.stall_after {
                progress.stalled.push(StalledPartition {
                    topic: partition.topic.clone(),
                    partition: partition.partition,
                    lag: behind,
                    since_progress,
                });
            }
        }
        progress
    }
}

/// What one measurement showed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Progress {
    /// Per partition (physical topic), the time since it last advanced or was caught up.
    pub since_progress: Vec<(String, i32, Duration)>,
    pub stalled: Vec<StalledPartition>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use vectis_read_side::Target;

    use crate::lag::PartitionLag;

    fn lag(offsets: &[(i64, i64)]) -> ProjectionLag {
        ProjectionLag {
            target: Target { projection: "accounts", version: 1 },
            partitions: offsets
                .iter()
                .enumerate()
                .map(|(n, (next_offset, high_watermark))| PartitionLag {
                    topic: "vectis.accounts".into(),
                    partition: n as i32,
                    next_offset: *next_offset,
                    high_watermark: *high_watermark,
                    oldest_unapplied: None,
                })
                .collect(),
            measured_at: chrono::Utc::now(),
        }
    }

    const STALL: Duration = Duration::from_secs(30);

    #[test]
    fn an_idle_partition_never_stalls() {
        let mut watch = ProgressWatch::new(STALL);
        let start = Instant::now();
        for seconds in [0, 20, 40, 80] {
            let progress = watch.observe(&lag(&[(10, 10)]), start + Duration::from_secs(seconds));
            assert!(progress.stalled.is_empty());
            assert_eq!(progress.since_progress[0].2, Duration::ZERO, "idle is not stuck");
        }
    }

    #[test]
    fn a_partition_with_lag_and_an_unmoved_checkpoint_stalls_after_the_stall_time() {
        let mut watch = ProgressWatch::new(STALL);
        let start = Instant::now();
        assert!(watch.observe(&lag(&[(10, 50)]), start).stalled.is_empty());
        let early = watch.observe(&lag(&[(10, 60)]), start + Duration::from_secs(29));
        assert!(early.stalled.is_empty(), "not yet");
        assert_eq!(early.since_progress[0].2, Duration::from_secs(29));
        let stalled = watch.observe(&lag(&[(10, 70)]), start + Duration::from_secs(31)).stalled;
        assert_eq!(
            stalled,
            vec![StalledPartition {
                topic: "vectis.accounts".into(),
                partition: 0,
                lag: 60,
                since_progress: Duration::from_secs(31)
            }]
        );
    }

    #[test]
    fn a_moving_checkpoint_is_progress_however_far_behind() {
        let mut watch = ProgressWatch::new(STALL);
        let start = Instant::now();
        for (n, seconds) in [0u64, 20, 40, 60, 80].into_iter().enumerate() {
            let progress =
                watch.observe(&lag(&[(100 * n as i64, 10_000), (5, 5)]), start + Duration::from_secs(seconds));
            assert!(progress.stalled.is_empty(), "at {seconds} s: {progress:?}");
        }
    }

    #[test]
    fn only_the_stuck_partition_is_reported_and_catching_up_clears_it() {
        let mut watch = ProgressWatch::new(STALL);
        let start = Instant::now();
        watch.observe(&lag(&[(0, 10), (0, 10)]), start);
        let progress = watch.observe(&lag(&[(0, 10), (5, 10)]), start + Duration::from_secs(40));
        assert_eq!(progress.stalled.iter().map(|s| s.partition).collect::<Vec<_>>(), vec![0]);
        let progress = watch.observe(&lag(&[(10, 10), (5, 10)]), start + Duration::from_secs(50));
        assert!(progress.stalled.is_empty(), "{progress:?}");
    }

    #[test]
    fn a_version_switch_starts_every_partition_afresh() {
        let mut watch = ProgressWatch::new(STALL);
        let start = Instant::now();
        watch.observe(&lag(&[(0, 10)]), start);
        let mut rebuilt = lag(&[(0, 10)]);
        rebuilt.target.version = 2;
        assert!(watch.observe(&rebuilt, start + Duration::from_secs(40)).stalled.is_empty());
    }
}
