//! A batch's one transaction: decode, sequence per stream, park, apply, checkpoint; and
//! the slow path that applies stream by stream so only failing streams park.

use std::collections::{HashMap, HashSet};

use futures::{future::BoxFuture, FutureExt};
use sqlx::PgConnection;
use vectis_schemas::StreamId;

use crate::{
    checkpoints::{self, DeadLetter, RowLock},
    event::{decode, ProjectedEvent},
    handler::ApplyError,
    runtime::{BatchOutcome, BatchReport, GroupConsumer, Record},
    sequencing::{Sequence, WAITING_BEHIND_PARKED},
};

impl GroupConsumer {
    /// One transaction: decode, skip duplicates, park gaps and poison (and what waits
    /// behind them), apply, record stream versions and checkpoints.
    ///
    /// (Boxed: spawning a future that holds sqlx futures over borrowed data otherwise
    /// trips the compiler's `Send` inference.)
    pub fn apply_batch<'a>(
        &'a self,
        records: &'a [Record],
        isolate: bool,
    ) -> BoxFuture<'a, Result<BatchOutcome, ApplyError>> {
        self.apply_batch_inner(records, isolate).boxed()
    }

    async fn apply_batch_inner(&self, records: &[Record], isolate: bool) -> Result<BatchOutcome, ApplyError> {
        let naming = &self.settings.kafka.naming;
        let mut tx = vectis_runtime::database::begin(&self.pool).await?;
        if !checkpoints::lock_current(&mut tx, &self.target, RowLock::Share).await? {
            return Ok(BatchOutcome::Retired);
        }
        let decoded: Vec<_> = records
            .iter()
            .map(|r| decode(r.topic.strip_prefix(naming.prefix()).unwrap_or(&r.topic), r.key.as_deref(), &r.payload))
            .collect();
        let keys: Vec<String> =
            records.iter().filter_map(|r| r.key.clone()).collect::<HashSet<_>>().into_iter().collect();
        let checkpoints::StreamStates { mut versions, mut parked } =
            checkpoints::stream_states(&mut tx, &self.target, &keys).await?;
        let mut report = BatchReport::default();
        let mut letters = Vec::new();
        let mut to_apply: Vec<(usize, ProjectedEvent)> = Vec::new();
        for (index, (record, decoded)) in records.iter().zip(decoded).enumerate() {
            let letter = |error: String, event: Option<&ProjectedEvent>| DeadLetter::new(record, event, error);
            let event = match decoded {
                Err(error) => {
                    letters.push(letter(format!("undecodable: {error}"), None));
                    if let Some(key) = &record.key {
                        parked.insert(key.clone());
                    }
                    continue;
                }
                Ok(event) => event,
            };
            if parked.contains(event.stream_id.as_str()) {
                letters.push(letter(WAITING_BEHIND_PARKED.into(), Some(&event)));
                continue;
            }
            let current = versions.get(event.stream_id.as_str()).copied().unwrap_or(0);
            match Sequence::of(current, event.stream_version) {
                Sequence::Duplicate => report.duplicates += 1,
                Sequence::Next => {
                    versions.insert(event.stream_id.to_string(), event.stream_version);
                    to_apply.push((index, event));
                }
                gap @ Sequence::Gap { .. } => {
                    tracing::error!(
                        projection = self.target.projection, stream = %event.stream_id,
                        applied = current, received = event.stream_version, "gap in a stream's versions"
                    );
                    letters.push(letter(gap.gap_error().unwrap_or_default(), Some(&event)));
                    parked.insert(event.stream_id.to_string());
                }
            }
        }
        let schema = self.target.schema();
        let applied: Vec<ProjectedEvent> = if isolate {
            self.apply_stream_by_stream(&mut tx, &schema, records, to_apply, &mut letters).await?
        } else {
            let events: Vec<ProjectedEvent> = to_apply.into_iter().map(|(_, e)| e).collect();
            self.handler.apply(&mut tx, &schema, &events).await?;
            events
        };
        let mut new_versions: HashMap<String, i64> = HashMap::new();
        for event in &applied {
            new_versions.insert(event.stream_id.to_string(), event.stream_version);
        }
        report.applied = applied.len();
        report.parked = letters.len();
        checkpoints::park(&mut tx, &self.target, &letters).await?;
        checkpoints::save_progress(&mut tx, &self.target, &new_versions, &next_offsets(records)).await?;
        tx.commit().await?;
        Ok(BatchOutcome::Applied(report, applied))
    }

    /// The slow path after repeated failures: each stream in its own savepoint, so a
    /// stream whose events cannot be applied parks and the others go on.
    fn apply_stream_by_stream<'a>(
        &'a self,
        conn: &'a mut PgConnection,
        schema: &'a str,
        records: &'a [Record],
        to_apply: Vec<(usize, ProjectedEvent)>,
        letters: &'a mut Vec<DeadLetter>,
    ) -> BoxFuture<'a, Result<Vec<ProjectedEvent>, ApplyError>> {
        async move {
            let mut by_stream: Vec<(StreamId, Vec<(usize, ProjectedEvent)>)> = Vec::new();
            for (index, event) in to_apply {
                match by_stream.iter_mut().find(|(stream, _)| *stream == event.stream_id) {
                    Some((_, events)) => events.push((index, event)),
                    None => by_stream.push((event.stream_id.clone(), vec![(index, event)])),
                }
            }
            let mut applied = Vec::new();
            for (stream, events) in by_stream {
                sqlx::query("SAVEPOINT stream").execute(&mut *conn).await?;
                let plain: Vec<ProjectedEvent> = events.iter().map(|(_, e)| e.clone()).collect();
                match self.handler.apply(&mut *conn, schema, &plain).await {
                    Ok(()) => {
                        sqlx::query("RELEASE SAVEPOINT stream").execute(&mut *conn).await?;
                        applied.extend(plain);
                    }
                    Err(error) if error.is_transient() => return Err(error),
                    Err(error) => {
                        sqlx::query("ROLLBACK TO SAVEPOINT stream").execute(&mut *conn).await?;
                        tracing::error!(projection = self.target.projection, %stream, %error, "apply keeps failing: parked");
                        for (position, (index, event)) in events.iter().enumerate() {
                            let error = if position == 0 {
                                format!("apply failed: {error}")
                            } else {
                                WAITING_BEHIND_PARKED.into()
                            };
                            letters.push(DeadLetter::new(&records[*index], Some(event), error));
                        }
                    }
                }
            }
            Ok(applied)
        }
        .boxed()
    }
}

/// Per topic partition, the offset after the last of `records`: the checkpoint.
pub(crate) fn next_offsets(records: &[Record]) -> HashMap<(String, i32), i64> {
    let mut next: HashMap<(String, i32), i64> = HashMap::new();
    for record in records {
        let entry = next.entry((record.topic.clone(), record.partition)).or_insert(0);
        *entry = (*entry).max(record.offset + 1);
    }
    next
}
