//! What Produce needs to look inside record batches, on the connection's shard before the
//! owner appends: `check_record_counts` holds every batch to the record count its header
//! declares (decompressing as a stream where it must, as Kafka does), and `recompress`, for
//! topics whose compression.type is not "producer", re-encodes a batch compressed otherwise
//! with the topic's codec (Kafka does the same). ListOffsets uses `first_record_at_or_after` to
//! find the exact record a timestamp lookup (or the max timestamp, -3) lands on inside a stored
//! batch, compressed or not, walking the records as a stream. Decompression is ours and bounded
//! (`decompressed_bytes_max`, and per record in recompression): the protocol crate's
//! decompressors grow their output without limit, and a small gzip or zstd batch can expand a
//! thousandfold. Batches already in the topic's codec pass through untouched (zero-copy).

use std::io::{BufRead, BufReader, Read};

use bytes::{Bytes, BytesMut};
use kafka_protocol::records::{
    Compression, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions,
};

use crate::partition::split_batches;
use crate::storage::batch::{self, BatchHeader};
use crate::types::{Offset, TimestampMs};

/// Decoded bytes a record costs recompression besides its data: the protocol crate builds one
/// `Record` per record, so a batch of millions of empty records must not pass for small.
const RECORD_DECODED_BYTES: usize = std::mem::size_of::<kafka_protocol::records::Record>();

/// Buffer between a streaming decompressor and the record counter.
const COUNT_BUFFER_BYTES: usize = 64 << 10;

/// Most decompressed bytes a record lookup (`first_record_at_or_after`) walks in one batch:
/// what Produce lets a batch expand to, so every stored batch can be walked whole.
pub const LOOKUP_DECOMPRESSED_BYTES_MAX: usize = 64 << 20;

/// Why Produce refused a batch when it looked inside (mapped to a code by
/// `kafka::errors::compression`).
#[derive(Debug, thiserror::Error)]
pub enum CompressionError {
    /// The batch, its compressed records or a record does not decode (CORRUPT_MESSAGE).
    #[error("batch does not decode: {0}")]
    Corrupt(String),
    /// The batch decompresses to more bytes than the limit it carries (MESSAGE_TOO_LARGE).
    #[error("batch decompresses to more than {0} bytes")]
    TooLarge(usize),
    /// Well-formed bytes that break a rule of the records (Kafka's INVALID_RECORD).
    #[error("{0}")]
    InvalidRecord(String),
}

fn corrupt(e: impl std::fmt::Display) -> CompressionError {
    CompressionError::Corrupt(e.to_string())
}

fn from_anyhow(e: anyhow::Error) -> CompressionError {
    e.downcast::<CompressionError>().unwrap_or_else(corrupt)
}

/// Checks that each batch of `records` holds exactly the records its header declares, as
/// Kafka does: a batch that declares 2^31-1 records and holds one would move the log end by
/// 2^31 offsets (and roll a segment) per request. Uncompressed record areas are walked in
/// place; compressed ones are decoded as a stream and skipped, never held (snappy's blocks,
/// which are not a stream, are held up to `bytes_max`); at most `bytes_max` decompressed
/// bytes per batch.
pub fn check_record_counts(records: &Bytes, bytes_max: usize) -> Result<(), CompressionError> {
    for b in split_batches(records.clone()).map_err(corrupt)? {
        let h = batch::parse_header(&b).map_err(corrupt)?;
        let declared = i64::from(h.record_count);
        let area = &b[batch::HEADER_BYTES..];
        let found = match codec_of(h.attributes) {
            Some(Compression::None) => count_records(area, declared, usize::MAX)?,
            Some(Compression::Snappy) => {
                let raw = snappy(area, bytes_max).map_err(from_anyhow)?;
                count_records(&raw[..], declared, usize::MAX)?
            }
            Some(Compression::Gzip) => count_records(
                buffered(flate2::read::GzDecoder::new(area)),
                declared,
                bytes_max,
            )?,
            Some(Compression::Zstd) => {
                let decoder = zstd::stream::read::Decoder::new(area).map_err(corrupt)?;
                count_records(buffered(decoder), declared, bytes_max)?
            }
            Some(Compression::Lz4) => {
                let decoder = lz4::Decoder::new(area).map_err(corrupt)?;
                count_records(buffered(decoder), declared, bytes_max)?
            }
            None => {
                return Err(corrupt(format!(
                    "unknown codec in attributes {}",
                    h.attributes
                )))
            }
        };
        match found {
            Some(n) if n == declared => {}
            Some(n) => {
                let held = if n > declared { "more" } else { "only" };
                return Err(CompressionError::InvalidRecord(format!(
                    "batch declares {declared} records but holds {held} {n}"
                )));
            }
            None => return Err(corrupt("records are not whole")),
        }
    }
    Ok(())
}

