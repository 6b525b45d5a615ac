//! Idempotency keys with Stripe's semantics.
//!
//! * The first request under a key inserts the key's record inside its transaction;
//!   the row lock makes any concurrent duplicate wait for that transaction.
//! * When it commits, the stored response is what every later request with the same
//!   key and the same request fingerprint gets, byte for byte.
//! * The same key with a different fingerprint is refused.
//! * If the first request fails without completing (an infrastructure error), its
//!   transaction rolls back and the key is free again: nothing half-done is kept.
//!
//! Records live at least `retention` (24 h or more); an expired record is replaced
//! by the next request that uses its key.

use std::time::{Duration, Instant};

use sqlx::{Postgres, Transaction};

use crate::{
    error::AppendError, AppendOutcome, AppendRequest, EventStore, Mention, RecordedEvent, Snapshot, StoreError,
};

/// PostgreSQL's `lock_not_available`, raised when `lock_timeout` expires.
const LOCK_NOT_AVAILABLE: &str = "55P03";

/// How long a duplicate waits for the request holding its key, by default.
pub const DEFAULT_IDEMPOTENCY_WAIT: Duration = Duration::from_secs(10);

/// The shortest retention allowed: clients retry within a day.
pub const MIN_RETENTION: Duration = Duration::from_secs(24 * 60 * 60);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyKey {
    /// Whose key this is (an API client): keys of different clients never collide.
    pub scope: String,
    pub key: String,
}

/// The response to replay for a key, stored exactly as first sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredResponse {
    pub status: u16,
    pub content_type: String,
    pub body: Vec<u8>,
}

// Returned once per request and matched at once: boxing the command would only add an
// allocation.
#[allow(clippy::large_enum_variant)]
pub enum IdempotencyBegin {
    /// First use of the key: run the command through this, then `complete` it.
    Fresh(IdempotentCommand),
    /// The key was used before with the same request: send this again.
    Replay(StoredResponse),
    /// The key was used before with a different request.
    Mismatch,
    /// A request with this key is still running (it did not finish within the
    /// store's idempotency wait): try again shortly.
    InProgress,
}

/// A command running under a fresh idempotency key. Its transaction holds the key;
/// dropping it without `complete` rolls everything back.
pub struct IdempotentCommand {
    tx: Transaction<'static, Postgres>,
    store: EventStore,
    key: IdempotencyKey,
    /// What it appended (a workflow step may append to two streams), counted once committed.
    appended: Vec<(AppendOutcome, Instant)>,
    /// Snapshots of what it appended, written once it has committed.
    snapshots: Vec<Snapshot>,
}

impl EventStore {
    /// Claims `key` for a request whose fingerprint (a hash of method, path and body,
    /// say) is `request_hash`, or tells the caller what to answer instead.
    pub async fn begin_idempotent(
        &self,
        key: IdempotencyKey,
        request_hash: &[u8],
        retention: Duration,
    ) -> Result<IdempotencyBegin, StoreError> {
        let retention = retention.max(MIN_RETENTION);
        let mut tx = vectis_runtime::database::begin(self.pool()).await?;
        // A duplicate waits for the request holding the key, but not for ever.
        sqlx::query(&format!("SET LOCAL lock_timeout = {}", self.idempotency_wait().as_millis().max(1)))
            .execute(&mut *tx)
            .await?;
        // Inserts, or takes over an expired record; a live record makes this return
        // no row. A concurrent first request holding the key makes this wait.
        let claimed: Result<Option<bool>, sqlx::Error> = sqlx::query_scalar(
            "INSERT INTO idempotency_records (scope, idempotency_key, request_hash, expires_at)
             VALUES ($1, $2, $3, now() + make_interval(secs => $4))
             ON CONFLICT (scope, idempotency_key) DO UPDATE
                SET request_hash = EXCLUDED.request_hash, response_status = NULL,
                    response_content_type = NULL, response_body = NULL,
                    created_at = now(), expires_at = EXCLUDED.expires_at
              WHERE idempotency_records.expires_at < now()
             RETURNING true",
        )
        .bind(&key.scope)
        .bind(&key.key)
        .bind(request_hash)
        .bind(retention.as_secs_f64())
        .fetch_optional(&mut *tx)
        .await;
        let claimed = match claimed {
            Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some(LOCK_NOT_AVAILABLE) => {
                return Ok(IdempotencyBegin::InProgress);
            }
            other => other?,
        };
        if claimed.is_some() {
            return Ok(IdempotencyBegin::Fresh(IdempotentCommand {
                tx,
                store: self.clone(),
                key,
                appended: Vec::new(),
                snapshots: Vec::new(),
            }));
        }
        let (stored_hash, status, content_type, body): (Vec<u8>, Option<i16>, Option<String>, Option<Vec<u8>>) =
            sqlx::query_as(
                "SELECT request_hash, response_status, response_content_type, response_body
                   FROM idempotency_records WHERE scope = $1 AND idempotency_key = $2",
            )
            .bind(&key.scope)
            .bind(&key.key)
            .fetch_one(&mut *tx)
            .await?;
        tx.rollback().await?;
        if stored_hash != request_hash {
            return Ok(IdempotencyBegin::Mismatch);
        }
        match (status, content_type, body) {
            (Some(status), Some(content_type), Some(body)) => {
                Ok(IdempotencyBegin::Replay(StoredResponse { status: status as u16, content_type, body }))
            }
            _ => Err(StoreError::IncompleteIdempotencyRecord { scope: key.scope, key: key.key }),
        }
    }
}

