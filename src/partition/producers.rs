//! Idempotent-producer state of one partition (Kafka's ProducerStateManager, non-transactional
//! part). For each producer id it keeps the epoch and the last [`BATCHES_KEPT`] batches'
//! sequence ranges and offsets, so that a retried batch is recognised and answered with its
//! original offsets instead of being appended twice, a gap in sequence numbers is refused
//! (OUT_OF_ORDER_SEQUENCE_NUMBER), and a fenced (older) epoch is refused
//! (INVALID_PRODUCER_EPOCH). Pure: `Partition::produce` checks each batch header here right
//! before appending it and records it right after, with no await in between.
//!
//! The state is rebuilt from the log's batch headers on open, starting from the last snapshot
//! ([`ProducerStates::encode_snapshot`]), which the partition writes periodically and on close.

use std::collections::{HashMap, VecDeque};

use crate::storage::batch::BatchHeader;
use crate::types::Offset;

/// Batches remembered per producer (Kafka: 5, the most a client may have in flight).
pub const BATCHES_KEPT: usize = 5;

const SNAPSHOT_MAGIC: &[u8; 4] = b"SLPS";
const SNAPSHOT_VERSION: u8 = 0;

/// One appended batch of a producer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchMeta {
    /// The batch's base sequence.
    pub first_seq: i32,
    /// The batch's last sequence (wrapping past i32::MAX to 0, see [`last_sequence`]).
    pub last_seq: i32,
    /// The offset of its first record in the log.
    pub first_offset: Offset,
    /// The offset of its last record in the log.
    pub last_offset: Offset,
}

/// What a partition remembers of one producer id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProducerEntry {
    /// The producer's current epoch; batches of older epochs are refused.
    pub epoch: i16,
    /// Oldest first; never empty.
    pub batches: VecDeque<BatchMeta>,
    /// When the producer last appended (for expiry).
    pub last_ms: i64,
}

/// One tracked producer as DescribeProducers shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProducerSummary {
    /// The producer id.
    pub producer_id: i64,
    /// Its current epoch.
    pub epoch: i16,
    /// The last sequence of its newest batch.
    pub last_sequence: i32,
    /// When it last appended (ms; a producer rebuilt from the log at open: its batch's max
    /// timestamp).
    pub last_ms: i64,
}

/// What to do with a batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// New and in sequence (or not idempotent): append it.
    Append,
    /// Already in the log: answer with these offsets.
    Duplicate(BatchMeta),
}

/// Why an idempotent producer's batch was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ProducerError {
    /// The batch's sequence does not follow the producer's last one (a gap), or a producer
    /// unknown here (or at a new epoch) starts at a sequence other than 0.
    #[error("out of order sequence number")]
    OutOfOrderSequence,
    /// The batch's epoch is older than the producer's current one (a fenced producer).
    #[error("producer epoch is older than the partition's")]
    InvalidEpoch,
    /// A new producer would pass the limit [`ProducerStates::check`] is given (a partition's
    /// is `PRODUCERS_MAX`).
    #[error("too many producers on this partition")]
    TooManyProducers,
}

/// Every idempotent producer one partition has seen and not yet expired, by producer id.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ProducerStates {
    entries: HashMap<i64, ProducerEntry>,
}

/// The last sequence of a batch: Kafka's wrapping increment.
pub fn last_sequence(h: &BatchHeader) -> i32 {
    let base = h.base_sequence;
    let delta = h.last_offset_delta;
    if base > i32::MAX - delta {
        delta - (i32::MAX - base) - 1
    } else {
        base + delta
    }
}

fn next_sequence(last: i32) -> i32 {
    if last == i32::MAX {
        0
    } else {
        last + 1
    }
}

/// Whether the batch comes from an idempotent producer.
pub fn is_idempotent(h: &BatchHeader) -> bool {
    h.producer_id >= 0 && h.base_sequence >= 0
}

