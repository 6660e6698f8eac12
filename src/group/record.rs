//! The persisted form of groups: what the coordinator writes to a group log and replays on
//! start. Like Kafka's __consumer_offsets, every record is a key/value pair in an ordinary
//! v2 record batch; a later record for the same key replaces an earlier one and a null value
//! deletes it, so replaying a log from its start in order rebuilds the state, and a snapshot
//! of the live records followed by a log-start move compacts it.
//!
//! Key: `u8 kind` then fields; value: `u8 version` then fields. Strings and byte strings are
//! u32-length-prefixed. Decoding is bounds-checked and never panics on bad bytes.

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::records::{
    Compression, Record as WireRecord, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions,
    TimestampType,
};

use super::Committed;
use crate::types::{Offset, TimestampMs};

const KIND_OFFSET: u8 = 0;
const KIND_GROUP: u8 = 1;
/// A snapshot mark's key (alone in its batch): see [`encode_mark`].
const KIND_MARK: u8 = 2;
/// A barrier's key (alone in its batch): see [`encode_barrier`].
const KIND_BARRIER: u8 = 3;
const VALUE_VERSION: u8 = 0;

/// One persisted fact.
#[derive(Debug, Clone, PartialEq)]
pub enum Record {
    /// A committed offset; None deletes it.
    Offset {
        /// The group that committed it.
        group: String,
        /// The topic of the committed partition.
        topic: String,
        /// The partition index within `topic`.
        partition: i32,
        /// The offset as committed; None (a tombstone) once it expired, was deleted
        /// (OffsetDelete) or its topic was.
        value: Option<Committed>,
    },
    /// A group's metadata as of its last stable generation; None deletes the group and
    /// every offset it had committed before.
    Group {
        /// The group id.
        group: String,
        /// The group's metadata; None (a tombstone) when the group was deleted or expired.
        value: Option<StoredGroup>,
    },
}

impl Record {
    /// The group the record is about: it picks the group log the record goes to
    /// (`group_log_for`).
    pub fn group(&self) -> &str {
        match self {
            Record::Offset { group, .. } | Record::Group { group, .. } => group,
        }
    }
}

/// A group as persisted (the value of a Group record): written when it reaches a stable
/// point (the leader's assignment, a static member's takeover in Stable, a join phase ending
/// Empty); on restart it comes back Stable with these members, or Empty without.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct StoredGroup {
    /// The group's protocol type ("consumer", ...), kept when the group went Empty.
    pub protocol_type: Option<String>,
    /// The generation when written; members carry on heartbeating at it after a restart.
    pub generation: i32,
    /// The protocol chosen for that generation; None when the group was Empty.
    pub protocol_name: Option<String>,
    /// The leader's member id; None when the group was Empty.
    pub leader: Option<String>,
    /// When the group entered its current state (offset expiry of empty groups counts from it).
    pub state_since_ms: TimestampMs,
    /// The members with their assignments; empty when the group was Empty.
    pub members: Vec<StoredMember>,
}

/// One member as persisted in a [`StoredGroup`]: what it takes to restore it as a Stable
/// member after a restart.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct StoredMember {
    /// The member's id, with which it keeps heartbeating across a restart.
    pub member_id: String,
    /// Its group.instance.id if it is a static member.
    pub instance_id: Option<String>,
    /// The client.id it joined with.
    pub client_id: String,
    /// The address it joined from.
    pub client_host: String,
    /// Its session timeout: after a restart its session runs this long from the load.
    pub session_timeout_ms: i32,
    /// Its rebalance timeout (the join and sync phases last the members' largest).
    pub rebalance_timeout_ms: i32,
    /// The member's metadata for the group's chosen protocol.
    pub metadata: Bytes,
    /// Its share of the leader's assignment, handed back to its SyncGroup while Stable.
    pub assignment: Bytes,
}

