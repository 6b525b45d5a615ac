//! Each test's own topics, and Kafka as an outside client sees it: a plain reader, a
//! raw producer, the offsets a group committed.

use std::{collections::HashMap, time::Duration};

use anyhow::Context;
use rdkafka::{
    consumer::{Consumer, StreamConsumer},
    message::{Headers, Message},
    ClientConfig, Offset, TopicPartitionList,
};
use uuid::Uuid;
use vectis_event_store::kafka::{self, KafkaSettings};
use vectis_schemas::{EventEnvelope, TopicNaming, TOPICS};

pub fn brokers() -> String {
    std::env::var("KAFKA_BROKERS").unwrap_or_else(|_| "127.0.0.1:9092".into())
}

/// Fresh topics for one test: the registry's topics under a random prefix.
pub async fn fresh_topics() -> anyhow::Result<KafkaSettings> {
    let prefix = format!("test-{}.", Uuid::new_v4().simple());
    let settings = KafkaSettings::new(brokers(), TopicNaming::with_prefix(prefix));
    let report = kafka::provision_topics(&settings).await.context("provisioning test topics")?;
    anyhow::ensure!(report.created.len() == TOPICS.len(), "expected fresh topics, got {report:?}");
    Ok(settings)
}

/// Deletes the test's topics and creates them again, empty, under the same names: what
/// a new broker looks like to clients that kept their offsets.
pub async fn recreate_topics(kafka: &KafkaSettings) -> anyhow::Result<()> {
    use rdkafka::admin::{AdminClient, AdminOptions};
    let admin: AdminClient<rdkafka::client::DefaultClientContext> = kafka.client_config().create()?;
    let names: Vec<String> = TOPICS.iter().map(|spec| kafka.naming.physical(spec.name)).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    for outcome in admin.delete_topics(&names, &options).await? {
        outcome.map_err(|(topic, code)| anyhow::anyhow!("deleting {topic}: {code}"))?;
    }
    // Deleted topics can linger briefly in the broker's metadata.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    while !kafka::partition_counts(kafka, names.clone(), Duration::from_secs(10)).await?.is_empty() {
        anyhow::ensure!(tokio::time::Instant::now() < deadline, "the deleted topics are still listed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let report = kafka::provision_topics(kafka).await.context("creating the topics again")?;
    anyhow::ensure!(report.created.len() == TOPICS.len(), "the topics were not recreated: {report:?}");
    Ok(())
}

/// One record as an outside Kafka client sees it.
#[derive(Debug, Clone)]
pub struct ConsumedRecord {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub key: Option<String>,
    pub payload: Vec<u8>,
    pub headers: HashMap<String, String>,
}

impl ConsumedRecord {
    pub fn envelope(&self) -> EventEnvelope {
        EventEnvelope::from_json_bytes(&self.payload).expect("record value is an envelope")
    }
}

/// A plain rdkafka consumer, outside the project's code path: it reads every
/// partition of the given topics from the beginning, with no consumer group state.
pub struct TopicReader {
    consumer: StreamConsumer,
    pub records: Vec<ConsumedRecord>,
}

impl TopicReader {
    pub fn new(kafka: &KafkaSettings) -> anyhow::Result<Self> {
        let consumer: StreamConsumer = ClientConfig::new()
            .set("bootstrap.servers", &kafka.brokers)
            .set("group.id", format!("test-reader-{}", Uuid::new_v4().simple()))
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "earliest")
            .create()?;
        let mut assignment = TopicPartitionList::new();
        for topic in TOPICS {
            for partition in 0..topic.partitions {
                assignment.add_partition_offset(&kafka.naming.physical(topic.name), partition, Offset::Beginning)?;
            }
        }
        consumer.assign(&assignment)?;
        Ok(Self { consumer, records: Vec::new() })
    }

    /// Reads until at least `count` records have arrived in all, or fails after `timeout`.
    pub async fn read_at_least(&mut self, count: usize, timeout: Duration) -> &[ConsumedRecord] {
        let deadline = tokio::time::Instant::now() + timeout;
        while self.records.len() < count {
            assert!(
                self.take_one(deadline).await || self.records.len() >= count,
                "timed out with {} of {count} records",
                self.records.len()
            );
        }
        &self.records
    }

    /// Reads whatever arrives within `window`: for asserting that nothing more came.
    pub async fn read_for(&mut self, window: Duration) -> &[ConsumedRecord] {
        let deadline = tokio::time::Instant::now() + window;
        while self.take_one(deadline).await {}
        &self.records
    }

    /// Takes one record if one arrives before `deadline`; false when time ran out.
    async fn take_one(&mut self, deadline: tokio::time::Instant) -> bool {
        let Ok(message) = tokio::time::timeout_at(deadline, self.consumer.recv()).await else {
            return false;
        };
        let message = message.expect("consumer error");
        let headers = message
            .headers()
            .map(|h| {
                h.iter()
                    .map(|h| (h.key.to_string(), String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned()))
                    .collect()
            })
            .unwrap_or_default();
        self.records.push(ConsumedRecord {
            topic: message.topic().to_string(),
            partition: message.partition(),
            offset: message.offset(),
            key: message.key().map(|k| String::from_utf8_lossy(k).into_owned()),
            payload: message.payload().unwrap_or_default().to_vec(),
            headers,
        });
        true
    }
}

/// Sends raw records (key, value) to a logical topic, as an outside producer would:
/// duplicates and poison for the projectors to cope with.
pub async fn produce(kafka: &KafkaSettings, logical_topic: &str, records: &[(String, Vec<u8>)]) {
    use rdkafka::producer::FutureRecord;
    let producer = kafka.idempotent_producer().expect("producer");
    let topic = kafka.naming.physical(logical_topic);
    for (key, payload) in records {
        producer
            .send(FutureRecord::to(&topic).key(key).payload(payload), Duration::from_secs(10))
            .await
            .map_err(|(e, _)| e)
            .expect("delivered");
    }
}

/// The offsets `group` has committed on the partitions of a logical topic, as Kafka
/// tools show them (`None`: nothing committed, or no such group).
pub async fn committed_offsets(kafka: &KafkaSettings, group: &str, logical_topic: &str) -> Vec<Option<i64>> {
    let mut config = kafka.client_config();
    config.set("group.id", group).set("enable.auto.commit", "false");
    let topic = kafka.naming.physical(logical_topic);
    let partitions = vectis_schemas::topics::topic(logical_topic).expect("known topic").partitions;
    tokio::task::spawn_blocking(move || {
        let consumer: rdkafka::consumer::BaseConsumer = config.create().expect("client");
        let mut wanted = TopicPartitionList::new();
        for partition in 0..partitions {
            wanted.add_partition(&topic, partition);
        }
        let committed = consumer.committed_offsets(wanted, Duration::from_secs(10)).expect("offset fetch");
        committed.elements().iter().map(|e| e.offset().to_raw().filter(|o| *o >= 0)).collect()
    })
    .await
    .expect("joined")
}
