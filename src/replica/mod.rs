//! A partition replica's Raft log as it lies in the partition's segments (issue 21;
//! docs/architecture.md §19). Raft entry *i* is the *i*-th batch after the replica's last Raft
//! checkpoint: its term is the batch's leader epoch, its data the batch as stored. The
//! checkpoint — the index and term of the last entry it covers and the offset where that
//! entry's batch ends — stands in for a Raft snapshot, because the state machine (the log up
//! to that offset) is already on disk. So nothing is written twice: the segments are the Raft
//! log, and only the checkpoint and the hard state are small files of their own.
//!
//! This module rebuilds the in-memory [`RaftLog`] a replica's `raft::Group` starts from: the
//! checkpoint, the hard state, and the batches after the checkpoint's offset read back from
//! the segments. Committed batches are folded into the checkpoint as they are read, so what
//! is held in memory is the uncommitted suffix only, however old the checkpoint file is. The
//! replica driver (next, on each partition's owner shard) keeps the checkpoint moving as
//! commits are applied.

pub mod host;
pub mod machine;
#[cfg(test)]
mod sim;
pub mod store;

pub use host::Host;
pub use machine::{Answer, CatchUp, Replica, ReplicaConfig, ReplicaError, Turn, Wait};
pub use store::ReplicaStore;

use bytes::Bytes;
use raft::eraftpb::{ConfState, Entry, HardState, Snapshot, SnapshotMetadata};

use crate::raft::RaftLog;
use crate::storage::batch::BatchHeader;
use crate::storage::{PartitionLog, StorageError};
use crate::types::Offset;

/// The file holding a replica's checkpoint, in the partition directory.
pub const CHECKPOINT_FILE: &str = "raft-checkpoint";
/// A replica's small files: four bytes of magic, three `u64`s, CRC32C of what precedes it.
const SEALED_BYTES: usize = 4 + 3 * 8 + 4;

/// The bytes of a small file holding `fields` under `magic`.
fn seal(magic: &[u8; 4], fields: [u64; 3]) -> Vec<u8> {
    let mut b = Vec::with_capacity(SEALED_BYTES);
    b.extend_from_slice(magic);
    for v in fields {
        b.extend_from_slice(&v.to_be_bytes());
    }
    let crc = crc32c::crc32c(&b);
    b.extend_from_slice(&crc.to_be_bytes());
    b
}

/// The fields of a small file's bytes; None if they are not one under `magic` (size,
/// magic or CRC).
fn unseal(magic: &[u8; 4], b: &[u8]) -> Option<[u64; 3]> {
    if b.len() != SEALED_BYTES || &b[..4] != magic {
        return None;
    }
    let (body, crc) = b.split_at(SEALED_BYTES - 4);
    if crc32c::crc32c(body).to_be_bytes() != crc {
        return None;
    }
    let u64_at = |i: usize| u64::from_be_bytes(body[i..i + 8].try_into().expect("8 bytes"));
    Some([u64_at(4), u64_at(12), u64_at(20)])
}

/// Where a replica's Raft log was last folded into the segments.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Checkpoint {
    /// The last entry it covers (0: none).
    pub index: u64,
    /// That entry's term.
    pub term: u64,
    /// The offset where that entry's batch ends: the next entry's batch starts here.
    pub offset: Offset,
}

impl Checkpoint {
    /// The file's bytes.
    pub fn encode(&self) -> Vec<u8> {
        seal(b"SLRC", [self.index, self.term, self.offset.0 as u64])
    }

    /// Reads the file's bytes; None if they are not a checkpoint (wrong size, magic or CRC).
    pub fn decode(b: &[u8]) -> Option<Checkpoint> {
        let [index, term, offset] = unseal(b"SLRC", b)?;
        Some(Checkpoint {
            index,
            term,
            offset: Offset(offset as i64),
        })
    }

    /// As a Raft snapshot of a group with `voters`: its data is the checkpoint itself, so a
    /// follower sent it learns the offset the leader's log reached there.
    pub fn snapshot(&self, voters: &[u64]) -> Snapshot {
        let mut meta = SnapshotMetadata {
            index: self.index,
            term: self.term,
            ..SnapshotMetadata::default()
        };
        meta.set_conf_state(ConfState {
            voters: voters.to_vec(),
            ..ConfState::default()
        });
        let mut s = Snapshot {
            data: Bytes::from(self.encode()),
            ..Snapshot::default()
        };
        s.set_metadata(meta);
        s
    }
}

/// What a rebuild found: the Raft log to start from, and the checkpoint it folded the
/// committed batches into (the caller writes it if it moved).
#[derive(Debug)]
pub struct Rebuilt {
    /// The log for the replica's Raft group.
    pub raft_log: RaftLog,
    /// The checkpoint now: at least the one given, at most the commit index.
    pub checkpoint: Checkpoint,
}

/// Folds a replica's stored batches, in offset order from its checkpoint's offset, into the
/// Raft log it starts from (the pure part of [`rebuild`], which feeds it from the segments).
#[derive(Debug)]
pub struct Fold {
    checkpoint: Checkpoint,
    hard: HardState,
    entries: Vec<Entry>,
}

impl Fold {
    /// A fold from `checkpoint`, with the hard state `hard` saying what is committed.
    pub fn new(checkpoint: Checkpoint, hard: HardState) -> Fold {
        Fold {
            checkpoint,
            hard,
            entries: Vec::new(),
        }
    }

