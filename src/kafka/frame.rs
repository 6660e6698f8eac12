//! Response frames as a list of byte segments, so that fetched records reach the socket as the
//! `Bytes` the tail cache holds (the memory the producer's request arrived in) instead of being
//! copied into one response buffer. It sits between the handlers and the connection writer:
//! dispatch → handler → [`Frame`] → `net` (one vectored send per frame).
//!
//! Every response but Fetch is a single segment. A Fetch response is encoded by the protocol
//! crate's own encoder, with a one-byte marker ([`records_marker`]) in place of each
//! partition's records. The encoder's output buffer, [`SpliceBuf`], knows the marker by its
//! address: it rewrites the marker's length prefix to the real size and appends that
//! partition's batches as segments of their own. So the wire format stays exactly the crate's
//! (the tests compare the bytes with a whole-buffer encoding for every Fetch version), and
//! only where the bytes live changes.

use std::collections::VecDeque;
use std::ops::Range;

use bytes::buf::UninitSlice;
use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::ResponseHeader;
use kafka_protocol::protocol::buf::ByteBufMut;
use kafka_protocol::protocol::Encodable;

/// Batches smaller than this are copied into the surrounding segment: a segment of its own
/// costs an iovec and a reference count, more than copying a few hundred bytes.
const SPLICE_BYTES_MIN: usize = 512;

/// A whole response as it goes on the wire: size prefix, header and body, in segments.
#[derive(Debug)]
pub struct Frame {
    parts: Vec<Bytes>,
}

impl Frame {
    /// The segments in wire order, for one vectored write.
    pub fn parts(&self) -> &[Bytes] {
        &self.parts
    }

    /// Bytes on the wire, size prefix included.
    pub fn len(&self) -> usize {
        self.parts.iter().map(Bytes::len).sum()
    }

    /// Whether the frame has no bytes at all.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The frame in one buffer (a copy), to compare with a whole-buffer encoding.
    #[cfg(test)]
    pub fn to_bytes(&self) -> Bytes {
        Bytes::from(self.parts.concat())
    }
}

impl From<Bytes> for Frame {
    fn from(b: Bytes) -> Frame {
        Frame { parts: vec![b] }
    }
}

impl From<Vec<Bytes>> for Frame {
    fn from(parts: Vec<Bytes>) -> Frame {
        Frame { parts }
    }
}

static MARK: [u8; 1] = [0x5a];

/// What a handler puts in a `records` field whose batches are passed in [`Spliced::sets`].
pub fn records_marker() -> Bytes {
    Bytes::from_static(&MARK)
}

/// A response whose `records` fields hold [`records_marker`]s; `sets` holds the batches for
/// each marker, in the order the encoder meets them (the order of the response's fields).
pub struct Spliced<R> {
    /// The response message, its `records` fields holding markers.
    pub body: R,
    /// For each marker, in encoding order, the record batches that replace it.
    pub sets: Vec<Vec<Bytes>>,
}

/// Encodes a spliced response into a frame. Records are nullable bytes: an INT32 length before
/// flexible versions, an unsigned varint of length + 1 in them (response header v1).
pub fn encode_spliced<R: Encodable>(
    header: &ResponseHeader,
    header_version: i16,
    version: i16,
    r: Spliced<R>,
) -> anyhow::Result<Frame> {
    let compact = header_version >= 1;
    let marker_bytes = record_set_bytes(MARK.len(), compact);
    let grow: usize = r
        .sets
        .iter()
        .map(|set| record_set_bytes(set_len(set), compact) - marker_bytes)
        .sum();
    let size = header.compute_size(header_version)? + r.body.compute_size(version)? + grow;
    anyhow::ensure!(size <= i32::MAX as usize, "response of {size} bytes");
    let mut buf = SpliceBuf {
        parts: Vec::with_capacity(1 + 2 * r.sets.len()),
        head: BytesMut::with_capacity(4 + size.min(64 << 10)),
        done: 0,
        sets: r.sets.into(),
        compact,
    };
    buf.put_i32(size as i32);
    header.encode(&mut buf, header_version)?;
    r.body.encode(&mut buf, version)?;
    anyhow::ensure!(
        buf.sets.is_empty(),
        "{} record sets had no marker",
        buf.sets.len()
    );
    buf.cut();
    assert_eq!(buf.done, 4 + size, "frame size as computed");
    Ok(Frame { parts: buf.parts })
}

