//! One batch of an import: its rows decided as commands on a [`BatchSession`], then
//! written with the import's progress in one transaction.
//!
//! Batches overlap, so that both cores work: while one batch is written, the next is
//! decided, and two may be writing at once. Their writes touch disjoint streams (a
//! batch sharing a stream with the one before it starts writing only once that one
//! committed), so they never wait on each other's rows; each commits only after the
//! batch before it did (its progress moves `rows_through` on from where that one left
//! it), so the import's rows still commit in file order and a run killed anywhere
//! resumes after its last committed batch. A batch decided early may have read a
//! stream that moved before it wrote; its write then fails the version check and the
//! batch is decided again on fresh state, as a request that lost an append race is.

use std::collections::HashSet;

use tokio::sync::oneshot;
use uuid::Uuid;
use vectis_event_store::{AppendError, EventMetadata};

use super::{jobs::ImportStatus, kinds::RowCommand, rows::SourceRow, session::BatchSession, ImportError};
use crate::{
    domain::{Account, InventoryItem},
    handling::{CommandHandler, StreamKnown},
};

/// Rows read from the file, each turned into its command (or the reason it cannot be).
pub(super) struct Batch {
    rows: Vec<SourceRow>,
    commands: Vec<Result<RowCommand, String>>,
    streams: Vec<String>,
    pub(super) last_row: i64,
}

impl Batch {
    /// `None` for no rows.
    pub(super) fn new(import: &ImportStatus, rows: Vec<SourceRow>) -> Option<Self> {
        let last_row = rows.last()?.row as i64;
        let commands: Vec<Result<RowCommand, String>> = rows
            .iter()
            .map(|row| match &row.fields {
                Ok(fields) => import.kind.command(fields, &import.file_sha256, row.row, &import.actor),
                Err(reason) => Err(format!("the row {reason}")),
            })
            .collect();
        let mut streams: Vec<String> = commands.iter().flatten().map(|c| c.stream().to_string()).collect();
        streams.sort_unstable();
        streams.dedup();
        Some(Self { rows, commands, streams, last_row })
    }

    pub(super) fn shares_a_stream_with(&self, other: &Batch) -> bool {
        let theirs: HashSet<&str> = other.streams.iter().map(String::as_str).collect();
        self.streams.iter().any(|s| theirs.contains(s.as_str()))
    }
}

/// What a committed batch counted.
#[derive(Debug, Clone, Copy)]
pub(super) struct Committed {
    pub done: i64,
    pub failed: i64,
    pub last_row: i64,
}

/// The batch before: resolved once it committed (dropped unresolved if it failed).
pub(super) type PreviousCommit = Option<oneshot::Receiver<()>>;

/// A batch's appends, collected but not written, and its refused rows.
pub(super) struct Decided {
    session: BatchSession,
    done: i64,
    /// (row number, reason, the row as the file has it)
    rejected: Vec<(i64, String, String)>,
}

/// Decides and writes batches of one import.
pub(super) struct BatchRunner {
    pub handler: CommandHandler,
    pub import: ImportStatus,
    pub metadata: EventMetadata,
}

impl BatchRunner {
    /// Runs every row's command of `batch` on a session over its streams.
    pub(super) async fn decide(&self, batch: &Batch) -> Result<Decided, ImportError> {
        let streams: Vec<&str> = batch.streams.iter().map(String::as_str).collect();
        let mut session = BatchSession::open(self.handler.store(), &streams).await?;
        let mut done = 0;
        let mut rejected = Vec::new();
        for (row, command) in batch.rows.iter().zip(&batch.commands) {
            let outcome = match command {
                Err(reason) => Err(reason.clone()),
                Ok(command) => self.execute(&mut session, command).await?,
            };
            match outcome {
                Ok(()) => done += 1,
                Err(reason) => rejected.push((row.row as i64, reason, row.record())),
            }
        }
        Ok(Decided { session, done, rejected })
    }

