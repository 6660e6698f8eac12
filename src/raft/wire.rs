//! The frames Raft messages travel in between brokers: one frame carries every message one
//! shard has for one shard of another broker in a turn, each tagged with its group. Our own
//! fixed layout, not protobuf parsing, so reading a frame is a bounded walk over bytes:
//! every length and count is checked against what is left before anything is allocated, a
//! frame is at most `frame_bytes_max`, and anything malformed is an error for the caller to
//! answer by closing the connection. Entry and snapshot data are slices of the frame's
//! `Bytes`, not copies.
//!
//! Layout (big-endian): `u32` length of the rest, `u8` version (1), `u16` message count, then
//! per message `u64` group, `u8` type, `u64` to, from, term, log_term, index, commit,
//! commit_term, request_snapshot, reject_hint, `u8` reject, `i64` priority, context,
//! `u32` entry count and the entries (`u8` type, `u64` term, index, data, context, `u8`
//! sync_log), `u8` snapshot present and the snapshot (data, `u64` index, term, the voters,
//! learners, outgoing voters and next learners as `u32` count + `u64`s, `u8` auto_leave).
//! Byte strings are a `u32` length and the bytes.

use bytes::{BufMut, Bytes, BytesMut};
use raft::eraftpb::{ConfState, Entry, EntryType, Message, MessageType, Snapshot};

/// The frame format this build writes and reads.
pub const VERSION: u8 = 1;

/// The smallest message on the wire: group, type, nine u64s, reject, priority, empty
/// context, no entries, no snapshot.
const MESSAGE_BYTES_MIN: usize = 8 + 1 + 9 * 8 + 1 + 8 + 4 + 4 + 1;
/// The smallest entry: type, term, index, empty data and context, sync_log.
const ENTRY_BYTES_MIN: usize = 1 + 8 + 8 + 4 + 4 + 1;

/// Why a frame could not be written or read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// The frame (announced or built) is larger than allowed.
    #[error("frame of {0} bytes is over the limit")]
    TooLarge(usize),
    /// A version this build does not read.
    #[error("frame version {0} is not supported")]
    Version(u8),
    /// The bytes end before the frame says they do, or go on after it.
    #[error("frame is truncated or has trailing bytes")]
    Length,
    /// A field holds a value no message has (an unknown type, a flag other than 0 or 1).
    #[error("invalid {0} in frame")]
    Invalid(&'static str),
}

/// The length prefix's value: the bytes of the frame after it, checked against the limit.
pub fn frame_len(prefix: [u8; 4], frame_bytes_max: usize) -> Result<usize, WireError> {
    let len = u32::from_be_bytes(prefix) as usize;
    if len > frame_bytes_max {
        return Err(WireError::TooLarge(len));
    }
    Ok(len)
}

/// One frame holding `msgs` (group, message), length prefix included.
pub fn encode(msgs: &[(u64, Message)], frame_bytes_max: usize) -> Result<Bytes, WireError> {
    let count = u16::try_from(msgs.len()).map_err(|_| WireError::TooLarge(msgs.len()))?;
    let mut b = BytesMut::with_capacity(64 * msgs.len() + HEADER_BYTES);
    b.put_bytes(0, HEADER_BYTES);
    for (group, m) in msgs {
        b.put_u64(*group);
        put_message(&mut b, m);
    }
    let len = b.len() - 4;
    if len > frame_bytes_max || u32::try_from(len).is_err() {
        return Err(WireError::TooLarge(len));
    }
    Ok(seal(b, count))
}

/// The frame header: length prefix, version, message count.
const HEADER_BYTES: usize = 4 + 1 + 2;

/// Frames holding `msgs` in order, each at most `frame_bytes_max` (after its length prefix)
/// and [`u16::MAX`] messages; each message is encoded once. A message too large for a frame
/// of its own is left out (and closes the frame before it): the second value counts them.
pub fn pack(msgs: &[(u64, Message)], frame_bytes_max: usize) -> (Vec<Bytes>, usize) {
    let mut frames = Vec::new();
    let mut dropped = 0;
    let mut frame = BytesMut::new();
    let mut count: u16 = 0;
    let mut one = BytesMut::new();
    for (group, m) in msgs {
        one.clear();
        one.put_u64(*group);
        put_message(&mut one, m);
        if HEADER_BYTES + one.len() > frame_bytes_max + 4 {
            // Left out; the frame before it is closed, so frames keep their order boundaries.
            dropped += 1;
            if count > 0 {
                frames.push(seal(std::mem::take(&mut frame), count));
                count = 0;
            }
            continue;
        }
        // The frame's length counts everything after its 4-byte prefix.
        let full = count == u16::MAX || frame.len() + one.len() > frame_bytes_max + 4;
        if count > 0 && full {
            frames.push(seal(std::mem::take(&mut frame), count));
            count = 0;
        }
        if count == 0 {
            frame.put_bytes(0, HEADER_BYTES);
        }
        frame.put_slice(&one);
        count += 1;
    }
    if count > 0 {
        frames.push(seal(frame, count));
    }
    (frames, dropped)
}

