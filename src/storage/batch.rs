//! Kafka RecordBatch v2 headers: validation and the two in-place edits the broker makes.
//!
//! Produce requests hand their record batches to the log exactly as the producer encoded them.
//! This module reads the fixed 61-byte header, checks it (magic, length, CRC32C, record count,
//! last offset delta) and rewrites only fields the broker owns: the base offset and partition
//! leader epoch (outside the CRC), and for LogAppendTime topics the timestamp type and max
//! timestamp (inside the CRC, so the CRC is recomputed over the unchanged record bytes).
//! Records themselves are never decoded or re-encoded here.

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
    pub base_offset: Offset,
    /// Total size on the wire and on disk: 12 + batchLength.
    pub size_bytes: usize,
    pub attributes: i16,
    pub last_offset_delta: i32,
    pub base_timestamp: TimestampMs,
    pub max_timestamp: TimestampMs,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub record_count: i32,
    pub crc: u32,
}

impl BatchHeader {
    pub fn last_offset(&self) -> Offset {
        self.base_offset.plus(i64::from(self.last_offset_delta))
    }
    /// Offset one past this batch: where the next batch starts.
    pub fn next_offset(&self) -> Offset {
        self.last_offset().plus(1)
    }
    pub fn compression(&self) -> i16 {
        self.attributes & ATTR_COMPRESSION_MASK
    }
    pub fn is_log_append_time(&self) -> bool {
        self.attributes & ATTR_TIMESTAMP_TYPE_LOG_APPEND != 0
    }
    pub fn is_transactional(&self) -> bool {
        self.attributes & ATTR_TRANSACTIONAL != 0
    }
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
    b.extend_from_slice(&records);
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

    #[test]
    fn declared_size_rejects_garbage() {
        assert_eq!(declared_size(&[0u8; 12]), None);
        assert_eq!(declared_size(&[0u8; 5]), None);
        let mut neg = [0u8; 12];
        neg[8..12].copy_from_slice(&(-5i32).to_be_bytes());
        assert_eq!(declared_size(&neg), None);
    }
}