/// A group-log record that does not decode (truncated, unknown kind or version, bad
/// UTF-8...); the text says what. Loading a group log reports it as corruption on disk.
#[derive(Debug, thiserror::Error)]
#[error("corrupt group record: {0}")]
pub struct DecodeError(&'static str);

type Result<T> = std::result::Result<T, DecodeError>;

/// Encodes records as one uncompressed v2 batch (offsets are assigned by the log).
pub fn encode_batch(records: &[Record], now: TimestampMs) -> BytesMut {
    assert!(!records.is_empty(), "a batch holds at least one record");
    encode_pairs(records.iter().map(encode), now)
}

/// One uncompressed v2 batch of (key, value) records, without a producer id.
fn encode_pairs(pairs: impl Iterator<Item = (Bytes, Option<Bytes>)>, now: TimestampMs) -> BytesMut {
    let wire: Vec<WireRecord> = pairs
        .enumerate()
        .map(|(i, (key, value))| WireRecord {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: 0,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            // The encoder starts a new batch unless offset − sequence is constant; this
            // keeps one batch with base sequence -1 (no producer id).
            sequence: i as i32 - 1,
            timestamp: now.get(),
            key: Some(key),
            value,
            headers: Default::default(),
        })
        .collect();
    let mut buf = BytesMut::new();
    let options = RecordEncodeOptions {
        version: 2,
        compression: Compression::None,
    };
    RecordBatchEncoder::encode(&mut buf, wire.iter(), &options).expect("encoding to memory");
    buf
}

/// Decodes every record of a run of batches read from a group log, with its offset
/// (snapshot marks are not records of state: they are skipped).
pub fn decode_batches(mut bytes: Bytes) -> Result<Vec<(Offset, Record)>> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let set = RecordBatchDecoder::decode(&mut bytes).map_err(|_| DecodeError("batch"))?;
        for r in set.records {
            let key = r.key.ok_or(DecodeError("record without key"))?;
            if matches!(key.first(), Some(&KIND_MARK | &KIND_BARRIER)) {
                continue;
            }
            out.push((Offset(r.offset), decode(key, r.value)?));
        }
    }
    Ok(out)
}

/// A batch of one snapshot mark: a replicated group log's leader writes it after the
/// snapshot it compacts the log with, naming the snapshot's first offset `start`, so a
/// follower, which never decodes the log into groups, finds where its log may start
/// ([`mark_start`]): the records from `start` on rebuild every group of the log. Written
/// after the snapshot, a mark is only ever found behind a whole one.
pub fn encode_mark(start: Offset, now: TimestampMs) -> BytesMut {
    let key = Bytes::from_static(&[KIND_MARK]);
    let value = Bytes::copy_from_slice(&start.get().to_be_bytes());
    encode_pairs(std::iter::once((key, Some(value))), now)
}

/// A batch of one barrier: a coordinator adopting a replicated group log writes it and
/// waits until it is committed before reading the log, so every batch proposed before it
/// (by an earlier writer in the same term) is committed and read too. Replay skips it.
pub fn encode_barrier(now: TimestampMs) -> BytesMut {
    let key = Bytes::from_static(&[KIND_BARRIER]);
    encode_pairs(std::iter::once((key, None)), now)
}

/// The snapshot start a snapshot mark names, if `batch` (one whole batch) is one
/// ([`encode_mark`]).
pub fn mark_start(mut batch: Bytes) -> Option<Offset> {
    let set = RecordBatchDecoder::decode(&mut batch).ok()?;
    let [r] = &set.records[..] else {
        return None;
    };
    if r.key.as_deref() != Some(&[KIND_MARK][..]) {
        return None;
    }
    let v: [u8; 8] = r.value.as_deref()?.try_into().ok()?;
    Some(Offset(i64::from_be_bytes(v)))
}

/// (key, value) of a record.
pub fn encode(r: &Record) -> (Bytes, Option<Bytes>) {
    let mut key = BytesMut::new();
    match r {
        Record::Offset {
            group,
            topic,
            partition,
            value,
        } => {
            key.put_u8(KIND_OFFSET);
            put_str(&mut key, group);
            put_str(&mut key, topic);
            key.put_i32(*partition);
            (key.freeze(), value.as_ref().map(encode_offset))
        }
        Record::Group { group, value } => {
            key.put_u8(KIND_GROUP);
            put_str(&mut key, group);
            (key.freeze(), value.as_ref().map(encode_group))
        }
    }
}

/// The record of a (key, value) pair (value None: a tombstone); the inverse of [`encode`].
pub fn decode(key: Bytes, value: Option<Bytes>) -> Result<Record> {
    let mut k = Reader(key);
    match k.u8()? {
        KIND_OFFSET => {
            let group = k.string()?;
            let topic = k.string()?;
            let partition = k.i32()?;
            let value = value.map(decode_offset).transpose()?;
            Ok(Record::Offset {
                group,
                topic,
                partition,
                value,
            })
        }
        KIND_GROUP => {
            let group = k.string()?;
            let value = value.map(decode_group).transpose()?;
            Ok(Record::Group { group, value })
        }
        _ => Err(DecodeError("unknown record kind")),
    }
}

fn encode_offset(c: &Committed) -> Bytes {
    let mut b = BytesMut::new();
    b.put_u8(VALUE_VERSION);
    b.put_i64(c.offset.get());
    b.put_i32(c.leader_epoch);
    put_str(&mut b, &c.metadata);
    b.put_i64(c.commit_ms.get());
    b.put_i64(c.expire_ms.unwrap_or(TimestampMs::NONE).get());
    b.freeze()
}

