//! Where a stored event sits on its topic, and putting one back there: what an
//! operator debugging with Kafka tools needs (`vectis events show`, `vectis events
//! republish`).
//!
//! The relay keys each record by its stream id and partitions with murmur2 (as Java
//! clients and Redpanda's tooling do), so the partition follows from the key. Within a
//! partition the relay writes in global order, so the offset is found by bisecting the
//! partition on the records' global positions: a few reads, however long the log.

use std::time::Duration;

use rdkafka::{
    consumer::{BaseConsumer, Consumer},
    error::KafkaError,
    message::{Header, Message, OwnedHeaders},
    producer::FutureRecord,
    Offset, TopicPartitionList,
};
use vectis_schemas::EventEnvelope;

use crate::{kafka::KafkaSettings, store::RecordedEvent};

/// The header a republished record carries besides the relay's: when it was put back
/// (RFC 3339), so Kafka tools tell the copy from the original.
pub const REPUBLISHED_AT: &str = "republished-at";

const BROKER_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum PlacementError {
    #[error("the broker: {0}")]
    Broker(#[from] KafkaError),
    #[error("topic {0} is not on the broker")]
    NoTopic(String),
    #[error("reading offset {offset} of {topic}/{partition}: {reason}")]
    Unreadable { topic: String, partition: i32, offset: i64, reason: String },
}

/// A record's place: its topic (as the broker names it), partition and offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    pub topic: String,
    pub partition: i32,
    /// `None` when the partition holds no record of the event (not relayed yet, or the
    /// broker lost it).
    pub offset: Option<i64>,
}

/// Kafka's murmur2 (the Java client's `Utils.murmur2`), as librdkafka's
/// `murmur2_random` partitioner computes it.
pub fn murmur2(data: &[u8]) -> u32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    let mut h = SEED ^ data.len() as u32;
    let mut chunks = data.chunks_exact(4);
    for chunk in &mut chunks {
        let mut k = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> 24;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let rest = chunks.remainder();
    if rest.len() >= 3 {
        h ^= u32::from(rest[2]) << 16;
    }
    if rest.len() >= 2 {
        h ^= u32::from(rest[1]) << 8;
    }
    if let Some(first) = rest.first() {
        h ^= u32::from(*first);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h
}

/// The partition a key lands on among `partitions`.
pub fn partition_of(key: &str, partitions: i32) -> i32 {
    ((murmur2(key.as_bytes()) & 0x7fff_ffff) % partitions.max(1) as u32) as i32
}

fn client(kafka: &KafkaSettings) -> Result<BaseConsumer, KafkaError> {
    kafka.client_config().set("group.id", "vectis.outside-client").set("enable.auto.commit", "false").create()
}

/// Where `event` sits on its topic.
pub async fn locate(kafka: &KafkaSettings, event: &RecordedEvent) -> Result<Placement, PlacementError> {
    let topic = kafka.naming.physical(&event.topic);
    let consumer = client(kafka)?;
    let key = event.envelope.stream_id.to_string();
    let target = event.envelope.global_position;
    let event_id = event.envelope.event_id;
    tokio::task::spawn_blocking(move || {
        let partitions = partitions(&consumer, &topic)?;
        let partition = partition_of(&key, partitions.len() as i32);
        let (first, high) = first_offset_at(&consumer, &topic, partition, target)?;
        let found = (first < high).then(|| read_envelope(&consumer, &topic, partition, first)).transpose()?;
        let offset = found.filter(|e| e.event_id == event_id).map(|_| first);
        Ok(Placement { topic, partition, offset })
    })
    .await
    .map_err(|_| PlacementError::Broker(KafkaError::Canceled))?
}

/// The partition ids of `topic` on the broker.
fn partitions(consumer: &BaseConsumer, topic: &str) -> Result<Vec<i32>, PlacementError> {
    let metadata = consumer.fetch_metadata(Some(topic), BROKER_TIMEOUT)?;
    metadata
        .topics()
        .iter()
        .find(|t| t.name() == topic)
        .map(|t| t.partitions().iter().map(|p| p.id()).collect::<Vec<_>>())
        .filter(|p| !p.is_empty())
        .ok_or_else(|| PlacementError::NoTopic(topic.to_string()))
}

/// The first offset of `topic`/`partition` whose record's global position is at least
/// `position` (by bisection), and the partition's high watermark: the two are equal
/// when every record is below it.
fn first_offset_at(
    consumer: &BaseConsumer,
    topic: &str,
    partition: i32,
    position: i64,
) -> Result<(i64, i64), PlacementError> {
    let (low, high) = consumer.fetch_watermarks(topic, partition, BROKER_TIMEOUT)?;
    let (mut from, mut to) = (low, high);
    while from < to {
        let middle = from + (to - from) / 2;
        if read_envelope(consumer, topic, partition, middle)?.global_position < position {
            from = middle + 1;
        } else {
            to = middle;
        }
    }
    Ok((from, high))
}

/// For every partition of `logical_topic`, the offset of its first record past global
/// position `position`: where a consumer resumes to read the log from there.
pub async fn offsets_after(
    kafka: &KafkaSettings,
    logical_topic: &str,
    position: i64,
) -> Result<Vec<(String, i32, i64)>, PlacementError> {
    let topic = kafka.naming.physical(logical_topic);
    let consumer = client(kafka)?;
    tokio::task::spawn_blocking(move || {
        partitions(&consumer, &topic)?
            .into_iter()
            .map(|partition| {
                Ok((topic.clone(), partition, first_offset_at(&consumer, &topic, partition, position + 1)?.0))
            })
            .collect()
    })
    .await
    .map_err(|_| PlacementError::Broker(KafkaError::Canceled))?
}

fn read_envelope(
    consumer: &BaseConsumer,
    topic: &str,
    partition: i32,
    offset: i64,
) -> Result<EventEnvelope, PlacementError> {
    let unreadable = |reason: String| PlacementError::Unreadable { topic: topic.into(), partition, offset, reason };
    let mut assignment = TopicPartitionList::new();
    assignment.add_partition_offset(topic, partition, Offset::Offset(offset))?;
    consumer.assign(&assignment)?;
    let deadline = std::time::Instant::now() + BROKER_TIMEOUT;
    while std::time::Instant::now() < deadline {
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(message)) if message.offset() == offset => {
                let payload = message.payload().unwrap_or_default();
                return EventEnvelope::from_json_bytes(payload)
                    .map_err(|e| unreadable(format!("not an envelope: {e}")));
            }
            Some(Ok(_)) | None => {}
            Some(Err(error)) => return Err(unreadable(error.to_string())),
        }
    }
    Err(unreadable(format!("no record within {BROKER_TIMEOUT:?}")))
}