/// Writes the length, version and count into a frame's header.
fn seal(mut frame: BytesMut, count: u16) -> Bytes {
    let len = (frame.len() - 4) as u32;
    frame[..4].copy_from_slice(&len.to_be_bytes());
    frame[4] = VERSION;
    frame[5..7].copy_from_slice(&count.to_be_bytes());
    frame.freeze()
}

fn put_bytes(b: &mut BytesMut, v: &[u8]) {
    b.put_u32(v.len() as u32);
    b.put_slice(v);
}

fn put_u64s(b: &mut BytesMut, v: &[u64]) {
    b.put_u32(v.len() as u32);
    v.iter().for_each(|x| b.put_u64(*x));
}

fn put_message(b: &mut BytesMut, m: &Message) {
    b.put_u8(m.get_msg_type() as u8);
    for v in [
        m.to,
        m.from,
        m.term,
        m.log_term,
        m.index,
        m.commit,
        m.commit_term,
    ] {
        b.put_u64(v);
    }
    b.put_u64(m.request_snapshot);
    b.put_u64(m.reject_hint);
    b.put_u8(m.reject as u8);
    b.put_i64(m.priority);
    put_bytes(b, &m.context);
    b.put_u32(m.entries.len() as u32);
    m.entries.iter().for_each(|e| put_entry(b, e));
    match m.snapshot.as_ref() {
        None => b.put_u8(0),
        Some(s) => {
            b.put_u8(1);
            put_snapshot(b, s);
        }
    }
}

/// One entry in the frame layout (also the metadata log file's, `disk.rs`).
pub(super) fn put_entry(b: &mut BytesMut, e: &Entry) {
    b.put_u8(e.get_entry_type() as u8);
    b.put_u64(e.term);
    b.put_u64(e.index);
    put_bytes(b, &e.data);
    put_bytes(b, &e.context);
    b.put_u8(e.sync_log as u8);
}

/// One snapshot in the frame layout (also the metadata log file's).
pub(super) fn put_snapshot(b: &mut BytesMut, s: &Snapshot) {
    put_bytes(b, &s.data);
    let meta = s.get_metadata();
    b.put_u64(meta.index);
    b.put_u64(meta.term);
    let c = meta.get_conf_state();
    for v in [&c.voters, &c.learners, &c.voters_outgoing, &c.learners_next] {
        put_u64s(b, v);
    }
    b.put_u8(c.auto_leave as u8);
}

/// Reads a frame's bytes (after the length prefix) back into (group, message) pairs.
pub fn decode(frame: Bytes) -> Result<Vec<(u64, Message)>, WireError> {
    let mut r = Reader::new(frame);
    let version = r.u8()?;
    if version != VERSION {
        return Err(WireError::Version(version));
    }
    let count = r.u16()? as usize;
    // A count the frame cannot hold is refused before anything is allocated for it.
    r.room_for(count, MESSAGE_BYTES_MIN)?;
    let mut out = Vec::with_capacity(count);
    for _ in 0..count {
        let group = r.u64()?;
        out.push((group, r.message()?));
    }
    if !r.is_done() {
        return Err(WireError::Length);
    }
    Ok(out)
}

/// A bounds-checked cursor over a frame (or a record of the metadata log file).
pub(super) struct Reader {
    b: Bytes,
    at: usize,
}

impl Reader {
    /// A cursor at the start of `b`.
    pub(super) fn new(b: Bytes) -> Reader {
        Reader { b, at: 0 }
    }

    /// Whether every byte was read.
    pub(super) fn is_done(&self) -> bool {
        self.at == self.b.len()
    }

    fn take(&mut self, n: usize) -> Result<Bytes, WireError> {
        let end = self.at.checked_add(n).ok_or(WireError::Length)?;
        if end > self.b.len() {
            return Err(WireError::Length);
        }
        let s = self.b.slice(self.at..end);
        self.at = end;
        Ok(s)
    }

