//! Token buckets, one per client and endpoint.

use std::{
    collections::HashMap,
    net::IpAddr,
    time::{Duration, Instant},
};

use super::policies::Policy;

/// What a bucket said about one request.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Decision {
    pub allowed: bool,
    /// Whole requests left in the bucket after this one.
    pub remaining: u32,
    /// Until the bucket is full again.
    pub full_in: Duration,
    /// Until the next request would be allowed (zero while tokens remain).
    pub retry_in: Duration,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    updated: Instant,
    capacity: f64,
    refill_per_second: f64,
}

impl Bucket {
    fn refilled(&self, now: Instant) -> f64 {
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        (self.tokens + elapsed * self.refill_per_second).min(self.capacity)
    }
}

/// The buckets of one process. A bucket that has filled up again is the same as no
/// bucket, so such buckets are swept away and the map stays as small as the set of
/// recently active clients.
#[derive(Debug, Default)]
pub(crate) struct Buckets {
    buckets: HashMap<(IpAddr, String), Bucket>,
    created_since_sweep: usize,
}

/// Sweep after this many new buckets.
const SWEEP_EVERY: usize = 4096;

impl Buckets {
    /// Takes one token for `client` at `endpoint` under `policy`. A policy change
    /// applies to existing buckets at once and keeps what the client has used: a
    /// bucket one request short of its old capacity is one short of the new one.
    pub fn take(&mut self, client: IpAddr, endpoint: &str, policy: &Policy, now: Instant) -> Decision {
        let capacity = f64::from(policy.capacity);
        let rate = policy.refill_per_second;
        let key = (client, endpoint.to_string());
        let tokens = match self.buckets.get(&key) {
            Some(bucket) => {
                let refilled = bucket.refilled(now);
                let used = bucket.capacity - refilled;
                (capacity - used).clamp(0.0, capacity)
            }
            None => {
                self.created_since_sweep += 1;
                if self.created_since_sweep >= SWEEP_EVERY {
                    self.sweep(now);
                }
                capacity
            }
        };
        let mut tokens = tokens;
        let allowed = tokens >= 1.0;
        if allowed {
            tokens -= 1.0;
        }
        self.buckets.insert(key, Bucket { tokens, updated: now, capacity, refill_per_second: rate });
        Decision {
            allowed,
            remaining: tokens.floor() as u32,
            full_in: Duration::from_secs_f64((capacity - tokens) / rate),
            retry_in: if allowed { Duration::ZERO } else { Duration::from_secs_f64((1.0 - tokens) / rate) },
        }
    }

    fn sweep(&mut self, now: Instant) {
        self.buckets.retain(|_, bucket| bucket.refilled(now) < bucket.capacity);
        self.created_since_sweep = 0;
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.buckets.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ORDERS: &str = "POST /v1/orders";

    fn client(n: u8) -> IpAddr {
        IpAddr::from([192, 0, 2, n])
    }

    #[test]
    fn a_burst_up_to_capacity_passes_then_the_rate_governs() {
        let policy = Policy::everywhere(3, 2.0);
        let mut buckets = Buckets::default();
        let start = Instant::now();
        let remaining: Vec<u32> = (0..3).map(|_| buckets.take(client(1), ORDERS, &policy, start).remaining).collect();
        assert_eq!(remaining, [2, 1, 0]);
        let refused = buckets.take(client(1), ORDERS, &policy, start);
        assert!(!refused.allowed);
        assert_eq!(refused.retry_in, Duration::from_millis(500), "one token at 2/s");
        assert_eq!(refused.full_in, Duration::from_millis(1500));
        let later = start + Duration::from_millis(500);
        assert!(buckets.take(client(1), ORDERS, &policy, later).allowed);
        assert!(!buckets.take(client(1), ORDERS, &policy, later).allowed);
    }

    #[test]
    fn clients_and_endpoints_have_their_own_buckets() {
        let policy = Policy::everywhere(1, 1.0);
        let mut buckets = Buckets::default();
        let now = Instant::now();
        assert!(buckets.take(client(1), ORDERS, &policy, now).allowed);
        assert!(!buckets.take(client(1), ORDERS, &policy, now).allowed);
        assert!(buckets.take(client(2), ORDERS, &policy, now).allowed);
        assert!(buckets.take(client(1), "POST /v1/accounts", &policy, now).allowed);
    }

    #[test]
    fn a_changed_capacity_applies_at_once_and_keeps_what_was_used() {
        let mut buckets = Buckets::default();
        let now = Instant::now();
        buckets.take(client(1), ORDERS, &Policy::everywhere(100, 1.0), now);
        assert_eq!(buckets.take(client(1), ORDERS, &Policy::everywhere(3, 1.0), now).remaining, 1);
        assert!(!buckets.take(client(1), ORDERS, &Policy::everywhere(2, 1.0), now).allowed, "2 used of 2");
        let raised = buckets.take(client(1), ORDERS, &Policy::everywhere(1000, 1.0), now);
        assert!(raised.allowed);
        assert_eq!(raised.remaining, 997, "the 2 requests taken before stay used, and this one");
    }

    #[test]
    fn full_buckets_are_swept() {
        let policy = Policy::everywhere(1, 1000.0);
        let mut buckets = Buckets::default();
        let start = Instant::now();
        for n in 0..SWEEP_EVERY - 1 {
            buckets.take(IpAddr::from([10, 0, (n / 256) as u8, (n % 256) as u8]), ORDERS, &policy, start);
        }
        buckets.take(client(1), ORDERS, &policy, start + Duration::from_secs(1));
        assert_eq!(buckets.len(), 1, "the refilled buckets are gone, the new one is kept");
    }
}
