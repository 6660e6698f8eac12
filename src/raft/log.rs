//! One Raft group's log as raft-rs reads it: the entries after the last snapshot, the hard
//! state (term, vote, commit) and the configuration, all in memory. raft-rs only reads it
//! (`raft::Storage`); the group (`group.rs`) writes it as each Ready asks, and the edge that
//! owns the group makes the same writes durable before it tells the group they are persisted
//! (for the metadata log, `metalog.rs` on shard 0). Plain data, no I/O, no locks: it lives on
//! the thread of its group.

use bytes::Bytes;
use raft::eraftpb::{ConfState, Entry, HardState, Snapshot, SnapshotMetadata};
use raft::{GetEntriesContext, RaftState, StorageError};

/// A group's log: a snapshot's metadata (the log before it is compacted away) and the
/// entries after it, contiguous.
#[derive(Clone, Debug, Default)]
pub struct RaftLog {
    hard: HardState,
    conf: ConfState,
    /// The last snapshot: index and term of the last entry it covers, and the state machine's
    /// bytes at that index (empty before the first compaction).
    snap: SnapshotMetadata,
    snap_data: Bytes,
    /// `entries[i].index == snap.index + 1 + i`.
    entries: Vec<Entry>,
}

impl RaftLog {
    /// A new group's log: no entries, the given voters.
    pub fn new(voters: &[u64]) -> RaftLog {
        let conf = ConfState {
            voters: voters.to_vec(),
            ..ConfState::default()
        };
        let mut snap = SnapshotMetadata::default();
        snap.set_conf_state(conf.clone());
        RaftLog {
            conf,
            snap,
            ..RaftLog::default()
        }
    }

    /// The hard state (term, vote, commit).
    pub fn hard_state(&self) -> &HardState {
        &self.hard
    }

    /// The voters.
    pub fn conf_state(&self) -> &ConfState {
        &self.conf
    }

    /// A configuration change was applied: the members from now on (a snapshot taken later
    /// carries them).
    pub fn set_conf_state(&mut self, conf: ConfState) {
        assert!(!conf.voters.is_empty(), "a group keeps its voters");
        self.conf = conf;
    }

    /// The last snapshot: its metadata and the state machine's bytes.
    pub fn snapshot_parts(&self) -> (&SnapshotMetadata, &Bytes) {
        (&self.snap, &self.snap_data)
    }

    /// The entries after the snapshot.
    pub fn entries_after_snapshot(&self) -> &[Entry] {
        &self.entries
    }

    /// The index of the last entry (the snapshot's when there is none after it).
    pub fn last(&self) -> u64 {
        self.snap.index + self.entries.len() as u64
    }

    /// The first index still held as an entry.
    pub fn first(&self) -> u64 {
        self.snap.index + 1
    }

    /// Replaces the hard state.
    pub fn set_hard_state(&mut self, hs: HardState) {
        assert!(hs.term >= self.hard.term, "term never goes back");
        self.hard = hs;
    }

    /// Appends `ents`, first dropping any entries at or after the first one's index (a
    /// leader's log overriding a follower's unacknowledged suffix).
    pub fn append(&mut self, ents: &[Entry]) {
        let Some(head) = ents.first() else {
            return;
        };
        assert!(
            head.index > self.snap.index && head.index <= self.last() + 1,
            "append at {} leaves a gap or rewrites the snapshot (entries {}..={})",
            head.index,
            self.first(),
            self.last()
        );
        self.entries.truncate((head.index - self.first()) as usize);
        self.entries.extend_from_slice(ents);
        self.check();
    }

    /// Replaces the whole log with a snapshot received from the leader.
    pub fn install(&mut self, s: &Snapshot) {
        let meta = s.get_metadata();
        assert!(meta.index >= self.snap.index, "snapshots never go back");
        self.entries.clear();
        self.snap = meta.clone();
        self.snap_data = s.data.clone();
        self.conf = meta.get_conf_state().clone();
        if self.hard.term < meta.term {
            self.hard.term = meta.term;
        }
        self.hard.commit = self.hard.commit.max(meta.index);
        self.check();
    }