impl ProducerStates {
    /// Producers tracked.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no producer is tracked.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// What is remembered of `producer_id`, if anything.
    pub fn get(&self, producer_id: i64) -> Option<&ProducerEntry> {
        self.entries.get(&producer_id)
    }

    /// Every tracked producer, by producer id.
    pub fn summaries(&self) -> Vec<ProducerSummary> {
        let mut out: Vec<ProducerSummary> = self
            .entries
            .iter()
            .filter_map(|(&producer_id, e)| {
                Some(ProducerSummary {
                    producer_id,
                    epoch: e.epoch,
                    last_sequence: e.batches.back()?.last_seq,
                    last_ms: e.last_ms,
                })
            })
            .collect();
        out.sort_unstable_by_key(|p| p.producer_id);
        out
    }

    /// Decides whether a batch may be appended (see the module docs).
    pub fn check(&self, h: &BatchHeader, producers_max: usize) -> Result<Verdict, ProducerError> {
        if !is_idempotent(h) {
            return Ok(Verdict::Append);
        }
        let Some(e) = self.entries.get(&h.producer_id) else {
            // Unknown producer: only a first batch (sequence 0) may start it (KAFKA-15591).
            if h.base_sequence != 0 {
                return Err(ProducerError::OutOfOrderSequence);
            }
            if self.entries.len() >= producers_max {
                return Err(ProducerError::TooManyProducers);
            }
            return Ok(Verdict::Append);
        };
        if h.producer_epoch < e.epoch {
            return Err(ProducerError::InvalidEpoch);
        }
        if h.producer_epoch > e.epoch {
            return match h.base_sequence {
                0 => Ok(Verdict::Append),
                _ => Err(ProducerError::OutOfOrderSequence),
            };
        }
        let last = last_sequence(h);
        if let Some(b) = e
            .batches
            .iter()
            .find(|b| b.first_seq == h.base_sequence && b.last_seq == last)
        {
            return Ok(Verdict::Duplicate(*b));
        }
        let newest = e.batches.back().expect("entries keep at least one batch");
        if h.base_sequence == next_sequence(newest.last_seq) {
            Ok(Verdict::Append)
        } else {
            Err(ProducerError::OutOfOrderSequence)
        }
    }

    /// Records an appended batch (`h.base_offset` is its assigned offset).
    pub fn record(&mut self, h: &BatchHeader, now_ms: i64) {
        if !is_idempotent(h) {
            return;
        }
        let meta = BatchMeta {
            first_seq: h.base_sequence,
            last_seq: last_sequence(h),
            first_offset: h.base_offset,
            last_offset: h.last_offset(),
        };
        let e = self
            .entries
            .entry(h.producer_id)
            .or_insert_with(|| ProducerEntry {
                epoch: h.producer_epoch,
                batches: VecDeque::new(),
                last_ms: now_ms,
            });
        if h.producer_epoch != e.epoch {
            e.epoch = h.producer_epoch;
            e.batches.clear();
        }
        e.batches.push_back(meta);
        while e.batches.len() > BATCHES_KEPT {
            e.batches.pop_front();
        }
        e.last_ms = e.last_ms.max(now_ms);
    }

    /// Forgets producers that have not appended for `expiration_ms`
    /// (producer.id.expiration.ms).
    pub fn expire(&mut self, now_ms: i64, expiration_ms: i64) -> usize {
        let before = self.entries.len();
        self.entries
            .retain(|_, e| now_ms.saturating_sub(e.last_ms) < expiration_ms);
        before - self.entries.len()
    }

