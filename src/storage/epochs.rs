//! The leader-epoch boundaries of one partition log: for each leader epoch, the offset of its
//! first batch (Kafka's leader-epoch cache, `leader-epoch-checkpoint`). Every batch carries the
//! epoch it was appended under in its `partitionLeaderEpoch` field; this keeps the points
//! where that field changes, so OffsetForLeaderEpoch (API 23), a Fetch's diverging-epoch check
//! and ListOffsets' epochs are answered without reading segments, and a replica that follows
//! a new leader knows where its log may diverge (issue 21).
//!
//! Plain data beside the log's state (`state.rs`): the log appends to it as batches of a new
//! epoch arrive, cuts it when the log is truncated or its start moves, and writes it as a
//! small file before the recovery checkpoints that let an open skip scanning (`log.rs`);
//! recovery (`recovery.rs`) reads the file back and adds what the scan of unsynced data finds.

use crate::types::Offset;

/// The checkpoint file in a partition directory (Kafka's name and text layout: a version
/// line, a count line, then `epoch start-offset` lines).
pub const EPOCHS_FILE: &str = "leader-epoch-checkpoint";
/// Entries a checkpoint file may hold; a longer file is treated as corrupt (bounds the parse).
const ENTRIES_MAX: usize = 1 << 16;
/// Kafka's "no epoch" and "no offset" answers.
pub const UNDEFINED_EPOCH: i32 = -1;
/// See [`UNDEFINED_EPOCH`].
pub const UNDEFINED_OFFSET: i64 = -1;

/// Epoch start offsets, both strictly increasing.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EpochCache {
    entries: Vec<(i32, Offset)>,
}

impl EpochCache {
    /// The newest epoch, if any batch was appended under one.
    pub fn latest(&self) -> Option<i32> {
        self.entries.last().map(|e| e.0)
    }

    /// The (epoch, start) pairs, oldest first.
    pub fn entries(&self) -> &[(i32, Offset)] {
        &self.entries
    }

    /// A batch of `epoch` starts at `start`, the log end: records a new epoch (true) or
    /// nothing if it is the latest. An older epoch after a newer one is a caller bug (a
    /// follower truncates before it appends a new leader's batches).
    pub fn assign(&mut self, epoch: i32, start: Offset) -> bool {
        match self.entries.last() {
            Some(&(e, _)) if e == epoch => false,
            Some(&(e, s)) => {
                assert!(epoch > e && start >= s, "epochs and their starts only grow");
                if start == s {
                    // The older epoch holds no batch (Kafka drops it the same way).
                    self.entries.pop();
                }
                self.entries.push((epoch, start));
                true
            }
            None => {
                assert!(epoch >= 0, "a batch's epoch is not negative");
                self.entries.push((epoch, start));
                true
            }
        }
    }

    /// Recovery read a stored batch of `epoch` at `start`: recorded if newer than the latest
    /// (a stored batch with an older epoch than the one before it is left as it is: the
    /// cache keeps growing epochs only).
    pub fn observe(&mut self, epoch: i32, start: Offset) -> bool {
        let newer = self
            .entries
            .last()
            .is_none_or(|&(e, s)| epoch > e && start >= s);
        newer && epoch >= 0 && self.assign(epoch, start)
    }

    /// The log was cut at `end` (everything from it on is gone): drops the epochs that began
    /// there or later. True if any was dropped.
    pub fn truncate_from(&mut self, end: Offset) -> bool {
        let keep = self.entries.partition_point(|e| e.1 < end);
        let cut = keep < self.entries.len();
        self.entries.truncate(keep);
        cut
    }

    /// The log now starts at `start`: epochs wholly before it go, and the one covering it
    /// starts there. True if anything changed.
    pub fn advance_start(&mut self, start: Offset) -> bool {
        let covering = self.entries.partition_point(|e| e.1 <= start);
        if covering == 0 {
            return false;
        }
        let before = self.entries.len();
        self.entries.drain(..covering - 1);
        let first = &mut self.entries[0];
        let moved = first.1 < start;
        first.1 = start;
        moved || self.entries.len() != before
    }

    /// OffsetForLeaderEpoch for `requested` in a log ending at `log_end`, as Kafka answers it:
    /// the latest epoch at or below `requested` and the offset where the next epoch begins (the
    /// log end for the latest epoch); (UNDEFINED_EPOCH, UNDEFINED_OFFSET) for an epoch newer
    /// than any here or when none is known; for an epoch older than all, `requested` itself and
    /// the first epoch's start.
    pub fn end_offset_for(&self, requested: i32, log_end: Offset) -> (i32, i64) {
        let undefined = (UNDEFINED_EPOCH, UNDEFINED_OFFSET);
        let Some(latest) = self.latest() else {
            return undefined;
        };
        if requested == UNDEFINED_EPOCH {
            return undefined;
        }
        if requested == latest {
            return (latest, log_end.0);
        }
        let higher = self.entries.partition_point(|e| e.0 <= requested);
        match (higher, self.entries.get(higher)) {
            (_, None) => undefined,
            (0, Some(next)) => (requested, next.1 .0),
            (i, Some(next)) => (self.entries[i - 1].0, next.1 .0),
        }
    }

