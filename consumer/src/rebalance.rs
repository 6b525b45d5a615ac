//! What a consumer does when the group coordinator assigns or revokes partitions. It
//! runs inside `poll`, on the polling thread: newly assigned partitions start at their
//! PostgreSQL checkpoints, and those whose checkpoint is beyond the broker's end of
//! them are held.

use std::{collections::HashMap, time::Duration};

use rdkafka::{
    consumer::{BaseConsumer, Consumer, ConsumerContext, RebalanceProtocol},
    types::RDKafkaRespErr,
    ClientContext, Offset, TopicPartitionList,
};
use sqlx::PgPool;
use tokio::runtime::Handle;
use vectis_read_side::Target;

use crate::{checkpoints, lag::TOPIC_RECREATED_FIX};

pub(crate) struct RebalanceContext {
    pub(crate) pool: PgPool,
    pub(crate) runtime: Handle,
    pub(crate) target: Target,
    /// See [`crate::settings::ConsumerSettings::watermark_timeout`]; also bounds the
    /// read of the assigned partitions' checkpoints.
    pub(crate) watermark_timeout: Duration,
}

impl ClientContext for RebalanceContext {}

impl ConsumerContext for RebalanceContext {
    fn rebalance(&self, consumer: &BaseConsumer<Self>, err: RDKafkaRespErr, tpl: &mut TopicPartitionList) {
        let cooperative = matches!(consumer.rebalance_protocol(), RebalanceProtocol::Cooperative);
        let outcome = match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                let checkpoints = self.start_at_checkpoints(tpl);
                tracing::info!(projection = self.target.projection, partitions = tpl.count(), "partitions assigned");
                let assigned = if cooperative { consumer.incremental_assign(tpl) } else { consumer.assign(tpl) };
                if assigned.is_ok() {
                    self.hold_partitions_beyond_log(consumer, &checkpoints);
                }
                assigned
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                tracing::info!(projection = self.target.projection, partitions = tpl.count(), "partitions revoked");
                if cooperative {
                    consumer.incremental_unassign(tpl)
                } else {
                    consumer.unassign()
                }
            }
            other => {
                tracing::error!(projection = self.target.projection, error = ?other, "rebalance failed");
                consumer.unassign()
            }
        };
        if let Err(error) = outcome {
            tracing::error!(projection = self.target.projection, %error, "cannot apply the rebalance");
        }
    }
}

impl RebalanceContext {
    /// Sets each newly assigned partition to start at its PostgreSQL checkpoint (the
    /// beginning when there is none). If the checkpoints cannot be read, the group's
    /// committed Kafka offsets are used: they are committed only after PostgreSQL,
    /// so they are never ahead of it, and what they replay is skipped as duplicates.
    fn start_at_checkpoints(&self, tpl: &mut TopicPartitionList) -> HashMap<(String, i32), i64> {
        let partitions: Vec<(String, i32)> =
            tpl.elements().iter().map(|e| (e.topic().to_string(), e.partition())).collect();
        // `poll` runs on a blocking-pool thread, which is inside the runtime's context
        // and so may not block on it; a thread of its own may. Bounded: should the
        // runtime be unable to drive the read (its threads all blocked), the assignment
        // falls back to the committed offsets rather than hang the consumer.
        let (sender, receiver) = std::sync::mpsc::channel();
        let (runtime, pool, target, wanted) =
            (self.runtime.clone(), self.pool.clone(), self.target.clone(), partitions.clone());
        std::thread::spawn(move || {
            let _ = sender.send(runtime.block_on(checkpoints::checkpoints(&pool, &target, &wanted)));
        });
        let read = receiver.recv_timeout(self.watermark_timeout).unwrap_or_else(|_| {
            Err(sqlx::Error::Protocol(format!("reading checkpoints took longer than {:?}", self.watermark_timeout)))
        });
        match read {
            Ok(checkpoints) => {
                for (topic, partition) in partitions {
                    let offset =
                        checkpoints.get(&(topic.clone(), partition)).map_or(Offset::Beginning, |o| Offset::Offset(*o));
                    if let Err(error) = tpl.set_partition_offset(&topic, partition, offset) {
                        tracing::error!(%topic, partition, %error, "cannot set the start offset");
                    }
                }
                checkpoints
            }
            Err(error) => {
                tracing::warn!(
                    projection = self.target.projection, %error,
                    "cannot read checkpoints; starting from the committed offsets"
                );
                HashMap::new()
            }
        }
    }

    /// Pauses the newly assigned partitions whose checkpoint is past the broker's end
    /// of them (a recreated topic): consuming them would wait silently until the new
    /// log reaches the old offset, then skip what lies below it. The lag measurement
    /// keeps reporting them until they are fixed ([`TOPIC_RECREATED_FIX`]).
    fn hold_partitions_beyond_log(&self, consumer: &BaseConsumer<Self>, checkpoints: &HashMap<(String, i32), i64>) {
        if checkpoints.is_empty() {
            return;
        }
        // The ends of every partition in one request per broker: this runs inside the
        // rebalance callback, where nothing is consumed until it returns (a request
        // per partition held a six-partition assignment up for seconds on a busy broker).
        let mut ends = TopicPartitionList::new();
        for (topic, partition) in checkpoints.keys() {
            let _ = ends.add_partition_offset(topic, *partition, Offset::End);
        }
        let ends = match consumer.offsets_for_times(ends, self.watermark_timeout) {
            Ok(ends) => ends,
            // The lag measurement looks again every few seconds.
            Err(error) => {
                tracing::debug!(projection = self.target.projection, %error, "cannot read the partitions' ends");
                return;
            }
        };
        let mut held = TopicPartitionList::new();
        for end in ends.elements() {
            let (topic, partition) = (end.topic(), end.partition());
            let (Offset::Offset(high), Some(checkpoint)) =
                (end.offset(), checkpoints.get(&(topic.to_string(), partition)))
            else {
                continue;
            };
            if *checkpoint > high {
                tracing::error!(
                    projection = self.target.projection, %topic, partition, checkpoint, high_watermark = high,
                    "checkpoint beyond the end of the partition: {TOPIC_RECREATED_FIX}"
                );
                held.add_partition(topic, partition);
            }
        }
        if held.count() > 0 {
            if let Err(error) = consumer.pause(&held) {
                tracing::error!(projection = self.target.projection, %error, "cannot pause the partitions beyond the log");
            }
        }
    }
}