    pub(super) fn room_for(&self, count: usize, each: usize) -> Result<(), WireError> {
        let need = count.checked_mul(each).ok_or(WireError::Length)?;
        if need > self.b.len() - self.at {
            return Err(WireError::Length);
        }
        Ok(())
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], WireError> {
        let s = self.take(N)?;
        Ok(s[..].try_into().expect("took N bytes"))
    }

    pub(super) fn u8(&mut self) -> Result<u8, WireError> {
        Ok(self.array::<1>()?[0])
    }

    fn u16(&mut self) -> Result<u16, WireError> {
        Ok(u16::from_be_bytes(self.array()?))
    }

    pub(super) fn u32(&mut self) -> Result<u32, WireError> {
        Ok(u32::from_be_bytes(self.array()?))
    }

    pub(super) fn u64(&mut self) -> Result<u64, WireError> {
        Ok(u64::from_be_bytes(self.array()?))
    }

    fn flag(&mut self, what: &'static str) -> Result<bool, WireError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(WireError::Invalid(what)),
        }
    }

    fn bytes(&mut self) -> Result<Bytes, WireError> {
        let n = self.u32()? as usize;
        self.take(n)
    }

    fn u64s(&mut self) -> Result<Vec<u64>, WireError> {
        let n = self.u32()? as usize;
        self.room_for(n, 8)?;
        (0..n).map(|_| self.u64()).collect()
    }

    fn message(&mut self) -> Result<Message, WireError> {
        let mut m = Message::default();
        let t = self.u8()?;
        let t = message_type(t).ok_or(WireError::Invalid("message type"))?;
        m.set_msg_type(t);
        let mut fields = [0u64; 9];
        for f in &mut fields {
            *f = self.u64()?;
        }
        let [to, from, term, log_term, index, commit, commit_term, request_snapshot, hint] = fields;
        (m.to, m.from, m.term, m.log_term, m.index) = (to, from, term, log_term, index);
        (m.commit, m.commit_term, m.request_snapshot) = (commit, commit_term, request_snapshot);
        m.reject_hint = hint;
        m.reject = self.flag("reject")?;
        m.priority = self.u64()? as i64;
        m.context = self.bytes()?;
        let n = self.u32()? as usize;
        self.room_for(n, ENTRY_BYTES_MIN)?;
        let entries: Result<Vec<Entry>, WireError> = (0..n).map(|_| self.entry()).collect();
        m.entries = entries?.into();
        if self.flag("snapshot flag")? {
            m.snapshot = Some(self.snapshot()?).into();
        }
        Ok(m)
    }

    pub(super) fn entry(&mut self) -> Result<Entry, WireError> {
        let mut e = Entry::default();
        let t = match self.u8()? {
            0 => EntryType::EntryNormal,
            1 => EntryType::EntryConfChange,
            2 => EntryType::EntryConfChangeV2,
            _ => return Err(WireError::Invalid("entry type")),
        };
        e.set_entry_type(t);
        e.term = self.u64()?;
        e.index = self.u64()?;
        e.data = self.bytes()?;
        e.context = self.bytes()?;
        e.sync_log = self.flag("sync_log")?;
        Ok(e)
    }

    pub(super) fn snapshot(&mut self) -> Result<Snapshot, WireError> {
        let mut s = Snapshot {
            data: self.bytes()?,
            ..Snapshot::default()
        };
        let meta = s.mut_metadata();
        meta.index = self.u64()?;
        meta.term = self.u64()?;
        let c = ConfState {
            voters: self.u64s()?,
            learners: self.u64s()?,
            voters_outgoing: self.u64s()?,
            learners_next: self.u64s()?,
            auto_leave: self.flag("auto_leave")?,
            ..ConfState::default()
        };
        meta.set_conf_state(c);
        Ok(s)
    }
}

