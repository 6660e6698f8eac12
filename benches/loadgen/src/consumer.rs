//! One consumer thread: reads its share of a topic's partitions from the beginning and, for
//! every record this run wrote, marks it seen and records end-to-end latency (payload stamp →
//! receipt). Partitions are assigned by the tool (partition `p` of a topic goes to consumer
//! `p mod n`), not by a consumer group, so no rebalance can pause a measurement; the thread is
//! ready once every partition it owns has reported end-of-partition.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientConfig, ClientContext, Offset, TopicPartitionList};

use crate::latency;
use crate::payload::Header;
use crate::seqset::{Seen, SubscriptionId};
use crate::shared::RunShared;
use crate::stats::{bump, SharedHist};

/// Longest a consumer waits in one poll, so it notices the stop flag.
const POLL_TIMEOUT: Duration = Duration::from_millis(100);
const ERRORS_LOGGED_MAX: u64 = 5;

#[derive(Debug, Clone)]
pub struct ConsumerPlan {
    pub index: usize,
    pub subscription: SubscriptionId,
    pub topic: String,
    pub partitions: Vec<i32>,
}

/// Consumer context that does not log end-of-partition (the readiness signal, expected once
/// per partition) as an error, as librdkafka's default error callback would.
pub struct EofQuiet;

impl ClientContext for EofQuiet {
    fn error(&self, error: KafkaError, reason: &str) {
        let eof = matches!(error, KafkaError::PartitionEOF(_))
            || error.rdkafka_error_code() == Some(RDKafkaErrorCode::PartitionEOF);
        if !eof {
            tracing::error!(error = %error, reason, "librdkafka consumer error");
        }
    }
}

impl ConsumerContext for EofQuiet {}

/// Consumer `index` of `consumers` on a topic of `partitions` partitions gets every partition
/// `p` with `p mod consumers == index` (none when there are more consumers than partitions).
pub fn partitions_for(index: usize, consumers: usize, partitions: usize) -> Vec<i32> {
    (0..partitions)
        .filter(|p| p % consumers == index)
        .map(|p| p as i32)
        .collect()
}

/// Creates and assigns the consumer (so a bad setting fails here) and starts its thread, which
/// bumps `ready` once it has caught up with every partition it owns.
pub fn spawn(
    config: &ClientConfig,
    plan: ConsumerPlan,
    shared: Arc<RunShared>,
    hist: SharedHist,
    ready: Arc<AtomicUsize>,
) -> Result<JoinHandle<()>, KafkaError> {
    let consumer: BaseConsumer<EofQuiet> = config.create_with_context(EofQuiet)?;
    let mut tpl = TopicPartitionList::new();
    for p in &plan.partitions {
        tpl.add_partition_offset(&plan.topic, *p, Offset::Beginning)?;
    }
    consumer.assign(&tpl)?;
    let handle = std::thread::Builder::new()
        .name(format!("consumer-{}", plan.index))
        .spawn(move || consume_loop(&consumer, &plan, &shared, &hist, &ready))
        .expect("spawn consumer thread");
    Ok(handle)
}

fn consume_loop(
    consumer: &BaseConsumer<EofQuiet>,
    plan: &ConsumerPlan,
    shared: &RunShared,
    hist: &SharedHist,
    ready: &AtomicUsize,
) {
    let mut at_end: HashSet<i32> = HashSet::new();
    let mut is_ready = false;
    let errors_logged = AtomicU64::new(0);
    while !shared.consumers_stopped() {
        if !is_ready && at_end.len() == plan.partitions.len() {
            is_ready = true;
            ready.fetch_add(1, Ordering::SeqCst);
        }
        match consumer.poll(POLL_TIMEOUT) {
            None => {}
            Some(Ok(m)) => on_record(m.payload().unwrap_or_default(), plan, shared, hist),
            Some(Err(KafkaError::PartitionEOF(p))) => {
                at_end.insert(p);
            }
            Some(Err(e)) => {
                bump(&shared.counters.consume_errors, 1);
                if errors_logged.fetch_add(1, Ordering::Relaxed) < ERRORS_LOGGED_MAX {
                    tracing::warn!(consumer = plan.index, error = %e, "consume error");
                }
            }
        }
    }
}

fn on_record(payload: &[u8], plan: &ConsumerPlan, shared: &RunShared, hist: &SharedHist) {
    let now = shared.clock.now_ns();
    let c = &shared.counters;
    let Some(h) = Header::decode(payload, shared.run) else {
        return bump(&c.foreign, 1);
    };
    bump(&c.consumed, 1);
    match shared.seqs.insert(plan.subscription, h.producer, h.seq) {
        Seen::First => bump(&c.consumed_unique, 1),
        Seen::Duplicate => bump(&c.duplicates, 1),
        Seen::Untracked => bump(&c.untracked, 1),
    }
    if shared.measured(now) {
        bump(&c.consumed_window_msgs, 1);
        bump(&c.consumed_window_bytes, payload.len() as u64);
    }
    if shared.measured(h.send_ns) {
        let mut hist = hist.lock().unwrap_or_else(|e| e.into_inner());
        latency::record_ns(&mut hist, now.saturating_sub(h.send_ns));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_are_dealt_round_robin() {
        assert_eq!(partitions_for(0, 3, 7), vec![0, 3, 6]);
        assert_eq!(partitions_for(2, 3, 7), vec![2, 5]);
        assert_eq!(partitions_for(3, 4, 2), Vec::<i32>::new());
        let all: usize = (0..5).map(|i| partitions_for(i, 5, 16).len()).sum();
        assert_eq!(all, 16);
    }
}
