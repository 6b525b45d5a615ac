//! Bulk imports (the platform's BulkPriceImport and ImportEntity): a file of items,
//! prices or accounts, each row an ordinary command (see `kinds`), run in batches of
//! many streams per transaction (see `session`).
//!
//! An import is identified by its kind and its file's SHA-256, a row by its number.
//! Each batch commits its events, its refused rows and the import's `rows_through`
//! in one transaction, checked against the `rows_through` it started from: a re-run
//! of a finished import appends nothing, a run killed halfway resumes after the last
//! committed batch, and two runs of one import cannot both commit a batch.
//!
//! The file is read twice, streaming: once to hash and count it, once to import it;
//! memory holds one batch of rows.

pub mod jobs;
pub mod kinds;
pub mod rows;
mod session;

use std::io::Read;

use sha2::{Digest, Sha256};
use uuid::Uuid;
use vectis_event_store::{AppendError, EventMetadata, StoreError};

use crate::{
    domain::{Account, InventoryItem},
    handling::{CommandError, CommandHandler, StreamKnown},
};
use jobs::ImportStatus;
use kinds::{ImportKind, RowCommand};
use rows::{Format, Mapping, ReadError, Rows, SourceRow};
use session::BatchSession;

/// Rows per batch (`IMPORT_BATCH_ROWS`): one transaction each.
pub const DEFAULT_BATCH_ROWS: usize = 1000;

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error(transparent)]
    Read(#[from] ReadError),
    #[error("the file has no column for {} (its columns: {}); name one with a mapping such as --map \"COLUMN={}\"", .missing.join(", "), .columns.join(", "), .missing[0])]
    MissingColumns { missing: Vec<&'static str>, columns: Vec<String> },
    #[error(
        "this file was imported as {import_id} with the mapping {mapping:?}; run it with the same mapping to resume it"
    )]
    MappingDiffers { import_id: Uuid, mapping: Mapping },
    #[error("import {0} is advancing in another run; this run stopped")]
    RunElsewhere(Uuid),
    #[error("import {0} is not recorded")]
    Vanished(Uuid),
    #[error("a batch kept meeting concurrent changes to its streams; run the import again to resume it")]
    Contended,
    #[error("a row's command failed: {0}")]
    Command(#[source] CommandError),
    #[error("appending a batch: {0}")]
    Append(#[from] AppendError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
}

/// A file's hash, rows and (CSV) columns, read once without keeping it.
#[derive(Debug, Clone)]
pub struct Survey {
    pub sha256: String,
    pub rows: i64,
    pub columns: Vec<String>,
}

/// Hashes and counts `source`, and checks a CSV header names every required field.
pub fn survey(source: impl Read, kind: ImportKind, format: Format, mapping: &Mapping) -> Result<Survey, ImportError> {
    let mut hashing = HashingReader { inner: source, hash: Sha256::new() };
    let (rows, columns) = {
        let mut rows = Rows::new(&mut hashing, format, mapping)?;
        let columns = rows.columns.clone();
        if format == Format::Csv {
            let missing = kind.missing_columns(&columns);
            if !missing.is_empty() {
                return Err(ImportError::MissingColumns { missing, columns });
            }
        }
        let mut count = 0;
        while rows.next_row()?.is_some() {
            count += 1;
        }
        (count, columns)
    };
    // Whatever follows the last row (a trailing newline) is part of the file.
    std::io::copy(&mut hashing, &mut std::io::sink()).map_err(ReadError::Io)?;
    Ok(Survey { sha256: hex(&hashing.hash.finalize()), rows, columns })
}

struct HashingReader<R> {
    inner: R,
    hash: Sha256,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hash.update(&buf[..n]);
        Ok(n)
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// How far a run got.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Progress {
    pub total_rows: i64,
    pub done: i64,
    pub failed: i64,
    pub rows_through: i64,
}

/// Runs imports through the command handler.
#[derive(Clone)]
pub struct Importer {
    handler: CommandHandler,
    batch_rows: usize,
}

impl Importer {
    pub fn new(handler: CommandHandler, batch_rows: usize) -> Self {
        Self { handler, batch_rows: batch_rows.max(1) }
    }

    pub fn pool(&self) -> &sqlx::PgPool {
        self.handler.store().pool()
    }

    /// Runs `import` over `source` (its file) from after its `rows_through`, reporting
    /// after every batch; marks it finished, or failed with the error.
    pub async fn run(
        &self,
        import: &ImportStatus,
        source: impl Read,
        mut on_batch: impl FnMut(&Progress),
    ) -> Result<Progress, ImportError> {
        let pool = self.handler.store().pool();
        jobs::running(pool, import.import_id).await?;
        let outcome = self.run_rows(import, source, &mut on_batch).await;
        match &outcome {
            Ok(_) => jobs::finished(pool, import.import_id).await?,
            // Another run owns it: leave its record alone.
            Err(ImportError::RunElsewhere(_)) => {}
            Err(error) => {
                tracing::warn!(import_id = %import.import_id, %error, "an import stopped; running it again resumes it");
                // Recording the failure must not hide it (the database may be what failed).
                if let Err(record) = jobs::failed(pool, import.import_id, &error.to_string()).await {
                    tracing::warn!(import_id = %import.import_id, error = %record, "cannot record why an import stopped");
                }
            }
        }
        outcome
    }

    async fn run_rows(
        &self,
        import: &ImportStatus,
        source: impl Read,
        on_batch: &mut impl FnMut(&Progress),
    ) -> Result<Progress, ImportError> {
        let mut rows = Rows::new(source, import.format, &import.mapping)?;
        let mut progress = Progress {
            total_rows: import.total_rows,
            done: import.done,
            failed: import.failed,
            rows_through: import.rows_through,
        };
        loop {
            let mut batch = Vec::with_capacity(self.batch_rows);
            while batch.len() < self.batch_rows {
                match rows.next_row()? {
                    None => break,
                    // An earlier run committed it.
                    Some(row) if row.row as i64 <= import.rows_through => {}
                    Some(row) => batch.push(row),
                }
            }
            let Some(last) = batch.last() else { break };
            let last_row = last.row as i64;
            self.commit_batch(import, &batch, &mut progress, last_row).await?;
            on_batch(&progress);
        }
        Ok(progress)
    }

    /// Decides every row of `batch` and commits the batch, deciding again on fresh
    /// state when a stream moved meanwhile.
    async fn commit_batch(
        &self,
        import: &ImportStatus,
        batch: &[SourceRow],
        progress: &mut Progress,
        last_row: i64,
    ) -> Result<(), ImportError> {
        let commands: Vec<Result<RowCommand, String>> = batch
            .iter()
            .map(|row| match &row.fields {
                Ok(fields) => import.kind.command(fields, &import.file_sha256, row.row, &import.actor),
                Err(reason) => Err(format!("the row {reason}")),
            })
            .collect();
        let mut streams: Vec<&str> = commands.iter().flatten().map(|c| c.stream().as_str()).collect();
        streams.sort_unstable();
        streams.dedup();
        let metadata = EventMetadata { correlation_id: import.import_id, causation_id: None, traceparent: None };
        for attempt in 1..=5 {
            let mut session = BatchSession::open(self.handler.store(), &streams).await?;
            let mut done = 0;
            let mut rejected: Vec<(i64, String, &str)> = Vec::new();
            for (row, command) in batch.iter().zip(&commands) {
                let outcome = match command {
                    Err(reason) => Err(reason.clone()),
                    Ok(command) => self.execute(&mut session, command, &metadata).await?,
                };
                match outcome {
                    Ok(()) => done += 1,
                    Err(reason) => rejected.push((row.row as i64, reason, &row.record)),
                }
            }
            let mut tx = vectis_runtime::database::begin(self.handler.store().pool()).await?;
            let written = match session.write(&mut tx).await {
                Ok(written) => written,
                Err(AppendError::Conflict { stream_id, .. }) => {
                    tracing::debug!(import_id = %import.import_id, %stream_id, attempt, "a stream moved under an import batch; deciding it again");
                    tx.rollback().await?;
                    continue;
                }
                Err(other) => return Err(other.into()),
            };
            let advanced = sqlx::query(
                "UPDATE imports SET rows_through = $3, done = done + $4, failed = failed + $5, updated_at = now()
                  WHERE import_id = $1 AND rows_through = $2",
            )
            .bind(import.import_id)
            .bind(progress.rows_through)
            .bind(last_row)
            .bind(done)
            .bind(rejected.len() as i64)
            .execute(&mut *tx)
            .await?;
            if advanced.rows_affected() == 0 {
                tx.rollback().await?;
                return Err(ImportError::RunElsewhere(import.import_id));
            }
            if !rejected.is_empty() {
                sqlx::query(
                    "INSERT INTO import_rejections (import_id, row_number, reason, record)
                     SELECT $1, * FROM UNNEST($2::bigint[], $3::text[], $4::text[])",
                )
                .bind(import.import_id)
                .bind(rejected.iter().map(|r| r.0).collect::<Vec<_>>())
                .bind(rejected.iter().map(|r| r.1.as_str()).collect::<Vec<_>>())
                .bind(rejected.iter().map(|r| r.2).collect::<Vec<_>>())
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
            session.committed(&written);
            progress.done += done;
            progress.failed += rejected.len() as i64;
            progress.rows_through = last_row;
            return Ok(());
        }
        Err(ImportError::Contended)
    }

    /// Runs one row's command on the batch: `Ok(Err(reason))` is a refusal (the row is
    /// rejected), `Err` a failure that stops the run.
    async fn execute(
        &self,
        session: &mut BatchSession,
        command: &RowCommand,
        metadata: &EventMetadata,
    ) -> Result<Result<(), String>, ImportError> {
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