    /// Drops the entries up to `index` (applied by the state machine, whose bytes at that
    /// index are `data`): they live on as the snapshot.
    pub fn compact(&mut self, index: u64, data: Bytes) {
        assert!(
            index <= self.hard.commit,
            "only committed entries are compacted"
        );
        if index <= self.snap.index {
            return;
        }
        let term = self
            .term_of(index)
            .expect("a committed index is in the log");
        let drop = (index - self.snap.index) as usize;
        self.entries.drain(..drop);
        self.snap.index = index;
        self.snap.term = term;
        self.snap.set_conf_state(self.conf.clone());
        self.snap_data = data;
        self.check();
    }

    fn term_of(&self, idx: u64) -> Option<u64> {
        if idx == self.snap.index {
            return Some(self.snap.term);
        }
        let at = idx.checked_sub(self.first())?;
        self.entries.get(at as usize).map(|e| e.term)
    }

    /// The log's shape: contiguous indexes after the snapshot, terms never going back.
    fn check(&self) {
        let mut prev = (self.snap.index, self.snap.term);
        for e in &self.entries {
            assert_eq!(e.index, prev.0 + 1, "raft log indexes are contiguous");
            assert!(e.term >= prev.1, "raft log terms never go back");
            prev = (e.index, e.term);
        }
    }
}

impl raft::Storage for RaftLog {
    fn initial_state(&self) -> raft::Result<RaftState> {
        Ok(RaftState::new(self.hard.clone(), self.conf.clone()))
    }

    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        _context: GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        if low < self.first() {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        assert!(high <= self.last() + 1, "entries asked past the log end");
        let from = (low - self.first()) as usize;
        let to = (high - self.first()) as usize;
        let mut out = self.entries[from..to].to_vec();
        raft::util::limit_size(&mut out, max_size.into());
        Ok(out)
    }

    fn term(&self, idx: u64) -> raft::Result<u64> {
        if idx < self.snap.index {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        self.term_of(idx)
            .ok_or(raft::Error::Store(StorageError::Unavailable))
    }

    fn first_index(&self) -> raft::Result<u64> {
        Ok(self.first())
    }

    fn last_index(&self) -> raft::Result<u64> {
        Ok(self.last())
    }

    fn snapshot(&self, _request_index: u64, _to: u64) -> raft::Result<Snapshot> {
        let mut s = Snapshot {
            data: self.snap_data.clone(),
            ..Snapshot::default()
        };
        s.set_metadata(self.snap.clone());
        Ok(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use raft::Storage;

    fn entry(index: u64, term: u64) -> Entry {
        Entry {
            index,
            term,
            ..Entry::default()
        }
    }

    fn committed_to(log: &mut RaftLog, commit: u64) {
        let mut hs = log.hard_state().clone();
        hs.commit = commit;
        log.set_hard_state(hs);
    }

    #[test]
    fn append_overrides_a_suffix_and_compaction_keeps_the_boundary_term() {
        let mut log = RaftLog::new(&[1, 2, 3]);
        log.append(&[entry(1, 1), entry(2, 1), entry(3, 1)]);
        log.append(&[entry(3, 2), entry(4, 2)]);
        assert_eq!(log.last(), 4);
        assert_eq!(log.term(3).unwrap(), 2);
        committed_to(&mut log, 3);
        log.compact(2, Bytes::from_static(b"state"));
        assert_eq!(log.first_index().unwrap(), 3);
        assert_eq!(log.term(2).unwrap(), 1);
        assert!(log.term(1).is_err());
        let got = log.entries(3, 5, None, GetEntriesContext::empty(false));
        assert_eq!(got.unwrap().len(), 2);
        let compacted = log.entries(2, 5, None, GetEntriesContext::empty(false));
        assert!(compacted.is_err());
        let snap = log.snapshot(0, 2).unwrap();
        assert_eq!(
            (snap.get_metadata().index, &snap.data[..]),
            (2, &b"state"[..])
        );
    }

    #[test]
    #[should_panic(expected = "gap")]
    fn a_gap_is_refused() {
        let mut log = RaftLog::new(&[1]);
        log.append(&[entry(2, 1)]);
    }
}