fn message_type(t: u8) -> Option<MessageType> {
    use MessageType::*;
    const ALL: [MessageType; 19] = [
        MsgHup,
        MsgBeat,
        MsgPropose,
        MsgAppend,
        MsgAppendResponse,
        MsgRequestVote,
        MsgRequestVoteResponse,
        MsgSnapshot,
        MsgHeartbeat,
        MsgHeartbeatResponse,
        MsgUnreachable,
        MsgSnapStatus,
        MsgCheckQuorum,
        MsgTransferLeader,
        MsgTimeoutNow,
        MsgReadIndex,
        MsgReadIndexResp,
        MsgRequestPreVote,
        MsgRequestPreVoteResponse,
    ];
    ALL.get(t as usize).copied()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MAX: usize = 1 << 20;

    fn message(t: u8, fields: [u64; 4], data: Vec<Vec<u8>>, snap: Option<Vec<u8>>) -> Message {
        let mut m = Message::default();
        m.set_msg_type(message_type(t % 19).unwrap());
        (m.to, m.from, m.term, m.index) = (fields[0], fields[1], fields[2], fields[3]);
        m.commit = fields[3] / 2;
        m.reject = fields[0] % 2 == 1;
        m.priority = -(fields[1] as i64 % 7);
        for (i, d) in data.into_iter().enumerate() {
            let mut e = Entry::default();
            (e.term, e.index, e.data) = (fields[2], fields[3] + i as u64, d.into());
            m.entries.push(e);
        }
        if let Some(d) = snap {
            let mut s = Snapshot {
                data: d.into(),
                ..Snapshot::default()
            };
            s.mut_metadata().index = fields[3];
            s.mut_metadata().mut_conf_state().voters = vec![1, 2, 3];
            m.snapshot = Some(s).into();
        }
        m
    }

    proptest! {
        #[test]
        fn frames_round_trip(
            msgs in proptest::collection::vec(
                (any::<u64>(), any::<u8>(), any::<[u64; 4]>(),
                 proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..40), 0..4),
                 proptest::option::of(proptest::collection::vec(any::<u8>(), 0..40))),
                0..6)
        ) {
            let msgs: Vec<(u64, Message)> = msgs
                .into_iter()
                .map(|(g, t, f, d, s)| (g, message(t, f, d, s)))
                .collect();
            let frame = encode(&msgs, MAX).unwrap();
            let len = frame_len(frame[..4].try_into().unwrap(), MAX).unwrap();
            prop_assert_eq!(len, frame.len() - 4);
            prop_assert_eq!(decode(frame.slice(4..)).unwrap(), msgs);
        }

        #[test]
        fn garbage_is_an_error_never_a_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = decode(Bytes::from(bytes));
        }

        #[test]
        fn a_cut_or_flipped_frame_is_refused_or_read_without_panic(cut in 0usize..200, flip in 0usize..200) {
            let m = message(3, [2, 1, 5, 9], vec![b"abc".to_vec()], Some(b"snap".to_vec()));
            let frame = encode(&[(7, m)], MAX).unwrap().slice(4..);
            let cut = cut.min(frame.len() - 1);
            prop_assert!(decode(frame.slice(..cut)).is_err());
            let mut flipped = frame.to_vec();
            let at = flip % flipped.len();
            flipped[at] ^= 0xff;
            let _ = decode(Bytes::from(flipped));
        }
    }

    #[test]
    fn packing_splits_at_the_limit_and_leaves_out_what_cannot_fit() {
        let with_data = |bytes: usize| message(3, [2, 1, 1, 1], vec![vec![7; bytes]], None);
        let msgs = vec![
            (1, with_data(100)),
            (2, with_data(100)),
            (3, with_data(1000)),
            (4, with_data(10)),
        ];
        let (frames, dropped) = pack(&msgs, 600);
        assert!(frames.iter().all(|f| f.len() - 4 <= 600));
        let back: Vec<(u64, Message)> = frames
            .iter()
            .flat_map(|f| decode(f.slice(4..)).unwrap())
            .collect();
        let kept: Vec<(u64, Message)> = msgs.into_iter().filter(|(g, _)| *g != 3).collect();
        assert_eq!((back, frames.len(), dropped), (kept.clone(), 2, 1));
        let (whole, none) = pack(&kept, MAX);
        assert_eq!((whole, none), (vec![encode(&kept, MAX).unwrap()], 0));
        assert_eq!(pack(&[], MAX), (vec![], 0));
    }

    #[test]
    fn limits_are_enforced() {
        assert_eq!(
            frame_len(100u32.to_be_bytes(), 99),
            Err(WireError::TooLarge(100))
        );
        let big = message(3, [1, 2, 3, 4], vec![vec![0; 2000]], None);
        assert!(matches!(
            encode(&[(1, big)], 1000),
            Err(WireError::TooLarge(_))
        ));
        let mut v2 = encode(&[], MAX).unwrap().slice(4..).to_vec();
        v2[0] = 2;
        assert_eq!(decode(Bytes::from(v2)), Err(WireError::Version(2)));
        // A count of 65535 messages in a 3-byte frame is refused before allocating.
        assert_eq!(
            decode(Bytes::from_static(&[1, 0xff, 0xff])),
            Err(WireError::Length)
        );
    }
}
