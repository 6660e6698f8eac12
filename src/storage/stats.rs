//! What this shard's storage did, for the metrics endpoint: how long each segment write and
//! each fdatasync took. The I/O edge (`io.rs`) records every one; the admin server reads the
//! distributions at scrape time (`crate::admin`). One set per shard thread, like the read
//! cache: no sharing, no locks, a few nanoseconds per record on the write path.

use std::cell::RefCell;
use std::time::Duration;

use hdrhistogram::Histogram;

use crate::metrics::Buckets;

/// Longer spans are recorded as this.
const SPAN_US_MAX: u64 = 60_000_000;

/// This shard's segment write and fdatasync latencies, in microseconds.
pub struct IoTimes {
    write: Histogram<u64>,
    sync: Histogram<u64>,
}

impl Default for IoTimes {
    fn default() -> Self {
        let h = || Histogram::new_with_bounds(1, SPAN_US_MAX, 2).expect("static bounds are valid");
        IoTimes {
            write: h(),
            sync: h(),
        }
    }
}

thread_local! {
    static TIMES: RefCell<IoTimes> = RefCell::new(IoTimes::default());
}

fn micros(d: Duration) -> u64 {
    (d.as_micros() as u64).clamp(1, SPAN_US_MAX)
}

/// Records one segment write that took `d`.
pub fn record_write(d: Duration) {
    TIMES.with(|t| {
        let _ = t.borrow_mut().write.record(micros(d));
    });
}

/// Records one fdatasync that took `d`.
pub fn record_sync(d: Duration) {
    TIMES.with(|t| {
        let _ = t.borrow_mut().sync.record(micros(d));
    });
}

/// This shard's write and fdatasync latency distributions so far.
pub fn io_buckets() -> (Buckets, Buckets) {
    TIMES.with(|t| {
        let t = t.borrow();
        (
            Buckets::from_micros(&t.write),
            Buckets::from_micros(&t.sync),
        )
    })
}
