//! One Raft group, sans I/O: raft-rs's `RawNode` over a [`RaftLog`], driven by ticks, peer
//! messages and proposals, and handing its work out as plain values ([`Work`]): messages to
//! send now, writes to make durable (and messages to send only after them), a snapshot to
//! restore and committed entries to apply, and a change of leadership. The owner (the
//! metadata log on shard 0 today, partitions in the next step) does the I/O and says when a
//! write is durable ([`Group::persisted`]). Nothing here knows about sockets, files or time.
//!
//! raft-rs is used in its asynchronous-persistence mode: each Ready is taken apart at once
//! (`advance_append_async`), so the group keeps taking messages while a write is in flight,
//! and messages that promise durability are held back until the owner reports the write
//! (raft-rs PR #433's lesson).

use bytes::Bytes;
use protobuf::Message as _;
use raft::eraftpb::MessageType;
use raft::eraftpb::{
    ConfChangeSingle, ConfChangeType, ConfChangeV2, Entry, EntryType, HardState, Message, Snapshot,
};
use raft::{ProgressState, RawNode, SnapshotStatus, StateRole};

use super::log::RaftLog;
use super::RaftError;

/// Settings of one group. Times are in ticks of the owner's timer.
#[derive(Clone, Debug)]
pub struct GroupConfig {
    /// This node's id in the group (the broker's node id), not 0.
    pub id: u64,
    /// Ticks without a leader's heartbeat before a follower stands for election (raft-rs
    /// randomises it between this and twice this).
    pub election_ticks: usize,
    /// Ticks between a leader's heartbeats.
    pub heartbeat_ticks: usize,
    /// Bytes of entries one append message carries at most.
    pub append_bytes_max: u64,
    /// Append messages in flight to one follower at most.
    pub inflight_appends_max: usize,
    /// Bytes of proposed but uncommitted entries a leader holds at most.
    pub uncommitted_bytes_max: u64,
    /// Ticks after which a snapshot sent to a follower that has not acknowledged it counts as
    /// lost, so the leader sends another (a transport may drop any message).
    pub snapshot_retry_ticks: u64,
}

impl GroupConfig {
    /// Defaults for node `id`: election after 10 ticks, heartbeat every 2.
    pub fn new(id: u64) -> GroupConfig {
        GroupConfig {
            id,
            election_ticks: 10,
            heartbeat_ticks: 2,
            append_bytes_max: 1 << 20,
            inflight_appends_max: 64,
            uncommitted_bytes_max: 16 << 20,
            snapshot_retry_ticks: 40,
        }
    }
}

/// Who leads the group, as this node last saw it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Leadership {
    /// The leader's node id, if the node knows one.
    pub leader: Option<u64>,
    /// The current term.
    pub term: u64,
}

/// What the owner must do after a turn of the group, in this order: send `send`; restore
/// the state machine from `restore` if set; apply `committed` in order; make `write` durable,
/// then call [`Group::persisted`] with `number` and send `send_after_write`.
#[derive(Debug, Default)]
pub struct Work {
    /// Identifies this work's write for [`Group::persisted`].
    pub number: u64,
    /// Messages to send now (a leader's appends and heartbeats: they need no local write).
    pub send: Vec<Message>,
    /// The state machine's snapshot to load: (index it covers, bytes).
    pub restore: Option<(u64, Bytes)>,
    /// Committed entries to apply, in index order (empty entries are a new leader's no-op,
    /// or a configuration change the group has applied itself).
    pub committed: Vec<Entry>,
    /// What to make durable: the group's log already holds it in memory.
    pub write: Write,
    /// Messages to send once `write` is durable (votes, append acknowledgements).
    pub send_after_write: Vec<Message>,
    /// Set when the leader or the term changed.
    pub leadership: Option<Leadership>,
}

/// A follower as the leader sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FollowerProgress {
    /// Its node id.
    pub id: u64,
    /// The last index it is known to hold.
    pub matched: u64,
    /// Heard from within the last election timeout (raft-rs's check-quorum activity).
    pub recent_active: bool,
}

