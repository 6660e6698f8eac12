//! Sparse offset and time indexes for one segment, in memory, with their on-disk form.
//!
//! Reads find a batch by offset through the offset index (offset → byte position) and by time
//! through the time index (timestamp → offset). Both are sparse: an entry every
//! `index_interval_bytes` of log. The active segment's indexes live in memory; they are
//! written next to the segment (`.index`, `.timeindex`) when it is sealed or the log is closed
//! cleanly, and as a recovery checkpoint of a synced prefix of it while it is written. An index file that fails its CRC is rebuilt from the log, so indexes are a cache
//! of the log and never a source of truth. Layout: docs/storage.md.

use crate::types::{Offset, TimestampMs};

const MAGIC: [u8; 4] = *b"SLIX";
const VERSION: u16 = 1;
const KIND_OFFSET: u16 = 1;
const KIND_TIME: u16 = 2;
/// magic(4) version(2) kind(2) entry_count(4) crc(4) log_bytes(8) next_offset(8) max_ts(8)
/// offset_of_max_ts(8).
pub const INDEX_HEADER_BYTES: usize = 48;
const OFFSET_ENTRY_BYTES: usize = 8;
const TIME_ENTRY_BYTES: usize = 12;

/// What a sealed segment's index header records about the segment, so a clean open needs no scan.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SegmentSummary {
    /// Bytes of the segment's log file the index covers (whole batches).
    pub log_bytes: u64,
    /// The offset one past the last batch covered.
    pub next_offset: Offset,
    /// The largest batch max timestamp covered ([`TimestampMs::NONE`] for none).
    pub max_timestamp: TimestampMs,
    /// The base offset of the batch holding `max_timestamp`.
    pub offset_of_max_timestamp: Offset,
}

/// Offset index: (offset relative to the segment base, byte position), both increasing.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OffsetIndex {
    entries: Vec<(u32, u32)>,
}

impl OffsetIndex {
    /// Adds an entry for the batch at byte `position` whose offset is `relative_offset` past
    /// the segment base; both must be greater than the last entry's (panics otherwise).
    pub fn push(&mut self, relative_offset: u32, position: u32) {
        if let Some(&(o, p)) = self.entries.last() {
            assert!(
                o < relative_offset && p < position,
                "offset index must increase"
            );
        }
        self.entries.push((relative_offset, position));
    }

    /// Byte position of the last indexed batch starting at or before `relative_offset`
    /// (0 when none is), from which a forward scan finds the batch holding it.
    pub fn lookup(&self, relative_offset: u32) -> u32 {
        let i = self.entries.partition_point(|&(o, _)| o <= relative_offset);
        if i == 0 {
            0
        } else {
            self.entries[i - 1].1
        }
    }

    /// Entries held.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the index has no entry.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The index file for the segment as `summary` describes it: the entries of batches
    /// inside its first `summary.log_bytes` (all of them for a whole segment).
    pub fn encode(&self, summary: SegmentSummary) -> Vec<u8> {
        let inside = self
            .entries
            .partition_point(|&(_, p)| u64::from(p) < summary.log_bytes);
        let mut body = Vec::with_capacity(inside * OFFSET_ENTRY_BYTES);
        for &(o, p) in &self.entries[..inside] {
            body.extend_from_slice(&o.to_be_bytes());
            body.extend_from_slice(&p.to_be_bytes());
        }
        encode_file(KIND_OFFSET, inside, summary, body)
    }

    /// Reads an offset index file back with its summary; None if it is corrupt or not an
    /// offset index of this version (the caller then rebuilds it from the log).
    pub fn decode(file: &[u8]) -> Option<(OffsetIndex, SegmentSummary)> {
        let (summary, body) = decode_file(file, KIND_OFFSET, OFFSET_ENTRY_BYTES)?;
        let mut index = OffsetIndex::default();
        for e in body.chunks_exact(OFFSET_ENTRY_BYTES) {
            let o = u32::from_be_bytes(e[0..4].try_into().ok()?);
            let p = u32::from_be_bytes(e[4..8].try_into().ok()?);
            if index
                .entries
                .last()
                .is_some_and(|&(lo, lp)| lo >= o || lp >= p)
            {
                return None;
            }
            index.entries.push((o, p));
        }
        Some((index, summary))
    }
}