    /// The epoch of the batch holding `offset`, if the cache covers it.
    pub fn epoch_at(&self, offset: Offset) -> Option<i32> {
        let i = self.entries.partition_point(|e| e.1 <= offset);
        i.checked_sub(1).map(|i| self.entries[i].0)
    }

    /// The checkpoint file's bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut s = format!("0\n{}\n", self.entries.len());
        for (epoch, start) in &self.entries {
            s.push_str(&format!("{epoch} {}\n", start.0));
        }
        s.into_bytes()
    }

    /// Parses a checkpoint file; None if it is not one (then the caller rebuilds from a scan).
    pub fn decode(bytes: &[u8]) -> Option<EpochCache> {
        let text = std::str::from_utf8(bytes).ok()?;
        let mut lines = text.lines();
        if lines.next()? != "0" {
            return None;
        }
        let count: usize = lines.next()?.parse().ok()?;
        if count > ENTRIES_MAX {
            return None;
        }
        let mut c = EpochCache::default();
        for _ in 0..count {
            let (e, o) = lines.next()?.split_once(' ')?;
            let (epoch, start) = (e.parse::<i32>().ok()?, Offset(o.parse::<i64>().ok()?));
            let grows = c.entries.last().is_none_or(|l| epoch > l.0 && start >= l.1);
            if epoch < 0 || start.0 < 0 || !grows {
                return None;
            }
            c.entries.push((epoch, start));
        }
        lines.next().is_none().then_some(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache(pairs: &[(i32, i64)]) -> EpochCache {
        let mut c = EpochCache::default();
        for &(e, o) in pairs {
            assert!(c.assign(e, Offset(o)));
        }
        c
    }

    #[test]
    fn end_offsets_follow_kafkas_rules() {
        let c = cache(&[(1, 0), (3, 10), (4, 25)]);
        let end = Offset(40);
        assert_eq!(c.end_offset_for(4, end), (4, 40), "latest: the log end");
        assert_eq!(c.end_offset_for(3, end), (3, 25));
        assert_eq!(c.end_offset_for(2, end), (1, 10), "a gap: the epoch below");
        assert_eq!(c.end_offset_for(0, end), (0, 0), "older than all");
        assert_eq!(c.end_offset_for(5, end), (-1, -1), "newer than all");
        assert_eq!(c.end_offset_for(-1, end), (-1, -1));
        assert_eq!(EpochCache::default().end_offset_for(0, end), (-1, -1));
        assert_eq!(
            (c.epoch_at(Offset(9)), c.epoch_at(Offset(10))),
            (Some(1), Some(3))
        );
    }

    #[test]
    fn the_same_epoch_is_recorded_once_and_truncation_drops_later_ones() {
        let mut c = cache(&[(0, 0)]);
        assert!(!c.assign(0, Offset(5)));
        assert!(c.assign(2, Offset(7)));
        assert!(!c.truncate_from(Offset(8)));
        assert!(c.truncate_from(Offset(7)));
        assert_eq!(c.entries(), &[(0, Offset(0))]);
        assert!(c.assign(3, Offset(7)));
    }

    #[test]
    fn a_moved_start_keeps_the_covering_epoch() {
        let mut c = cache(&[(0, 0), (1, 10), (2, 20)]);
        assert!(!c.advance_start(Offset(0)));
        assert!(c.advance_start(Offset(15)));
        assert_eq!(c.entries(), &[(1, Offset(15)), (2, Offset(20))]);
        assert!(c.advance_start(Offset(20)));
        assert_eq!(c.entries(), &[(2, Offset(20))]);
        assert!(c.assign(3, Offset(20)), "epoch 2 kept no batch");
        assert_eq!(c.entries(), &[(3, Offset(20))]);
    }

    #[test]
    #[should_panic(expected = "only grow")]
    fn an_older_epoch_after_a_newer_one_is_a_bug() {
        cache(&[(2, 0)]).assign(1, Offset(5));
    }

    #[test]
    fn the_file_round_trips_and_garbage_is_refused() {
        let c = cache(&[(0, 0), (5, 100)]);
        assert_eq!(c.encode(), b"0\n2\n0 0\n5 100\n");
        assert_eq!(EpochCache::decode(&c.encode()), Some(c));
        for bad in [
            &b""[..],
            b"1\n0\n",
            b"0\n2\n0 0\n",
            b"0\n1\n0 x\n",
            b"0\n2\n3 0\n2 5\n",
            b"0\n1\n0 0\n9 9\n",
            b"0\n99999999\n",
        ] {
            assert_eq!(EpochCache::decode(bad), None, "{bad:?}");
        }
    }
}
