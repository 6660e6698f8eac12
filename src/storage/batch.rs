//! Kafka RecordBatch v2 headers: validation, the two in-place edits the broker makes, and the
//! walk over batches laid end to end ([`Batches`]).
//!
//! Produce requests hand their record batches to the log exactly as the producer encoded them.
//! This module reads the fixed 61-byte header, checks it (magic, length, CRC32C, record count,
//! last offset delta) and rewrites only fields the broker owns: the base offset and partition
//! leader epoch (outside the CRC), and for LogAppendTime topics the timestamp type and max
//! timestamp (inside the CRC, so the CRC is recomputed over the unchanged record bytes).
//! Records themselves are never decoded or re-encoded here. Every loop over batches (recovery's
//! scan, disk reads, read-ahead, the read cache, splitting produced records, replay) walks them
//! with [`Batches`], which reads only their length prefixes and leaves the checks to its caller.

use bytes::{Bytes, BytesMut};

use super::error::BatchError;
use crate::types::{Offset, TimestampMs};

/// Size of the v2 batch header, from base offset to record count inclusive.
pub const HEADER_BYTES: usize = 61;
/// Bytes before the `batchLength` field's coverage starts (base offset + length).
pub const LOG_OVERHEAD_BYTES: usize = 12;

const OFF_BASE_OFFSET: usize = 0;
const OFF_LENGTH: usize = 8;
const OFF_LEADER_EPOCH: usize = 12;
const OFF_MAGIC: usize = 16;
const OFF_CRC: usize = 17;
const OFF_ATTRIBUTES: usize = 21;
const OFF_LAST_OFFSET_DELTA: usize = 23;
const OFF_BASE_TIMESTAMP: usize = 27;
const OFF_MAX_TIMESTAMP: usize = 35;
const OFF_PRODUCER_ID: usize = 43;
const OFF_PRODUCER_EPOCH: usize = 51;
const OFF_BASE_SEQUENCE: usize = 53;
const OFF_RECORD_COUNT: usize = 57;

const ATTR_COMPRESSION_MASK: i16 = 0x07;
const ATTR_TIMESTAMP_TYPE_LOG_APPEND: i16 = 0x08;
const ATTR_TRANSACTIONAL: i16 = 0x10;
const ATTR_CONTROL: i16 = 0x20;

fn be_i16(b: &[u8], at: usize) -> i16 {
    i16::from_be_bytes([b[at], b[at + 1]])
}
fn be_i32(b: &[u8], at: usize) -> i32 {
    i32::from_be_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}
fn be_u32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}
fn be_i64(b: &[u8], at: usize) -> i64 {
    i64::from_be_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

/// The decoded fixed header of one v2 batch. Cheap to copy; holds no bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchHeader {
    /// The offset of the batch's first record (the broker writes it on append).
    pub base_offset: Offset,
    /// The leader epoch it was appended under (partitionLeaderEpoch; the broker writes it).
    pub leader_epoch: i32,
    /// Total size on the wire and on disk: 12 + batchLength.
    pub size_bytes: usize,
    /// The attribute bits: compression codec, timestamp type, transactional, control.
    pub attributes: i16,
    /// The last record's offset minus `base_offset`.
    pub last_offset_delta: i32,
    /// The first record's timestamp (records carry deltas from it).
    pub base_timestamp: TimestampMs,
    /// The newest record timestamp in the batch, or the append time for LogAppendTime.
    pub max_timestamp: TimestampMs,
    /// The idempotent producer's id, -1 for a plain producer.
    pub producer_id: i64,
    /// The idempotent producer's epoch, -1 for a plain producer.
    pub producer_epoch: i16,
    /// The first record's sequence number, -1 for a plain producer.
    pub base_sequence: i32,
    /// Records the batch declares (at least 1 once validated).
    pub record_count: i32,
    /// The CRC32C stored in the batch, over everything from the attributes on.
    pub crc: u32,
}

