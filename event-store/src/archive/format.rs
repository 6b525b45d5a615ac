//! The archive's file format: Avro Object Container Files (deflate), one record per
//! event with every column of the `events` row, and file metadata saying what the
//! file covers.

use std::{collections::HashMap, sync::LazyLock};

use apache_avro::{types::Value, Codec, DeflateSettings, Reader, Schema, Writer};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::ArchiveError;

/// The envelope's Avro schema. `data` and `metadata` are the JSON text of the row's
/// columns; with `event_type` and `schema_version` any reader can validate `data`
/// against the event's JSON Schema.
pub const SCHEMA_JSON: &str = r#"{
  "type": "record", "name": "ArchivedEvent", "namespace": "io.vectis.archive",
  "doc": "One committed event of the Vectis event store, as its row stores it.",
  "fields": [
    {"name": "global_position", "type": "long"},
    {"name": "event_id", "type": {"type": "string", "logicalType": "uuid"}},
    {"name": "stream_id", "type": "string"},
    {"name": "stream_version", "type": "long"},
    {"name": "topic", "type": "string", "doc": "The logical topic, vectis.orders for example"},
    {"name": "event_type", "type": "string"},
    {"name": "schema_version", "type": "int"},
    {"name": "data", "type": "string", "doc": "The event's data, JSON"},
    {"name": "metadata", "type": "string", "doc": "correlation_id, causation_id, traceparent, occurred_at: JSON"},
    {"name": "recorded_at", "type": {"type": "long", "logicalType": "timestamp-micros"}}
  ]
}"#;

static SCHEMA: LazyLock<Schema> =
    LazyLock::new(|| Schema::parse_str(SCHEMA_JSON).expect("the archive's Avro schema is valid"));

/// The writer's name and version, in every file's metadata.
pub const WRITER: &str = concat!("vectis-event-store ", env!("CARGO_PKG_VERSION"));

/// File metadata keys.
const AFTER: &str = "vectis.after_position";
const FIRST: &str = "vectis.first_position";
const LAST: &str = "vectis.last_position";
const COUNT: &str = "vectis.count";
const TOPICS: &str = "vectis.topics";
const WRITER_KEY: &str = "vectis.writer";

/// One archived event: the `events` row.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, sqlx::FromRow)]
pub struct ArchivedEvent {
    pub global_position: i64,
    pub event_id: Uuid,
    pub stream_id: String,
    pub stream_version: i64,
    pub topic: String,
    pub event_type: String,
    pub schema_version: i32,
    pub data: String,
    pub metadata: String,
    pub recorded_at: DateTime<Utc>,
}

impl ArchivedEvent {
    fn to_avro(&self) -> Value {
        Value::Record(vec![
            ("global_position".into(), Value::Long(self.global_position)),
            ("event_id".into(), Value::Uuid(self.event_id)),
            ("stream_id".into(), Value::String(self.stream_id.clone())),
            ("stream_version".into(), Value::Long(self.stream_version)),
            ("topic".into(), Value::String(self.topic.clone())),
            ("event_type".into(), Value::String(self.event_type.clone())),
            ("schema_version".into(), Value::Int(self.schema_version)),
            ("data".into(), Value::String(self.data.clone())),
            ("metadata".into(), Value::String(self.metadata.clone())),
            ("recorded_at".into(), Value::TimestampMicros(self.recorded_at.timestamp_micros())),
        ])
    }

    fn from_avro(value: Value) -> Result<Self, String> {
        let Value::Record(fields) = value else { return Err("not a record".into()) };
        let mut fields: HashMap<String, Value> = fields.into_iter().collect();
        let mut take = |name: &str| fields.remove(name).ok_or_else(|| format!("no field {name}"));
        let long = |value: Value| match value {
            Value::Long(n) | Value::TimestampMicros(n) => Ok(n),
            other => Err(format!("{other:?} is not a long")),
        };
        let text = |value: Value| match value {
            Value::String(s) => Ok(s),
            other => Err(format!("{other:?} is not a string")),
        };
        let global_position = long(take("global_position")?)?;
        let event_id = match take("event_id")? {
            Value::Uuid(id) => id,
            Value::String(s) => s.parse().map_err(|e| format!("event_id: {e}"))?,
            other => return Err(format!("event_id: {other:?}")),
        };
        let stream_id = text(take("stream_id")?)?;
        let stream_version = long(take("stream_version")?)?;
        let topic = text(take("topic")?)?;
        let event_type = text(take("event_type")?)?;
        let schema_version = match take("schema_version")? {
            Value::Int(n) => n,
            other => return Err(format!("schema_version: {other:?}")),
        };
        let data = text(take("data")?)?;
        let metadata = text(take("metadata")?)?;
        let micros = long(take("recorded_at")?)?;
        let recorded_at = DateTime::from_timestamp_micros(micros).ok_or_else(|| format!("recorded_at {micros}"))?;
        Ok(Self {
            global_position,
            event_id,
            stream_id,
            stream_version,
            topic,
            event_type,
            schema_version,
            data,
            metadata,
            recorded_at,
        })
    }
}

