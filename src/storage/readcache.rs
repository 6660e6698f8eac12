//! The shard's read cache: runs of whole batches that consumers may want again or next, under
//! one byte budget for all the partitions a shard owns (Redpanda's batch cache is the model;
//! Kafka gets the same effect from the page cache, which O_DIRECT bypasses).
//!
//! It sits under `PartitionLog::read`, behind each partition's tail cache: a read the tail
//! cache cannot answer looks here before it goes to the disk. Three things fill it: batches
//! leaving a tail cache (so recently produced data stays in memory up to the budget), demand
//! reads from disk, and read-ahead (`log.rs` reads the extents after a sequential consumer's
//! position before it asks). Entries are *extents*: one `Bytes` holding a contiguous run of
//! whole batches of one log, with the offsets and file position they cover. The `Bytes` are
//! `Send`, so a fetch served on another shard takes them without a copy.
//!
//! Eviction is least recently used, by extent, whenever the total exceeds the budget. Pure
//! data structure: no I/O, no clock; each shard thread has its own (`with`).

use std::cell::RefCell;
use std::collections::BTreeMap;

use bytes::Bytes;

use super::batch::{self, Batches};
use crate::types::Offset;

/// One cached run of whole batches of one log.
#[derive(Clone, Debug)]
pub struct Extent {
    /// Offset one past the last batch.
    pub next: Offset,
    /// Segment (base offset) and file position of the first batch.
    pub segment: Offset,
    /// The first batch's byte position in `segment`.
    pub position: u64,
    /// The batches, laid end to end as in the segment file.
    pub bytes: Bytes,
    /// LRU stamp (key in `lru`).
    used: u64,
}

/// Where a cached run ends: the offset after it and the file position that follows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RunEnd {
    /// The offset one past the run's last batch.
    pub next: Offset,
    /// The segment the run's last extent lies in.
    pub segment: Offset,
    /// The byte position in `segment` right after the run.
    pub position: u64,
    /// Bytes of the run from the asked offset's extent to here.
    pub bytes: usize,
}

type Key = (u64, Offset);

/// The cache of one shard. Logs are told apart by a per-process log id (`next_log_id`), so a
/// deleted and recreated partition never sees its predecessor's bytes.
#[derive(Debug, Default)]
pub struct ReadCache {
    bytes_max: usize,
    bytes: usize,
    clock: u64,
    extents: BTreeMap<Key, Extent>,
    lru: BTreeMap<u64, Key>,
    hits: u64,
    misses: u64,
}

/// The read cache budget per shard when nothing sets one (tests, tools).
pub const READ_CACHE_BYTES_DEFAULT: usize = 256 << 20;

thread_local! {
    static SHARD_CACHE: RefCell<ReadCache> = RefCell::new(ReadCache::new(READ_CACHE_BYTES_DEFAULT));
    static NEXT_LOG_ID: std::cell::Cell<u64> = const { std::cell::Cell::new(1) };
}

/// Runs `f` with this shard's (thread's) cache.
pub fn with<T>(f: impl FnOnce(&mut ReadCache) -> T) -> T {
    SHARD_CACHE.with(|c| f(&mut c.borrow_mut()))
}

/// Sets this shard's budget (called once when the shard starts); evicts down to it.
pub fn set_budget(bytes_max: usize) {
    with(|c| {
        c.bytes_max = bytes_max;
        c.evict();
    })
}

/// A log id unique on this thread for the life of the process.
pub fn next_log_id() -> u64 {
    NEXT_LOG_ID.with(|n| {
        let id = n.get();
        n.set(id + 1);
        id
    })
}

impl ReadCache {
    /// An empty cache with a budget of `bytes_max` bytes.
    pub fn new(bytes_max: usize) -> ReadCache {
        ReadCache {
            bytes_max,
            ..ReadCache::default()
        }
    }

    /// Bytes of all the extents held (at most `bytes_max` after each insert).
    pub fn bytes(&self) -> usize {
        self.bytes
    }
    /// The budget, in bytes.
    pub fn bytes_max(&self) -> usize {
        self.bytes_max
    }
    /// Reads answered here, and reads that had to go to disk (counted by `log.rs`).
    pub fn hit_counts(&self) -> (u64, u64) {
        (self.hits, self.misses)
    }
    /// Counts one read that had to go to disk.
    pub fn count_miss(&mut self) {
        self.misses += 1;
    }

