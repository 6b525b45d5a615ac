//! The runtime's tuning values, typed, with their defaults in one place, and the Kafka
//! client settings they become.

use std::time::Duration;

use rdkafka::ClientConfig;
use vectis_event_store::kafka::KafkaSettings;
use vectis_read_side::{catalog::ProjectionKind, Target};

#[derive(Debug, Clone)]
pub struct ConsumerSettings {
    pub kafka: KafkaSettings,
    /// Static membership (`group.instance.id`): a restart within the session timeout
    /// gets its partitions back without a rebalance.
    pub group_instance_id: Option<String>,
    /// Most records per batch.
    pub max_batch: usize,
    /// How long one poll waits for the first record of a batch. A record ends the wait
    /// at once, so this only paces an idle consumer (and bounds how long a stop waits).
    pub poll_wait: Duration,
    /// Partitions with lag whose checkpoint has not moved for this long are stuck: their
    /// consumer leaves and joins again (see [`crate::runtime::RejoinRequests`]), at
    /// most this often.
    pub stall_after: Duration,
    /// The group's session timeout: how long the broker waits for a silent member (a
    /// killed process) before it hands its partitions to others.
    pub session_timeout: Duration,
    pub heartbeat_interval: Duration,
    /// How often the offsets a consumer stored are committed to its group (see
    /// [`consumer_config`]).
    pub offset_commit_interval: Duration,
    /// How long an assignment waits for its partitions' checkpoints, and for their ends.
    pub watermark_timeout: Duration,
    /// How often an idle consumer looks whether a rebuild retired its version.
    pub idle_retirement_check: Duration,
    /// A failed batch is retried after `retry_backoff`, doubling up to
    /// `max_retry_backoff`.
    pub retry_backoff: Duration,
    pub max_retry_backoff: Duration,
    /// After this many failures that are not transient, a batch is applied stream by
    /// stream, so only the failing streams park.
    pub isolate_after_failures: u32,
}

/// See [`ConsumerSettings::stall_after`].
pub const DEFAULT_STALL_AFTER: Duration = Duration::from_secs(30);

/// See [`ConsumerSettings::idle_retirement_check`].
pub const DEFAULT_IDLE_RETIREMENT_CHECK: Duration = Duration::from_secs(2);

impl ConsumerSettings {
    pub fn new(kafka: KafkaSettings) -> Self {
        Self {
            kafka,
            group_instance_id: None,
            max_batch: 5_000,
            poll_wait: Duration::from_secs(1),
            stall_after: DEFAULT_STALL_AFTER,
            session_timeout: Duration::from_secs(10),
            heartbeat_interval: Duration::from_secs(1),
            offset_commit_interval: Duration::from_secs(1),
            watermark_timeout: Duration::from_secs(5),
            idle_retirement_check: DEFAULT_IDLE_RETIREMENT_CHECK,
            retry_backoff: Duration::from_millis(100),
            max_retry_backoff: Duration::from_secs(5),
            isolate_after_failures: 3,
        }
    }
}

/// The consumer group of a handler version: `vectis.projection.<name>` for read models
/// and search indexes, `vectis.workflow.<name>` for workflows.
pub fn group_id(kafka: &KafkaSettings, kind: ProjectionKind, target: &Target) -> String {
    let base = format!("{}vectis.{}.{}", kafka.naming.prefix(), kind.group_word(), target.projection);
    if target.version == 1 {
        base
    } else {
        format!("{base}.v{}", target.version)
    }
}

/// The client settings of a consumer in `group`: cooperative-sticky assignment, a fresh
/// group starts at the earliest offset. PostgreSQL holds the checkpoints; the group's
/// committed offsets only show Kafka tools how far it got, so librdkafka commits the
/// offsets a consumer stored every [`ConsumerSettings::offset_commit_interval`] (and when
/// partitions are revoked or the consumer closes), not once per batch: a commit per
/// batch of every group was most of the broker's work at 500 events/s and held up the
/// relay's writes.
pub fn consumer_config(settings: &ConsumerSettings, group: &str) -> ClientConfig {
    let millis = |duration: Duration| duration.as_millis().to_string();
    let mut config = settings.kafka.client_config();
    config
        .set("group.id", group)
        .set("partition.assignment.strategy", "cooperative-sticky")
        .set("enable.auto.commit", "true")
        .set("auto.commit.interval.ms", millis(settings.offset_commit_interval))
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", millis(settings.session_timeout))
        .set("heartbeat.interval.ms", millis(settings.heartbeat_interval));
    if let Some(instance) = &settings.group_instance_id {
        config.set("group.instance.id", instance);
    }
    config
}

#[cfg(test)]
mod tests {
    use super::*;
    use vectis_schemas::TopicNaming;

    #[test]
    fn each_version_has_its_own_group_and_the_settings_reach_the_client() {
        let kafka = KafkaSettings::new("127.0.0.1:9092", TopicNaming::with_prefix("t1."));
        let target = |version| Target { projection: "orders", version };
        assert_eq!(group_id(&kafka, ProjectionKind::ReadModel, &target(1)), "t1.vectis.projection.orders");
        assert_eq!(group_id(&kafka, ProjectionKind::SearchIndex, &target(3)), "t1.vectis.projection.orders.v3");
        assert_eq!(group_id(&kafka, ProjectionKind::Workflow, &target(1)), "t1.vectis.workflow.orders");
        let mut settings = ConsumerSettings::new(kafka);
        settings.group_instance_id = Some("projectors-1".into());
        let config = consumer_config(&settings, "g");
        assert_eq!(config.get("session.timeout.ms"), Some("10000"));
        assert_eq!(config.get("auto.commit.interval.ms"), Some("1000"));
        assert_eq!(config.get("group.instance.id"), Some("projectors-1"));
    }
}
