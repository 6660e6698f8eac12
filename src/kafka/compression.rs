//! Recompression for topics whose compression.type is not "producer": a batch compressed
//! otherwise is decoded and re-encoded with the topic's codec before it is appended (Kafka does
//! the same). Decompression is ours and bounded (`decompressed_bytes_max`): the protocol crate's
//! decompressors grow their output without limit, and a small gzip or zstd batch can expand a
//! thousandfold. Batches already in the topic's codec pass through untouched (zero-copy).

use std::io::Read;

use bytes::{Bytes, BytesMut};
use kafka_protocol::records::{
    Compression, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions,
};

use crate::partition::split_batches;
use crate::storage::batch;

#[derive(Debug, thiserror::Error)]
pub enum CompressionError {
    #[error("batch does not decode: {0}")]
    Corrupt(String),
    #[error("batch decompresses to more than {0} bytes")]
    TooLarge(usize),
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
        let mut buf = b.clone();
        let set = RecordBatchDecoder::decode_with_custom_compression(
            &mut buf,
            Some(|data: &mut Bytes, c: Compression| bounded(data, c, decompressed_bytes_max)),
        )
        .map_err(|e| match e.downcast::<CompressionError>() {
            Ok(e) => e,
            Err(e) => CompressionError::Corrupt(e.to_string()),
        })?;
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
        let records: Vec<Record> = (0..3)
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
                timestamp: 1000 + i,
                key: Some(Bytes::from(format!("k{i}"))),
                value: Some(Bytes::from(value.clone())),
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