fn set_len(set: &[Bytes]) -> usize {
    set.iter().map(Bytes::len).sum()
}

/// Length prefix plus bytes of a non-null records field holding `n` bytes.
fn record_set_bytes(n: usize, compact: bool) -> usize {
    if compact {
        uvarint_len(n as u64 + 1) + n
    } else {
        4 + n
    }
}

fn uvarint_len(mut v: u64) -> usize {
    let mut n = 1;
    while v >= 0x80 {
        v >>= 7;
        n += 1;
    }
    n
}

fn put_uvarint(b: &mut BytesMut, mut v: u64) {
    while v >= 0x80 {
        b.put_u8((v as u8) | 0x80);
        v >>= 7;
    }
    b.put_u8(v as u8);
}

/// The encoder's output: encoded fields accumulate in `head`; a marker cuts `head` into a
/// finished segment and appends its record set. `done` counts the bytes in `parts`.
struct SpliceBuf {
    parts: Vec<Bytes>,
    head: BytesMut,
    done: usize,
    sets: VecDeque<Vec<Bytes>>,
    compact: bool,
}

impl SpliceBuf {
    fn cut(&mut self) {
        if !self.head.is_empty() {
            let seg = self.head.split().freeze();
            self.done += seg.len();
            self.parts.push(seg);
        }
    }

    /// Replaces the marker just written (its length prefix is at the end of `head`) with the
    /// next record set. A marker without a set is a bug in the handler that built the reply.
    fn splice(&mut self) {
        let set = self
            .sets
            .pop_front()
            .expect("a record set for every marker");
        let prefix: &[u8] = if self.compact { &[2] } else { &[0, 0, 0, 1] };
        assert!(self.head.ends_with(prefix), "marker's length prefix");
        self.head.truncate(self.head.len() - prefix.len());
        let n = set_len(&set);
        if self.compact {
            put_uvarint(&mut self.head, n as u64 + 1);
        } else {
            self.head.put_i32(n as i32);
        }
        for part in set {
            if part.len() < SPLICE_BYTES_MIN {
                self.head.extend_from_slice(&part);
            } else {
                self.cut();
                self.done += part.len();
                self.parts.push(part);
            }
        }
    }
}

// SAFETY: every method hands the `BytesMut` head's own guarantees through unchanged.
unsafe impl BufMut for SpliceBuf {
    fn remaining_mut(&self) -> usize {
        self.head.remaining_mut()
    }

    unsafe fn advance_mut(&mut self, cnt: usize) {
        // SAFETY: the caller initialised `cnt` bytes of `chunk_mut`, which is the head's.
        unsafe { self.head.advance_mut(cnt) }
    }

    fn chunk_mut(&mut self) -> &mut UninitSlice {
        self.head.chunk_mut()
    }

    fn put_slice(&mut self, src: &[u8]) {
        if std::ptr::eq(src.as_ptr(), MARK.as_ptr()) && src.len() == MARK.len() {
            self.splice();
        } else {
            self.head.extend_from_slice(src);
        }
    }
}

impl ByteBufMut for SpliceBuf {
    fn offset(&self) -> usize {
        self.done + self.head.len()
    }

    fn seek(&mut self, offset: usize) {
        assert!(offset >= self.done, "seek into a finished segment");
        self.head.resize(offset - self.done, 0);
    }