/// What a file says it holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileMetadata {
    /// The file covers the log after this position...
    pub after: i64,
    /// ...through this one: every committed event in between is in it.
    pub last: i64,
    pub first: i64,
    pub count: u64,
    pub topics: Vec<String>,
    pub writer: String,
}

/// The file's name: the range it covers, zero-padded so names sort in log order.
pub fn file_name(after: i64, last: i64) -> String {
    format!("events/{:020}-{:020}.avro", after + 1, last)
}

/// The last position a file named by [`file_name`] covers.
pub fn last_position_in_name(name: &str) -> Option<i64> {
    name.strip_prefix("events/")?.strip_suffix(".avro")?.split_once('-')?.1.parse().ok()
}

/// Encodes `events` (in global order, all after `after`) as one file.
pub fn encode(after: i64, events: &[ArchivedEvent]) -> Result<(FileMetadata, Vec<u8>), ArchiveError> {
    let (Some(first), Some(last)) = (events.first(), events.last()) else {
        return Err(ArchiveError::Format("an archive file holds at least one event".into()));
    };
    let mut topics: Vec<String> = events.iter().map(|e| e.topic.clone()).collect();
    topics.sort();
    topics.dedup();
    let metadata = FileMetadata {
        after,
        first: first.global_position,
        last: last.global_position,
        count: events.len() as u64,
        topics,
        writer: WRITER.into(),
    };
    let digest = Sha256::digest(format!("vectis-archive {after} {}", metadata.last));
    let mut marker = [0u8; 16];
    marker.copy_from_slice(&digest[..16]);
    let mut writer = Writer::builder()
        .schema(&SCHEMA)
        .writer(Vec::new())
        .codec(Codec::Deflate(DeflateSettings::default()))
        .marker(marker)
        .build();
    let avro = |e: apache_avro::Error| ArchiveError::Format(e.to_string());
    for (key, value) in [
        (AFTER, metadata.after.to_string()),
        (FIRST, metadata.first.to_string()),
        (LAST, metadata.last.to_string()),
        (COUNT, metadata.count.to_string()),
        (TOPICS, metadata.topics.join(",")),
        (WRITER_KEY, metadata.writer.clone()),
    ] {
        writer.add_user_metadata(key.into(), value).map_err(avro)?;
    }
    for event in events {
        writer.append(event.to_avro()).map_err(avro)?;
    }
    let bytes = writer.into_inner().map_err(avro)?;
    Ok((metadata, bytes))
}

/// Decodes a file: its metadata and events, every record read and checked against
/// the schema.
pub fn decode(bytes: &[u8]) -> Result<(FileMetadata, Vec<ArchivedEvent>), ArchiveError> {
    let avro = |e: apache_avro::Error| ArchiveError::Format(e.to_string());
    let reader = Reader::new(bytes).map_err(avro)?;
    let user = reader.user_metadata().clone();
    let text = |key: &str| {
        user.get(key)
            .map(|v| String::from_utf8_lossy(v).into_owned())
            .ok_or_else(|| ArchiveError::Format(format!("no {key} in the file's metadata")))
    };
    let number =
        |key: &str| text(key)?.parse::<i64>().map_err(|e| ArchiveError::Format(format!("{key} is not a number: {e}")));
    let metadata = FileMetadata {
        after: number(AFTER)?,
        first: number(FIRST)?,
        last: number(LAST)?,
        count: number(COUNT)? as u64,
        topics: text(TOPICS)?.split(',').filter(|t| !t.is_empty()).map(str::to_string).collect(),
        writer: text(WRITER_KEY)?,
    };
    let mut events = Vec::new();
    for value in reader {
        events.push(ArchivedEvent::from_avro(value.map_err(avro)?).map_err(ArchiveError::Format)?);
    }
    Ok((metadata, events))
}

/// A file's checksum, as manifests record it.
pub fn sha256(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(position: i64) -> ArchivedEvent {
        ArchivedEvent {
            global_position: position,
            event_id: Uuid::now_v7(),
            stream_id: format!("order-{}", Uuid::nil()),
            stream_version: position,
            topic: "vectis.orders".into(),
            event_type: "OrderConfirmed".into(),
            schema_version: 1,
            data: r#"{"order_id":"x","ünïcode":"✓"}"#.into(),
            metadata: r#"{"correlation_id":"y"}"#.into(),
            recorded_at: DateTime::from_timestamp_micros(1_764_000_000_123_456).expect("a time"),
        }
    }

    #[test]
    fn a_file_reads_back_as_written() {
        let events: Vec<_> = [3, 4, 7].into_iter().map(event).collect();
        let (metadata, bytes) = encode(2, &events).expect("encodes");
        assert_eq!((metadata.after, metadata.first, metadata.last, metadata.count), (2, 3, 7, 3));
        let (read, back) = decode(&bytes).expect("decodes");
        assert_eq!(read, metadata);
        assert_eq!(back, events);
        assert_eq!(file_name(2, 7), "events/00000000000000000003-00000000000000000007.avro");
    }

    #[test]
    fn a_damaged_file_is_refused() {
        let (_, mut bytes) = encode(0, &[event(1)]).expect("encodes");
        let middle = bytes.len() / 2;
        bytes.truncate(middle);
        assert!(decode(&bytes).is_err());
    }
}