impl BatchHeader {
    /// The offset of the batch's last record.
    pub fn last_offset(&self) -> Offset {
        self.base_offset.plus(i64::from(self.last_offset_delta))
    }
    /// Offset one past this batch: where the next batch starts.
    pub fn next_offset(&self) -> Offset {
        self.last_offset().plus(1)
    }
    /// The compression codec: 0 none, 1 gzip, 2 snappy, 3 lz4, 4 zstd.
    pub fn compression(&self) -> i16 {
        self.attributes & ATTR_COMPRESSION_MASK
    }
    /// Whether the timestamps are the broker's append time (LogAppendTime), not the producer's.
    pub fn is_log_append_time(&self) -> bool {
        self.attributes & ATTR_TIMESTAMP_TYPE_LOG_APPEND != 0
    }
    /// Whether the batch belongs to a transaction.
    pub fn is_transactional(&self) -> bool {
        self.attributes & ATTR_TRANSACTIONAL != 0
    }
    /// Whether the batch holds a control record (a transaction marker), not data.
    pub fn is_control(&self) -> bool {
        self.attributes & ATTR_CONTROL != 0
    }
}

/// Reads the size a batch declares from its first 12 bytes, if that many are present and the
/// length field is sane (non-negative and at least a header). `None` means "not a batch start".
pub fn declared_size(buf: &[u8]) -> Option<usize> {
    if buf.len() < LOG_OVERHEAD_BYTES {
        return None;
    }
    let len = be_i32(buf, OFF_LENGTH);
    let total = LOG_OVERHEAD_BYTES as i64 + i64::from(len);
    if total < HEADER_BYTES as i64 {
        return None;
    }
    usize::try_from(total).ok()
}

/// A buffer whole batches can be taken off the front of without copying: a byte slice, or a
/// reference-counted view (`Bytes`, `BytesMut`) whose pieces share its memory.
pub trait BatchBuf: std::ops::Deref<Target = [u8]> + Sized {
    /// The first `n` bytes (`n <= self.len()`) as their own buffer; `self` keeps the rest.
    fn split_to(&mut self, n: usize) -> Self;
}

impl BatchBuf for &[u8] {
    fn split_to(&mut self, n: usize) -> Self {
        let (head, rest) = self.split_at(n);
        *self = rest;
        head
    }
}

impl BatchBuf for Bytes {
    fn split_to(&mut self, n: usize) -> Self {
        Bytes::split_to(self, n)
    }
}

impl BatchBuf for BytesMut {
    fn split_to(&mut self, n: usize) -> Self {
        BytesMut::split_to(self, n)
    }
}

/// Why a walk over batches ([`Batches`]) stopped before the end of its bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Stop {
    /// The bytes end inside a batch: `batch_bytes` from its start would hold it whole
    /// (`LOG_OVERHEAD_BYTES` when even its length prefix is cut off).
    #[error("the bytes end inside a batch of {batch_bytes} bytes")]
    Partial {
        /// Bytes the cut batch needs from its start.
        batch_bytes: usize,
    },
    /// The length prefix is no batch length (shorter than a header): zeros or garbage.
    #[error("no batch header (zeros or garbage)")]
    BadLength,
    /// The batch declares more bytes than the walk's cap.
    #[error("declared size {batch_bytes} over the batch cap")]
    TooLarge {
        /// The size the batch declares.
        batch_bytes: usize,
    },
}

/// Batches laid end to end in a buffer, walked by their length prefixes: the one place that
/// finds where each batch starts and ends. Yields each whole batch as `(position, bytes)`,
/// its position counted from the start of the buffer and its bytes a zero-copy piece of it,
/// and then, unless the bytes end exactly after a batch, one `Err(Stop)` telling why the walk
/// ends there ([`Batches::position`]). Only the length prefix is read: what else a batch must
/// be (header, CRC, offsets) is each caller's policy.
#[derive(Debug)]
pub struct Batches<B> {
    rest: B,
    position: usize,
    batch_bytes_max: usize,
    stopped: bool,
}