    fn range(&mut self, r: Range<usize>) -> &mut [u8] {
        assert!(r.start >= self.done, "range in a finished segment");
        &mut self.head[r.start - self.done..r.end - self.done]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
    use kafka_protocol::messages::{FetchResponse, TopicName};
    use kafka_protocol::protocol::StrBytes;

    fn batch(n: usize, fill: u8) -> Bytes {
        Bytes::from(vec![fill; n])
    }

    /// Two topics; partitions with many batches (small and large), one batch, an error, and
    /// an empty read. Returns the response with markers and the batches per marker.
    fn response(sets: &[Vec<Bytes>]) -> (FetchResponse, FetchResponse) {
        let part = |i: i32, records: Option<Bytes>| {
            PartitionData::default()
                .with_partition_index(i)
                .with_high_watermark(1000 + i as i64)
                .with_records(records)
        };
        let whole = |set: &Vec<Bytes>| Some(Bytes::from(set.concat()));
        let topic = |name: &'static str, parts: Vec<PartitionData>| {
            FetchableTopicResponse::default()
                .with_topic(TopicName(StrBytes::from_static_str(name)))
                .with_topic_id(uuid::Uuid::from_u128(7))
                .with_partitions(parts)
        };
        let build = |spliced: bool| {
            let rec = |k: usize| {
                if spliced {
                    Some(records_marker())
                } else {
                    whole(&sets[k])
                }
            };
            FetchResponse::default()
                .with_session_id(0)
                .with_responses(vec![
                    topic(
                        "a",
                        vec![
                            part(0, rec(0)),
                            part(1, Some(Bytes::new())),
                            part(2, rec(1)),
                        ],
                    ),
                    topic(
                        "b",
                        vec![
                            part(0, None).with_error_code(6),
                            part(1, rec(2)),
                            part(2, rec(3)),
                        ],
                    ),
                ])
        };
        (build(true), build(false))
    }

    fn sets() -> Vec<Vec<Bytes>> {
        vec![
            vec![
                batch(100, 1),
                batch(4096, 2),
                batch(300, 3),
                batch(70_000, 4),
            ],
            vec![batch(513, 5)],
            vec![batch(10, 6), batch(20, 7)],
            (0..40).map(|i| batch(600 + i, i as u8)).collect(),
        ]
    }

    fn whole_frame(resp: &FetchResponse, version: i16) -> Vec<u8> {
        let api = kafka_protocol::messages::ApiKey::Fetch;
        let hv = api.response_header_version(version);
        let header = ResponseHeader::default().with_correlation_id(42);
        let mut b = BytesMut::new();
        let size = header.compute_size(hv).unwrap() + resp.compute_size(version).unwrap();
        b.put_i32(size as i32);
        header.encode(&mut b, hv).unwrap();
        resp.encode(&mut b, version).unwrap();
        b.to_vec()
    }

    #[test]
    fn spliced_frames_equal_whole_encodings_in_every_fetch_version() {
        let api = kafka_protocol::messages::ApiKey::Fetch;
        for version in 4..=13 {
            let (marked, whole) = response(&sets());
            let hv = api.response_header_version(version);
            let header = ResponseHeader::default().with_correlation_id(42);
            let body = Spliced {
                body: marked,
                sets: sets(),
            };
            let frame = encode_spliced(&header, hv, version, body).unwrap();
            assert_eq!(
                frame.to_bytes().to_vec(),
                whole_frame(&whole, version),
                "v{version}"
            );
        }
    }

    #[test]
    fn large_batches_are_sent_from_their_own_memory() {
        let api = kafka_protocol::messages::ApiKey::Fetch;
        let (marked, _) = response(&sets());
        let s = sets();
        let big = s[0][3].clone();
        let small = s[2][0].clone();
        let hv = api.response_header_version(13);
        let header = ResponseHeader::default();
        let frame = encode_spliced(
            &header,
            hv,
            13,
            Spliced {
                body: marked,
                sets: s,
            },
        )
        .unwrap();
        let shares = |b: &Bytes| frame.parts().iter().any(|p| p.as_ptr() == b.as_ptr());
        assert!(shares(&big), "a 70 kB batch is its own segment");
        assert!(!shares(&small), "a 10-byte batch is copied");
        // head, 4 large + 1 (513 B) + 40 large batches, and the head segments between them
        assert!(frame.parts().len() > 45, "{} segments", frame.parts().len());
    }

    #[test]
    fn a_set_without_a_marker_is_an_error() {
        let header = ResponseHeader::default();
        let body = Spliced {
            body: FetchResponse::default(),
            sets: vec![vec![batch(10, 1)]],
        };
        assert!(encode_spliced(&header, 0, 4, body).is_err());
    }
}
