//! Recent aggregate states, in memory, so a command on a hot stream folds only the
//! events appended since this process last saw it (usually none).
//!
//! The cache never decides on its own that a state is current: a load reads the stream
//! from the cached version on, and uses the cached state only while the event at that
//! version is still the one the state ends at. So a state cached from an append whose
//! transaction then rolled back, or one another process has moved past, is corrected
//! by that same read: stale entries cost a re-read, never a wrong decision.
//!
//! Bounded by the serialised size of what it holds (`STATE_CACHE_BYTES`), least
//! recently used first out.

use std::{any::Any, sync::Arc};

use lru::LruCache;
use prometheus_client::metrics::gauge::Gauge;
use serde::Serialize;
use std::sync::Mutex;
use uuid::Uuid;

/// Where a state stands in its stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamPosition {
    /// The stream version the state reflects (≥ 1).
    pub version: i64,
    /// The id of the event at `version`.
    pub last_event_id: Uuid,
    /// The version of the newest snapshot taken of this stream (0: none), so the next
    /// snapshot is taken `SNAPSHOT_EVERY` events after it.
    pub snapshot_version: i64,
}

struct Entry {
    position: StreamPosition,
    state: Arc<dyn Any + Send + Sync>,
    bytes: usize,
}

struct Entries {
    lru: LruCache<String, Entry>,
    bytes: usize,
}

/// Shared by every clone of a command handler.
#[derive(Clone)]
pub struct StateCache {
    entries: Arc<Mutex<Entries>>,
    capacity_bytes: usize,
    size_gauge: Gauge,
}

impl StateCache {
    /// A cache of at most `capacity_bytes` (0: caches nothing).
    pub fn new(capacity_bytes: usize, size_gauge: Gauge) -> Self {
        Self {
            entries: Arc::new(Mutex::new(Entries { lru: LruCache::unbounded(), bytes: 0 })),
            capacity_bytes,
            size_gauge,
        }
    }

    /// The cached state of `stream_id` and where it stands, if any (and of type `A`).
    pub fn get<A: Clone + 'static>(&self, stream_id: &str) -> Option<(StreamPosition, A)> {
        let mut entries = self.lock();
        let entry = entries.lru.get(stream_id)?;
        let state = entry.state.downcast_ref::<A>()?.clone();
        Some((entry.position, state))
    }

    /// Caches `state` at `position`, unless a state further along is cached already.
    pub fn put<A: Serialize + Send + Sync + 'static>(&self, stream_id: &str, position: StreamPosition, state: A) {
        if self.capacity_bytes == 0 {
            return;
        }
        // The serialised size stands for the memory held: states are trees of small
        // strings and maps, and this is what bounds them on every platform alike.
        let bytes = serde_json::to_vec(&state).map_or(usize::MAX, |json| json.len() + stream_id.len());
        if bytes > self.capacity_bytes / 4 {
            // One huge state would evict everything else; it is read from its snapshot.
            self.forget(stream_id);
            return;
        }
        let mut entries = self.lock();
        if entries.lru.peek(stream_id).is_some_and(|e| e.position.version > position.version) {
            return;
        }
        if let Some(old) = entries.lru.put(stream_id.to_string(), Entry { position, state: Arc::new(state), bytes }) {
            entries.bytes -= old.bytes;
        }
        entries.bytes += bytes;
        while entries.bytes > self.capacity_bytes {
            match entries.lru.pop_lru() {
                Some((_, evicted)) => entries.bytes -= evicted.bytes,
                None => break,
            }
        }
        self.size_gauge.set(i64::try_from(entries.bytes).unwrap_or(i64::MAX));
    }

    /// Drops the cached state of `stream_id`.
    pub fn forget(&self, stream_id: &str) {
        let mut entries = self.lock();
        if let Some(old) = entries.lru.pop(stream_id) {
            entries.bytes -= old.bytes;
            self.size_gauge.set(i64::try_from(entries.bytes).unwrap_or(i64::MAX));
        }
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.lock().bytes
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Entries> {
        // A panic while holding the lock leaves consistent entries (every update is
        // completed before the next statement), so a poisoned lock is still usable.
        self.entries.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(version: i64) -> StreamPosition {
        StreamPosition { version, last_event_id: Uuid::from_u128(version as u128), snapshot_version: 0 }
    }

    #[test]
    fn keeps_the_newest_state_and_stays_within_its_bytes() {
        let cache = StateCache::new(400, Gauge::default());
        cache.put("s-1", at(2), "two".to_string());
        cache.put("s-1", at(1), "one".to_string());
        assert_eq!(cache.get::<String>("s-1"), Some((at(2), "two".to_string())), "an older state never replaces");
        assert_eq!(cache.get::<i64>("s-1"), None, "another type is not served");
        for n in 0..50 {
            cache.put(&format!("s-{n}"), at(3), "x".repeat(20));
        }
        assert!(cache.bytes() <= 400, "{} bytes held", cache.bytes());
        assert!(cache.get::<String>("s-49").is_some(), "the most recent stays");
        assert!(cache.get::<String>("s-0").is_none(), "the least recent went");
        cache.put("huge", at(1), "x".repeat(200));
        assert!(cache.get::<String>("huge").is_none(), "a state over a quarter of the cache is not kept");
        cache.forget("s-49");
        assert!(cache.get::<String>("s-49").is_none());
    }

    #[test]
    fn a_zero_capacity_caches_nothing() {
        let cache = StateCache::new(0, Gauge::default());
        cache.put("s-1", at(1), 1_i64);
        assert_eq!(cache.get::<i64>("s-1"), None);
    }
}