/// Puts `event` back on its topic: the same key, value and headers as the relay's
/// record, plus [`REPUBLISHED_AT`]. Consumers skip it as the duplicate it is (its
/// stream version is applied already). Returns where it landed.
pub async fn republish(
    kafka: &KafkaSettings,
    event: &RecordedEvent,
    at: chrono::DateTime<chrono::Utc>,
) -> Result<Placement, PlacementError> {
    let producer = kafka.idempotent_producer()?;
    let topic = kafka.naming.physical(&event.topic);
    let key = event.envelope.stream_id.to_string();
    let payload = event.envelope.to_json_bytes();
    let republished_at = at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let headers = event
        .envelope
        .headers(event.traceparent.as_deref())
        .into_iter()
        .chain([(REPUBLISHED_AT, republished_at)])
        .fold(OwnedHeaders::new_with_capacity(6), |headers, (name, value)| {
            headers.insert(Header { key: name, value: Some(value.as_bytes()) })
        });
    let record = FutureRecord::to(&topic).key(&key).payload(&payload).headers(headers);
    let delivery = producer.send(record, BROKER_TIMEOUT).await.map_err(|(error, _)| error)?;
    Ok(Placement { topic, partition: delivery.partition, offset: Some(delivery.offset) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn murmur2_is_kafkas() {
        // Values from the Java client's test of Utils.murmur2.
        assert_eq!(murmur2(b"21") as i32, -973_932_308);
        assert_eq!(murmur2(b"foobar") as i32, -790_332_482);
        assert_eq!(murmur2(b"a-little-bit-long-string") as i32, -985_981_536);
        assert_eq!(murmur2(b"a-little-bit-longer-string") as i32, -1_486_304_829);
        assert_eq!(murmur2(b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8") as i32, -58_897_971);
        assert_eq!(murmur2(b"abc") as i32, 479_470_107);
    }
}
