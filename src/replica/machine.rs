//! One partition replica's consensus, sans I/O: a `raft::Group` whose entries are the
//! partition's record batches, with what Raft indexes mean in offsets. The leader stamps each
//! proposed batch with the next offset and its term as the leader epoch; every replica turns
//! the group's work into partition-log operations ([`Turn`]: cut a conflicting suffix, append
//! batches at their offsets, catch up to a leader's checkpoint), and learns the high watermark
//! (the end offset of the applied, that is committed, index). Producers waiting for acks=1
//! (the leader's write) or acks=all (commit, and `min_insync` replicas holding the batch) are
//! answered by token. The owner — the partition's shard — does the I/O and the timing, as for
//! the metadata log (`cluster/node.rs`); docs/architecture.md §19 gives the mapping.
//!
//! Entries without a batch (a new leader's no-op; configuration entries, which nothing
//! proposes yet) are stored as one-record LEADER_CHANGE control batches, built the same on
//! every replica, so entry *i* is always the *i*-th batch after the checkpoint.

use std::collections::{BTreeMap, VecDeque};

use bytes::{Bytes, BytesMut};
use raft::eraftpb::{Entry, EntryType, HardState, Message, MessageType, Snapshot};

use super::Checkpoint;
use crate::raft::{Group, GroupConfig, Leadership, RaftError, RaftLog};
use crate::storage::batch::{assign_offset, leader_change_batch, parse_header};
use crate::types::Offset;

/// Settings of one replica.
#[derive(Clone, Debug)]
pub struct ReplicaConfig {
    /// The Raft group's settings (this broker's id among them).
    pub group: GroupConfig,
    /// Replicas, the leader included, that must hold a batch before acks=all answers
    /// (`min.insync.replicas`); commit needs a majority regardless.
    pub min_insync: usize,
    /// Ticks after which a follower that has not caught up is out of sync
    /// (replica.lag.time.max.ms).
    pub insync_lag_ticks: u64,
    /// Applied entries held in memory before they are folded into the checkpoint (twice
    /// this at most; followers that lag further are caught up from the checkpoint).
    pub held_entries_max: u64,
}

impl ReplicaConfig {
    /// Defaults for broker `id`.
    pub fn new(id: u64) -> ReplicaConfig {
        ReplicaConfig {
            group: GroupConfig::new(id),
            min_insync: 1,
            insync_lag_ticks: 30,
            held_entries_max: 1024,
        }
    }
}

/// What a producer waits for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wait {
    /// acks=0: nothing.
    Nothing,
    /// acks=1: the leader's own write.
    Written,
    /// acks=all: commit, on at least `min_insync` replicas.
    Committed,
}

/// How a waiting proposal ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Answer {
    /// Written (acks=1) or committed (acks=all) as asked.
    Done,
    /// This replica stopped leading before it was decided, or another leader's entry took
    /// its place: NOT_LEADER_OR_FOLLOWER (an idempotent producer's retry is deduplicated).
    NotLeader,
    /// Committed, but fewer than `min_insync` replicas hold it within the time allowed.
    NotEnoughReplicasAfterAppend,
    /// Not committed within the time allowed.
    TimedOut,
}

