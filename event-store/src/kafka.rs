//! Kafka plumbing shared by producers and consumers: client configuration, topic
//! provisioning from the registry, and a broker readiness probe. Only the Kafka API is
//! used, so this works the same against Redpanda, Kafka or the local Tansu broker.

use std::time::Duration;

use rdkafka::{
    admin::{AdminClient, AdminOptions, NewTopic, TopicReplication},
    client::DefaultClientContext,
    config::ClientConfig,
    consumer::{BaseConsumer, Consumer},
    error::KafkaError,
    producer::FutureProducer,
    types::RDKafkaErrorCode,
};
use vectis_schemas::{TopicNaming, TopicSpec, TOPICS};

use crate::producer::DeliveryProducer;

/// Where the broker is and how topics are named on it.
#[derive(Debug, Clone)]
pub struct KafkaSettings {
    /// `bootstrap.servers`, e.g. `127.0.0.1:9092`.
    pub brokers: String,
    pub naming: TopicNaming,
    /// 1 for the local single-node broker, 3 in production.
    pub replication_factor: i32,
    pub client_id: String,
}

impl KafkaSettings {
    pub fn new(brokers: impl Into<String>, naming: TopicNaming) -> Self {
        Self { brokers: brokers.into(), naming, replication_factor: 1, client_id: "vectis".into() }
    }

    /// Settings every client shares.
    pub fn client_config(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", &self.brokers)
            .set("client.id", &self.client_id)
            .set("socket.keepalive.enable", "true");
        config
    }

    /// The relay's producer settings: idempotent (no duplicates or reordering from
    /// internal retries), `acks=all`, and the murmur2 partitioner so keys land on the
    /// same partitions as with Java clients and Redpanda's tooling.
    pub fn idempotent_producer_config(&self) -> ClientConfig {
        let mut config = self.client_config();
        config
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("max.in.flight.requests.per.connection", "5")
            // The relay already gathers what commits within its read interval.
            .set("linger.ms", "1")
            .set("batch.num.messages", "10000")
            .set("partitioner", "murmur2_random")
            .set("message.timeout.ms", "30000");
        config
    }

    /// The relay's producer ([`DeliveryProducer`]).
    pub fn relay_producer(&self) -> Result<DeliveryProducer, KafkaError> {
        DeliveryProducer::new(&self.idempotent_producer_config())
    }

    /// A `FutureProducer` with the relay's settings, for tools and tests that write to
    /// the topics as an outside producer would.
    pub fn idempotent_producer(&self) -> Result<FutureProducer, KafkaError> {
        self.idempotent_producer_config().create()
    }

    fn admin(&self) -> Result<AdminClient<DefaultClientContext>, KafkaError> {
        self.client_config().create()
    }
}

/// What topic provisioning found and did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProvisionReport {
    pub created: Vec<String>,
    pub already_present: Vec<String>,
    /// Topics whose partition count differs from the registry. Not changed
    /// automatically: adding partitions re-maps keys and breaks per-stream order.
    pub partition_mismatches: Vec<PartitionMismatch>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionMismatch {
    pub topic: String,
    pub registry: i32,
    pub broker: i32,
}