    /// Writes `decided` (the decisions of `batch`) and moves the import's progress on
    /// from `rows_before` once `previous` committed, deciding again on fresh state
    /// while a stream moved under it. `wait_first`: the batch shares a stream with the
    /// previous one, so it writes nothing before that one committed. Resolves
    /// `committed` when it committed.
    pub(super) async fn commit(
        &self,
        batch: &Batch,
        mut decided: Decided,
        rows_before: i64,
        mut previous: PreviousCommit,
        wait_first: bool,
        committed: oneshot::Sender<()>,
    ) -> Result<Committed, ImportError> {
        if wait_first {
            self.wait_for(&mut previous).await?;
        }
        for attempt in 1..=5 {
            if attempt > 1 {
                decided = self.decide(batch).await?;
            }
            match self.write(batch, &mut decided, rows_before, &mut previous).await? {
                Written::Yes => {
                    let _ = committed.send(());
                    return Ok(Committed {
                        done: decided.done,
                        failed: decided.rejected.len() as i64,
                        last_row: batch.last_row,
                    });
                }
                Written::StreamMoved(stream_id) => {
                    tracing::debug!(import_id = %self.import.import_id, %stream_id, attempt, "a stream moved under an import batch; deciding it again");
                    // Decided again only on what the batch before left.
                    self.wait_for(&mut previous).await?;
                }
            }
        }
        Err(ImportError::Contended)
    }

    async fn wait_for(&self, previous: &mut PreviousCommit) -> Result<(), ImportError> {
        if let Some(receiver) = previous.take() {
            receiver.await.map_err(|_| ImportError::EarlierBatchFailed)?;
        }
        Ok(())
    }

    async fn write(
        &self,
        batch: &Batch,
        decided: &mut Decided,
        rows_before: i64,
        previous: &mut PreviousCommit,
    ) -> Result<Written, ImportError> {
        let import_id: Uuid = self.import.import_id;
        let mut tx = vectis_runtime::database::begin(self.handler.store().pool()).await?;
        let written = match decided.session.write(&mut tx).await {
            Ok(written) => written,
            Err(AppendError::Conflict { stream_id, .. }) => {
                tx.rollback().await?;
                return Ok(Written::StreamMoved(stream_id.to_string()));
            }
            Err(other) => return Err(other.into()),
        };
        // Rows commit in file order: this batch's progress starts where the one
        // before it ends.
        if let Err(error) = self.wait_for(previous).await {
            tx.rollback().await?;
            return Err(error);
        }
        let advanced = sqlx::query(
            "UPDATE imports SET rows_through = $3, done = done + $4, failed = failed + $5, updated_at = now()
              WHERE import_id = $1 AND rows_through = $2",
        )
        .bind(import_id)
        .bind(rows_before)
        .bind(batch.last_row)
        .bind(decided.done)
        .bind(decided.rejected.len() as i64)
        .execute(&mut *tx)
        .await?;
        if advanced.rows_affected() == 0 {
            tx.rollback().await?;
            return Err(ImportError::RunElsewhere(import_id));
        }
        if !decided.rejected.is_empty() {
            let rejected = &decided.rejected;
            sqlx::query(
                "INSERT INTO import_rejections (import_id, row_number, reason, record)
                 SELECT $1, * FROM UNNEST($2::bigint[], $3::text[], $4::text[])",
            )
            .bind(import_id)
            .bind(rejected.iter().map(|r| r.0).collect::<Vec<_>>())
            .bind(rejected.iter().map(|r| r.1.as_str()).collect::<Vec<_>>())
            .bind(rejected.iter().map(|r| r.2.as_str()).collect::<Vec<_>>())
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        decided.session.committed(&written);
        Ok(Written::Yes)
    }

    /// Runs one row's command on the batch: `Ok(Err(reason))` is a refusal (the row is
    /// rejected), `Err` a failure that stops the run.
    async fn execute(
        &self,
        session: &mut BatchSession,
        command: &RowCommand,
    ) -> Result<Result<(), String>, ImportError> {
        let metadata = &self.metadata;
        let outcome = match command {
            RowCommand::Inventory { stream, command } => self
                .handler
                .execute_on::<InventoryItem, _>(session, StreamKnown::MayExist, stream, None, metadata, |_| {
                    command.clone()
                })
                .await
                .map(|_| ()),
            RowCommand::NewAccount { stream, command } => self
                .handler
                .execute_on::<Account, _>(session, StreamKnown::MayExist, stream, None, metadata, |_| command.clone())
                .await
                .map(|_| ()),
        };
        match outcome {
            Ok(()) => Ok(Ok(())),
            Err(error) if error.is_rejection() => Ok(Err(error.to_string())),
            Err(error) => Err(ImportError::Command(error)),
        }
    }
}

enum Written {
    Yes,
    StreamMoved(String),
}