    /// The next stored batch (`h` is its header): folded into the checkpoint if committed,
    /// held as the next entry if not. Batches before the checkpoint's offset are skipped (a
    /// log start inside the batch there).
    pub fn push(&mut self, h: &BatchHeader, bytes: Bytes) {
        if h.base_offset < self.checkpoint.offset {
            return;
        }
        let index = self.checkpoint.index + self.entries.len() as u64 + 1;
        let term = u64::try_from(h.leader_epoch).unwrap_or(0);
        if index <= self.hard.commit {
            assert!(self.entries.is_empty(), "committed entries come first");
            self.checkpoint = Checkpoint {
                index,
                term,
                offset: h.next_offset(),
            };
            return;
        }
        let mut e = Entry {
            index,
            term,
            data: bytes,
            ..Entry::default()
        };
        e.set_entry_type(raft::eraftpb::EntryType::EntryNormal);
        self.entries.push(e);
    }

    /// The Raft log of a group with `voters`.
    pub fn finish(self, voters: &[u64]) -> Rebuilt {
        let mut raft_log = RaftLog::new(voters);
        // A commit past the batches found (the log lost a suffix it had not synced) is
        // lowered to them: a lower commit is always safe, the leader tells the rest again.
        let last = self.checkpoint.index + self.entries.len() as u64;
        let mut hard = self.hard;
        hard.commit = hard.commit.min(last);
        raft_log.set_hard_state(hard);
        raft_log.install(&self.checkpoint.snapshot(voters));
        raft_log.append(&self.entries);
        Rebuilt {
            raft_log,
            checkpoint: self.checkpoint,
        }
    }
}

/// The Raft log of a replica with `voters` whose partition log is `log`, as of `checkpoint`
/// and the hard state `hard`: the batches after the checkpoint's offset become the entries
/// after it, each with its leader epoch as its term; those up to the commit index are folded
/// into the checkpoint instead of being held.
pub async fn rebuild(
    log: &PartitionLog,
    checkpoint: Checkpoint,
    hard: HardState,
    voters: &[u64],
) -> Result<Rebuilt, StorageError> {
    let mut fold = Fold::new(checkpoint, hard);
    log.replay(checkpoint.offset, |h, bytes| {
        fold.push(h, bytes);
        Ok(())
    })
    .await?;
    Ok(fold.finish(voters))
}

#[cfg(test)]
mod tests {
    use bytes::BytesMut;
    use raft::Storage as _;

    use super::*;
    use crate::storage::batch::build_test_batch;
    use crate::storage::io::block_on;
    use crate::storage::Durability;
    use crate::types::TimestampMs;

    #[test]
    fn the_checkpoint_file_round_trips_and_refuses_damage() {
        let cp = Checkpoint {
            index: 7,
            term: 3,
            offset: Offset(120),
        };
        let b = cp.encode();
        assert_eq!(Checkpoint::decode(&b), Some(cp));
        for i in 0..b.len() {
            let mut bad = b.clone();
            bad[i] ^= 1;
            assert_eq!(Checkpoint::decode(&bad), None, "byte {i}");
        }
        assert_eq!(Checkpoint::decode(&b[1..]), None);
    }

    /// Six batches in epochs 1, 1, 2, 2, 3, 3 after a checkpoint at the first: with the
    /// commit at entry 3, entries 1-3 fold into the checkpoint and 4-5 are held, with their
    /// epochs as terms and the stored batches as data.
    #[test]
    fn a_raft_log_is_rebuilt_from_the_segments_after_its_checkpoint() {
        let dir = tempfile::tempdir().unwrap();
        block_on(async {
            let log = PartitionLog::open(dir.path(), Default::default())
                .await
                .unwrap();
            let mut stored = Vec::new();
            for (i, epoch) in [1, 1, 2, 2, 3, 3].into_iter().enumerate() {
                log.set_leader_epoch(epoch);
                let b = build_test_batch(2, 10, TimestampMs(i as i64));
                let info = log
                    .append(BytesMut::from(&b[..]), TimestampMs(0))
                    .await
                    .unwrap();
                log.wait(info.ticket, Durability::Written).await.unwrap();
                stored.push(
                    log.read(info.base_offset, 1)
                        .await
                        .unwrap()
                        .chunks
                        .remove(0),
                );
            }
            let first = Checkpoint {
                index: 10,
                term: 1,
                offset: Offset(2),
            };
            let hard = HardState {
                term: 3,
                vote: 1,
                commit: 13,
                ..HardState::default()
            };
            let r = rebuild(&log, first, hard, &[1, 2, 3]).await.unwrap();
            let cp = Checkpoint {
                index: 13,
                term: 2,
                offset: Offset(8),
            };
            assert_eq!(r.checkpoint, cp, "entries 11-13 folded in");
            let l = &r.raft_log;
            assert_eq!(
                (l.first_index().unwrap(), l.last_index().unwrap()),
                (14, 15)
            );
            assert_eq!(l.term(13).unwrap(), 2);
            assert_eq!((l.term(14).unwrap(), l.term(15).unwrap()), (3, 3));
            let held = l.entries_after_snapshot();
            let data: Vec<_> = held.iter().map(|e| e.data.clone()).collect();
            assert_eq!(
                data,
                [
                    stored[4].clone().into_bytes(),
                    stored[5].clone().into_bytes()
                ]
            );
            assert_eq!(l.initial_state().unwrap().hard_state.commit, 13);
            assert_eq!(l.initial_state().unwrap().conf_state.voters, [1, 2, 3]);
            let (meta, snap) = l.snapshot_parts();
            assert_eq!((meta.index, Checkpoint::decode(snap)), (13, Some(cp)));
            log.close().await.unwrap();
        });
    }
}