    /// Adds a run of whole batches `[first, next)` of `log` held in `bytes`, starting at
    /// `position` of `segment`. Extents of the log that overlap it are dropped first, so every
    /// offset is in at most one extent. An extent larger than the whole budget is not kept.
    pub fn insert(&mut self, log: u64, first: Offset, extent: (Offset, Offset, u64, Bytes)) {
        let (next, segment, position, bytes) = extent;
        assert!(first < next, "an extent holds at least one batch");
        if bytes.len() > self.bytes_max {
            return;
        }
        if let Some(k) = self
            .find(log, first)
            .filter(|k| self.extents[k].next >= next)
        {
            self.touch(k); // already held whole, maybe in a larger extent: keep that one
            return;
        }
        // Extents never overlap, so only the one before `first` and those starting in
        // `[first, next)` can.
        let before = self.find(log, first).filter(|k| k.1 < first);
        let inside = self
            .extents
            .range((log, first)..(log, next))
            .map(|(k, _)| *k);
        let overlapping: Vec<Key> = before.into_iter().chain(inside).collect();
        for k in overlapping {
            self.remove(k);
        }
        self.clock += 1;
        self.bytes += bytes.len();
        self.lru.insert(self.clock, (log, first));
        self.extents.insert(
            (log, first),
            Extent {
                next,
                segment,
                position,
                bytes,
                used: self.clock,
            },
        );
        self.evict();
    }

    fn remove(&mut self, k: Key) {
        if let Some(e) = self.extents.remove(&k) {
            self.lru.remove(&e.used);
            self.bytes -= e.bytes.len();
        }
    }

    fn evict(&mut self) {
        while self.bytes > self.bytes_max {
            let Some((_, k)) = self.lru.pop_first() else {
                break;
            };
            if let Some(e) = self.extents.remove(&k) {
                self.bytes -= e.bytes.len();
            }
        }
    }

    /// Drops every extent of `log` (closed or deleted) or, with `below`, those wholly below it.
    pub fn forget(&mut self, log: u64, below: Option<Offset>) {
        let keys: Vec<Key> = self
            .extents
            .range((log, Offset(i64::MIN))..=(log, Offset(i64::MAX)))
            .filter(|(_, e)| below.is_none_or(|b| e.next <= b))
            .map(|(k, _)| *k)
            .collect();
        for k in keys {
            self.remove(k);
        }
    }

    /// The key of the extent of `log` holding `offset`.
    fn find(&self, log: u64, offset: Offset) -> Option<Key> {
        let (k, e) = self.extents.range(..=(log, offset)).next_back()?;
        (k.0 == log && e.next > offset).then_some(*k)
    }

    fn touch(&mut self, k: Key) {
        let e = self.extents.get_mut(&k).expect("present");
        self.lru.remove(&e.used);
        self.clock += 1;
        e.used = self.clock;
        self.lru.insert(self.clock, k);
    }

    /// Whole batches of `log` from the one holding `offset`, ending at or before `limit` (the
    /// high watermark), up to `max_bytes` (the first batch always): zero-copy slices of the
    /// extents, following them while they continue each other. Empty when `offset` is not
    /// cached; counts a hit otherwise.
    pub fn read(
        &mut self,
        log: u64,
        offset: Offset,
        limit: Offset,
        max_bytes: usize,
    ) -> Vec<Bytes> {
        let mut out = Vec::new();
        let mut total = 0usize;
        let mut at = offset;
        while let Some(k) = self.find(log, at) {
            self.touch(k);
            let e = &self.extents[&k];
            for walked in Batches::new(e.bytes.clone()) {
                let Ok((_, b)) = walked else { break };
                let Ok(h) = batch::parse_header(&b) else {
                    break;
                };
                if h.next_offset() > limit {
                    return self.counted(out);
                }
                if h.next_offset() <= at {
                    continue;
                }
                let n = b.len();
                if !out.is_empty() && total + n > max_bytes {
                    return self.counted(out);
                }
                total += n;
                out.push(b);
                at = h.next_offset();
                if total >= max_bytes {
                    return self.counted(out);
                }
            }
            if at < e.next {
                break; // an extent always holds whole batches; defensive
            }
        }
        self.counted(out)
    }

    fn counted(&mut self, out: Vec<Bytes>) -> Vec<Bytes> {
        if !out.is_empty() {
            self.hits += 1;
        }
        out
    }

