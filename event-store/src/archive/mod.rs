//! The archive (DESIGN.md "Archive"): every committed event, in global order, copied
//! into Avro Object Container Files on object storage, outside PostgreSQL and the
//! broker: the disaster-recovery copy of the log.
//!
//! Layout under the archive's root:
//! - `events/<first>-<last>.avro`: the events after the previous file's last position
//!   through `<last>` (positions zero-padded to 20 digits, so names sort in log order;
//!   a rolled-back append leaves a position no event has, so a file's range may hold
//!   fewer events than its width). A file rolls at `ARCHIVE_FILE_EVENTS` events.
//! - `manifests/<run>.json`: per export run, each file it wrote with its range, count,
//!   size and SHA-256.
//!
//! Where it lives: a directory or an S3-compatible store (`storage`). What reads it:
//! `verify` (every check, every problem listed) and `restore` (an empty event store
//! rebuilt with the same ids and positions). `job` runs the export on a timer in
//! `vectis-relay`, with its metrics.
//!
//! A file becomes visible only complete (object storage's put: a rename on a local
//! directory, a single upload on S3), and the cursor in PostgreSQL
//! (`archive_cursors`) moves past a file only after it is stored and listed in its
//! run's manifest, so a crash leaves nothing half-written. The next run exports the
//! same range again; a file already stored with exactly those events is kept as it is
//! (so an earlier manifest that lists it stays true).

pub mod export;
pub mod format;
pub mod job;
pub mod restore;
pub mod storage;
pub mod verify;

#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    #[error("object storage: {0}")]
    Storage(#[from] object_store::Error),
    #[error(
        "the object store refused the credentials for {location} ({answer}): check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
    )]
    Refused { location: String, answer: String },
    #[error("the archive location {location:?}: {reason}")]
    Location { location: String, reason: String },
    #[error(
        "the target event store is not empty ({events} events, {streams} streams): a restore rebuilds an empty one; \
         name a new database"
    )]
    NotEmpty { events: i64, streams: i64 },
    #[error("the archive {location} is damaged, nothing was restored: {problem} (vectis archive verify lists every problem)")]
    Damaged { location: String, problem: String },
    #[error("another export of {location} is running; this one wrote nothing")]
    Busy { location: String },
    #[error("archive format: {0}")]
    Format(String),
    #[error("reading the event store: {0}")]
    Store(#[from] crate::StoreError),
}
