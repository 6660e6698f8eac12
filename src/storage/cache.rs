//! The tail cache: the most recent batches of a partition, kept as the `Bytes` the producer sent.
//!
//! Consumers that keep up read from here and never touch the disk; a batch enters at append
//! (the same `Bytes` the log writes from: its offsets are rewritten in place once, no further
//! copies) and leaves when the byte bound is exceeded, oldest first. The cache is always a contiguous run of the log's newest batches.

use std::collections::VecDeque;

use bytes::Bytes;

use crate::types::Offset;

/// One batch in the tail cache, with where it lies in the log (for the shard's read cache,
/// which takes it over when it leaves).
#[derive(Clone, Debug)]
pub struct Entry {
    /// The batch's base offset.
    pub base: Offset,
    /// The offset one past its last record: the next batch's base.
    pub next: Offset,
    /// The base offset of the segment it was written to.
    pub segment: Offset,
    /// Its byte position in that segment.
    pub position: u64,
    /// The batch as written (offsets already set).
    pub bytes: Bytes,
}

/// A partition's newest batches, at most `bytes_max` bytes of them (but always the newest
/// one), contiguous in offsets.
#[derive(Debug)]
pub struct TailCache {
    entries: VecDeque<Entry>,
    bytes: usize,
    bytes_max: usize,
}

impl TailCache {
    /// An empty cache keeping at most `bytes_max` bytes (LogConfig's `cache_bytes_max`).
    pub fn new(bytes_max: usize) -> TailCache {
        TailCache {
            entries: VecDeque::new(),
            bytes: 0,
            bytes_max,
        }
    }

    /// Adds the newest batch; returns the batches it pushed out (oldest first).
    pub fn push(&mut self, entry: Entry) -> Vec<Entry> {
        if let Some(last) = self.entries.back() {
            assert_eq!(last.next, entry.base, "cache must stay contiguous");
        }
        self.bytes += entry.bytes.len();
        self.entries.push_back(entry);
        let mut evicted = Vec::new();
        // Keep at least the newest batch even if it alone exceeds the bound.
        while self.bytes > self.bytes_max && self.entries.len() > 1 {
            let e = self.entries.pop_front().expect("non-empty");
            self.bytes -= e.bytes.len();
            evicted.push(e);
        }
        evicted
    }

    /// True when a read at `offset` can be answered entirely from the cache.
    pub fn covers(&self, offset: Offset) -> bool {
        self.entries.front().is_some_and(|e| e.base <= offset)
    }

    /// Whole batches holding offsets ≥ `offset` and ending at or before `limit` (the high
    /// watermark), up to `max_bytes`; the first batch is returned even if larger (Kafka rule).
    pub fn read(&self, offset: Offset, limit: Offset, max_bytes: usize) -> Vec<Bytes> {
        let start = self.entries.partition_point(|e| e.next <= offset);
        let mut out = Vec::new();
        let mut total = 0usize;
        for e in self.entries.iter().skip(start) {
            if e.next > limit || (!out.is_empty() && total + e.bytes.len() > max_bytes) {
                break;
            }
            total += e.bytes.len();
            out.push(e.bytes.clone());
        }
        out
    }

    /// Drops every batch.
    pub fn clear(&mut self) {
        self.entries.clear();
        self.bytes = 0;
    }

    /// Bytes of the batches held, at most `bytes_max` unless the newest alone is larger.
    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(n: usize) -> Bytes {
        Bytes::from(vec![0u8; n])
    }

    fn e(base: i64, next: i64, n: usize) -> Entry {
        Entry {
            base: Offset(base),
            next: Offset(next),
            segment: Offset(0),
            position: 0,
            bytes: b(n),
        }
    }

    #[test]
    fn bounded_and_contiguous() {
        let mut c = TailCache::new(250);
        assert!(c.push(e(0, 2, 100)).is_empty());
        assert!(c.push(e(2, 5, 100)).is_empty());
        let out = c.push(e(5, 6, 100));
        assert_eq!(out.len(), 1, "the oldest batch leaves");
        assert_eq!(out[0].base, Offset(0));
        assert_eq!(c.bytes(), 200);
        assert!(!c.covers(Offset(1)));
        assert!(c.covers(Offset(3)));
        assert_eq!(c.read(Offset(3), Offset(6), 1000).len(), 2);
        assert_eq!(c.read(Offset(3), Offset(5), 1000).len(), 1, "limit");
        assert_eq!(
            c.read(Offset(3), Offset(6), 10).len(),
            1,
            "first batch always"
        );
        assert_eq!(c.read(Offset(6), Offset(6), 1000).len(), 0);
    }
}