    /// How far the cached run of `log` holding `offset` goes on: through the extents that
    /// continue each other, stopping after `bytes_max`. None when `offset` is not cached.
    pub fn run_end(&self, log: u64, offset: Offset, bytes_max: usize) -> Option<RunEnd> {
        let k = self.find(log, offset)?;
        let mut e = &self.extents[&k];
        let mut bytes = e.bytes.len();
        while bytes < bytes_max {
            match self.extents.get(&(log, e.next)) {
                Some(n) => {
                    bytes += n.bytes.len();
                    e = n;
                }
                None => break,
            }
        }
        Some(RunEnd {
            next: e.next,
            segment: e.segment,
            position: e.position + e.bytes.len() as u64,
            bytes,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::batch::build_test_batch;
    use crate::types::TimestampMs;

    /// `n` batches of `records` records each, offsets from `base`, as one extent's bytes.
    fn run(base: i64, n: usize, records: usize) -> Bytes {
        let mut out = Vec::new();
        for i in 0..n {
            let mut b = build_test_batch(records as i32, 100, TimestampMs(1));
            batch::assign_offset(&mut b, Offset(base + (i * records) as i64), 0);
            out.extend_from_slice(&b);
        }
        Bytes::from(out)
    }

    fn ext(base: i64, n: usize, records: usize, pos: u64) -> (Offset, Offset, u64, Bytes) {
        let next = Offset(base + (n * records) as i64);
        (next, Offset(0), pos, run(base, n, records))
    }

    #[test]
    fn reads_follow_contiguous_extents_and_stop_at_gaps_and_limits() {
        let mut c = ReadCache::new(1 << 20);
        let a = ext(0, 4, 2, 0); // offsets 0..8
        let a_len = a.3.len() as u64;
        c.insert(7, Offset(0), a);
        c.insert(7, Offset(8), ext(8, 4, 2, a_len)); // 8..16
        c.insert(7, Offset(20), ext(20, 2, 2, 0)); // a gap at 16..20
        let got = c.read(7, Offset(3), Offset(100), 1 << 20);
        assert_eq!(
            got.len(),
            7,
            "from the batch holding 3 through both extents"
        );
        assert_eq!(batch::parse_header(&got[0]).unwrap().base_offset, Offset(2));
        assert!(c.read(7, Offset(17), Offset(100), 1 << 20).is_empty());
        assert_eq!(c.read(7, Offset(0), Offset(6), 1 << 20).len(), 3, "limit");
        assert_eq!(
            c.read(7, Offset(0), Offset(100), 1).len(),
            1,
            "first batch always"
        );
        assert!(
            c.read(8, Offset(0), Offset(100), 1 << 20).is_empty(),
            "other log"
        );
        let end = c.run_end(7, Offset(1), usize::MAX).unwrap();
        assert_eq!(end.next, Offset(16));
        assert_eq!(end.position, 2 * a_len);
        assert_eq!(c.hit_counts().0, 3, "reads that found nothing are no hits");
    }

    #[test]
    fn bounded_by_the_budget_least_recently_used_first() {
        let one = run(0, 1, 1).len();
        let mut c = ReadCache::new(3 * one);
        for i in 0..3 {
            c.insert(1, Offset(i), ext(i, 1, 1, 0));
        }
        assert_eq!(c.read(1, Offset(0), Offset(10), 1 << 20).len(), 3);
        c.read(1, Offset(0), Offset(10), 1); // 0 is now the most recent
        c.insert(1, Offset(3), ext(3, 1, 1, 0));
        assert_eq!(c.bytes(), 3 * one);
        assert!(
            c.run_end(1, Offset(1), usize::MAX).is_none(),
            "1 was evicted"
        );
        assert!(c.run_end(1, Offset(0), usize::MAX).is_some());
        c.insert(2, Offset(0), ext(0, 4, 1, 0));
        assert!(
            c.run_end(2, Offset(0), usize::MAX).is_none(),
            "larger than the budget"
        );
    }

    #[test]
    fn overlapping_inserts_replace_and_forget_drops() {
        let mut c = ReadCache::new(1 << 20);
        c.insert(1, Offset(0), ext(0, 4, 1, 0));
        c.insert(1, Offset(2), ext(2, 4, 1, 0)); // overlaps 2..4
        assert!(c.run_end(1, Offset(0), usize::MAX).is_none());
        assert_eq!(c.run_end(1, Offset(5), usize::MAX).unwrap().next, Offset(6));
        c.insert(1, Offset(10), ext(10, 1, 1, 0));
        c.forget(1, Some(Offset(7)));
        assert!(c.run_end(1, Offset(2), usize::MAX).is_none());
        assert!(c.run_end(1, Offset(10), usize::MAX).is_some());
        c.forget(1, None);
        assert_eq!(c.bytes(), 0);
    }
}