fn buffered(decoder: impl Read) -> impl BufRead {
    BufReader::with_capacity(COUNT_BUFFER_BYTES, decoder)
}

/// Counts the length-prefixed records of a v2 record area, no further than `most + 1`, and
/// skips their bytes without copying them: an uncompressed area is read in place (a slice is
/// a `BufRead`), a decompressor through a fixed buffer (`buffered`). None if the area is not
/// exactly whole records; TooLarge past `bytes_max` bytes.
fn count_records(
    mut r: impl BufRead,
    most: i64,
    bytes_max: usize,
) -> Result<Option<i64>, CompressionError> {
    let (mut n, mut total) = (0i64, 0usize);
    while n <= most {
        let Some((len, used)) = stream_varint(&mut r)? else {
            return Ok(Some(n)); // the end, at a record boundary
        };
        let Ok(len) = usize::try_from(len) else {
            return Ok(None);
        };
        total = total.saturating_add(used).saturating_add(len);
        if total > bytes_max {
            return Err(CompressionError::TooLarge(bytes_max));
        }
        if !skip(&mut r, len)? {
            return Ok(None);
        }
        n += 1;
    }
    Ok(Some(n))
}

/// Consumes `len` bytes of `r`; false if it ends first.
fn skip(r: &mut impl BufRead, mut len: usize) -> Result<bool, CompressionError> {
    while len > 0 {
        let available = r.fill_buf().map_err(corrupt)?.len();
        if available == 0 {
            return Ok(false);
        }
        let step = available.min(len);
        r.consume(step);
        len -= step;
    }
    Ok(true)
}

/// A zigzag varint and the bytes it took; None at the end of the stream before its first byte.
fn stream_varint(r: &mut impl BufRead) -> Result<Option<(i64, usize)>, CompressionError> {
    let mut v: u64 = 0;
    for (i, shift) in (0..64).step_by(7).enumerate() {
        let byte = match r.fill_buf().map_err(corrupt)?.first() {
            Some(&b) => b,
            None if i == 0 => return Ok(None),
            None => return Err(corrupt("torn record length")),
        };
        r.consume(1);
        v |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok(Some((((v >> 1) as i64) ^ -((v & 1) as i64), i + 1)));
        }
    }
    Err(corrupt("record length varint too long"))
}

