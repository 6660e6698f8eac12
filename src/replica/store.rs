//! A replica's durable edge on its owner shard: the partition log and the two small files
//! beside its segments that make it a Raft log (docs/architecture.md §19). [`ReplicaStore`]
//! opens a replica — reads the checkpoint (`raft-checkpoint`) and the hard state
//! (`raft-state`), rebuilds the Raft log from the segments — and carries out the write of
//! each [`Turn`]: a catch-up to a leader's checkpoint from batches the caller copied from the
//! leader, the cut of a replaced suffix, the appends (stored as they are), the wait until
//! they are on the device, and the hard state when the term or vote changed. The commit index
//! needs no sync: a replica that restarts with an older one treats the batches after its
//! checkpoint as uncommitted until the leader says otherwise, which is safe.
//!
//! Between the machine (`machine.rs`, pure) and the shard's tasks; the transport that moves
//! the messages and the copied batches is the caller's.

use std::path::{Path, PathBuf};

use bytes::{Bytes, BytesMut};
use raft::eraftpb::HardState;

use super::machine::{ReplicaError, Turn};
use super::{rebuild, Checkpoint, Rebuilt, CHECKPOINT_FILE};
use crate::storage::io::{read_small, write_small_atomic};
use crate::storage::{Durability, PartitionLog};
use crate::types::{Offset, TimestampMs};

/// The file holding a replica's hard state (term, vote, commit), in the partition directory.
pub const HARD_STATE_FILE: &str = "raft-state";
/// The hard state file's bytes.
pub fn encode_hard_state(hs: &HardState) -> Vec<u8> {
    super::seal(b"SLRS", [hs.term, hs.vote, hs.commit])
}

/// Reads the hard state file's bytes; None if they are not one (size, magic or CRC).
pub fn decode_hard_state(b: &[u8]) -> Option<HardState> {
    let [term, vote, commit] = super::unseal(b"SLRS", b)?;
    Some(HardState {
        term,
        vote,
        commit,
        ..HardState::default()
    })
}

/// A replica's partition log and Raft files.
pub struct ReplicaStore {
    log: PartitionLog,
    dir: PathBuf,
    /// Term and vote as last stored.
    stored: (u64, u64),
    /// A checkpoint to store once the log is synced up to its offset.
    checkpoint_due: Option<Checkpoint>,
}

impl ReplicaStore {
    /// Opens the replica of a group with `voters` whose log (in `dir`) is `log`: reads its
    /// two files and rebuilds its Raft log. Missing files are a new replica's (no checkpoint:
    /// the Raft log starts at offset 0, so the log must too); a damaged file, or a checkpoint
    /// past the log end, is refused: term and vote must never go back, and the checkpoint is
    /// what numbers the entries.
    pub async fn open(
        log: PartitionLog,
        dir: &Path,
        voters: &[u64],
    ) -> Result<(ReplicaStore, Rebuilt), ReplicaError> {
        let damaged = |what| ReplicaError::Damaged(dir.display().to_string(), what);
        let checkpoint = match read_small(&dir.join(CHECKPOINT_FILE), 64).await? {
            Some(b) => Checkpoint::decode(&b).ok_or(damaged("raft-checkpoint"))?,
            None if log.log_start() > Offset(0) => return Err(damaged("no raft-checkpoint")),
            None => Checkpoint::default(),
        };
        if checkpoint.offset > log.next_offset() || checkpoint.offset < log.log_start() {
            return Err(damaged("raft-checkpoint outside the log"));
        }
        let hard = match read_small(&dir.join(HARD_STATE_FILE), 64).await? {
            Some(b) => decode_hard_state(&b).ok_or(damaged("raft-state"))?,
            None => HardState::default(),
        };
        log.set_start_limit(checkpoint.offset);
        let rebuilt = rebuild(&log, checkpoint, hard.clone(), voters).await?;
        let mut store = ReplicaStore {
            log,
            dir: dir.to_path_buf(),
            stored: (hard.term, hard.vote),
            checkpoint_due: None,
        };
        if rebuilt.checkpoint != checkpoint {
            store.checkpoint(Some(rebuilt.checkpoint)).await?;
        }
        Ok((store, rebuilt))
    }