impl<B: BatchBuf> Batches<B> {
    /// Walks `buf` with no cap on a batch's size.
    pub fn new(buf: B) -> Batches<B> {
        Batches::with_max(buf, usize::MAX)
    }

    /// Walks `buf`, stopping at a batch that declares more than `batch_bytes_max` bytes.
    pub fn with_max(buf: B, batch_bytes_max: usize) -> Batches<B> {
        Batches {
            rest: buf,
            position: 0,
            batch_bytes_max,
            stopped: false,
        }
    }

    /// Where the next batch starts: the bytes walked so far, all of them whole batches.
    pub fn position(&self) -> usize {
        self.position
    }

    /// What the bytes at the front of the rest hold: the size of a whole batch, or why there is
    /// none. `Ok(0)`: no bytes at all.
    fn next_size(&self) -> Result<usize, Stop> {
        let rest: &[u8] = &self.rest;
        if rest.is_empty() {
            return Ok(0);
        }
        if rest.len() < LOG_OVERHEAD_BYTES {
            return Err(Stop::Partial {
                batch_bytes: LOG_OVERHEAD_BYTES,
            });
        }
        let size = declared_size(rest).ok_or(Stop::BadLength)?;
        if size > self.batch_bytes_max {
            return Err(Stop::TooLarge { batch_bytes: size });
        }
        if rest.len() < size {
            return Err(Stop::Partial { batch_bytes: size });
        }
        Ok(size)
    }
}

impl<B: BatchBuf> Iterator for Batches<B> {
    type Item = Result<(usize, B), Stop>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.stopped {
            return None;
        }
        match self.next_size() {
            Ok(0) => {
                self.stopped = true;
                None
            }
            Ok(size) => {
                assert!(size >= HEADER_BYTES && size <= self.rest.len());
                let at = self.position;
                self.position += size;
                Some(Ok((at, self.rest.split_to(size))))
            }
            Err(stop) => {
                self.stopped = true;
                Some(Err(stop))
            }
        }
    }
}

/// CRC32C over everything after the CRC field, as Kafka defines it for v2 batches.
pub fn compute_crc(batch: &[u8]) -> u32 {
    crc32c::crc32c(&batch[OFF_ATTRIBUTES..])
}

/// Parses the header of a buffer holding exactly one batch, without checking the CRC.
pub fn parse_header(batch: &[u8]) -> Result<BatchHeader, BatchError> {
    if batch.len() < HEADER_BYTES {
        return Err(BatchError::TooShort(HEADER_BYTES));
    }
    let magic = batch[OFF_MAGIC] as i8;
    if magic != 2 {
        return Err(BatchError::BadMagic(magic));
    }
    let declared = i64::from(be_i32(batch, OFF_LENGTH)) + LOG_OVERHEAD_BYTES as i64;
    if declared != batch.len() as i64 {
        return Err(BatchError::LengthMismatch {
            declared,
            actual: batch.len(),
        });
    }
    Ok(BatchHeader {
        base_offset: Offset(be_i64(batch, OFF_BASE_OFFSET)),
        leader_epoch: be_i32(batch, OFF_LEADER_EPOCH),
        size_bytes: batch.len(),
        attributes: be_i16(batch, OFF_ATTRIBUTES),
        last_offset_delta: be_i32(batch, OFF_LAST_OFFSET_DELTA),
        base_timestamp: TimestampMs(be_i64(batch, OFF_BASE_TIMESTAMP)),
        max_timestamp: TimestampMs(be_i64(batch, OFF_MAX_TIMESTAMP)),
        producer_id: be_i64(batch, OFF_PRODUCER_ID),
        producer_epoch: be_i16(batch, OFF_PRODUCER_EPOCH),
        base_sequence: be_i32(batch, OFF_BASE_SEQUENCE),
        record_count: be_i32(batch, OFF_RECORD_COUNT),
        crc: be_u32(batch, OFF_CRC),
    })
}

