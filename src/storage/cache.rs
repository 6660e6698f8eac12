//! The tail cache: the most recent batches of a partition, kept as the `Bytes` the producer sent.
//!
//! Consumers that keep up read from here and never touch the disk; a batch enters at append
//! (the same `Bytes` the log writes from: its offsets are rewritten in place once, no further
//! copies) and leaves when the byte bound is exceeded, oldest first. The cache is always a contiguous run of the log's newest batches.

use std::collections::VecDeque;

use bytes::Bytes;

use crate::types::Offset;

#[derive(Clone, Debug)]
struct Entry {
    base: Offset,
    next: Offset,
    bytes: Bytes,
}

#[derive(Debug)]
pub struct TailCache {
    entries: VecDeque<Entry>,
    bytes: usize,
    bytes_max: usize,
}

impl TailCache {
    pub fn new(bytes_max: usize) -> TailCache {
        TailCache {
            entries: VecDeque::new(),
            bytes: 0,
            bytes_max,
        }
    }

    pub fn push(&mut self, base: Offset, next: Offset, bytes: Bytes) {
        if let Some(last) = self.entries.back() {
            assert_eq!(last.next, base, "cache must stay contiguous");
        }
        self.bytes += bytes.len();
        self.entries.push_back(Entry { base, next, bytes });
        // Keep at least the newest batch even if it alone exceeds the bound.
        while self.bytes > self.bytes_max && self.entries.len() > 1 {
            let e = self.entries.pop_front().expect("non-empty");
            self.bytes -= e.bytes.len();
        }
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

    pub fn clear(&mut self) {
        self.entries.clear();
        self.bytes = 0;
    }

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

    #[test]
    fn bounded_and_contiguous() {
        let mut c = TailCache::new(250);
        c.push(Offset(0), Offset(2), b(100));
        c.push(Offset(2), Offset(5), b(100));
        c.push(Offset(5), Offset(6), b(100));
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