/// The offset and timestamp of the first record whose timestamp is ≥ `ts` in the batch at the
/// start of `b` (ListOffsets by time, and by max timestamp with `ts` the batch's max). A
/// LogAppendTime batch's records all carry its max timestamp: its first record. Compressed
/// records are decompressed as a stream through a fixed buffer (snappy's blocks are held),
/// at most [`LOOKUP_DECOMPRESSED_BYTES_MAX`] bytes. None if no record qualifies or the batch
/// does not walk (callers fall back to the batch's base offset and max timestamp).
pub fn first_record_at_or_after(b: &[u8], ts: i64) -> Option<(Offset, TimestampMs)> {
    let b = b.get(..batch::declared_size(b)?)?;
    let h = batch::parse_header(b).ok()?;
    if h.is_log_append_time() {
        return (h.max_timestamp.0 >= ts).then_some((h.base_offset, h.max_timestamp));
    }
    let area = b.get(batch::HEADER_BYTES..h.size_bytes)?;
    let max = LOOKUP_DECOMPRESSED_BYTES_MAX;
    match codec_of(h.attributes)? {
        Compression::None => find_record(area, &h, ts, max),
        Compression::Snappy => find_record(&snappy(area, max).ok()?[..], &h, ts, max),
        Compression::Gzip => find_record(buffered(flate2::read::GzDecoder::new(area)), &h, ts, max),
        Compression::Zstd => {
            let decoder = zstd::stream::read::Decoder::new(area).ok()?;
            find_record(buffered(decoder), &h, ts, max)
        }
        Compression::Lz4 => find_record(buffered(lz4::Decoder::new(area).ok()?), &h, ts, max),
    }
}

/// Walks the records of a batch's (decompressed) record area, reading of each only its length,
/// attributes, timestamp delta and offset delta and skipping the rest, until one's timestamp
/// is ≥ `ts`; no further than the records the header declares or `bytes_max` bytes.
fn find_record(
    mut r: impl BufRead,
    h: &BatchHeader,
    ts: i64,
    bytes_max: usize,
) -> Option<(Offset, TimestampMs)> {
    let mut total = 0usize;
    for _ in 0..h.record_count {
        let (len, used) = stream_varint(&mut r).ok()??;
        let len = usize::try_from(len).ok()?;
        total = total.checked_add(used)?.checked_add(len)?;
        if total > bytes_max {
            return None;
        }
        let _attributes = read_byte(&mut r)?;
        let (ts_delta, a) = stream_varint(&mut r).ok()??;
        let (off_delta, b) = stream_varint(&mut r).ok()??;
        let read = 1 + a + b;
        if read > len || !(0..=i64::from(h.last_offset_delta)).contains(&off_delta) {
            return None; // a record shorter than its head, or a delta outside the batch
        }
        let t = h.base_timestamp.0.checked_add(ts_delta)?;
        if t >= ts {
            return Some((h.base_offset.plus(off_delta), TimestampMs(t)));
        }
        if !skip(&mut r, len - read).ok()? {
            return None;
        }
    }
    None
}

fn read_byte(r: &mut impl BufRead) -> Option<u8> {
    let byte = *r.fill_buf().ok()?.first()?;
    r.consume(1);
    Some(byte)
}

/// The codec a topic's compression.type asks for; None for "producer" (keep as sent).
pub fn target(compression_type: &str) -> Option<Compression> {
    match compression_type {
        "uncompressed" => Some(Compression::None),
        "gzip" => Some(Compression::Gzip),
        "snappy" => Some(Compression::Snappy),
        "lz4" => Some(Compression::Lz4),
        "zstd" => Some(Compression::Zstd),
        _ => None,
    }
}

fn codec_of(attributes: i16) -> Option<Compression> {
    Some(match attributes & 7 {
        0 => Compression::None,
        1 => Compression::Gzip,
        2 => Compression::Snappy,
        3 => Compression::Lz4,
        4 => Compression::Zstd,
        _ => return None,
    })
}

