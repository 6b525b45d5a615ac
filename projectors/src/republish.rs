//! The way over to a broker that lost the log (a new broker, recreated topics): the
//! relay publishes every event again from the event store, the source of truth, and the
//! projections' checkpoints, which count offsets of the old log, are discarded.
//!
//! Each projection then reads the new log from its start. Its tables and applied stream
//! versions are kept, so what it already applied is skipped as duplicates and only what
//! it lacks is applied: the read models are the fold of the event store throughout, and
//! readers never see them go back. (A blue/green `vectis projections rebuild` works too
//! afterwards, for whoever wants the tables built anew.)
//!
//! Everything that reads or writes those positions must be stopped: the relay (its lock
//! is taken here) and every consumer (their groups must have no members), since a
//! running consumer carries its old offsets in memory.

use std::time::Duration;

use rdkafka::error::KafkaError;
use sqlx::{Connection, PgConnection, PgPool};
use vectis_event_store::{kafka, kafka::KafkaSettings, relay};
use vectis_schemas::TOPICS;

/// What a republish changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Republished {
    /// The relay's cursor before: the relay publishes the events up to it again.
    pub relay_cursor_was: i64,
    /// Checkpoint rows (projection version × partition) discarded.
    pub checkpoints_discarded: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum RepublishError {
    #[error("the relay {0:?} is running (it holds the relay lock): stop it first")]
    RelayRunning(String),
    #[error("consumers are running ({}): stop them first", describe(.0))]
    ConsumersRunning(Vec<(String, usize)>),
    #[error("the event store: {0}")]
    Database(#[from] sqlx::Error),
    #[error("asking the broker which consumer groups have members: {0}")]
    Broker(#[from] KafkaError),
}

fn describe(groups: &[(String, usize)]) -> String {
    groups
        .iter()
        .map(|(group, members)| format!("group {group} has {members} member(s)"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Rewinds the relay `relay_name` to the start and discards every projection
/// checkpoint on the log's topics (as `kafka` names them), in one transaction, after
/// making sure that neither the relay nor any consumer is running.
pub async fn republish(pool: &PgPool, kafka: &KafkaSettings, relay_name: &str) -> Result<Republished, RepublishError> {
    // The relay's lock is session-level: a connection of our own holds it until closed.
    let mut conn = PgConnection::connect_with(&pool.connect_options()).await?;
    if !relay::try_lock(&mut conn, relay_name).await? {
        return Err(RepublishError::RelayRunning(relay_name.to_string()));
    }
    let consumers = format!("{}vectis.", kafka.naming.prefix());
    let running = kafka::groups_with_members(kafka, &consumers, Duration::from_secs(10)).await?;
    if !running.is_empty() {
        return Err(RepublishError::ConsumersRunning(running));
    }
    let topics: Vec<String> = TOPICS.iter().map(|spec| kafka.naming.physical(spec.name)).collect();
    let mut tx = conn.begin().await?;
    let relay_cursor_was = relay::rewind(&mut tx, relay_name).await?;
    let checkpoints_discarded = sqlx::query("DELETE FROM projection_checkpoints WHERE topic = ANY($1)")
        .bind(&topics)
        .execute(&mut *tx)
        .await?
        .rows_affected();
    tx.commit().await?;
    conn.close().await?;
    tracing::info!(relay = relay_name, relay_cursor_was, checkpoints_discarded, "log republished from the event store");
    Ok(Republished { relay_cursor_was, checkpoints_discarded })
}