/// Full validation of one batch: header, CRC32C, record count and last offset delta.
///
/// `strict_delta` demands `last_offset_delta == record_count - 1`, which every producer sends;
/// stored batches (recovery) only need `last_offset_delta >= record_count - 1`.
pub fn validate(batch: &[u8], strict_delta: bool) -> Result<BatchHeader, BatchError> {
    let header = validate_structure(batch, strict_delta)?;
    let computed = compute_crc(batch);
    if computed != header.crc {
        return Err(BatchError::BadCrc {
            stored: header.crc,
            computed,
        });
    }
    Ok(header)
}

/// `validate` without the CRC: header, length, magic, record count and last offset delta.
/// For batches read back from the log, which were checked whole when they were appended.
pub fn validate_structure(batch: &[u8], strict_delta: bool) -> Result<BatchHeader, BatchError> {
    let header = parse_header(batch)?;
    if header.record_count <= 0 {
        return Err(BatchError::NoRecords(header.record_count));
    }
    let delta_ok = if strict_delta {
        i64::from(header.last_offset_delta) == i64::from(header.record_count) - 1
    } else {
        i64::from(header.last_offset_delta) >= i64::from(header.record_count) - 1
    };
    if !delta_ok {
        return Err(BatchError::BadLastOffsetDelta {
            delta: header.last_offset_delta,
            count: header.record_count,
        });
    }
    Ok(header)
}

/// Assigns the batch its log position: base offset and leader epoch (neither is under the CRC).
pub fn assign_offset(batch: &mut [u8], base_offset: Offset, leader_epoch: i32) {
    batch[OFF_BASE_OFFSET..OFF_BASE_OFFSET + 8].copy_from_slice(&base_offset.0.to_be_bytes());
    batch[OFF_LEADER_EPOCH..OFF_LEADER_EPOCH + 4].copy_from_slice(&leader_epoch.to_be_bytes());
}

/// Marks the batch as LogAppendTime with `now` as its max timestamp, then recomputes the CRC
/// (attributes and max timestamp are covered by it). Record bytes are untouched.
pub fn set_log_append_time(batch: &mut [u8], now: TimestampMs) {
    let attrs = be_i16(batch, OFF_ATTRIBUTES) | ATTR_TIMESTAMP_TYPE_LOG_APPEND;
    batch[OFF_ATTRIBUTES..OFF_ATTRIBUTES + 2].copy_from_slice(&attrs.to_be_bytes());
    batch[OFF_MAX_TIMESTAMP..OFF_MAX_TIMESTAMP + 8].copy_from_slice(&now.0.to_be_bytes());
    let crc = compute_crc(batch);
    batch[OFF_CRC..OFF_CRC + 4].copy_from_slice(&crc.to_be_bytes());
}

/// Stamps a batch with an idempotent producer's id, epoch and first sequence and recomputes
/// its CRC (tests, benches and tools that play a producer).
pub fn set_producer(batch: &mut [u8], producer_id: i64, epoch: i16, base_sequence: i32) {
    assert!(batch.len() >= HEADER_BYTES, "a whole batch header");
    batch[OFF_PRODUCER_ID..OFF_PRODUCER_ID + 8].copy_from_slice(&producer_id.to_be_bytes());
    batch[OFF_PRODUCER_EPOCH..OFF_PRODUCER_EPOCH + 2].copy_from_slice(&epoch.to_be_bytes());
    batch[OFF_BASE_SEQUENCE..OFF_BASE_SEQUENCE + 4].copy_from_slice(&base_sequence.to_be_bytes());
    let crc = compute_crc(batch);
    batch[OFF_CRC..OFF_CRC + 4].copy_from_slice(&crc.to_be_bytes());
}

