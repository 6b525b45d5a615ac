//! Helpers shared by the event store's integration tests.

use std::time::Duration;

use vectis_event_store::{EventStore, RecordedEvent};

/// `read_all_committed` holds events back while any older transaction on the server
/// runs, including other tests' in other databases: wait (bounded) until at least
/// `expected` events are visible.
pub async fn read_all_committed_eventually(store: &EventStore, expected: usize) -> Vec<RecordedEvent> {
    for _ in 0..500 {
        let events = store.read_all_committed(0, 1000).await.expect("read");
        if events.len() >= expected {
            return events;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("fewer than {expected} events became visible")
}