/// Time index: (max timestamp seen so far, relative offset of the batch that reached it).
/// Timestamps strictly increase, so a lookup is a binary search.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TimeIndex {
    entries: Vec<(i64, u32)>,
}

impl TimeIndex {
    /// Records that the batch at `relative_offset` raised the segment's max timestamp to `ts`.
    /// Entries that would not raise the timestamp are ignored.
    pub fn maybe_push(&mut self, ts: TimestampMs, relative_offset: u32) {
        if self.entries.last().is_none_or(|&(t, _)| ts.0 > t) {
            self.entries.push((ts.0, relative_offset));
        }
    }

    /// Relative offset from which to scan for the first batch with max timestamp >= `ts`: the
    /// entry just before the first one reaching `ts` (so no earlier qualifying batch is missed).
    pub fn lookup(&self, ts: TimestampMs) -> u32 {
        let i = self.entries.partition_point(|&(t, _)| t < ts.0);
        if i == 0 {
            0
        } else {
            self.entries[i - 1].1
        }
    }

    /// Entries held.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the index has no entry.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The index file for the segment as `summary` describes it (of a segment based at
    /// `base`): the entries pointing at batches before `summary.next_offset`.
    pub fn encode(&self, base: Offset, summary: SegmentSummary) -> Vec<u8> {
        let end = summary.next_offset.0.saturating_sub(base.0);
        let inside = self.entries.partition_point(|&(_, o)| i64::from(o) < end);
        let mut body = Vec::with_capacity(inside * TIME_ENTRY_BYTES);
        for &(t, o) in &self.entries[..inside] {
            body.extend_from_slice(&t.to_be_bytes());
            body.extend_from_slice(&o.to_be_bytes());
        }
        encode_file(KIND_TIME, inside, summary, body)
    }

    /// Reads a time index file back with its summary; None if it is corrupt or not a time
    /// index of this version (the caller then rebuilds it from the log).
    pub fn decode(file: &[u8]) -> Option<(TimeIndex, SegmentSummary)> {
        let (summary, body) = decode_file(file, KIND_TIME, TIME_ENTRY_BYTES)?;
        let mut index = TimeIndex::default();
        for e in body.chunks_exact(TIME_ENTRY_BYTES) {
            let t = i64::from_be_bytes(e[0..8].try_into().ok()?);
            let o = u32::from_be_bytes(e[8..12].try_into().ok()?);
            if index.entries.last().is_some_and(|&(lt, _)| lt >= t) {
                return None;
            }
            index.entries.push((t, o));
        }
        Some((index, summary))
    }
}

fn header_crc(head: &[u8], body: &[u8]) -> u32 {
    // CRC over the header minus its crc field, then the entries.
    let c = crc32c::crc32c(&head[0..12]);
    let c = crc32c::crc32c_append(c, &head[16..INDEX_HEADER_BYTES]);
    crc32c::crc32c_append(c, body)
}

fn encode_file(kind: u16, count: usize, s: SegmentSummary, body: Vec<u8>) -> Vec<u8> {
    let mut head = vec![0u8; INDEX_HEADER_BYTES];
    head[0..4].copy_from_slice(&MAGIC);
    head[4..6].copy_from_slice(&VERSION.to_be_bytes());
    head[6..8].copy_from_slice(&kind.to_be_bytes());
    head[8..12].copy_from_slice(&(count as u32).to_be_bytes());
    head[16..24].copy_from_slice(&s.log_bytes.to_be_bytes());
    head[24..32].copy_from_slice(&s.next_offset.0.to_be_bytes());
    head[32..40].copy_from_slice(&s.max_timestamp.0.to_be_bytes());
    head[40..48].copy_from_slice(&s.offset_of_max_timestamp.0.to_be_bytes());
    let crc = header_crc(&head, &body);
    head[12..16].copy_from_slice(&crc.to_be_bytes());
    head.extend_from_slice(&body);
    head
}