/// Test and bench support: builds a valid v2 batch of `count` records with `value_bytes`-byte
/// values. Records use the real v2 record encoding so real clients could decode them.
pub fn build_test_batch(count: i32, value_bytes: usize, timestamp: TimestampMs) -> Vec<u8> {
    assert!(count > 0);
    let mut records = Vec::with_capacity(count as usize * (value_bytes + 16));
    for i in 0..count {
        let mut body = Vec::with_capacity(value_bytes + 12);
        body.push(0); // attributes
        put_varint(&mut body, 0); // timestamp delta
        put_varint(&mut body, i64::from(i)); // offset delta
        put_varint(&mut body, -1); // null key
        put_varint(&mut body, value_bytes as i64);
        body.extend((0..value_bytes).map(|j| (j as u8).wrapping_add(i as u8)));
        put_varint(&mut body, 0); // no headers
        put_varint(&mut records, body.len() as i64);
        records.extend_from_slice(&body);
    }
    assemble(&records, count, timestamp, 0)
}

/// The one-record control batch a replicated partition stores for a Raft entry that carries
/// no batch (a new leader's no-op): a LEADER_CHANGE control record (key version 0, type 2, as
/// KRaft writes; no value) at `base_offset` in `epoch`, with timestamp 0, so every replica
/// builds the same bytes. Consumers skip control batches.
pub fn leader_change_batch(base_offset: Offset, epoch: i32) -> Vec<u8> {
    let mut body = vec![0]; // attributes
    put_varint(&mut body, 0); // timestamp delta
    put_varint(&mut body, 0); // offset delta
    put_varint(&mut body, 4);
    body.extend_from_slice(&0i16.to_be_bytes()); // control key version
    body.extend_from_slice(&2i16.to_be_bytes()); // LEADER_CHANGE
    put_varint(&mut body, -1); // no value
    put_varint(&mut body, 0); // no headers
    let mut records = Vec::with_capacity(body.len() + 1);
    put_varint(&mut records, body.len() as i64);
    records.extend_from_slice(&body);
    let mut b = assemble(&records, 1, TimestampMs(0), ATTR_CONTROL);
    assign_offset(&mut b, base_offset, epoch);
    b
}

/// A v2 batch of `count` encoded `records` with the given attributes, no producer, CRC set.
fn assemble(records: &[u8], count: i32, timestamp: TimestampMs, attributes: i16) -> Vec<u8> {
    let mut b = vec![0u8; HEADER_BYTES];
    let batch_length = (HEADER_BYTES - LOG_OVERHEAD_BYTES + records.len()) as i32;
    b[OFF_LENGTH..OFF_LENGTH + 4].copy_from_slice(&batch_length.to_be_bytes());
    b[OFF_LEADER_EPOCH..OFF_LEADER_EPOCH + 4].copy_from_slice(&(-1i32).to_be_bytes());
    b[OFF_MAGIC] = 2;
    b[OFF_LAST_OFFSET_DELTA..OFF_LAST_OFFSET_DELTA + 4].copy_from_slice(&(count - 1).to_be_bytes());
    b[OFF_BASE_TIMESTAMP..OFF_BASE_TIMESTAMP + 8].copy_from_slice(&timestamp.0.to_be_bytes());
    b[OFF_MAX_TIMESTAMP..OFF_MAX_TIMESTAMP + 8].copy_from_slice(&timestamp.0.to_be_bytes());
    b[OFF_PRODUCER_ID..OFF_PRODUCER_ID + 8].copy_from_slice(&(-1i64).to_be_bytes());
    b[OFF_PRODUCER_EPOCH..OFF_PRODUCER_EPOCH + 2].copy_from_slice(&(-1i16).to_be_bytes());
    b[OFF_BASE_SEQUENCE..OFF_BASE_SEQUENCE + 4].copy_from_slice(&(-1i32).to_be_bytes());
    b[OFF_RECORD_COUNT..OFF_RECORD_COUNT + 4].copy_from_slice(&count.to_be_bytes());
    b[OFF_ATTRIBUTES..OFF_ATTRIBUTES + 2].copy_from_slice(&attributes.to_be_bytes());
    b.extend_from_slice(records);
    let crc = compute_crc(&b);
    b[OFF_CRC..OFF_CRC + 4].copy_from_slice(&crc.to_be_bytes());
    b
}

