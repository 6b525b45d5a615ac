//! The relay's window of events handed to the producer and not yet acknowledged, in
//! global order.
//!
//! The relay does not wait for a batch's delivery reports before it reads and sends the
//! next one: librdkafka puts one partition in each request, and a broker answers one
//! connection's requests one at a time (Kafka and nisshi alike), so a batch spread over
//! many partitions takes several round trips, and waiting for the
//! whole of it made every later event wait too (at 500 events/s the batches grew to a
//! hundred events and a fifth of a second). The cursor still moves only over the
//! acknowledged prefix: an event is behind the cursor only once it and every event before
//! it were acknowledged.

use std::{collections::VecDeque, time::Instant};

use rdkafka::error::KafkaError;

use crate::producer::Delivery;

struct Sent {
    position: i64,
    topic: String,
    delivery: Delivery,
    /// Set on a batch's last event: when the batch was read.
    batch_read_at: Option<Instant>,
}

/// An acknowledged event, taken off the window.
pub(super) struct Acknowledged {
    pub position: i64,
    pub topic: String,
    pub batch_read_at: Option<Instant>,
}

/// The first event of the window whose delivery failed.
pub(super) struct Undelivered {
    pub position: i64,
    pub error: KafkaError,
}

#[derive(Default)]
pub(super) struct InFlight {
    sent: VecDeque<Sent>,
}

impl InFlight {
    pub fn len(&self) -> usize {
        self.sent.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sent.is_empty()
    }

    pub fn push(&mut self, position: i64, topic: String, delivery: Delivery, batch_read_at: Option<Instant>) {
        self.sent.push_back(Sent { position, topic, delivery, batch_read_at });
    }

    /// Moves the acknowledged prefix of the window into `into`, oldest first, without
    /// waiting. Stops at the first event not reported yet; fails at the first one that was
    /// not delivered, which stays in the window (what was acknowledged before it is in
    /// `into` all the same).
    pub fn take_acknowledged(&mut self, into: &mut Vec<Acknowledged>) -> Result<(), Undelivered> {
        while let Some(oldest) = self.sent.front_mut() {
            match oldest.delivery.try_report() {
                None => break,
                Some(Ok(())) => {
                    let Sent { position, topic, batch_read_at, .. } =
                        self.sent.pop_front().expect("the window's oldest event was just looked at");
                    into.push(Acknowledged { position, topic, batch_read_at });
                }
                Some(Err(error)) => return Err(Undelivered { position: oldest.position, error }),
            }
        }
        Ok(())
    }

    /// Completes when the oldest event's report arrives; never, when the window is empty.
    pub async fn oldest_reported(&mut self) {
        match self.sent.front_mut() {
            Some(oldest) => oldest.delivery.reported().await,
            None => std::future::pending().await,
        }
    }
}