    /// A snapshot of the state as of log offset `offset` (replay resumes there).
    pub fn encode_snapshot(&self, offset: Offset) -> Vec<u8> {
        let mut b = Vec::with_capacity(32 + self.entries.len() * 64);
        b.extend_from_slice(SNAPSHOT_MAGIC);
        b.push(SNAPSHOT_VERSION);
        b.extend_from_slice(&offset.0.to_be_bytes());
        b.extend_from_slice(&(self.entries.len() as u32).to_be_bytes());
        let mut ids: Vec<&i64> = self.entries.keys().collect();
        ids.sort();
        for id in ids {
            let e = &self.entries[id];
            b.extend_from_slice(&id.to_be_bytes());
            b.extend_from_slice(&e.epoch.to_be_bytes());
            b.extend_from_slice(&e.last_ms.to_be_bytes());
            b.push(e.batches.len() as u8);
            for m in &e.batches {
                b.extend_from_slice(&m.first_seq.to_be_bytes());
                b.extend_from_slice(&m.last_seq.to_be_bytes());
                b.extend_from_slice(&m.first_offset.0.to_be_bytes());
                b.extend_from_slice(&m.last_offset.0.to_be_bytes());
            }
        }
        let crc = crc32c::crc32c(&b);
        b.extend_from_slice(&crc.to_be_bytes());
        b
    }