fn decode_file(file: &[u8], kind: u16, entry: usize) -> Option<(SegmentSummary, &[u8])> {
    if file.len() < INDEX_HEADER_BYTES || file[0..4] != MAGIC {
        return None;
    }
    let head = &file[..INDEX_HEADER_BYTES];
    if u16::from_be_bytes([head[4], head[5]]) != VERSION
        || u16::from_be_bytes([head[6], head[7]]) != kind
    {
        return None;
    }
    let count = u32::from_be_bytes(head[8..12].try_into().ok()?) as usize;
    let body = file.get(INDEX_HEADER_BYTES..INDEX_HEADER_BYTES + count.checked_mul(entry)?)?;
    let crc = u32::from_be_bytes(head[12..16].try_into().ok()?);
    if crc != header_crc(head, body) {
        return None;
    }
    let summary = SegmentSummary {
        log_bytes: u64::from_be_bytes(head[16..24].try_into().ok()?),
        next_offset: Offset(i64::from_be_bytes(head[24..32].try_into().ok()?)),
        max_timestamp: TimestampMs(i64::from_be_bytes(head[32..40].try_into().ok()?)),
        offset_of_max_timestamp: Offset(i64::from_be_bytes(head[40..48].try_into().ok()?)),
    };
    Some((summary, body))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary() -> SegmentSummary {
        SegmentSummary {
            log_bytes: 12345,
            next_offset: Offset(77),
            max_timestamp: TimestampMs(999),
            offset_of_max_timestamp: Offset(70),
        }
    }

    #[test]
    fn offset_lookup_finds_floor_entry() {
        let mut idx = OffsetIndex::default();
        assert_eq!(idx.lookup(5), 0);
        idx.push(10, 4096);
        idx.push(20, 8192);
        assert_eq!(idx.lookup(5), 0);
        assert_eq!(idx.lookup(10), 4096);
        assert_eq!(idx.lookup(19), 4096);
        assert_eq!(idx.lookup(25), 8192);
    }

    #[test]
    fn time_lookup_starts_before_first_reaching_entry() {
        let mut idx = TimeIndex::default();
        idx.maybe_push(TimestampMs(100), 0);
        idx.maybe_push(TimestampMs(90), 3); // not an increase: ignored
        idx.maybe_push(TimestampMs(200), 5);
        assert_eq!(idx.len(), 2);
        assert_eq!(idx.lookup(TimestampMs(50)), 0);
        assert_eq!(idx.lookup(TimestampMs(150)), 0);
        assert_eq!(idx.lookup(TimestampMs(250)), 5);
    }

    #[test]
    fn a_prefix_keeps_only_the_entries_inside_it() {
        let mut o = OffsetIndex::default();
        o.push(0, 0);
        o.push(10, 4096);
        o.push(20, 8192);
        let mut t = TimeIndex::default();
        t.maybe_push(TimestampMs(5), 0);
        t.maybe_push(TimestampMs(9), 10);
        t.maybe_push(TimestampMs(12), 20);
        let prefix = SegmentSummary {
            log_bytes: 8192,
            next_offset: Offset(120),
            max_timestamp: TimestampMs(9),
            offset_of_max_timestamp: Offset(110),
        };
        let (op, os) = OffsetIndex::decode(&o.encode(prefix)).unwrap();
        assert_eq!(
            (op.len(), os),
            (2, prefix),
            "the batch at 8192 is past the prefix"
        );
        let (tp, _) = TimeIndex::decode(&t.encode(Offset(100), prefix)).unwrap();
        assert_eq!(tp.len(), 2, "offset 120 is past the prefix");
    }

    #[test]
    fn files_round_trip_and_detect_corruption() {
        let mut o = OffsetIndex::default();
        o.push(0, 0);
        o.push(4, 5000);
        let bytes = o.encode(summary());
        assert_eq!(OffsetIndex::decode(&bytes), Some((o.clone(), summary())));
        let mut t = TimeIndex::default();
        t.maybe_push(TimestampMs(5), 0);
        let tb = t.encode(Offset(0), summary());
        assert_eq!(TimeIndex::decode(&tb), Some((t, summary())));
        assert!(OffsetIndex::decode(&tb).is_none(), "kind is checked");
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 0x40;
            assert!(OffsetIndex::decode(&bad).is_none(), "flip at {i} detected");
        }
        assert!(OffsetIndex::decode(&bytes[..bytes.len() - 1]).is_none());
    }
}
