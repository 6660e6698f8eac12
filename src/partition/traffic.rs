//! How much a partition took in and gave out, for the metrics endpoint: bytes and records
//! appended by Produce, and bytes and records handed to Fetch. Counted on the owner shard as
//! the data passes (`Partition::produce`, `Partition::read`), shared by every `Partition`
//! value of the same log (config changes install new ones), read at scrape time through
//! [`PartitionStats`].

use std::cell::Cell;

use crate::storage::batch::{self, Batches};
use crate::types::Offset;

/// Running totals of one partition since the broker started.
#[derive(Default, Debug)]
pub(super) struct Traffic {
    pub bytes_in: Cell<u64>,
    pub records_in: Cell<u64>,
    pub bytes_out: Cell<u64>,
    pub records_out: Cell<u64>,
}

fn add(c: &Cell<u64>, n: u64) {
    c.set(c.get().wrapping_add(n));
}

impl Traffic {
    /// One appended batch of `bytes` bytes holding `records` records.
    pub fn appended(&self, bytes: usize, records: i32) {
        add(&self.bytes_in, bytes as u64);
        add(&self.records_in, records.max(0) as u64);
    }

    /// A read from `offset` that returned `chunks` (whole batches): the bytes, and the records
    /// from `offset` to the end of the last batch (the first batch may start before `offset`).
    pub fn served(&self, offset: Offset, chunks: &[bytes::Bytes]) {
        let bytes: usize = chunks.iter().map(|c| c.len()).sum();
        add(&self.bytes_out, bytes as u64);
        let last = chunks.last().and_then(|c| {
            let last = Batches::new(&c[..]).filter_map(Result::ok).last()?;
            batch::parse_header(last.1).ok()
        });
        if let Some(h) = last {
            let records = h.next_offset().0.saturating_sub(offset.0).max(0);
            add(&self.records_out, records as u64);
        }
    }
}

/// What a partition looks like to the metrics endpoint: `Send`, plain numbers.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PartitionStats {
    /// Bytes of record batches appended since the broker started.
    pub bytes_in: u64,
    /// Records appended since the broker started.
    pub records_in: u64,
    /// Bytes of record batches served to fetches since the broker started.
    pub bytes_out: u64,
    /// Records served to fetches since the broker started (from each fetch's offset on).
    pub records_out: u64,
    /// The first offset kept.
    pub log_start: i64,
    /// The high watermark (the log end offset consumers see).
    pub high_watermark: i64,
    /// Bytes of all the partition's segments.
    pub size_bytes: u64,
    /// Segments, the active one included.
    pub segments: u64,
    /// Bytes of recent batches held in memory by the tail cache.
    pub tail_cache_bytes: u64,
    /// Idempotent producers the partition tracks.
    pub producers: u64,
    /// Replicas in sync as this replica counts them: 1 for a partition of one replica, the
    /// leader's count for a replicated one, 0 on a follower.
    pub in_sync_replicas: u64,
    /// On a replicated partition's leader: how far the furthest follower is behind its log
    /// end, in offsets (0 elsewhere).
    pub replica_lag_max: i64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::batch::{assign_offset, build_test_batch};
    use crate::types::TimestampMs;

    #[test]
    fn served_counts_records_from_the_fetch_offset_to_the_last_batch_end() {
        let t = Traffic::default();
        let mut a = build_test_batch(5, 10, TimestampMs(1));
        assign_offset(&mut a, Offset(100), 0);
        let mut b = build_test_batch(3, 10, TimestampMs(1));
        assign_offset(&mut b, Offset(105), 0);
        let run = bytes::Bytes::from([a.clone(), b.clone()].concat());
        t.served(Offset(102), &[run]);
        assert_eq!(t.records_out.get(), 6, "102..108");
        assert_eq!(t.bytes_out.get(), (a.len() + b.len()) as u64);
        t.appended(a.len(), 5);
        assert_eq!((t.bytes_in.get(), t.records_in.get()), (a.len() as u64, 5));
        t.served(Offset(0), &[]);
        assert_eq!(t.records_out.get(), 6);
    }
}