impl ProvisionReport {
    pub fn is_consistent(&self) -> bool {
        self.partition_mismatches.is_empty()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ProvisionError {
    #[error("broker unreachable or refused the request: {0}")]
    Kafka(#[from] KafkaError),
    #[error("creating topic {topic} failed: {code}")]
    Create { topic: String, code: RDKafkaErrorCode },
}

/// Partition counts of the given physical topics; absent topics are left out.
pub async fn partition_counts(
    settings: &KafkaSettings,
    topics: Vec<String>,
    timeout: Duration,
) -> Result<Vec<(String, i32)>, KafkaError> {
    let admin = settings.admin()?;
    // Metadata fetches block; keep them off the async workers.
    tokio::task::spawn_blocking(move || {
        let metadata = admin.inner().fetch_metadata(None, timeout)?;
        Ok(metadata
            .topics()
            .iter()
            .filter(|t| topics.iter().any(|name| name == t.name()) && t.error().is_none())
            .map(|t| (t.name().to_string(), t.partitions().len() as i32))
            .collect())
    })
    .await
    .map_err(|_| KafkaError::Canceled)?
}

/// Creates the registry's topics that are missing and reports those whose partition
/// count differs. Safe to run any number of times.
pub async fn provision_topics(settings: &KafkaSettings) -> Result<ProvisionReport, ProvisionError> {
    provision(settings, TOPICS).await
}

async fn provision(settings: &KafkaSettings, specs: &[TopicSpec]) -> Result<ProvisionReport, ProvisionError> {
    let timeout = Duration::from_secs(10);
    let names: Vec<String> = specs.iter().map(|s| settings.naming.physical(s.name)).collect();
    let existing = partition_counts(settings, names.clone(), timeout).await?;
    let mut report = ProvisionReport::default();
    let missing: Vec<(&TopicSpec, String)> = specs
        .iter()
        .zip(names)
        .filter_map(|(spec, name)| match existing.iter().find(|(n, _)| *n == name) {
            Some((_, partitions)) => {
                if *partitions != spec.partitions {
                    tracing::error!(
                        topic = %name, registry = spec.partitions, broker = partitions,
                        "topic has a different partition count than the registry; not changed"
                    );
                    report.partition_mismatches.push(PartitionMismatch {
                        topic: name.clone(),
                        registry: spec.partitions,
                        broker: *partitions,
                    });
                }
                report.already_present.push(name);
                None
            }
            None => Some((spec, name)),
        })
        .collect();
    if missing.is_empty() {
        return Ok(report);
    }
    let configs: Vec<Vec<(&str, String)>> = missing.iter().map(|(spec, _)| spec.configs()).collect();
    let new_topics: Vec<NewTopic<'_>> = missing
        .iter()
        .zip(&configs)
        .map(|((spec, name), config)| {
            config.iter().fold(
                NewTopic::new(name, spec.partitions, TopicReplication::Fixed(settings.replication_factor)),
                |topic, (key, value)| topic.set(key, value),
            )
        })
        .collect();
    let admin = settings.admin()?;
    let results = admin.create_topics(new_topics.iter(), &AdminOptions::new().operation_timeout(Some(timeout))).await?;
    for result in results {
        match result {
            Ok(topic) => {
                tracing::info!(topic, "created topic");
                report.created.push(topic);
            }
            // Someone else created it between our metadata read and now: fine.
            Err((topic, RDKafkaErrorCode::TopicAlreadyExists)) => report.already_present.push(topic),
            Err((topic, code)) => return Err(ProvisionError::Create { topic, code }),
        }
    }
    Ok(report)
}

/// A client that asks the broker about topics and groups without joining any group (the
/// group id is required by librdkafka, never used).
fn outside_client(settings: &KafkaSettings) -> Result<BaseConsumer, KafkaError> {
    settings.client_config().set("group.id", "vectis.outside-client").create()
}

/// How many records the broker has ever taken on `topics`: the sum of their partitions'
/// high watermarks (topics it does not have count 0).
pub async fn records_on(settings: &KafkaSettings, topics: Vec<String>, timeout: Duration) -> Result<i64, KafkaError> {
    let consumer = outside_client(settings)?;
    tokio::task::spawn_blocking(move || {
        let metadata = consumer.fetch_metadata(None, timeout)?;
        let mut records = 0;
        for topic in metadata.topics().iter().filter(|t| topics.iter().any(|name| name == t.name())) {
            for partition in topic.partitions() {
                let (_, high) = consumer.fetch_watermarks(topic.name(), partition.id(), timeout)?;
                records += high.max(0);
            }
        }
        Ok(records)
    })
    .await
    .map_err(|_| KafkaError::Canceled)?
}

/// The consumer groups named with `prefix` that have members now, with their member
/// counts.
pub async fn groups_with_members(
    settings: &KafkaSettings,
    prefix: &str,
    timeout: Duration,
) -> Result<Vec<(String, usize)>, KafkaError> {
    let consumer = outside_client(settings)?;
    let prefix = prefix.to_string();
    tokio::task::spawn_blocking(move || {
        let groups = consumer.fetch_group_list(None, timeout)?;
        Ok(groups
            .groups()
            .iter()
            .filter(|g| g.name().starts_with(&prefix) && !g.members().is_empty())
            .map(|g| (g.name().to_string(), g.members().len()))
            .collect())
    })
    .await
    .map_err(|_| KafkaError::Canceled)?
}

/// Readiness probe: the broker answers a metadata request within `timeout`.
pub async fn broker_reachable(settings: &KafkaSettings, timeout: Duration) -> Result<(), String> {
    partition_counts(settings, Vec::new(), timeout).await.map(|_| ()).map_err(|e| e.to_string())
}