/// Re-encodes every batch of `records` not already in `target`. Record contents, keys,
/// headers, timestamps and producer fields are kept; offsets are reassigned by storage anyway.
pub fn recompress(
    records: Bytes,
    target: Compression,
    decompressed_bytes_max: usize,
) -> Result<Bytes, CompressionError> {
    let batches =
        split_batches(records.clone()).map_err(|e| CompressionError::Corrupt(e.to_string()))?;
    let needs = batches
        .iter()
        .any(|b| batch::parse_header(b).map_or(true, |h| codec_of(h.attributes) != Some(target)));
    if !needs {
        return Ok(records);
    }
    let mut out = BytesMut::with_capacity(records.len());
    for b in batches {
        let h = batch::validate(&b, true).map_err(|e| CompressionError::Corrupt(e.to_string()))?;
        if codec_of(h.attributes) == Some(target) {
            out.extend_from_slice(&b);
            continue;
        }
        // The decoder builds one `Record` per record the header declares: that counts against
        // the same bound as the bytes.
        if (h.record_count as usize).saturating_mul(RECORD_DECODED_BYTES) > decompressed_bytes_max {
            return Err(CompressionError::TooLarge(decompressed_bytes_max));
        }
        let mut buf = b.clone();
        let set = RecordBatchDecoder::decode_with_custom_compression(
            &mut buf,
            Some(|data: &mut Bytes, c: Compression| bounded(data, c, decompressed_bytes_max)),
        )
        .map_err(from_anyhow)?;
        let options = RecordEncodeOptions {
            version: 2,
            compression: target,
        };
        RecordBatchEncoder::encode(&mut out, set.records.iter(), &options)
            .map_err(|e| CompressionError::Corrupt(e.to_string()))?;
    }
    Ok(out.freeze())
}

/// Decompresses one batch's record area, refusing to produce more than `max` bytes.
fn bounded(data: &mut Bytes, c: Compression, max: usize) -> anyhow::Result<Bytes> {
    let input: &[u8] = data;
    let mut out = Vec::new();
    let limit = max as u64 + 1;
    match c {
        Compression::None => return Ok(data.clone()),
        Compression::Gzip => flate2::read::GzDecoder::new(input)
            .take(limit)
            .read_to_end(&mut out)?,
        Compression::Zstd => zstd::stream::read::Decoder::new(input)?
            .take(limit)
            .read_to_end(&mut out)?,
        Compression::Lz4 => lz4::Decoder::new(input)?
            .take(limit)
            .read_to_end(&mut out)?,
        Compression::Snappy => return snappy(input, max).map(Bytes::from),
    };
    if out.len() > max {
        return Err(CompressionError::TooLarge(max).into());
    }
    Ok(Bytes::from(out))
}

