//! Waiting in tests: every wait polls with a deadline and fails with what it waited for
//! and what it saw last, never hangs.

use std::{future::Future, time::Duration};

/// How often a wait looks again.
const POLL: Duration = Duration::from_millis(20);

/// Polls `probe` until it answers `Ok`, and returns that; fails the test after `within`
/// with `what` and the last `Err` it answered (what it saw instead).
pub async fn eventually<T, F, Fut>(within: Duration, what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match probe().await {
            Ok(value) => return value,
            Err(seen) => {
                assert!(tokio::time::Instant::now() < deadline, "timed out after {within:?} waiting for {what}: {seen}")
            }
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Waits until `condition` holds; fails the test after `within`.
pub async fn until(within: Duration, what: &str, mut condition: impl FnMut() -> bool) {
    eventually(within, what, || {
        let holds = condition();
        async move {
            if holds {
                Ok(())
            } else {
                Err("not yet".to_string())
            }
        }
    })
    .await
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    #[tokio::test]
    async fn a_wait_returns_what_the_probe_found_once_it_holds() {
        let polls = AtomicU32::new(0);
        let found = eventually(Duration::from_secs(5), "the third poll", || async {
            let n = polls.fetch_add(1, Ordering::SeqCst) + 1;
            if n >= 3 {
                Ok(n)
            } else {
                Err(format!("poll {n}"))
            }
        })
        .await;
        assert_eq!(found, 3);
    }

    #[tokio::test]
    #[should_panic(expected = "waiting for a condition that never holds: still 7")]
    async fn a_wait_fails_at_its_deadline_with_what_it_saw() {
        eventually(Duration::from_millis(50), "a condition that never holds", || async {
            Err::<(), _>("still 7".into())
        })
        .await;
    }
}