/// One turn's log changes to make durable.
#[derive(Debug, Default)]
pub struct Write {
    /// The new hard state, if it changed.
    pub hard_state: Option<HardState>,
    /// Entries to append (an entry at an index already held replaces it and all after it).
    pub entries: Vec<Entry>,
    /// A snapshot that replaces the whole log, if one was received.
    pub snapshot: Option<Snapshot>,
    /// Whether the write must reach the disk before `send_after_write` (a vote, a term, or
    /// entries); a commit-index-only change need not be synced.
    pub must_sync: bool,
}

/// A Raft group member.
pub struct Group {
    node: RawNode<RaftLog>,
    seen: Leadership,
    ticks: u64,
    snapshot_retry_ticks: u64,
    /// Snapshots sent and not yet known to have arrived: (follower, tick sent).
    snapshots_out: Vec<(u64, u64)>,
    /// The work number of a received snapshot not yet durable: nothing counts as applied
    /// until it is (raft-rs checks applied <= persisted), however many turns come first.
    restoring: Option<u64>,
}

impl Group {
    /// A member with `log` (empty for a new group, or as read back from disk).
    pub fn new(
        config: &GroupConfig,
        log: RaftLog,
        logger: &slog::Logger,
    ) -> Result<Group, RaftError> {
        let applied = log.snapshot_parts().0.index;
        let c = raft::Config {
            id: config.id,
            election_tick: config.election_ticks,
            heartbeat_tick: config.heartbeat_ticks,
            applied,
            max_size_per_msg: config.append_bytes_max,
            max_inflight_msgs: config.inflight_appends_max,
            max_uncommitted_size: config.uncommitted_bytes_max,
            check_quorum: true,
            pre_vote: true,
            ..raft::Config::default()
        };
        c.validate().map_err(RaftError::from)?;
        let node = RawNode::new(&c, log, logger).map_err(RaftError::from)?;
        Ok(Group {
            node,
            seen: Leadership::default(),
            ticks: 0,
            snapshot_retry_ticks: config.snapshot_retry_ticks,
            snapshots_out: Vec::new(),
            restoring: None,
        })
    }

    /// One tick of the owner's timer.
    pub fn tick(&mut self) {
        // raft-rs takes a received snapshot as its log at once but counts it applied only once
        // durable; a campaign in between would read the entries the snapshot replaced. A
        // member restoring a snapshot (a follower being caught up) does not stand for
        // election, but its clock runs: past the election timeout it forgets its leader, so
        // it votes for a candidate as check-quorum then allows (a leader that died while
        // sending the snapshot is replaced without it).
        if self.restoring.is_none() {
            self.node.tick();
        } else {
            let r = &mut self.node.raft;
            r.election_elapsed += 1;
            if r.election_elapsed >= r.randomized_election_timeout() {
                r.election_elapsed = 0;
                r.leader_id = raft::INVALID_ID;
            }
        }
        self.ticks += 1;
        if self.snapshots_out.is_empty() {
            return;
        }
        let (now, retry) = (self.ticks, self.snapshot_retry_ticks);
        let (late, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut self.snapshots_out)
            .into_iter()
            .partition(|(_, at)| now - at >= retry);
        self.snapshots_out = waiting;
        for (to, _) in late {
            let progress = self.node.raft.prs().get(to).map(|p| p.state);
            if progress == Some(ProgressState::Snapshot) {
                self.node.report_snapshot(to, SnapshotStatus::Failure);
            }
        }
    }

    /// On the leader: hands leadership to member `to` (raft-rs's leader transfer: once `to`
    /// holds the whole log it is told to campaign at once; proposals are refused meanwhile,
    /// and the transfer is dropped after an election timeout if `to` does not take over).
    pub fn transfer_leader(&mut self, to: u64) {
        if self.is_leader() && to != self.id() {
            self.node.transfer_leader(to);
        }
    }

    /// A message from a peer.
    pub fn step(&mut self, m: Message) -> Result<(), RaftError> {
        if self.restoring.is_some() && m.get_msg_type() == MessageType::MsgTimeoutNow {
            return Ok(()); // a leader transfer to a member restoring a snapshot: see `tick`
        }
        self.node.step(m).map_err(RaftError::from)
    }