    /// Reads a snapshot: (offset it covers, state). None if it is corrupt or foreign.
    pub fn decode_snapshot(bytes: &[u8]) -> Option<(Offset, ProducerStates)> {
        let (body, crc) = bytes.split_at_checked(bytes.len().checked_sub(4)?)?;
        if crc32c::crc32c(body) != u32::from_be_bytes(crc.try_into().ok()?) {
            return None;
        }
        let mut r = Reader(body);
        if r.take(4)? != SNAPSHOT_MAGIC || r.take(1)?[0] != SNAPSHOT_VERSION {
            return None;
        }
        let offset = Offset(r.i64()?);
        let count = r.u32()?;
        let mut states = ProducerStates::default();
        for _ in 0..count {
            let id = r.i64()?;
            let epoch = i16::from_be_bytes(r.take(2)?.try_into().ok()?);
            let last_ms = r.i64()?;
            let n = r.take(1)?[0] as usize;
            if n == 0 || n > BATCHES_KEPT {
                return None;
            }
            let mut batches = VecDeque::with_capacity(n);
            for _ in 0..n {
                batches.push_back(BatchMeta {
                    first_seq: r.u32()? as i32,
                    last_seq: r.u32()? as i32,
                    first_offset: Offset(r.i64()?),
                    last_offset: Offset(r.i64()?),
                });
            }
            let entry = ProducerEntry {
                epoch,
                batches,
                last_ms,
            };
            states.entries.insert(id, entry);
        }
        r.0.is_empty().then_some((offset, states))
    }
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (head, tail) = self.0.split_at_checked(n)?;
        self.0 = tail;
        Some(head)
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_be_bytes(self.take(4)?.try_into().ok()?))
    }
    fn i64(&mut self) -> Option<i64> {
        Some(i64::from_be_bytes(self.take(8)?.try_into().ok()?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::TimestampMs;

    fn header(pid: i64, epoch: i16, seq: i32, count: i32, offset: i64) -> BatchHeader {
        BatchHeader {
            base_offset: Offset(offset),
            leader_epoch: 0,
            size_bytes: 100,
            attributes: 0,
            last_offset_delta: count - 1,
            base_timestamp: TimestampMs(0),
            max_timestamp: TimestampMs(0),
            producer_id: pid,
            producer_epoch: epoch,
            base_sequence: seq,
            record_count: count,
            crc: 0,
        }
    }

    /// Checks and, when appendable, records (at `offset`) as the partition does.
    fn send(s: &mut ProducerStates, h: BatchHeader) -> Result<Verdict, ProducerError> {
        let v = s.check(&h, 1000)?;
        if v == Verdict::Append {
            s.record(&h, 0);
        }
        Ok(v)
    }

    #[test]
    fn retries_duplicates_gaps_and_epochs_get_kafkas_answers() {
        use ProducerError::*;
        let mut s = ProducerStates::default();
        let cases: Vec<(BatchHeader, Result<Verdict, ProducerError>)> = vec![
            (header(7, 0, 5, 1, 0), Err(OutOfOrderSequence)), // unknown producer, seq ≠ 0
            (header(7, 0, 0, 3, 0), Ok(Verdict::Append)),
            (header(7, 0, 3, 2, 3), Ok(Verdict::Append)),
            (
                header(7, 0, 0, 3, 99),
                Ok(Verdict::Duplicate(BatchMeta {
                    first_seq: 0,
                    last_seq: 2,
                    first_offset: Offset(0),
                    last_offset: Offset(2),
                })),
            ),
            (header(7, 0, 7, 1, 5), Err(OutOfOrderSequence)), // gap: 5 expected
            (header(7, 0, 4, 1, 5), Err(OutOfOrderSequence)), // overlaps, not a retry
            (header(7, 1, 3, 1, 5), Err(OutOfOrderSequence)), // new epoch must start at 0
            (header(7, 1, 0, 1, 5), Ok(Verdict::Append)),     // epoch bump
            (header(7, 0, 5, 1, 6), Err(InvalidEpoch)),       // fenced epoch
            (header(-1, -1, -1, 4, 6), Ok(Verdict::Append)),  // not idempotent
        ];
        for (i, (h, want)) in cases.into_iter().enumerate() {
            assert_eq!(send(&mut s, h), want, "case {i}");
        }
    }

    #[test]
    fn only_the_last_five_batches_are_remembered() {
        let mut s = ProducerStates::default();
        for i in 0..8 {
            assert_eq!(
                send(&mut s, header(1, 0, i, 1, i64::from(i))),
                Ok(Verdict::Append)
            );
        }
        assert!(matches!(
            send(&mut s, header(1, 0, 3, 1, 0)),
            Ok(Verdict::Duplicate(_))
        ));
        assert_eq!(
            send(&mut s, header(1, 0, 2, 1, 0)),
            Err(ProducerError::OutOfOrderSequence)
        );
    }

    #[test]
    fn sequences_wrap_at_i32_max() {
        let mut s = ProducerStates::default();
        assert_eq!(send(&mut s, header(1, 0, 0, 1, 0)), Ok(Verdict::Append));
        let mut h = header(1, 0, 1, 1, 1);
        h.base_sequence = i32::MAX - 1;
        s.entries
            .get_mut(&1)
            .unwrap()
            .batches
            .back_mut()
            .unwrap()
            .last_seq = i32::MAX - 2;
        h.last_offset_delta = 2; // i32::MAX - 1, i32::MAX, 0
        assert_eq!(last_sequence(&h), 0);
        assert_eq!(send(&mut s, h), Ok(Verdict::Append));
        assert_eq!(send(&mut s, header(1, 0, 1, 1, 4)), Ok(Verdict::Append));
    }

    #[test]
    fn producers_expire_and_are_bounded() {
        let mut s = ProducerStates::default();
        s.record(&header(1, 0, 0, 1, 0), 1000);
        s.record(&header(2, 0, 0, 1, 1), 5000);
        assert_eq!(s.expire(6000, 3000), 1);
        assert!(s.get(1).is_none() && s.get(2).is_some());
        assert_eq!(
            s.check(&header(3, 0, 0, 1, 2), 1),
            Err(ProducerError::TooManyProducers)
        );
    }

    #[test]
    fn snapshots_round_trip_and_reject_damage() {
        let mut s = ProducerStates::default();
        for pid in 0..20 {
            for i in 0..7 {
                s.record(&header(pid, 2, i * 3, 3, pid * 100 + i64::from(i) * 3), 77);
            }
        }
        let bytes = s.encode_snapshot(Offset(4242));
        assert_eq!(
            ProducerStates::decode_snapshot(&bytes),
            Some((Offset(4242), s.clone()))
        );
        for cut in 0..bytes.len() {
            assert!(ProducerStates::decode_snapshot(&bytes[..cut]).is_none());
        }
        let mut flipped = bytes.clone();
        flipped[20] ^= 1;
        assert!(ProducerStates::decode_snapshot(&flipped).is_none());
    }
}
