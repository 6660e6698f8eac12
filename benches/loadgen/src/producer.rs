//! One producer thread: sends the workload's messages to its topic, at a fixed rate (each send
//! due at its scheduled time, stamped with that time) or as fast as librdkafka accepts them
//! (stamped with the actual send time), and records publish latency (stamp → ack) in the
//! delivery callback. librdkafka's own polling thread (`ThreadedProducer`) runs the callbacks
//! as soon as acks arrive, so the sender can sleep precisely until its next due time.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use rdkafka::error::KafkaError;
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientConfig, ClientContext};

use crate::latency;
use crate::payload::{key_for, PayloadBuf, ProducerId};
use crate::schedule::RateSchedule;
use crate::shared::RunShared;
use crate::stats::{bump, SharedHist};

/// Pause before retrying a send that found librdkafka's queue full.
const QUEUE_FULL_PAUSE: Duration = Duration::from_micros(200);
/// How long a new producer may take to connect and fetch its topic's metadata.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Errors logged per producer; the rest are only counted.
const ERRORS_LOGGED_MAX: u64 = 5;

/// What one producer sends.
#[derive(Debug, Clone)]
pub struct ProducerPlan {
    pub id: ProducerId,
    pub topic: String,
    /// `None`: as fast as possible.
    pub schedule: Option<RateSchedule>,
    pub keys: bool,
    pub message_bytes: usize,
    pub flush_timeout: Duration,
}

/// Delivery callback state: records publish latency from the stamp carried as the opaque.
pub struct DeliveryCtx {
    shared: Arc<RunShared>,
    hist: SharedHist,
    errors_logged: AtomicU64,
}

impl ClientContext for DeliveryCtx {}

impl ProducerContext for DeliveryCtx {
    /// The send stamp, nanoseconds on the run clock.
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, stamp_ns: usize) {
        let now = self.shared.clock.now_ns();
        let c = &self.shared.counters;
        match result {
            Ok(_) => {
                bump(&c.acked, 1);
                if self.shared.measured(now) {
                    bump(&c.acked_window_msgs, 1);
                    bump(&c.acked_window_bytes, self.shared.message_bytes);
                }
                if self.shared.measured(stamp_ns as u64) {
                    let mut h = self.hist.lock().unwrap_or_else(|e| e.into_inner());
                    latency::record_ns(&mut h, now.saturating_sub(stamp_ns as u64));
                }
            }
            Err((e, _)) => {
                bump(&c.delivery_errors, 1);
                if self.errors_logged.fetch_add(1, Ordering::Relaxed) < ERRORS_LOGGED_MAX {
                    tracing::warn!(error = %e, "delivery failed");
                }
            }
        }
    }
}

/// A connected producer whose sending thread has not started.
pub struct ReadyProducer {
    producer: ThreadedProducer<DeliveryCtx>,
    plan: ProducerPlan,
    shared: Arc<RunShared>,
}

/// Creates the producer (so a bad setting fails here) and fetches its topic's metadata, so the
/// connection is up before the clock of the schedule starts.
pub fn create(
    config: &ClientConfig,
    plan: ProducerPlan,
    shared: Arc<RunShared>,
    hist: SharedHist,
) -> Result<ReadyProducer, KafkaError> {
    let ctx = DeliveryCtx {
        shared: shared.clone(),
        hist,
        errors_logged: AtomicU64::new(0),
    };
    let producer: ThreadedProducer<DeliveryCtx> = config.create_with_context(ctx)?;
    producer
        .client()
        .fetch_metadata(Some(&plan.topic), CONNECT_TIMEOUT)?;
    Ok(ReadyProducer {
        producer,
        plan,
        shared,
    })
}

impl ReadyProducer {
    /// Starts sending; the run's phases must be set.
    pub fn start(self) -> JoinHandle<()> {
        let ReadyProducer {
            producer,
            plan,
            shared,
        } = self;
        std::thread::Builder::new()
            .name(format!("producer-{}", plan.id.0))
            .spawn(move || {
                send_loop(&producer, &plan, &shared);
                if let Err(e) = producer.flush(plan.flush_timeout) {
                    tracing::warn!(producer = plan.id.0, error = %e, "flush failed");
                }
            })
            .expect("spawn producer thread")
    }
}

fn send_loop(p: &ThreadedProducer<DeliveryCtx>, plan: &ProducerPlan, shared: &RunShared) {
    let phases = *shared
        .phases
        .get()
        .expect("phases set before producers start");
    let mut buf = PayloadBuf::new(plan.message_bytes, shared.run, plan.id);
    for seq in 0u64.. {
        if shared.producers_stopped() {
            return;
        }
        let now = shared.clock.now_ns();
        // A producer that fell behind a fixed rate still sends every message due before the
        // end (each measured from its due time); the run stops it after the drain timeout.
        let due = match plan.schedule {
            None => now,
            Some(s) => phases.start_ns + s.due_offset_ns(seq),
        };
        if due >= phases.end_ns {
            return;
        }
        if due > now {
            std::thread::sleep(Duration::from_nanos(due - now));
        }
        send_one(p, plan, shared, &mut buf, seq, plan.schedule.map(|_| due));
    }
}

/// Sends message `seq`, stamped with `due_ns` (fixed rate) or the time of the successful
/// attempt (max rate), waiting while librdkafka's bounded queue is full.
fn send_one(
    p: &ThreadedProducer<DeliveryCtx>,
    plan: &ProducerPlan,
    shared: &RunShared,
    buf: &mut PayloadBuf,
    seq: u64,
    due_ns: Option<u64>,
) {
    let key = key_for(plan.id, seq);
    loop {
        let stamp = due_ns.unwrap_or_else(|| shared.clock.now_ns());
        let payload = buf.stamp(seq, stamp);
        let mut record = BaseRecord::with_opaque_to(&plan.topic, stamp as usize).payload(payload);
        if plan.keys {
            record = record.key(&key[..]);
        }
        match p.send(record) {
            Ok(()) => return bump(&shared.counters.sent, 1),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                bump(&shared.counters.queue_full_waits, 1);
                if shared.producers_stopped() {
                    return;
                }
                std::thread::sleep(QUEUE_FULL_PAUSE);
            }
            Err((e, _)) => {
                let n = shared.counters.send_errors.add(1);
                if n < ERRORS_LOGGED_MAX {
                    tracing::warn!(producer = plan.id.0, error = %e, "send failed");
                }
                return;
            }
        }
    }
}