    /// Proposes `data` as a new entry; only the leader takes proposals. Returns the entry's
    /// (index, term): the proposal is committed when an entry with both is applied, and lost
    /// if another term's entry is applied at that index.
    pub fn propose(&mut self, data: Vec<u8>) -> Result<(u64, u64), RaftError> {
        if self.node.raft.state != StateRole::Leader {
            return Err(RaftError::NotLeader(self.leadership().leader));
        }
        self.node.propose(vec![], data).map_err(RaftError::from)?;
        let index = self.node.raft.raft_log.last_index();
        Ok((index, self.node.raft.term))
    }

    /// As [`Group::propose`], with the entry's data as it is (no copy: a replicated
    /// partition's batches are proposed this way, shared with the owner's buffers).
    pub fn propose_bytes(&mut self, data: Bytes) -> Result<(u64, u64), RaftError> {
        if self.node.raft.state != StateRole::Leader {
            return Err(RaftError::NotLeader(self.leadership().leader));
        }
        let mut m = Message::default();
        m.set_msg_type(MessageType::MsgPropose);
        m.from = self.node.raft.id;
        m.set_entries(
            vec![Entry {
                data,
                ..Entry::default()
            }]
            .into(),
        );
        self.node.step(m).map_err(RaftError::from)?;
        let index = self.node.raft.raft_log.last_index();
        Ok((index, self.node.raft.term))
    }

    /// Proposes `data` from any member: a follower forwards it to the leader it knows
    /// (raft-rs's proposal forwarding), which may drop it; the caller learns the outcome
    /// only by watching what is applied, so it suits idempotent entries proposed again
    /// until they show (a broker's registration).
    pub fn forward(&mut self, data: Vec<u8>) -> Result<(), RaftError> {
        self.node.propose(vec![], data).map_err(RaftError::from)
    }

    /// Proposes adding node `id` as a learner (a member that receives the log but does not
    /// vote); leader only, and raft-rs takes one configuration change at a time (a second
    /// one while the first is not applied is dropped: propose it again later).
    pub fn add_learner(&mut self, id: u64) -> Result<(), RaftError> {
        if self.node.raft.state != StateRole::Leader {
            return Err(RaftError::NotLeader(self.leadership().leader));
        }
        let mut single = ConfChangeSingle::default();
        single.set_change_type(ConfChangeType::AddLearnerNode);
        single.node_id = id;
        let mut cc = ConfChangeV2::default();
        cc.set_changes(vec![single].into());
        self.node
            .propose_conf_change(vec![], cc)
            .map_err(RaftError::from)
    }

    /// The group's members: (voters, learners).
    pub fn members(&self) -> (Vec<u64>, Vec<u64>) {
        let c = self.node.store().conf_state();
        (c.voters.clone(), c.learners.clone())
    }

    /// Applies the committed configuration changes among `entries` to raft-rs and the log.
    fn apply_conf_changes(&mut self, entries: &[Entry]) -> Result<(), RaftError> {
        for e in entries {
            let cc = match e.get_entry_type() {
                EntryType::EntryConfChangeV2 => ConfChangeV2::parse_from_bytes(&e.data),
                EntryType::EntryNormal => continue,
                // Only `add_learner` proposes changes, and always in the V2 form.
                EntryType::EntryConfChange => {
                    return Err(RaftError::Raft("a V1 configuration change".into()))
                }
            };
            let cc = cc.map_err(|err| RaftError::Raft(err.to_string()))?;
            let conf = self.node.apply_conf_change(&cc).map_err(RaftError::from)?;
            self.node.mut_store().set_conf_state(conf);
        }
        Ok(())
    }

    /// The leader and term as this node sees them now.
    pub fn leadership(&self) -> Leadership {
        let leader = self.node.raft.leader_id;
        Leadership {
            leader: (leader != raft::INVALID_ID).then_some(leader),
            term: self.node.raft.term,
        }
    }

    /// Whether this node leads the group.
    pub fn is_leader(&self) -> bool {
        self.node.raft.state == StateRole::Leader
    }

    /// The index of the last entry, entries not yet handed out in a [`Work`] included (a new
    /// leader's no-op is appended when it wins, before the owner's next turn).
    pub fn last_index(&self) -> u64 {
        self.node.raft.raft_log.last_index()
    }

    /// The term of entry `index`; None if the log no longer or not yet holds it.
    pub fn term(&self, index: u64) -> Option<u64> {
        let log = &self.node.raft.raft_log;
        if index + 1 < log.first_index() || index > log.last_index() {
            return None;
        }
        log.term(index).ok()
    }

