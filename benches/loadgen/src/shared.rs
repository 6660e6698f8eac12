//! The state one run shares between its producer, consumer and reporting threads: the run's
//! identity and clock, its phases (known once the consumers are ready), counters, the
//! seen-message bits, and the stop flags. Threads hold it through an `Arc`; nothing in it
//! blocks.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;

use crate::payload::RunId;
use crate::schedule::{Phases, RunClock};
use crate::seqset::SeqSets;
use crate::stats::{Counters, ReadsPerMessage};

pub struct RunShared {
    pub run: RunId,
    pub clock: RunClock,
    /// Set when the producers start; before that nothing is measured.
    pub phases: OnceLock<Phases>,
    pub counters: Counters,
    pub seqs: SeqSets,
    pub message_bytes: u64,
    stop_producers: AtomicBool,
    stop_consumers: AtomicBool,
}

impl RunShared {
    pub fn new(run: RunId, seqs: SeqSets, reads: ReadsPerMessage, message_bytes: u64) -> RunShared {
        RunShared {
            run,
            clock: RunClock::start(),
            phases: OnceLock::new(),
            counters: Counters::new(reads),
            seqs,
            message_bytes,
            stop_producers: AtomicBool::new(false),
            stop_consumers: AtomicBool::new(false),
        }
    }

    /// Whether an event at `t_ns` (a send, an ack, a receipt) lies in the measurement window.
    pub fn measured(&self, t_ns: u64) -> bool {
        self.phases.get().is_some_and(|p| p.measured(t_ns))
    }

    pub fn stop_producers(&self) {
        self.stop_producers.store(true, Ordering::Relaxed);
    }

    pub fn producers_stopped(&self) -> bool {
        self.stop_producers.load(Ordering::Relaxed)
    }

    pub fn stop_consumers(&self) {
        self.stop_consumers.store(true, Ordering::Relaxed);
    }

    pub fn consumers_stopped(&self) -> bool {
        self.stop_consumers.load(Ordering::Relaxed)
    }
}
