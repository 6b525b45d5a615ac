//! Wakes the relay after appends commit.
//!
//! A `NOTIFY` inside the append transaction would make PostgreSQL take a
//! database-wide lock at commit that serialises every notifying transaction,
//! WAL flush included, so appends stop scaling with writers. Instead each commit
//! signals this notifier, which sends `NOTIFY` from its own connection, and
//! coalesces: while one is being sent, and for [`NOTIFY_SPACING`] after, any number
//! of further signals produce at most one more. If the process dies between a commit
//! and the notification, the relay's poll timer still picks the events up.

use sqlx::PgPool;
use tokio::sync::mpsc;

use crate::EVENTS_CHANNEL;

/// The shortest time between two notifications. The relay reads the store at most once
/// per its read interval (5 ms by default), so notifying more often only costs the
/// database a transaction each and wakes the relay for nothing; the first commit after
/// a quiet spell is still notified at once.
const NOTIFY_SPACING: std::time::Duration = std::time::Duration::from_millis(5);

#[derive(Clone, Debug)]
pub(crate) struct CommitNotifier {
    signal: mpsc::Sender<()>,
}

impl CommitNotifier {
    /// Starts the sending task; it ends when the last clone is dropped. Must be
    /// called inside a Tokio runtime.
    pub(crate) fn start(pool: PgPool) -> Self {
        let (signal, mut pending) = mpsc::channel::<()>(1);
        tokio::spawn(async move {
            while pending.recv().await.is_some() {
                if let Err(error) = sqlx::query("SELECT pg_notify($1, '')").bind(EVENTS_CHANNEL).execute(&pool).await {
                    tracing::warn!(%error, "could not notify the relay; it will poll");
                }
                tokio::time::sleep(NOTIFY_SPACING).await;
            }
        });
        Self { signal }
    }

    /// Call after a commit that appended events.
    pub(crate) fn committed(&self) {
        // A full channel means a notification is already pending: nothing to add.
        let _ = self.signal.try_send(());
    }
}