/// Kafka's snappy: xerial framing (magic, then length-prefixed raw blocks) or one raw block.
fn snappy(input: &[u8], max: usize) -> anyhow::Result<Vec<u8>> {
    const MAGIC: &[u8; 16] = b"\x82SNAPPY\x00\x00\x00\x00\x01\x00\x00\x00\x01";
    let mut out = Vec::new();
    let block = |raw: &[u8], out: &mut Vec<u8>| -> anyhow::Result<()> {
        let n = snap::raw::decompress_len(raw)?;
        if out.len() + n > max {
            return Err(CompressionError::TooLarge(max).into());
        }
        let at = out.len();
        out.resize(at + n, 0);
        snap::raw::Decoder::new().decompress(raw, &mut out[at..])?;
        Ok(())
    };
    let Some(mut rest) = input.strip_prefix(&MAGIC[..]) else {
        block(input, &mut out)?;
        return Ok(out);
    };
    while !rest.is_empty() {
        anyhow::ensure!(rest.len() >= 4, "truncated snappy block length");
        let len = u32::from_be_bytes(rest[..4].try_into()?) as usize;
        anyhow::ensure!(rest.len() >= 4 + len, "truncated snappy block");
        block(&rest[4..4 + len], &mut out)?;
        rest = &rest[4 + len..];
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::records::{Record, TimestampType};

    fn batch_with(compression: Compression, value: Vec<u8>) -> Bytes {
        batch_of(compression, 3, true, Some(value))
    }

    /// `n` records, each with `value`, in one batch: if `varied`, with keys `k0`.. and
    /// timestamps 1000, 1001..; else with no key and all at 1000 (the fewest bytes a record
    /// can take).
    fn batch_of(compression: Compression, n: i64, varied: bool, value: Option<Vec<u8>>) -> Bytes {
        let records: Vec<Record> = (0..n)
            .map(|i| Record {
                transactional: false,
                control: false,
                delete_horizon: false,
                partition_leader_epoch: 0,
                producer_id: -1,
                producer_epoch: -1,
                timestamp_type: TimestampType::Creation,
                offset: i,
                sequence: -1 + i as i32,
                timestamp: 1000 + if varied { i } else { 0 },
                key: varied.then(|| Bytes::from(format!("k{i}"))),
                value: value.clone().map(Bytes::from),
                headers: Default::default(),
            })
            .collect();
        let mut out = BytesMut::new();
        let opts = RecordEncodeOptions {
            version: 2,
            compression,
        };
        RecordBatchEncoder::encode(&mut out, records.iter(), &opts).unwrap();
        out.freeze()
    }

    #[test]
    fn every_codec_round_trips() {
        let codecs = [
            Compression::None,
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
            Compression::Zstd,
        ];
        for from in codecs {
            for to in codecs {
                let b = batch_with(from, b"hello".repeat(20));
                let out = recompress(b.clone(), to, 1 << 20).unwrap();
                let h = batch::validate(&out, true).expect("valid batch out");
                assert_eq!(codec_of(h.attributes), Some(to), "{from:?} -> {to:?}");
                let set = RecordBatchDecoder::decode(&mut out.clone()).unwrap();
                assert_eq!(set.records.len(), 3);
                assert_eq!(set.records[2].key.as_deref(), Some(&b"k2"[..]));
                assert_eq!(set.records[1].timestamp, 1001);
                if from == to {
                    assert_eq!(out, b, "unchanged batches are passed through");
                }
            }
        }
    }

    /// The batch with its header's count (and last offset delta) set to `count`, CRC redone.
    fn claiming(b: &Bytes, count: i32) -> Bytes {
        let mut m = BytesMut::from(&b[..]);
        m[57..61].copy_from_slice(&count.to_be_bytes());
        m[23..27].copy_from_slice(&(count - 1).to_be_bytes());
        let crc = batch::compute_crc(&m);
        m[17..21].copy_from_slice(&crc.to_be_bytes());
        m.freeze()
    }

    #[test]
    fn record_counts_are_checked_against_the_records_in_every_codec() {
        let codecs = [
            Compression::None,
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
            Compression::Zstd,
        ];
        for codec in codecs {
            let honest = batch_with(codec, b"hello".repeat(20));
            let two = Bytes::from([honest.to_vec(), honest.to_vec()].concat());
            assert!(check_record_counts(&two, 1 << 20).is_ok(), "{codec:?}");
            for lie in [1, 2, 4, i32::MAX] {
                let e = check_record_counts(&claiming(&honest, lie), 1 << 20);
                assert!(
                    matches!(e, Err(CompressionError::InvalidRecord(_))),
                    "{codec:?} claiming {lie}: {:?}",
                    e.err()
                );
            }
            // The check decompresses no more than its bound.
            if codec != Compression::None {
                let big = batch_with(codec, vec![0u8; 4 << 20]);
                let e = check_record_counts(&big, 1 << 20);
                assert!(
                    matches!(e, Err(CompressionError::TooLarge(_))),
                    "{codec:?}: {:?}",
                    e.err()
                );
            }
        }
    }

    #[test]
    fn counts_whole_records_and_stops_past_the_most() {
        let b = crate::storage::batch::build_test_batch(5, 20, crate::types::TimestampMs(1));
        let area = &b[batch::HEADER_BYTES..];
        let count = |a: &[u8], most| count_records(a, most, usize::MAX).ok().flatten();
        assert_eq!(count(area, 5), Some(5));
        assert_eq!(count(area, 2), Some(3), "stops one past the most");
        assert_eq!(count(&area[..area.len() - 1], 5), None, "torn record");
        assert_eq!(count(&[], 5), Some(0));
        assert_eq!(count(&[0x01], 5), None, "negative length");
        assert!(matches!(
            count_records(area, 5, 10),
            Err(CompressionError::TooLarge(10))
        ));
    }

    #[test]
    fn recompression_counts_records_as_well_as_bytes() {
        // 100,000 empty records: under a megabyte decompressed, far more once decoded.
        let b = batch_of(Compression::Zstd, 100_000, false, None);
        assert_eq!(batch::parse_header(&b).unwrap().record_count, 100_000);
        assert!(check_record_counts(&b, 1 << 20).is_ok());
        let e = recompress(b.clone(), Compression::Lz4, 1 << 20);
        assert!(
            matches!(e, Err(CompressionError::TooLarge(_))),
            "{:?}",
            e.err()
        );
        assert!(recompress(b, Compression::Lz4, 64 << 20).is_ok());
    }

    /// Records at 1000, 1005 and 1002 (the largest in the middle), in `codec`, at offset 10.
    fn out_of_order(codec: Compression) -> Vec<u8> {
        let records: Vec<Record> = [1000, 1005, 1002]
            .iter()
            .enumerate()
            .map(|(i, &timestamp)| Record {
                transactional: false,
                control: false,
                delete_horizon: false,
                partition_leader_epoch: 0,
                producer_id: -1,
                producer_epoch: -1,
                timestamp_type: TimestampType::Creation,
                offset: i as i64,
                sequence: i as i32 - 1,
                timestamp,
                key: None,
                value: Some(Bytes::from(vec![b'v'; 300])),
                headers: Default::default(),
            })
            .collect();
        let mut out = BytesMut::new();
        let opts = RecordEncodeOptions {
            version: 2,
            compression: codec,
        };
        RecordBatchEncoder::encode(&mut out, records.iter(), &opts).unwrap();
        let mut b = out.to_vec();
        batch::assign_offset(&mut b, Offset(10), 0);
        b
    }

    #[test]
    fn the_record_at_a_timestamp_is_found_in_every_codec() {
        let codecs = [
            Compression::None,
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
            Compression::Zstd,
        ];
        for codec in codecs {
            let b = out_of_order(codec);
            let h = batch::parse_header(&b).unwrap();
            assert_eq!(h.max_timestamp, TimestampMs(1005), "{codec:?}");
            let find = |ts| first_record_at_or_after(&b, ts);
            let max = Some((Offset(11), TimestampMs(1005)));
            assert_eq!(find(1005), max, "{codec:?}: the max timestamp's record");
            assert_eq!(find(1001), max, "{codec:?}");
            assert_eq!(find(0), Some((Offset(10), TimestampMs(1000))), "{codec:?}");
            assert_eq!(find(1006), None, "{codec:?}");
            // A batch followed by another: only the first is walked.
            let two = [b.clone(), b.clone()].concat();
            assert_eq!(first_record_at_or_after(&two, 1005), max, "{codec:?}");
            // Cut short: no answer, no panic.
            for cut in [b.len() - 1, b.len() / 2, batch::HEADER_BYTES, 10] {
                let _ = first_record_at_or_after(&b[..cut], 1005);
            }
        }
        // LogAppendTime: the first record, at the batch's time.
        let mut b = out_of_order(Compression::Lz4);
        batch::set_log_append_time(&mut b, TimestampMs(777));
        assert!(batch::parse_header(&b).unwrap().is_log_append_time());
        let first = Some((Offset(10), TimestampMs(777)));
        assert_eq!(first_record_at_or_after(&b, 777), first);
        assert_eq!(first_record_at_or_after(&b, 778), None);
    }

    #[test]
    fn decompression_is_bounded() {
        for codec in [
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
            Compression::Zstd,
        ] {
            let b = batch_with(codec, vec![0u8; 4 << 20]);
            assert!(b.len() < 1 << 20, "{codec:?} compresses zeros well");
            assert!(
                matches!(
                    recompress(b, Compression::None, 1 << 20),
                    Err(CompressionError::TooLarge(_))
                ),
                "{codec:?}"
            );
        }
        assert!(target("producer").is_none());
        assert_eq!(target("zstd"), Some(Compression::Zstd));
    }
}
