//! What this shard's storage did, for the metrics endpoint: how long each segment write and
//! each fdatasync took, how many bytes segment writes and reads moved, and how many log reads
//! the tail cache answered. The I/O edge (`io.rs`) records every one; the admin server reads the
//! distributions at scrape time (`crate::admin`). One set per shard thread, like the read
//! cache: no sharing, no locks, a few nanoseconds per record on the write path.

use std::cell::RefCell;
use std::time::Duration;

use crate::metrics::Buckets;

/// This shard's segment write and fdatasync latencies, and its segment reads.
#[derive(Default)]
struct IoTimes {
    write: Buckets,
    sync: Buckets,
    written_bytes: u64,
    reads: u64,
    read_bytes: u64,
    tail_hits: u64,
    tail_misses: u64,
}

/// This shard's storage I/O as the metrics endpoint shows it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct IoSnapshot {
    /// Segment write latency (each write's count is the number of writes).
    pub write: Buckets,
    /// fdatasync latency.
    pub sync: Buckets,
    /// Bytes written to segments (block padding included).
    pub written_bytes: u64,
    /// Segment reads submitted.
    pub reads: u64,
    /// Bytes those reads returned.
    pub read_bytes: u64,
    /// Log reads answered from a partition's tail cache.
    pub tail_hits: u64,
    /// Log reads the tail cache could not answer (then the read cache, or the disk).
    pub tail_misses: u64,
}

thread_local! {
    static TIMES: RefCell<IoTimes> = RefCell::new(IoTimes::default());
}

fn micros(d: Duration) -> u64 {
    d.as_micros().min(u128::from(u64::MAX)) as u64
}

/// Records one segment write of `bytes` that took `d`.
pub fn record_write(d: Duration, bytes: usize) {
    TIMES.with(|t| {
        let mut t = t.borrow_mut();
        t.write.record_us(micros(d));
        t.written_bytes += bytes as u64;
    });
}

/// Records one segment read that returned `bytes`.
pub fn record_read(bytes: usize) {
    TIMES.with(|t| {
        let mut t = t.borrow_mut();
        t.reads += 1;
        t.read_bytes += bytes as u64;
    });
}

/// Records one fdatasync that took `d`.
pub fn record_sync(d: Duration) {
    TIMES.with(|t| {
        t.borrow_mut().sync.record_us(micros(d));
    });
}

/// Counts one log read that was (`hit`) or was not answered from the tail cache.
pub fn record_tail_read(hit: bool) {
    TIMES.with(|t| {
        let mut t = t.borrow_mut();
        if hit {
            t.tail_hits += 1;
        } else {
            t.tail_misses += 1;
        }
    });
}

/// This shard's storage I/O so far.
pub fn snapshot() -> IoSnapshot {
    TIMES.with(|t| {
        let t = t.borrow();
        IoSnapshot {
            write: t.write.clone(),
            sync: t.sync.clone(),
            written_bytes: t.written_bytes,
            reads: t.reads,
            read_bytes: t.read_bytes,
            tail_hits: t.tail_hits,
            tail_misses: t.tail_misses,
        }
    })
}