    /// The entries from `from` to the last, not yet handed out ones included; empty if
    /// `from` is compacted away.
    pub fn entries_from(&self, from: u64) -> Vec<Entry> {
        let context = raft::GetEntriesContext::empty(false);
        let entries = self.node.raft.raft_log.entries(from, None, context);
        entries.unwrap_or_default()
    }

    /// This member's node id.
    pub fn id(&self) -> u64 {
        self.node.raft.id
    }

    /// On the leader: every other member's replication progress (empty elsewhere).
    pub fn followers(&self) -> Vec<FollowerProgress> {
        if !self.is_leader() {
            return Vec::new();
        }
        let me = self.node.raft.id;
        let prs = self.node.raft.prs().iter().filter(|(id, _)| **id != me);
        prs.map(|(id, p)| FollowerProgress {
            id: *id,
            matched: p.matched,
            recent_active: p.recent_active,
        })
        .collect()
    }

    /// The last index raft-rs counts as applied.
    pub fn applied(&self) -> u64 {
        self.node.raft.raft_log.applied
    }

    /// Whether a turn has work to hand out (the owner drains it after every call).
    pub fn has_work(&self) -> bool {
        self.node.has_ready()
    }

    /// The log (what the owner reads back to persist a snapshot, or to check).
    pub fn log(&self) -> &RaftLog {
        self.node.store()
    }

    /// The work this turn produced, if any (see [`Work`] for what to do with it).
    pub fn work(&mut self) -> Option<Work> {
        if !self.node.has_ready() {
            return None;
        }
        let mut rd = self.node.ready();
        let mut work = Work {
            number: rd.number(),
            send: rd.take_messages(),
            send_after_write: rd.take_persisted_messages(),
            ..Work::default()
        };
        let snapshots = work.send.iter().chain(&work.send_after_write);
        let snapshots = snapshots.filter(|m| m.get_msg_type() == MessageType::MsgSnapshot);
        let sent: Vec<(u64, u64)> = snapshots.map(|m| (m.to, self.ticks)).collect();
        self.snapshots_out.extend(sent);
        let log = self.node.mut_store();
        if !rd.snapshot().is_empty() {
            let s = rd.snapshot().clone();
            log.install(&s);
            work.restore = Some((s.get_metadata().index, s.data.clone()));
            work.write.snapshot = Some(s);
        }
        work.write.entries = rd.take_entries();
        log.append(&work.write.entries);
        if let Some(hs) = rd.hs() {
            log.set_hard_state(hs.clone());
            work.write.hard_state = Some(hs.clone());
        }
        work.write.must_sync = rd.must_sync();
        work.committed = rd.take_committed_entries();
        self.node.advance_append_async(rd);
        // The owner applies `committed` before its next call. A snapshot counts as applied
        // only once it is durable (raft-rs checks applied <= persisted): see `persisted`.
        if work.restore.is_some() {
            self.restoring = Some(work.number);
        }
        if self.restoring.is_none() {
            self.node.advance_apply();
        }
        if let Err(e) = self.apply_conf_changes(&work.committed) {
            // Only this code proposes configuration changes, and only valid ones.
            panic!("a committed configuration change does not apply: {e}");
        }
        // Applied here: the owner sees them as empty entries (as a leader's no-op), so its
        // applied index passes them.
        for e in work.committed.iter_mut() {
            if e.get_entry_type() != EntryType::EntryNormal {
                e.set_entry_type(EntryType::EntryNormal);
                e.data = Bytes::new();
            }
        }
        let now = self.leadership();
        if now != self.seen {
            self.seen = now;
            work.leadership = Some(now);
        }
        Some(work)
    }

    /// The write of the work numbered `number` (and of every earlier one) is durable.
    pub fn persisted(&mut self, number: u64) {
        self.node.on_persist_ready(number);
        if self.restoring.is_some_and(|r| r <= number) {
            self.restoring = None;
        }
        if self.restoring.is_none() {
            self.node.advance_apply();
        }
    }

    /// Drops the log up to `index` (applied; the state machine's bytes there are `state`):
    /// a follower that needs older entries gets this snapshot instead.
    pub fn compact(&mut self, index: u64, state: Bytes) {
        self.node.mut_store().compact(index, state);
    }
}
