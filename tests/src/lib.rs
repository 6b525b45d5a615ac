//! Test harness for end-to-end and fault tests. It starts nothing: PostgreSQL and the
//! broker come from `scripts/test` (DATABASE_URL, KAFKA_BROKERS). Each test gets its
//! own database (`sqlx::test`) and its own topics (a random prefix).

pub mod bench;
pub mod cli;
pub mod folds;
pub mod processes;
pub mod shop;
pub mod workloads;

use std::{collections::HashMap, sync::Arc, time::Duration};

use anyhow::Context;
use rdkafka::{
    consumer::{Consumer, StreamConsumer},
    message::{Headers, Message},
    ClientConfig, Offset, TopicPartitionList,
};
use sqlx::PgPool;
use uuid::Uuid;
use vectis_event_store::{
    kafka::{self, KafkaSettings},
    relay::{Relay, RelayError, RelaySettings},
    EventStore, RelayMetrics, StoreMetrics,
};
use vectis_runtime::Shutdown;
use vectis_schemas::{EventEnvelope, SchemaCatalog, SchemaMode, TopicNaming, TOPICS};

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

/// An event store in strict mode with the built-in schemas.
pub fn event_store(pool: PgPool) -> EventStore {
    let catalog = Arc::new(SchemaCatalog::embedded().expect("built-in schemas compile"));
    EventStore::new(pool, catalog, SchemaMode::Strict, StoreMetrics::default())
}

/// A relay running in a task of the test.
pub struct RelayHandle {
    pub metrics: RelayMetrics,
    shutdown: Shutdown,
    task: tokio::task::JoinHandle<Result<(), RelayError>>,
}

impl RelayHandle {
    pub fn start(pool: PgPool, kafka: &KafkaSettings, batch_size: i64) -> Self {
        Self::start_polling_every(pool, kafka, batch_size, Duration::from_millis(200))
    }

    /// `start` with the fallback poll timer at `poll_interval`.
    pub fn start_polling_every(pool: PgPool, kafka: &KafkaSettings, batch_size: i64, poll_interval: Duration) -> Self {
        let mut settings = RelaySettings::new(kafka.clone());
        settings.batch_size = batch_size;
        settings.poll_interval = poll_interval;
        settings.standby_retry = Duration::from_millis(200);
        settings.retry_backoff = Duration::from_millis(200);
        let metrics = RelayMetrics::default();
        let relay = Relay::new(pool, settings, metrics.clone());
        let shutdown = Shutdown::new();
        let task = tokio::spawn(relay.run(shutdown.clone()));
        Self { metrics, shutdown, task }
    }

    pub fn is_leader(&self) -> bool {
        self.metrics.is_leader.get() == 1
    }

    /// Graceful stop: the current batch finishes, then the relay exits.
    pub async fn stop(self) {
        self.shutdown.trigger();
        let _ = self.task.await;
    }

    /// Waits (up to `deadline`) for the relay to stop by itself, and returns why.
    pub async fn stopped_by_itself(self, deadline: Duration) -> Result<(), RelayError> {
        tokio::time::timeout(deadline, self.task)
            .await
            .expect("the relay did not stop by itself in time")
            .expect("the relay task panicked")
    }

    /// A crash: the task is dropped wherever it is.
    pub async fn kill(self) {
        self.task.abort();
        let _ = self.task.await;
    }
}

/// A plain HTTP/1.1 GET, as a probe or scraper would send it; returns the status code
/// and the body.
pub async fn http_get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    http_request(addr, "GET", path, &[], None).await
}

/// A plain HTTP/1.1 request with `headers` and an optional JSON `body`; returns the
/// status code and the body.
pub async fn http_request(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let mut request = format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    if let Some(body) = body {
        request.push_str(&format!("Content-Type: application/json\r\nContent-Length: {}\r\n", body.len()));
    }
    request.push_str("\r\n");
    request.push_str(body.unwrap_or_default());
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut response = String::new();
    stream.read_to_string(&mut response).await.expect("read");
    let status = response.split_whitespace().nth(1).and_then(|s| s.parse().ok()).expect("status line");
    (status, response.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default())
}

/// Waits until `condition` holds, polling; fails the test after `timeout`.
pub async fn eventually<F: FnMut() -> bool>(timeout: Duration, what: &str, mut condition: F) {
    let deadline = tokio::time::Instant::now() + timeout;
    while !condition() {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
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

/// DATABASE_URL with its database name replaced by `name`: how a child process (the
/// `vectis` CLI, a benchmark) reaches a test's own database.
pub fn database_url(name: &str) -> anyhow::Result<String> {
    let url = std::env::var("DATABASE_URL").context("DATABASE_URL")?;
    let (base, _) = url.rsplit_once('/').context("DATABASE_URL has no database name")?;
    Ok(format!("{base}/{name}"))
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
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let (last, relayed): (i64, i64) = sqlx::query_as(
            "SELECT (SELECT coalesce(max(global_position), 0) FROM events),
                    (SELECT coalesce(max(global_position), 0) FROM relay_cursors)",
        )
        .fetch_one(pool)
        .await
        .expect("positions");
        let mut caught_up = relayed >= last;
        for projection in projections {
            let target = vectis_read_side::Target { projection: projection.name(), version: 1 };
            let lag = probe.measure(pool, &target, projection.topics()).await.expect("lag");
            caught_up &= lag.events() == 0;
        }
        if caught_up {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "the projections never caught up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