fn decode_offset(v: Bytes) -> Result<Committed> {
    let mut r = Reader(v);
    r.version()?;
    let offset = Offset(r.i64()?);
    let leader_epoch = r.i32()?;
    let metadata = r.string()?;
    let commit_ms = TimestampMs(r.i64()?);
    let expire = r.i64()?;
    Ok(Committed {
        offset,
        leader_epoch,
        metadata,
        commit_ms,
        expire_ms: (expire >= 0).then_some(TimestampMs(expire)),
    })
}

fn encode_group(g: &StoredGroup) -> Bytes {
    let mut b = BytesMut::new();
    b.put_u8(VALUE_VERSION);
    put_opt_str(&mut b, g.protocol_type.as_deref());
    b.put_i32(g.generation);
    put_opt_str(&mut b, g.protocol_name.as_deref());
    put_opt_str(&mut b, g.leader.as_deref());
    b.put_i64(g.state_since_ms.get());
    b.put_u32(g.members.len() as u32);
    for m in &g.members {
        put_str(&mut b, &m.member_id);
        put_opt_str(&mut b, m.instance_id.as_deref());
        put_str(&mut b, &m.client_id);
        put_str(&mut b, &m.client_host);
        b.put_i32(m.session_timeout_ms);
        b.put_i32(m.rebalance_timeout_ms);
        put_bytes(&mut b, &m.metadata);
        put_bytes(&mut b, &m.assignment);
    }
    b.freeze()
}

fn decode_group(v: Bytes) -> Result<StoredGroup> {
    let mut r = Reader(v);
    r.version()?;
    let mut g = StoredGroup {
        protocol_type: r.opt_string()?,
        generation: r.i32()?,
        protocol_name: r.opt_string()?,
        leader: r.opt_string()?,
        state_since_ms: TimestampMs(r.i64()?),
        members: Vec::new(),
    };
    let n = r.u32()?;
    for _ in 0..n {
        g.members.push(StoredMember {
            member_id: r.string()?,
            instance_id: r.opt_string()?,
            client_id: r.string()?,
            client_host: r.string()?,
            session_timeout_ms: r.i32()?,
            rebalance_timeout_ms: r.i32()?,
            metadata: r.bytes()?,
            assignment: r.bytes()?,
        });
    }
    Ok(g)
}

fn put_bytes(b: &mut BytesMut, v: &[u8]) {
    b.put_u32(v.len() as u32);
    b.put_slice(v);
}

fn put_str(b: &mut BytesMut, s: &str) {
    put_bytes(b, s.as_bytes());
}

fn put_opt_str(b: &mut BytesMut, s: Option<&str>) {
    match s {
        Some(s) => {
            b.put_u8(1);
            put_str(b, s);
        }
        None => b.put_u8(0),
    }
}

/// A bounds-checked reader over a record's bytes.
struct Reader(Bytes);