    /// The partition log.
    pub fn log(&self) -> &PartitionLog {
        &self.log
    }

    /// Carries out `t`'s write: `copied` holds the leader's batches from the catch-up's
    /// `keep` to its `until` when the turn has one. Returns once the batches are on the
    /// device and the hard state stored; then call `Replica::persisted`.
    pub async fn write(&mut self, t: &mut Turn, copied: Vec<Bytes>) -> Result<(), ReplicaError> {
        // A catch-up copied into the log already (`append_copied`) is done when the log
        // ends at its `until`.
        let copied_in = copied.is_empty()
            && t.catch_up
                .is_some_and(|c| c.keep < c.until && self.log.next_offset() == c.until);
        if let Some(c) = t.catch_up.filter(|_| !copied_in) {
            if self.log.next_offset() > c.keep {
                self.log.truncate_to(c.keep).await?;
            }
            if self.log.next_offset() < c.keep {
                let end = self.log.next_offset();
                return Err(ReplicaError::CatchUpGap { end, keep: c.keep });
            }
            self.append(copied)?;
            if self.log.next_offset() != c.until {
                let end = self.log.next_offset();
                return Err(ReplicaError::CatchUpGap { end, keep: c.until });
            }
        }
        if let Some(at) = t.truncate_to {
            if self.log.next_offset() > at {
                self.log.truncate_to(at).await?;
            }
        }
        self.append(std::mem::take(&mut t.append))?;
        // The topic's flush policy decides, as for acks=all on one replica: the O_DIRECT
        // write by default (a process crash loses nothing; a power loss may lose a suffix
        // on this replica, which the others still hold), fdatasync when flush.messages=1.
        self.log
            .wait(self.log.next_offset(), Durability::Policy)
            .await?;
        if let Some(hs) = t.hard_state.take() {
            if (hs.term, hs.vote) != self.stored {
                let bytes = encode_hard_state(&hs);
                write_small_atomic(&self.dir, HARD_STATE_FILE, bytes).await?;
                self.stored = (hs.term, hs.vote);
            }
        }
        Ok(())
    }

    /// Stores the newest of `cp` and the checkpoint still due whose offset the log has
    /// synced, so a stored checkpoint never points past what survives a power loss; a newer
    /// one not synced yet stays due (until then the older one stands: it only costs a longer
    /// rebuild).
    pub async fn checkpoint(&mut self, cp: Option<Checkpoint>) -> Result<(), ReplicaError> {
        let synced = |c: &Checkpoint| self.log.is_durable(c.offset, Durability::Synced);
        let candidates = [self.checkpoint_due.take(), cp];
        let newest_synced = candidates.iter().flatten().rfind(|c| synced(c)).copied();
        self.checkpoint_due = candidates
            .into_iter()
            .flatten()
            .rfind(|c| newest_synced.is_none_or(|s| c.index > s.index));
        if let Some(c) = newest_synced {
            write_small_atomic(&self.dir, CHECKPOINT_FILE, c.encode()).await?;
            self.log.set_start_limit(c.offset);
        }
        Ok(())
    }

    /// Starts a catch-up: the log is cut to `keep` (this replica's own committed end) if it
    /// is longer; a log shorter than that cannot be caught up from a checkpoint.
    pub async fn cut_for_catch_up(&mut self, keep: Offset) -> Result<(), ReplicaError> {
        if self.log.next_offset() > keep {
            self.log.truncate_to(keep).await?;
        }
        let end = self.log.next_offset();
        if end < keep {
            return Err(ReplicaError::CatchUpGap { end, keep });
        }
        Ok(())
    }