impl IdempotentCommand {
    pub fn key(&self) -> &IdempotencyKey {
        &self.key
    }

    /// Reads a stream inside the key's transaction. A command holding a key reads its
    /// aggregate here, not from the pool: concurrent duplicates of its request each hold
    /// a pooled connection while they wait for the key, and the holder must never need
    /// another one to finish.
    pub async fn read_stream(
        &mut self,
        stream_id: &vectis_schemas::StreamId,
        from_version: i64,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        crate::store::read_stream(&mut self.tx, stream_id.as_str(), from_version).await
    }

    /// The stream's events mentioning `mention`, inside the key's transaction.
    pub async fn read_stream_mentioning(
        &mut self,
        stream_id: &vectis_schemas::StreamId,
        mention: Mention,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        crate::store::read_stream_mentioning(&mut self.tx, stream_id.as_str(), mention).await
    }

    /// The newest snapshot of `stream_id`, inside the key's transaction.
    pub async fn read_snapshot(&mut self, stream_id: &str) -> Result<Option<Snapshot>, StoreError> {
        crate::snapshots::read(&mut self.tx, stream_id).await
    }

    /// Writes `snapshot` once this command has committed (never if it rolls back: it
    /// reflects events appended here).
    pub fn save_snapshot_after_commit(&mut self, snapshot: Snapshot) {
        self.snapshots.push(snapshot);
    }

    pub fn store(&self) -> &EventStore {
        &self.store
    }

    /// Appends inside the key's transaction. A rejected append leaves no trace, so the
    /// caller can still store the rejection as the key's response.
    pub async fn append(&mut self, request: AppendRequest) -> Result<AppendOutcome, AppendError> {
        let started = Instant::now();
        let mut savepoint = sqlx::Connection::begin(&mut *self.tx).await?;
        match self.store.append_in(&mut savepoint, request).await {
            Ok(outcome) => {
                savepoint.commit().await?;
                self.appended.push((outcome.clone(), started));
                Ok(outcome)
            }
            Err(e) => {
                savepoint.rollback().await?;
                Err(e)
            }
        }
    }

    /// Stores `response` as the key's answer and commits it with the append.
    pub async fn complete(mut self, response: &StoredResponse) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE idempotency_records SET response_status = $3, response_content_type = $4, response_body = $5
              WHERE scope = $1 AND idempotency_key = $2",
        )
        .bind(&self.key.scope)
        .bind(&self.key.key)
        .bind(response.status as i16)
        .bind(&response.content_type)
        .bind(&response.body)
        .execute(&mut *self.tx)
        .await?;
        self.tx.commit().await?;
        for (outcome, started) in &self.appended {
            self.store.record_appended(outcome, *started);
        }
        for snapshot in self.snapshots {
            self.store.save_snapshot_after_commit(snapshot);
        }
        Ok(())
    }
}
