//! The relay's producer: librdkafka's producer with its delivery reports served by a
//! thread of its own, each report completing the future of its record.
//!
//! rdkafka's `FutureProducer` serves them by polling every 100 ms, and since it rounds
//! the wait left down to whole milliseconds, each poll spins through its last
//! millisecond: about 1 % of a core for an idle relay. This thread waits a second at a
//! time instead (a report still ends the wait at once), so idle it costs next to nothing.

use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::Duration,
};

use rdkafka::{
    error::KafkaError,
    message::{DeliveryResult, OwnedHeaders},
    producer::{BaseProducer, BaseRecord, ProducerContext},
    ClientConfig, ClientContext,
};
use tokio::sync::oneshot;

/// How long the delivery thread waits for a report before it looks whether to stop.
const REPORT_WAIT: Duration = Duration::from_secs(1);

type Report = oneshot::Sender<Result<(), KafkaError>>;

struct Reports;

impl ClientContext for Reports {}

impl ProducerContext for Reports {
    type DeliveryOpaque = Box<Report>;

    fn delivery(&self, result: &DeliveryResult<'_>, report: Self::DeliveryOpaque) {
        // The relay may have given up on the batch; nobody then waits for the report.
        let _ = report.send(result.as_ref().map(|_| ()).map_err(|(error, _)| error.clone()));
    }
}

/// A record's delivery report, to await.
pub struct Delivery {
    receiver: oneshot::Receiver<Result<(), KafkaError>>,
    /// The report, once [`Delivery::reported`] has received it.
    report: Option<Result<(), KafkaError>>,
}

impl Delivery {
    /// The broker's acknowledgement, or why the record was not delivered.
    pub async fn acknowledged(mut self) -> Result<(), KafkaError> {
        self.reported().await;
        self.report.take().unwrap_or(Err(KafkaError::Canceled))
    }

    /// The report, if it has arrived; `None` while the record is in flight.
    pub fn try_report(&mut self) -> Option<Result<(), KafkaError>> {
        if let Some(report) = self.report.take() {
            return Some(report);
        }
        match self.receiver.try_recv() {
            Ok(report) => Some(report),
            Err(oneshot::error::TryRecvError::Empty) => None,
            Err(oneshot::error::TryRecvError::Closed) => Some(Err(KafkaError::Canceled)),
        }
    }

    /// Completes when the report has arrived; [`Delivery::try_report`] then returns it.
    pub async fn reported(&mut self) {
        if self.report.is_none() && !self.receiver.is_terminated() {
            self.report = Some((&mut self.receiver).await.unwrap_or(Err(KafkaError::Canceled)));
        }
    }
}

pub struct DeliveryProducer {
    producer: Arc<BaseProducer<Reports>>,
    stop: Arc<AtomicBool>,
}

impl DeliveryProducer {
    pub fn new(config: &ClientConfig) -> Result<Self, KafkaError> {
        let producer: Arc<BaseProducer<Reports>> = Arc::new(config.create_with_context(Reports)?);
        let stop = Arc::new(AtomicBool::new(false));
        let (serving, stopping) = (producer.clone(), stop.clone());
        std::thread::Builder::new()
            .name("relay deliveries".into())
            .spawn(move || {
                while !stopping.load(Ordering::Relaxed) {
                    serving.poll(REPORT_WAIT);
                }
            })
            .map_err(|_| KafkaError::Canceled)?;
        Ok(Self { producer, stop })
    }

    /// Queues a record; its [`Delivery`] completes with the broker's acknowledgement.
    pub fn send(&self, topic: &str, key: &str, payload: &[u8], headers: OwnedHeaders) -> Result<Delivery, KafkaError> {
        let (report, delivery) = oneshot::channel();
        let record = BaseRecord::with_opaque_to(topic, Box::new(report)).key(key).payload(payload).headers(headers);
        self.producer.send(record).map_err(|(error, _)| error)?;
        Ok(Delivery { receiver: delivery, report: None })
    }
}

impl Drop for DeliveryProducer {
    /// The delivery thread stops within [`REPORT_WAIT`]; it holds the producer until
    /// then, so librdkafka is shut down off the caller's thread.
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}
