//! What producer and consumer threads share with the thread that reports: event counters
//! (atomics, read once a second for the progress line) and one latency histogram per thread
//! (behind a mutex that only its owner and the once-a-second reader take, so recording never
//! contends with other clients).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::latency::{self, LatencyError};

/// One counter on its own cache lines, so the producer and consumer threads bumping
/// neighbouring counters do not slow each other down (false sharing).
#[derive(Debug, Default)]
#[repr(align(128))]
pub struct Counter(AtomicU64);

impl Counter {
    /// Adds `n`, returning the previous value.
    pub fn add(&self, n: u64) -> u64 {
        self.0.fetch_add(n, Ordering::Relaxed)
    }

    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// How many times each acknowledged message should be read: once per subscription (an
/// independent set of consumers reading the whole topic). At least 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadsPerMessage(pub u64);

impl Default for ReadsPerMessage {
    fn default() -> Self {
        ReadsPerMessage(1)
    }
}

/// Run-wide event counters. "Window" counters count events that happened inside the
/// measurement window; the others count the whole run.
#[derive(Debug, Default)]
pub struct Counters {
    pub reads_per_message: ReadsPerMessage,
    pub sent: Counter,
    pub queue_full_waits: Counter,
    pub send_errors: Counter,
    pub acked: Counter,
    pub delivery_errors: Counter,
    pub acked_window_msgs: Counter,
    pub acked_window_bytes: Counter,
    pub consumed: Counter,
    pub consumed_unique: Counter,
    pub duplicates: Counter,
    pub untracked: Counter,
    pub foreign: Counter,
    pub consume_errors: Counter,
    pub consumed_window_msgs: Counter,
    pub consumed_window_bytes: Counter,
}

pub fn bump(c: &Counter, n: u64) {
    c.add(n);
}

fn get(c: &Counter) -> u64 {
    c.get()
}

/// A copy of the counters at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Totals {
    pub sent: u64,
    pub queue_full_waits: u64,
    pub send_errors: u64,
    pub acked: u64,
    pub delivery_errors: u64,
    pub consumed: u64,
    pub consumed_unique: u64,
    pub duplicates: u64,
    /// Consumed beyond the duplicate-tracking budget (counted, not checked).
    pub untracked: u64,
    /// Records without this run's header (left from another run, or another writer).
    pub foreign: u64,
    pub consume_errors: u64,
    /// Reads still owed: each acknowledged message once per subscription, less the distinct
    /// (subscription, message) reads seen (0 after a clean run).
    pub missing: u64,
}

impl Counters {
    pub fn new(reads_per_message: ReadsPerMessage) -> Counters {
        assert!(
            reads_per_message.0 >= 1,
            "every message is read at least once"
        );
        Counters {
            reads_per_message,
            ..Counters::default()
        }
    }

    pub fn totals(&self) -> Totals {
        let acked = get(&self.acked);
        let due = acked.saturating_mul(self.reads_per_message.0);
        let seen = get(&self.consumed_unique) + get(&self.untracked);
        Totals {
            sent: get(&self.sent),
            queue_full_waits: get(&self.queue_full_waits),
            send_errors: get(&self.send_errors),
            acked,
            delivery_errors: get(&self.delivery_errors),
            consumed: get(&self.consumed),
            consumed_unique: get(&self.consumed_unique),
            duplicates: get(&self.duplicates),
            untracked: get(&self.untracked),
            foreign: get(&self.foreign),
            consume_errors: get(&self.consume_errors),
            missing: due.saturating_sub(seen),
        }
    }

    /// Window counters: (acked msgs, acked bytes, consumed msgs, consumed bytes).
    pub fn window(&self) -> [u64; 4] {
        [
            get(&self.acked_window_msgs),
            get(&self.acked_window_bytes),
            get(&self.consumed_window_msgs),
            get(&self.consumed_window_bytes),
        ]
    }

    /// Whether the consumers have read every acknowledged message.
    pub fn caught_up(&self) -> bool {
        self.totals().missing == 0
    }
}

/// One latency histogram per recording thread.
pub type SharedHist = Arc<Mutex<Histogram<u64>>>;

pub fn new_shared() -> SharedHist {
    Arc::new(Mutex::new(latency::new_histogram()))
}

/// The sum of several threads' histograms.
pub fn merged(hists: &[SharedHist]) -> Result<Histogram<u64>, LatencyError> {
    let mut total = latency::new_histogram();
    for h in hists {
        let h = h.lock().unwrap_or_else(|e| e.into_inner());
        latency::merge(&mut total, &h)?;
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_counts_acked_but_unseen() {
        let c = Counters::default();
        bump(&c.acked, 10);
        bump(&c.consumed_unique, 7);
        bump(&c.untracked, 1);
        assert_eq!(c.totals().missing, 2);
        assert!(!c.caught_up());
        bump(&c.consumed_unique, 2);
        assert!(c.caught_up());
        bump(&c.consumed_unique, 5); // more seen than acked (failed deliveries that landed)
        assert_eq!(c.totals().missing, 0);
    }

    #[test]
    fn missing_counts_each_subscription() {
        let c = Counters::new(ReadsPerMessage(3));
        bump(&c.acked, 10);
        bump(&c.consumed_unique, 20);
        assert_eq!(c.totals().missing, 10);
        bump(&c.consumed_unique, 10);
        assert!(c.caught_up());
    }

    #[test]
    fn merged_sums_threads() {
        let hs = [new_shared(), new_shared()];
        hs[0].lock().unwrap().record(5).unwrap();
        hs[1].lock().unwrap().record(7).unwrap();
        let m = merged(&hs).unwrap();
        assert_eq!(m.len(), 2);
        assert_eq!(m.max(), 7);
    }
}