    /// Appends batches a catch-up copied (committed on the replica they came from), once the
    /// log has room for more.
    pub async fn append_copied(&mut self, batches: Vec<Bytes>) -> Result<(), ReplicaError> {
        self.log.wait_for_room().await?;
        self.append(batches)
    }

    fn append(&self, batches: Vec<Bytes>) -> Result<(), ReplicaError> {
        for b in batches {
            // Entry data is shared with the Raft log: the log takes its own copy.
            let batch = BytesMut::from(&b[..]);
            self.log.append_replicated(batch, TimestampMs::now())?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use raft::eraftpb::Message;

    use super::*;
    use crate::replica::{Answer, Replica, ReplicaConfig, Wait};
    use crate::storage::batch::build_test_batch;
    use crate::storage::io::block_on;

    #[test]
    fn the_hard_state_file_round_trips_and_refuses_damage() {
        let hs = HardState {
            term: 9,
            vote: 2,
            commit: 41,
            ..HardState::default()
        };
        let b = encode_hard_state(&hs);
        assert_eq!(decode_hard_state(&b), Some(hs));
        for i in 0..b.len() {
            let mut bad = b.clone();
            bad[i] ^= 0x10;
            assert_eq!(decode_hard_state(&bad), None, "byte {i}");
        }
    }

    struct Node {
        dir: tempfile::TempDir,
        store: Option<ReplicaStore>,
        replica: Option<Replica>,
    }

    const VOTERS: [u64; 3] = [1, 2, 3];

    fn config(id: u64) -> ReplicaConfig {
        ReplicaConfig {
            held_entries_max: 8,
            min_insync: 2,
            ..ReplicaConfig::new(id)
        }
    }

    async fn start(n: &mut Node, id: u64) {
        let log = PartitionLog::open(n.dir.path(), Default::default())
            .await
            .unwrap();
        let (store, rebuilt) = ReplicaStore::open(log, n.dir.path(), &VOTERS)
            .await
            .unwrap();
        let r = Replica::new(&config(id), rebuilt.raft_log, rebuilt.checkpoint).unwrap();
        n.store = Some(store);
        n.replica = Some(r);
    }

    async fn stop(n: &mut Node) {
        n.replica = None;
        let store = n.store.take().expect("running");
        store.log().close().await.unwrap();
    }

    /// The batches of `log` from `from` to `until`.
    async fn copy(log: &PartitionLog, from: Offset, until: Offset) -> Vec<Bytes> {
        let mut out = Vec::new();
        log.replay(from, |h, b| {
            if h.base_offset < until {
                out.push(b);
            }
            Ok(())
        })
        .await
        .unwrap();
        out
    }

    struct Cluster {
        nodes: Vec<Node>,
        wire: Vec<Message>,
        acked: BTreeMap<u64, Offset>,
        proposed: BTreeMap<u64, Offset>,
        catch_ups: u64,
    }

    impl Cluster {
        /// One step: deliver, tick, maybe propose, carry out every turn.
        async fn step(&mut self, propose: bool) {
            for m in std::mem::take(&mut self.wire) {
                if let Some(r) = self.nodes[(m.to - 1) as usize].replica.as_mut() {
                    let _ = r.step(m);
                }
            }
            for n in self.nodes.iter_mut() {
                if let Some(r) = n.replica.as_mut() {
                    r.tick();
                }
            }
            let leader = self.leader();
            if let (true, Some(i)) = (propose, leader) {
                let token = self.proposed.len() as u64 + 1;
                let b = build_test_batch(3, 100, TimestampMs::now());
                let r = self.nodes[i].replica.as_mut().unwrap();
                if let Ok(base) = r.propose(token, BytesMut::from(&b[..]), Wait::Committed, 50) {
                    self.proposed.insert(token, base);
                }
            }
            for i in 0..self.nodes.len() {
                self.drain(i).await;
            }
        }

        fn leader(&self) -> Option<usize> {
            let leads = |n: &Node| n.replica.as_ref().is_some_and(|r| r.is_leader());
            self.nodes.iter().position(leads)
        }

        async fn drain(&mut self, i: usize) {
            loop {
                let Some(r) = self.nodes[i].replica.as_mut() else {
                    return;
                };
                let Some(mut t) = r.turn() else { return };
                self.wire.append(&mut t.send);
                let mut copied = Vec::new();
                if let Some(c) = t.catch_up {
                    self.catch_ups += 1;
                    let from = &self.nodes[(c.leader.unwrap() - 1) as usize];
                    let log = from.store.as_ref().expect("the leader runs").log();
                    copied = copy(log, c.keep, c.until).await;
                }
                let n = &mut self.nodes[i];
                let store = n.store.as_mut().unwrap();
                if t.number != 0 {
                    store.write(&mut t, copied).await.unwrap();
                    n.replica.as_mut().unwrap().persisted(t.number);
                }
                store.checkpoint(t.checkpoint.take()).await.unwrap();
                self.wire.append(&mut t.send_after_write);
                for (token, answer) in t.decided {
                    if answer == Answer::Done {
                        self.acked.insert(token, self.proposed[&token]);
                    }
                }
            }
        }

        async fn logs(&self) -> Vec<Vec<Bytes>> {
            let mut out = Vec::new();
            for n in &self.nodes {
                let log = n.store.as_ref().unwrap().log();
                out.push(copy(log, Offset(0), log.next_offset()).await);
            }
            out
        }
    }

    /// Three replicas on real partition logs: batches are committed and stored byte for byte
    /// the same everywhere; a follower stopped while the leader moves on (and compacts) is
    /// caught up from the leader's checkpoint when it returns; a restarted leader rebuilds its
    /// Raft log from its segments and files and the group goes on.
    #[test]
    fn replicas_on_real_logs_commit_catch_up_and_restart() {
        block_on(async {
            let mut c = Cluster {
                nodes: Vec::new(),
                wire: Vec::new(),
                acked: BTreeMap::new(),
                proposed: BTreeMap::new(),
                catch_ups: 0,
            };
            for id in VOTERS {
                let mut n = Node {
                    dir: tempfile::tempdir().unwrap(),
                    store: None,
                    replica: None,
                };
                start(&mut n, id).await;
                c.nodes.push(n);
            }
            let mut steps = 0;
            while c.acked.len() < 20 {
                c.step(true).await;
                steps += 1;
                assert!(steps < 2000, "nothing committed");
            }
            let follower = (c.leader().unwrap() + 1) % 3;
            stop(&mut c.nodes[follower]).await;
            let acked = c.acked.len();
            while c.acked.len() < acked + 40 {
                c.step(true).await;
            }
            start(&mut c.nodes[follower], follower as u64 + 1).await;
            for _ in 0..60 {
                c.step(true).await;
            }
            let leader = c.leader().expect("a leader");
            stop(&mut c.nodes[leader]).await;
            start(&mut c.nodes[leader], leader as u64 + 1).await;
            for _ in 0..400 {
                c.step(false).await;
                let logs = c.logs().await;
                if logs[1] == logs[0] && logs[2] == logs[0] && c.leader().is_some() {
                    break;
                }
            }
            let logs = c.logs().await;
            assert!(
                logs[1] == logs[0] && logs[2] == logs[0],
                "the logs converge"
            );
            assert!(c.catch_ups > 0, "the returning follower was caught up");
            let bases: Vec<Offset> = logs[0].iter().map(|b| batch_base(b)).collect();
            for base in c.acked.values() {
                assert!(bases.contains(base), "acked batch at {base:?} kept");
            }
            for n in c.nodes.iter_mut() {
                let r = n.replica.as_ref().unwrap();
                let end = n.store.as_ref().unwrap().log().next_offset();
                assert!(r.high_watermark() <= end);
                stop(n).await;
            }
        });
    }

    fn batch_base(b: &[u8]) -> Offset {
        crate::storage::batch::parse_header(b).unwrap().base_offset
    }
}
