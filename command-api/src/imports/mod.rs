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

mod batch;
pub mod jobs;
pub mod kinds;
pub mod rows;
mod session;

use std::{collections::VecDeque, io::Read, sync::Arc};

use sha2::{Digest, Sha256};
use uuid::Uuid;
use vectis_event_store::{AppendError, EventMetadata, StoreError};

use crate::handling::{CommandError, CommandHandler};
use batch::{Batch, BatchRunner, Committed, PreviousCommit};
use jobs::ImportStatus;
use kinds::ImportKind;
use rows::{Format, Mapping, ReadError, Rows, SourceRow};
use tokio::sync::oneshot;

/// Rows per batch (`IMPORT_BATCH_ROWS`): one transaction each.
pub const DEFAULT_BATCH_ROWS: usize = 5000;

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
    #[error("an earlier batch of the import failed, so the batches after it were not committed")]
    EarlierBatchFailed,
    #[error("an import batch's task stopped: {0}")]
    Task(String),
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
        (rows.count()?, columns)
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
        let runner = Arc::new(BatchRunner {
            handler: self.handler.clone(),
            import: import.clone(),
            metadata: EventMetadata { correlation_id: import.import_id, causation_id: None, traceparent: None },
        });
        // At most two batches writing while the next is decided (see `batch`).
        let mut writing: VecDeque<(Writing, Arc<Batch>)> = VecDeque::new();
        let mut previous: PreviousCommit = None;
        let mut rows_before = import.rows_through;
        let outcome = loop {
            // A file that stops being readable ends the loop like any failure, so the
            // batches already writing are still waited for below.
            let next = match self.next_rows(&mut rows, import) {
                Ok(next) => next,
                Err(error) => break Err(error),
            };
            let Some(batch) = Batch::new(import, next) else { break Ok(()) };
            let decided = match runner.decide(&batch).await {
                Ok(decided) => decided,
                Err(error) => break Err(error),
            };
            if writing.len() == 2 {
                let (oldest, _) = writing.pop_front().expect("two are writing");
                if let Err(error) = finish(oldest, &mut progress, on_batch).await {
                    break Err(error);
                }
            }
            let batch = Arc::new(batch);
            let wait_first = writing.back().is_some_and(|(_, before)| batch.shares_a_stream_with(before));
            let (committed, next_previous) = oneshot::channel();
            let task = tokio::spawn({
                let runner = runner.clone();
                let batch = batch.clone();
                let previous = previous.replace(next_previous);
                async move { runner.commit(&batch, decided, rows_before, previous, wait_first, committed).await }
            });
            rows_before = batch.last_row;
            writing.push_back((task, batch));
        };
        // Whatever happened, the batches already writing finish (or fail) before the
        // run reports: none is left running behind its caller.
        let mut first_error = outcome.err();
        for (task, _) in writing {
            if let Err(error) = finish(task, &mut progress, on_batch).await {
                first_error.get_or_insert(error);
            }
        }
        match first_error {
            None => Ok(progress),
            Some(error) => Err(error),
        }
    }

    /// The next batch's rows, past those an earlier run committed.
    fn next_rows(&self, rows: &mut Rows<impl Read>, import: &ImportStatus) -> Result<Vec<SourceRow>, ImportError> {
        let mut batch = Vec::with_capacity(self.batch_rows);
        while batch.len() < self.batch_rows {
            match rows.next_row()? {
                None => break,
                Some(row) if row.row as i64 <= import.rows_through => {}
                Some(row) => batch.push(row),
            }
        }
        Ok(batch)
    }
}

/// A batch being written, in a task of its own.
type Writing = tokio::task::JoinHandle<Result<Committed, ImportError>>;

/// Waits for a batch's write and counts what it committed.
async fn finish(
    task: Writing,
    progress: &mut Progress,
    on_batch: &mut impl FnMut(&Progress),
) -> Result<(), ImportError> {
    let committed = task.await.map_err(|error| ImportError::Task(error.to_string()))??;
    progress.done += committed.done;
    progress.failed += committed.failed;
    progress.rows_through = committed.last_row;
    on_batch(progress);
    Ok(())
}