/// Why a replica's proposal or write failed.
#[derive(Debug, thiserror::Error)]
pub enum ReplicaError {
    /// This replica does not lead; the leader it knows, if any.
    #[error("not the leader (leader: {0:?})")]
    NotLeader(Option<u64>),
    /// acks=all with fewer in-sync replicas than `min_insync`.
    #[error("{in_sync} in-sync replicas, {required} required")]
    NotEnoughReplicas {
        /// In-sync replicas now.
        in_sync: usize,
        /// `min_insync`.
        required: usize,
    },
    /// The batch's header does not parse.
    #[error("not a record batch")]
    NotABatch,
    /// The group refused it (a leader transfer, or too much uncommitted).
    #[error(transparent)]
    Raft(#[from] RaftError),
    /// The partition log failed a replica's write or read.
    #[error(transparent)]
    Storage(#[from] crate::storage::StorageError),
    /// A replica's files do not fit its log (a damaged or missing file, a checkpoint past
    /// the log end): it cannot rebuild its Raft log and must be copied anew.
    #[error("replica files in {0} are damaged: {1}")]
    Damaged(String, &'static str),
    /// A catch-up could not copy from a replica (unreachable, refused, or short).
    #[error("catch-up copy: {0}")]
    Copy(String),
    /// A catch-up left the log short of where it must reach (the leader no longer holds the
    /// batches: starting the log over at the leader's log start is not built yet).
    #[error("catch-up left the log end at {end}, short of {keep}")]
    CatchUpGap {
        /// The log end reached.
        end: Offset,
        /// Where it had to reach.
        keep: Offset,
    },
}

/// A follower must be brought to a leader's checkpoint (its entries are gone from the
/// leader's memory): cut the log at `keep` (its own committed end), then copy the leader's
/// batches from `keep` to `until`. Only then is the turn's write done. (A leader that no
/// longer holds them — retention — is not handled yet: the write fails with `CatchUpGap`.)
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CatchUp {
    /// The leader that sent the checkpoint, to copy from.
    pub leader: Option<u64>,
    /// Where this replica's own batches stop being trusted.
    pub keep: Offset,
    /// Where the copied batches end: the leader's checkpoint offset.
    pub until: Offset,
}

/// What the owner must do after a turn, in this order: send `send`; carry out `catch_up`,
/// `truncate_to` and `append` on the partition log and make them and `hard_state` durable
/// (`must_sync` says raft-rs asks for it; `ReplicaStore` follows the topic's flush policy
/// for batches and always syncs a new term or vote), then call [`Replica::persisted`] with `number` and send
/// `send_after_write`; publish `high_watermark`; write `checkpoint` (no hurry: an older one
/// only costs a longer rebuild); answer `decided`; on `leadership`, set the log's leader
/// epoch when this replica now leads.
#[derive(Debug, Default)]
pub struct Turn {
    /// Identifies the write for [`Replica::persisted`] (0: nothing to write).
    pub number: u64,
    /// Messages to send now.
    pub send: Vec<Message>,
    /// A catch-up to a leader's checkpoint, before the rest of the write.
    pub catch_up: Option<CatchUp>,
    /// Cut the partition log here first (a conflicting suffix the leader replaced).
    pub truncate_to: Option<Offset>,
    /// Batches to append, each at its base offset, in order.
    pub append: Vec<Bytes>,
    /// The hard state to store, if it changed.
    pub hard_state: Option<HardState>,
    /// Whether the write must be synced before `send_after_write` goes out.
    pub must_sync: bool,
    /// Messages to send once the write is durable.
    pub send_after_write: Vec<Message>,
    /// The new high watermark, if it moved.
    pub high_watermark: Option<Offset>,
    /// A new checkpoint to store.
    pub checkpoint: Option<Checkpoint>,
    /// Proposals decided: (token, answer).
    pub decided: Vec<(u64, Answer)>,
    /// Set when the leader or the term changed.
    pub leadership: Option<Leadership>,
}

impl Turn {
    fn is_empty(&self) -> bool {
        self.number == 0
            && self.send.is_empty()
            && self.high_watermark.is_none()
            && self.checkpoint.is_none()
            && self.decided.is_empty()
            && self.leadership.is_none()
    }
}

/// A proposal waiting for its answer.
#[derive(Clone, Copy, Debug)]
struct Waiter {
    token: u64,
    term: u64,
    wait: Wait,
    deadline_tick: u64,
}

/// A partition replica's consensus state.
pub struct Replica {
    group: Group,
    min_insync: usize,
    insync_lag_ticks: u64,
    held_entries_max: u64,
    ticks: u64,
    /// Followers' last tick caught up: holding what the leader held one tick earlier
    /// (Kafka's lastCaughtUpTime), set for all when this replica wins an election.
    caught_up: BTreeMap<u64, u64>,
    /// The term whose election set `caught_up` (a leader that has not had its turn since it
    /// won counts every follower in sync, as it will at that turn).
    caught_up_term: u64,
    /// The last index at the previous tick.
    last_at_tick: u64,
    /// The last entry folded into the segments' checkpoint.
    checkpoint: Checkpoint,
    /// Term and end offset of every entry after the checkpoint the group holds:
    /// `known[i]` is entry `checkpoint.index + 1 + i`.
    known: VecDeque<(u64, Offset)>,
    /// The last index handed to the owner to store.
    stored: u64,
    /// Writes not yet durable: (turn number, last index they store).
    writes: VecDeque<(u64, u64)>,
    /// The last index durable in the partition log.
    written: u64,
    /// The sender of the last snapshot message (the leader a catch-up copies from).
    snapshot_from: Option<u64>,
    /// A catch-up in flight: (turn number, the checkpoint it reaches).
    restoring: Option<(u64, Checkpoint)>,
    /// A catch-up's checkpoint, durable and not yet handed out to be stored.
    restored: Option<Checkpoint>,
    applied: u64,
    high_watermark: Offset,
    reported: Offset,
    waiting: BTreeMap<u64, Waiter>,
    decided: Vec<(u64, Answer)>,
}

impl Replica {
    /// A replica over `raft_log` (from [`super::rebuild`], or [`super::Fold`]), whose
    /// segments were folded up to `checkpoint`.
    pub fn new(
        config: &ReplicaConfig,
        raft_log: RaftLog,
        checkpoint: Checkpoint,
    ) -> Result<Replica, RaftError> {
        assert_eq!(
            raft_log.snapshot_parts().0.index,
            checkpoint.index,
            "the raft log starts at the checkpoint"
        );
        let stored = raft_log.last();
        let mut r = Replica {
            group: Group::new(&config.group, raft_log, &crate::raft::logger())?,
            min_insync: config.min_insync.max(1),
            insync_lag_ticks: config.insync_lag_ticks.max(1),
            held_entries_max: config.held_entries_max.max(1),
            ticks: 0,
            caught_up: BTreeMap::new(),
            caught_up_term: 0,
            last_at_tick: 0,
            checkpoint,
            known: VecDeque::new(),
            stored,
            writes: VecDeque::new(),
            written: stored,
            snapshot_from: None,
            restoring: None,
            restored: None,
            applied: checkpoint.index,
            high_watermark: checkpoint.offset,
            reported: checkpoint.offset,
            waiting: BTreeMap::new(),
            decided: Vec::new(),
        };
        r.sync_known();
        Ok(r)
    }

    /// On the leader: hands leadership to replica `to` (a preferred leader back in sync).
    pub fn transfer_leader(&mut self, to: u64) {
        self.group.transfer_leader(to);
    }

    /// `min.insync.replicas` changed (AlterConfigs): it applies to the next proposals.
    pub fn set_min_insync(&mut self, n: usize) {
        self.min_insync = n.max(1);
    }

    /// Whether this replica leads and has applied an entry of its own term (its no-op):
    /// everything before is committed, so its log holds every batch a producer's retry may
    /// repeat once written.
    pub fn term_started(&self) -> bool {
        let term = self.leadership().term;
        self.is_leader() && self.group.term(self.applied) == Some(term)
    }

    /// Who leads, as this replica sees it.
    pub fn leadership(&self) -> Leadership {
        self.group.leadership()
    }

    /// Whether this replica leads.
    pub fn is_leader(&self) -> bool {
        self.group.is_leader()
    }

    /// The high watermark: where the committed batches end.
    pub fn high_watermark(&self) -> Offset {
        self.high_watermark
    }

    /// Where this replica's Raft log ends in offsets (written or not).
    pub fn log_end(&self) -> Offset {
        self.end_of(self.last_known())
            .expect("the last known entry has an end")
    }

    /// The index of the last entry in `known` (the checkpoint's when there is none).
    fn last_known(&self) -> u64 {
        self.checkpoint.index + self.known.len() as u64
    }

    /// The checkpoint the raft log starts after.
    pub fn checkpoint(&self) -> Checkpoint {
        self.checkpoint
    }

    /// Replicas that caught up with this leader's log lately, itself included (Kafka's ISR
    /// size); 0 on a follower.
    pub fn in_sync(&self) -> usize {
        if !self.is_leader() {
            return 0;
        }
        let recent = |id: &u64| {
            let at = self.caught_up.get(id).copied();
            at.is_some_and(|t| self.ticks - t <= self.insync_lag_ticks)
        };
        let followers = self.group.followers();
        if self.caught_up_term != self.leadership().term {
            return 1 + followers.len(); // just elected: all start in sync
        }
        1 + followers.iter().filter(|f| recent(&f.id)).count()
    }

    /// On the leader: the replicas in sync, itself first (`in_sync`'s count); empty
    /// elsewhere.
    pub fn in_sync_ids(&self) -> Vec<u64> {
        if !self.is_leader() {
            return Vec::new();
        }
        let all = self.caught_up_term != self.leadership().term;
        let recent = |id: &u64| {
            let at = self.caught_up.get(id).copied();
            all || at.is_some_and(|t| self.ticks - t <= self.insync_lag_ticks)
        };
        let mut ids = vec![self.group.id()];
        ids.extend(self.group.followers().iter().map(|f| f.id).filter(recent));
        ids
    }

    /// On the leader: each follower's id and how far behind the log end it is, in offsets.
    pub fn follower_lag(&self) -> Vec<(u64, i64)> {
        let end = self.log_end();
        let lag = |matched: u64| match self.end_of(matched) {
            Some(at) => end.0 - at.0,
            None => end.0 - self.checkpoint.offset.0, // behind the checkpoint
        };
        let followers = self.group.followers();
        followers.iter().map(|f| (f.id, lag(f.matched))).collect()
    }

    /// One tick of the owner's timer; waiters out of time are answered.
    pub fn tick(&mut self) {
        self.group.tick();
        self.ticks += 1;
        for f in self.group.followers() {
            // Caught up, and alive: a dead follower of an idle log would hold its end forever
            // (Kafka counts a follower caught up only when it fetches).
            if f.matched >= self.last_at_tick && f.recent_active {
                self.caught_up.insert(f.id, self.ticks);
            }
        }
        self.last_at_tick = self.group.last_index();
        let (now, applied, decided) = (self.ticks, self.applied, &mut self.decided);
        self.waiting.retain(|&index, w| {
            if w.deadline_tick > now {
                return true;
            }
            let answer = if w.wait == Wait::Committed && index <= applied {
                Answer::NotEnoughReplicasAfterAppend
            } else {
                Answer::TimedOut
            };
            decided.push((w.token, answer));
            false
        });
    }

    /// A message from another replica.
    pub fn step(&mut self, m: Message) -> Result<(), RaftError> {
        if m.get_msg_type() == MessageType::MsgSnapshot && m.term >= self.leadership().term {
            self.snapshot_from = Some(m.from); // raft-rs refuses a stale one
        }
        self.group.step(m)
    }

    /// On the leader: proposes `batch` (a validated v2 batch), stamped here with its base
    /// offset and the leader's term as its epoch. Returns the base offset; `token` comes
    /// back in [`Turn::decided`] unless `wait` is [`Wait::Nothing`].
    pub fn propose(
        &mut self,
        token: u64,
        mut batch: BytesMut,
        wait: Wait,
        timeout_ticks: u64,
    ) -> Result<Offset, ReplicaError> {
        if !self.is_leader() {
            return Err(ReplicaError::NotLeader(self.leadership().leader));
        }
        let in_sync = self.in_sync();
        if wait == Wait::Committed && in_sync < self.min_insync {
            let required = self.min_insync;
            return Err(ReplicaError::NotEnoughReplicas { in_sync, required });
        }
        self.sync_known();
        let base = self.log_end();
        let h = parse_header(&batch).map_err(|_| ReplicaError::NotABatch)?;
        let end = base.plus(i64::from(h.last_offset_delta) + 1);
        assign_offset(&mut batch, base, epoch_of(self.leadership().term));
        let (index, term) = self.group.propose_bytes(batch.freeze())?;
        assert_eq!(index, self.last_known() + 1);
        self.known.push_back((term, end));
        if wait != Wait::Nothing {
            let deadline_tick = self.ticks + timeout_ticks.max(1);
            let w = Waiter {
                token,
                term,
                wait,
                deadline_tick,
            };
            let earlier = self.waiting.insert(index, w);
            assert!(earlier.is_none(), "one waiter per index");
        }
        Ok(base)
    }

    /// The write of turn `number` (and every earlier one) is durable.
    pub fn persisted(&mut self, number: u64) {
        if number == 0 {
            return;
        }
        self.group.persisted(number);
        while let Some(&(n, last)) = self.writes.front() {
            if n > number {
                break;
            }
            self.writes.pop_front();
            self.written = self.written.max(last);
        }
        if let Some((n, cp)) = self.restoring {
            if n <= number {
                self.restoring = None;
                self.applied = self.applied.max(cp.index);
                self.high_watermark = self.high_watermark.max(cp.offset);
                // Stored now that the copied batches are, so a restart rebuilds from here.
                self.restored = Some(cp);
            }
        }
        self.settle();
    }

    /// The work this turn produced, if any (see [`Turn`]).
    pub fn turn(&mut self) -> Option<Turn> {
        let mut t = Turn::default();
        if let Some(work) = self.group.work() {
            t.number = work.number;
            t.send = work.send;
            t.send_after_write = work.send_after_write;
            t.hard_state = work.write.hard_state;
            t.must_sync = work.write.must_sync;
            if let Some(s) = &work.write.snapshot {
                self.restore(s, work.number, &mut t);
            }
            self.store(&work.write.entries, &mut t);
            if work.write.snapshot.is_some() || !work.write.entries.is_empty() {
                self.writes.push_back((work.number, self.stored));
            }
            self.apply(&work.committed);
            if let Some(l) = work.leadership {
                // Waiters whose entries are done are answered before the change of
                // leadership answers the rest NOT_LEADER_OR_FOLLOWER.
                self.settle();
                self.lead_or_follow(l);
                t.leadership = Some(l);
            }
        }
        self.settle();
        self.compact(&mut t);
        if let Some(cp) = self.restored.take() {
            t.checkpoint = t.checkpoint.or(Some(cp));
        }
        if self.high_watermark != self.reported {
            self.reported = self.high_watermark;
            t.high_watermark = Some(self.high_watermark);
        }
        t.decided = std::mem::take(&mut self.decided);
        (!t.is_empty()).then_some(t)
    }

    /// A snapshot from the leader replaced the log: catch up to its checkpoint.
    fn restore(&mut self, s: &Snapshot, number: u64, t: &mut Turn) {
        // Only a leader's `Checkpoint::snapshot` is sent; peers on the cluster network are
        // trusted (issue 24 authenticates them).
        let cp = Checkpoint::decode(&s.data).expect("a snapshot holds a leader's checkpoint");
        assert_eq!(cp.index, s.get_metadata().index, "the snapshot's own index");
        // Writes run in order: a catch-up still in flight reaches its own checkpoint first.
        let trusted = match self.restoring {
            Some((_, earlier)) => earlier.offset,
            None => self.high_watermark,
        };
        t.catch_up = Some(CatchUp {
            leader: self.snapshot_from,
            keep: trusted.min(cp.offset),
            until: cp.offset,
        });
        self.checkpoint = cp;
        self.known.clear();
        self.stored = cp.index;
        self.forget_after(cp.index);
        self.restoring = Some((number, cp));
    }

    /// Entries to make durable: cut what they replace, then the batches in order.
    fn store(&mut self, entries: &[Entry], t: &mut Turn) {
        let Some(first) = entries.first().map(|e| e.index) else {
            return;
        };
        self.sync_known();
        if first <= self.stored {
            let at = self.end_of(first - 1).expect("the kept prefix is known");
            t.truncate_to = Some(at);
            self.forget_after(first - 1);
        }
        for e in entries {
            let prev = self.end_of(e.index - 1).expect("entries are contiguous");
            if carries_batch(e) {
                t.append.push(e.data.clone());
            } else {
                let b = leader_change_batch(prev, epoch_of(e.term));
                t.append.push(Bytes::from(b));
            }
        }
        self.stored = entries.last().map_or(self.stored, |e| e.index);
    }

    /// Entries after `index` are cut (or replaced by a catch-up): neither what is written
    /// nor a write still in flight counts past it.
    fn forget_after(&mut self, index: u64) {
        self.written = self.written.min(index);
        for w in self.writes.iter_mut() {
            w.1 = w.1.min(index);
        }
    }

    /// Committed entries: the high watermark moves to the last one's end.
    fn apply(&mut self, committed: &[Entry]) {
        for e in committed {
            if e.index <= self.applied {
                continue; // covered by a restored checkpoint
            }
            assert_eq!(e.index, self.applied + 1, "entries are applied in order");
            self.applied = e.index;
            self.high_watermark = self.end_of(e.index).expect("an applied entry is known");
            if let Some(w) = self.waiting.get(&e.index) {
                if w.term != e.term {
                    let w = self.waiting.remove(&e.index).expect("just seen");
                    self.decided.push((w.token, Answer::NotLeader));
                }
            }
        }
    }

    /// Leadership changed: a replica that no longer leads answers every waiter.
    fn lead_or_follow(&mut self, l: Leadership) {
        // Waiters of another term (a replica that led, lost and won again between two
        // turns) are not this leadership's to answer Done.
        let leading = self.is_leader();
        let waiting = std::mem::take(&mut self.waiting);
        let (keep, lost): (BTreeMap<_, _>, BTreeMap<_, _>) = waiting
            .into_iter()
            .partition(|(_, w)| leading && w.term == l.term);
        self.waiting = keep;
        let answers = lost.values().map(|w| (w.token, Answer::NotLeader));
        self.decided.extend(answers);
        if leading {
            // As Kafka keeps the ISR across a leader change: every follower starts in sync.
            let now = self.ticks;
            let followers = self.group.followers();
            self.caught_up = followers.iter().map(|f| (f.id, now)).collect();
            self.caught_up_term = l.term;
        }
    }

    /// Answers the waiters whose condition now holds.
    fn settle(&mut self) {
        if self.waiting.is_empty() {
            return;
        }
        let matched: Vec<u64> = self.group.followers().iter().map(|f| f.matched).collect();
        let (written, applied, min_insync) = (self.written, self.applied, self.min_insync);
        // Replicas holding entry `index` durably, this one included.
        let holding = |index: u64| {
            usize::from(written >= index) + matched.iter().filter(|&&m| m >= index).count()
        };
        let decided = &mut self.decided;
        self.waiting.retain(|&index, w| {
            let done = match w.wait {
                Wait::Nothing => true,
                Wait::Written => index <= written,
                Wait::Committed => index <= applied && holding(index) >= min_insync,
            };
            if done {
                decided.push((w.token, Answer::Done));
            }
            !done
        });
    }

    /// Folds applied entries into a new checkpoint once more than twice the bound are held,
    /// keeping those that in-sync followers still need, up to the bound.
    fn compact(&mut self, t: &mut Turn) {
        if self.restoring.is_some() {
            return; // the checkpoint is ahead of what is applied until the catch-up is done
        }
        let held = self.applied - self.checkpoint.index;
        if held < 2 * self.held_entries_max {
            return;
        }
        let floor = self.applied - self.held_entries_max;
        // A follower keeps as many as a leader would, for when it leads.
        let needed = self.group.followers().iter().map(|f| f.matched).min();
        let to = needed.map_or(floor, |m| m.clamp(floor, self.applied));
        if to <= self.checkpoint.index {
            return;
        }
        let i = (to - self.checkpoint.index - 1) as usize;
        let (term, offset) = self.known[i];
        let cp = Checkpoint {
            index: to,
            term,
            offset,
        };
        assert!(
            to <= self.group.applied(),
            "only what raft-rs applied is compacted"
        );
        self.group.compact(to, Bytes::from(cp.encode()));
        self.known.drain(..=i);
        self.checkpoint = cp;
        t.checkpoint = Some(cp);
    }

    /// Brings `known` up to the group's log: drops entries whose term changed (a suffix
    /// replaced) and adds the ones not seen yet (a new leader's no-op before a turn).
    fn sync_known(&mut self) {
        let last = self.group.last_index();
        let cp = self.checkpoint.index;
        let mut k = self.last_known().min(last);
        while k > cp && self.group.term(k) != Some(self.known[(k - cp - 1) as usize].0) {
            k -= 1;
        }
        self.known.truncate((k - cp) as usize);
        if k == last {
            return;
        }
        let mut prev = self.end_of(k).expect("k is at or after the checkpoint");
        for e in self.group.entries_from(k + 1) {
            let end = if carries_batch(&e) {
                parse_header(&e.data).map_or(prev.plus(1), |h| h.next_offset())
            } else {
                prev.plus(1)
            };
            self.known.push_back((e.term, end));
            prev = end;
        }
    }

    /// Where entry `index`'s batch ends, if it is the checkpoint's or a known one.
    fn end_of(&self, index: u64) -> Option<Offset> {
        let cp = self.checkpoint;
        match index.checked_sub(cp.index)? {
            0 => Some(cp.offset),
            n => self.known.get(n as usize - 1).map(|k| k.1),
        }
    }
}

/// Whether an entry's data is a stored batch (not a no-op or a configuration change).
fn carries_batch(e: &Entry) -> bool {
    e.get_entry_type() == EntryType::EntryNormal && !e.data.is_empty()
}

/// A Raft term as Kafka's 32-bit leader epoch.
fn epoch_of(term: u64) -> i32 {
    i32::try_from(term).expect("terms stay below 2^31")
}