impl Reader {
    fn take(&mut self, n: usize) -> Result<Bytes> {
        if self.0.len() < n {
            return Err(DecodeError("truncated"));
        }
        Ok(self.0.split_to(n))
    }
    fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }
    fn version(&mut self) -> Result<()> {
        match self.u8()? {
            VALUE_VERSION => Ok(()),
            _ => Err(DecodeError("unknown value version")),
        }
    }
    fn u32(&mut self) -> Result<u32> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn i32(&mut self) -> Result<i32> {
        Ok(self.u32()? as i32)
    }
    fn i64(&mut self) -> Result<i64> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(&b);
        Ok(i64::from_be_bytes(a))
    }
    fn bytes(&mut self) -> Result<Bytes> {
        let n = self.u32()? as usize;
        self.take(n)
    }
    fn string(&mut self) -> Result<String> {
        String::from_utf8(self.bytes()?.to_vec()).map_err(|_| DecodeError("not UTF-8"))
    }
    fn opt_string(&mut self) -> Result<Option<String>> {
        match self.u8()? {
            0 => Ok(None),
            1 => self.string().map(Some),
            _ => Err(DecodeError("bad option tag")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn samples() -> Vec<Record> {
        vec![
            Record::Offset {
                group: "g".into(),
                topic: "t".into(),
                partition: 3,
                value: Some(Committed {
                    offset: Offset(42),
                    leader_epoch: 7,
                    metadata: "meta".into(),
                    commit_ms: TimestampMs(1000),
                    expire_ms: None,
                }),
            },
            Record::Offset {
                group: "g".into(),
                topic: "t".into(),
                partition: 4,
                value: None,
            },
            Record::Group {
                group: "g".into(),
                value: Some(StoredGroup {
                    protocol_type: Some("consumer".into()),
                    generation: 5,
                    protocol_name: Some("range".into()),
                    leader: Some("m-1".into()),
                    state_since_ms: TimestampMs(99),
                    members: vec![StoredMember {
                        member_id: "m-1".into(),
                        instance_id: Some("i".into()),
                        client_id: "c".into(),
                        client_host: "/127.0.0.1".into(),
                        session_timeout_ms: 10_000,
                        rebalance_timeout_ms: 60_000,
                        metadata: Bytes::from_static(b"\x00\x01"),
                        assignment: Bytes::from_static(b"\x00\x02"),
                    }],
                }),
            },
            Record::Group {
                group: "gone".into(),
                value: None,
            },
        ]
    }

    #[test]
    fn records_round_trip_through_a_batch() {
        let recs = samples();
        let batch = encode_batch(&recs, TimestampMs(5)).freeze();
        crate::storage::batch::validate(&batch, true).expect("a valid v2 batch");
        let back: Vec<Record> = decode_batches(batch)
            .unwrap()
            .into_iter()
            .map(|(_, r)| r)
            .collect();
        assert_eq!(back, recs);
    }

    #[test]
    fn a_mark_is_found_by_its_batch_and_skipped_by_replay() {
        let mark = encode_mark(Offset(17), TimestampMs(5)).freeze();
        assert_eq!(mark_start(mark.clone()), Some(Offset(17)));
        let state = encode_batch(&samples(), TimestampMs(5)).freeze();
        assert_eq!(mark_start(state.clone()), None);
        assert_eq!(mark_start(Bytes::from_static(b"not a batch")), None);
        let barrier = encode_barrier(TimestampMs(5)).freeze();
        assert_eq!(mark_start(barrier.clone()), None);
        let mut both = BytesMut::from(&mark[..]);
        both.extend_from_slice(&barrier);
        both.extend_from_slice(&state);
        let decoded: Vec<Record> = decode_batches(both.freeze())
            .unwrap()
            .into_iter()
            .map(|(_, r)| r)
            .collect();
        assert_eq!(decoded, samples());
    }

    #[test]
    fn every_truncation_is_an_error_not_a_panic() {
        for r in samples() {
            let (key, value) = encode(&r);
            for cut in 0..key.len() {
                assert!(decode(key.slice(..cut), value.clone()).is_err());
            }
            if let Some(v) = value {
                for cut in 0..v.len() {
                    assert!(decode(key.clone(), Some(v.slice(..cut))).is_err());
                }
            }
        }
    }

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    /// The bytes of every record kind, pinned: group logs written by earlier builds must
    /// replay, so a change of the Rust types must not change the encoding.
    #[test]
    fn the_encoding_is_pinned() {
        let mut records = samples();
        records.push(Record::Offset {
            group: "g".into(),
            topic: "t".into(),
            partition: 0,
            value: Some(Committed {
                offset: Offset(-1),
                leader_epoch: -1,
                metadata: String::new(),
                commit_ms: TimestampMs(2000),
                expire_ms: Some(TimestampMs(5000)),
            }),
        });
        let want = [
            (
                "000000000167000000017400000003",
                Some(
                    "00000000000000002a00000007000000046d65746100000000000003e8\
                     ffffffffffffffff",
                ),
            ),
            ("000000000167000000017400000004", None),
            (
                "010000000167",
                Some(
                    "000100000008636f6e73756d657200000005010000000572616e676501000000\
                     036d2d31000000000000006300000001000000036d2d31010000000169000000\
                     01630000000a2f3132372e302e302e31000027100000ea600000000200010000\
                     00020002",
                ),
            ),
            ("0100000004676f6e65", None),
            (
                "000000000167000000017400000000",
                Some(
                    "00ffffffffffffffffffffffff0000000000000000000007d0\
                     0000000000001388",
                ),
            ),
        ];
        assert_eq!(records.len(), want.len());
        for (r, (key, value)) in records.iter().zip(want) {
            let (k, v) = encode(r);
            assert_eq!(hex(&k), key, "{r:?}");
            assert_eq!(v.map(|v| hex(&v)), value.map(String::from), "{r:?}");
        }
        let batch = encode_batch(&samples(), TimestampMs(5));
        assert_eq!(
            hex(&batch),
            "00000000000000000000010500000000027f8cd94e00000000000300000000000000050000\
             000000000005ffffffffffffffffffffffffffff00000004740000001e00000000016700\
             00000174000000034a00000000000000002a00000007000000046d657461000000000000\
             03e8ffffffffffffffff002a0000021e0000000001670000000174000000040100e20100\
             00040c010000000167c801000100000008636f6e73756d657200000005010000000572616e\
             676501000000036d2d31000000000000006300000001000000036d2d3101000000016900\
             000001630000000a2f3132372e302e302e31000027100000ea6000000002000100000002\
             0002001e000006120100000004676f6e650100"
        );
    }
}