fn put_varint(out: &mut Vec<u8>, v: i64) {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    while z >= 0x80 {
        out.push((z as u8) | 0x80);
        z >>= 7;
    }
    out.push(z as u8);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_batch_round_trips() {
        let b = build_test_batch(5, 100, TimestampMs(1_000));
        let h = validate(&b, true).unwrap();
        assert_eq!(h.record_count, 5);
        assert_eq!(h.last_offset_delta, 4);
        assert_eq!(h.size_bytes, b.len());
        assert_eq!(declared_size(&b), Some(b.len()));
        assert_eq!(h.max_timestamp, TimestampMs(1_000));
    }

    #[test]
    fn a_leader_change_batch_is_one_valid_control_record() {
        let b = leader_change_batch(Offset(17), 4);
        let h = validate(&b, true).unwrap();
        assert!(h.is_control() && !h.is_transactional());
        assert_eq!(
            (h.base_offset, h.leader_epoch, h.record_count),
            (Offset(17), 4, 1)
        );
        assert_eq!((h.producer_id, h.max_timestamp), (-1, TimestampMs(0)));
        assert_eq!(
            b,
            leader_change_batch(Offset(17), 4),
            "the same bytes every time"
        );
        let mut buf = bytes::Bytes::from(b);
        let set = kafka_protocol::records::RecordBatchDecoder::decode(&mut buf).unwrap();
        let r = &set.records[0];
        assert!(r.control);
        assert_eq!((r.offset, r.partition_leader_epoch), (17, 4));
        assert_eq!(r.key.as_deref(), Some(&[0u8, 0, 0, 2][..]));
        assert!(r.value.is_none());
    }

    #[test]
    fn offset_assignment_keeps_crc_valid() {
        let mut b = build_test_batch(3, 10, TimestampMs(5));
        assign_offset(&mut b, Offset(42), 7);
        let h = validate(&b, true).unwrap();
        assert_eq!(h.base_offset, Offset(42));
        assert_eq!(h.last_offset(), Offset(44));
    }

    #[test]
    fn log_append_time_rewrites_crc() {
        let mut b = build_test_batch(2, 10, TimestampMs(5));
        set_log_append_time(&mut b, TimestampMs(99));
        let h = validate(&b, true).unwrap();
        assert!(h.is_log_append_time());
        assert_eq!(h.max_timestamp, TimestampMs(99));
    }

    #[test]
    fn rejects_each_kind_of_bad_batch() {
        let good = build_test_batch(2, 10, TimestampMs(5));
        assert_eq!(validate(&good[..30], true), Err(BatchError::TooShort(61)));
        let mut m = good.clone();
        m[OFF_MAGIC] = 1;
        assert_eq!(validate(&m, true), Err(BatchError::BadMagic(1)));
        assert!(matches!(
            validate(&good[..good.len() - 1], true),
            Err(BatchError::LengthMismatch { .. })
        ));
        let mut c = good.clone();
        let last = c.len() - 1;
        c[last] ^= 0xff;
        assert!(matches!(validate(&c, true), Err(BatchError::BadCrc { .. })));
        let mut d = good.clone();
        d[OFF_LAST_OFFSET_DELTA + 3] = 7;
        let crc = compute_crc(&d);
        d[OFF_CRC..OFF_CRC + 4].copy_from_slice(&crc.to_be_bytes());
        assert!(matches!(
            validate(&d, true),
            Err(BatchError::BadLastOffsetDelta { .. })
        ));
        assert!(validate(&d, false).is_ok(), "stored batches may have gaps");
        let mut z = good;
        z[OFF_RECORD_COUNT..OFF_RECORD_COUNT + 4].copy_from_slice(&0i32.to_be_bytes());
        let crc = compute_crc(&z);
        z[OFF_CRC..OFF_CRC + 4].copy_from_slice(&crc.to_be_bytes());
        assert_eq!(validate(&z, true), Err(BatchError::NoRecords(0)));
    }

    /// Batches of varied sizes laid end to end, and where each ends.
    fn image(sizes: &[(i32, usize)]) -> (Vec<u8>, Vec<usize>) {
        let (mut img, mut ends) = (Vec::new(), Vec::new());
        for (i, &(count, value_bytes)) in sizes.iter().enumerate() {
            let mut b = build_test_batch(count, value_bytes, TimestampMs(i as i64));
            assign_offset(&mut b, Offset(i as i64 * 100), 0);
            img.extend_from_slice(&b);
            ends.push(img.len());
        }
        (img, ends)
    }

    /// Walks `buf`: the (position, length) of each whole batch, and the stop if any.
    fn walk(buf: &[u8], max: usize) -> (Vec<(usize, usize)>, Option<Stop>, usize) {
        let mut batches = Batches::with_max(buf, max);
        let (mut whole, mut stop) = (Vec::new(), None);
        for walked in batches.by_ref() {
            match walked {
                Ok((at, b)) => whole.push((at, b.len())),
                Err(s) => stop = Some(s),
            }
        }
        assert_eq!(batches.next(), None, "fused");
        (whole, stop, batches.position())
    }

    #[test]
    fn walks_nothing_in_no_bytes() {
        assert_eq!(walk(&[], usize::MAX), (vec![], None, 0));
    }

    #[test]
    fn walks_exact_batches_to_a_clean_end() {
        let (img, ends) = image(&[(1, 10), (3, 200), (2, 0)]);
        let (whole, stop, at) = walk(&img, usize::MAX);
        assert_eq!(
            whole,
            [
                (0, ends[0]),
                (ends[0], ends[1] - ends[0]),
                (ends[1], ends[2] - ends[1])
            ]
        );
        assert_eq!((stop, at), (None, img.len()));
    }

    #[test]
    fn a_cut_at_every_byte_stops_at_the_last_whole_batch() {
        let (img, ends) = image(&[(2, 30), (1, 5), (4, 70)]);
        for cut in 0..=img.len() {
            let (whole, stop, at) = walk(&img[..cut], usize::MAX);
            let n = ends.iter().filter(|&&e| e <= cut).count();
            let last = if n == 0 { 0 } else { ends[n - 1] };
            assert_eq!(whole.len(), n, "cut at {cut}");
            assert_eq!(at, last, "cut at {cut}");
            let expect = if cut == last {
                None
            } else if cut - last < LOG_OVERHEAD_BYTES {
                Some(Stop::Partial {
                    batch_bytes: LOG_OVERHEAD_BYTES,
                })
            } else {
                Some(Stop::Partial {
                    batch_bytes: ends[n] - last,
                })
            };
            assert_eq!(stop, expect, "cut at {cut}");
        }
    }

    #[test]
    fn a_bad_length_stops_the_walk_where_it_is() {
        let (mut img, ends) = image(&[(1, 10)]);
        img.extend_from_slice(&[0u8; 100]);
        assert_eq!(
            walk(&img, usize::MAX),
            (vec![(0, ends[0])], Some(Stop::BadLength), ends[0])
        );
        let mut neg = img.clone();
        neg[ends[0] + 8..ends[0] + 12].copy_from_slice(&(-1i32).to_be_bytes());
        assert_eq!(walk(&neg, usize::MAX).1, Some(Stop::BadLength));
        let mut huge = img;
        huge[ends[0] + 8..ends[0] + 12].copy_from_slice(&i32::MAX.to_be_bytes());
        let size = LOG_OVERHEAD_BYTES + i32::MAX as usize;
        assert_eq!(
            walk(&huge, usize::MAX).1,
            Some(Stop::Partial { batch_bytes: size }),
            "any sane length is a batch until its bytes are missing"
        );
    }

    #[test]
    fn a_batch_over_the_cap_stops_the_walk_even_when_cut() {
        let (img, ends) = image(&[(1, 10), (5, 300), (1, 10)]);
        let big = ends[1] - ends[0];
        let (whole, stop, at) = walk(&img, big - 1);
        assert_eq!((whole.len(), at), (1, ends[0]));
        assert_eq!(stop, Some(Stop::TooLarge { batch_bytes: big }));
        let cut = walk(&img[..ends[0] + 20], big - 1);
        assert_eq!(
            cut.1,
            Some(Stop::TooLarge { batch_bytes: big }),
            "the cap comes first"
        );
        assert_eq!(walk(&img, big).0.len(), 3, "the cap is inclusive");
    }

    #[test]
    fn shared_buffers_are_cut_without_copies() {
        let (img, ends) = image(&[(1, 10), (2, 20)]);
        let bytes = Bytes::from(img.clone());
        let parts: Vec<Bytes> = Batches::new(bytes.clone()).map(|w| w.unwrap().1).collect();
        assert_eq!(parts.len(), 2);
        assert_eq!(
            parts[1].as_ptr(),
            bytes[ends[0]..].as_ptr(),
            "a view, not a copy"
        );
        let mut owned = BytesMut::from(&img[..]);
        let at = owned.as_ptr();
        let parts: Vec<BytesMut> = Batches::new(owned.split()).map(|w| w.unwrap().1).collect();
        assert_eq!(parts[0].as_ptr(), at);
        assert_eq!(&parts[1][..], &img[ends[0]..]);
    }

    proptest::proptest! {
        /// Whatever follows some whole batches (more batches, a cut, garbage), the walk yields
        /// them in order, each whole and where it is, never panics, and stops with a reason
        /// unless the bytes end at a batch end.
        #[test]
        fn the_walk_takes_whole_batches_and_explains_its_stop(
            sizes in proptest::collection::vec((1i32..5, 0usize..300), 0..6),
            cut in proptest::prelude::any::<proptest::sample::Index>(),
            garbage in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..80),
            max in 61usize..1500,
        ) {
            use proptest::{prop_assert, prop_assert_eq};
            let (mut img, ends) = image(&sizes);
            let cut = cut.index(img.len() + 1);
            img.truncate(cut);
            img.extend_from_slice(&garbage);
            let (whole, stop, at) = walk(&img, max);
            let mut expect_at = 0;
            for &(pos, len) in &whole {
                prop_assert_eq!(pos, expect_at);
                prop_assert!(len <= max);
                prop_assert_eq!(declared_size(&img[pos..]), Some(len));
                expect_at += len;
            }
            prop_assert_eq!(at, expect_at);
            prop_assert_eq!(stop.is_none(), at == img.len());
            if let Some(Stop::Partial { batch_bytes }) = stop {
                prop_assert!(batch_bytes > img.len() - at);
                prop_assert_eq!(batch_bytes == LOG_OVERHEAD_BYTES, img.len() - at < LOG_OVERHEAD_BYTES);
            }
            // The batches before the cut come out as they were, up to the first over the cap.
            let starts = std::iter::once(0).chain(ends.iter().copied());
            let intact: Vec<(usize, usize)> = starts.zip(ends.iter().copied())
                .take_while(|&(_, e)| e <= cut)
                .map(|(s, e)| (s, e - s))
                .collect();
            let capped = intact.iter().take_while(|&&(_, len)| len <= max).count();
            prop_assert!(whole.len() >= capped);
            prop_assert_eq!(&whole[..capped], &intact[..capped]);
            if capped < intact.len() {
                prop_assert_eq!(whole.len(), capped);
                prop_assert_eq!(stop, Some(Stop::TooLarge { batch_bytes: intact[capped].1 }));
            }
        }
    }

    #[test]
    fn declared_size_rejects_garbage() {
        assert_eq!(declared_size(&[0u8; 12]), None);
        assert_eq!(declared_size(&[0u8; 5]), None);
        let mut neg = [0u8; 12];
        neg[8..12].copy_from_slice(&(-5i32).to_be_bytes());
        assert_eq!(declared_size(&neg), None);
    }
}
