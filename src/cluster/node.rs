//! A voter of the metadata log: its Raft group and the image the committed records build,
//! sans I/O like the group itself. The owner (shard 0's cluster edge) feeds it ticks and
//! peer messages, proposes records on behalf of admin requests with a token of its own, and
//! carries out each [`Turn`]: send, make the write durable (then `persisted`), rewrite the
//! log file after a compaction, install the new registry, and answer the requests whose
//! proposals were decided. A proposal is decided when its log index is applied: committed
//! if the entry there has the proposal's term, lost (a leader change dropped it) if not.
//! A follower's proposal is forwarded to the leader (raft-rs's proposal forwarding) with its
//! origin in the entry: decided committed when an entry of that origin is applied, lost when
//! none is within `forward_timeout_ticks` (the change may still commit later; the client got
//! a retriable error and, retrying, learns what happened, as with Kafka's REQUEST_TIMED_OUT).

use std::collections::BTreeMap;

use raft::eraftpb::{Entry, Message};

use super::image::{ApplyError, ClusterImage, LogEntry, MetaRecord};
use crate::raft::{Group, GroupConfig, Leadership, RaftError, RaftLog, Write};

/// How a proposal ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decided {
    /// Committed and applied (the record may still have changed nothing: the error says why).
    Committed(Result<(), ApplyError>),
    /// Another leader's entry took its place: the request may be retried.
    Lost,
}

/// What the owner must do after a turn (in this order): send `send`; make `write` durable
/// and call [`MetaNode::persisted`] with `number`; send `send_after_write`; if `compacted`,
/// rewrite the log file from [`MetaNode::log`]; if `image_changed`, install the registry;
/// answer `decided`.
#[derive(Debug, Default)]
pub struct Turn {
    /// Identifies the write for [`MetaNode::persisted`] (0: a turn of decisions only).
    pub number: u64,
    /// Messages to send now.
    pub send: Vec<Message>,
    /// What to make durable.
    pub write: Write,
    /// Messages to send once `write` is durable.
    pub send_after_write: Vec<Message>,
    /// Proposals decided this turn: (token, outcome).
    pub decided: Vec<(u64, Decided)>,
    /// Records were applied (or a snapshot restored): the image changed.
    pub image_changed: bool,
    /// The log was compacted into a snapshot of the image.
    pub compacted: bool,
    /// Set when the leader or term changed.
    pub leadership: Option<Leadership>,
}

/// A metadata-log voter.
pub struct MetaNode {
    me: u64,
    group: Group,
    image: ClusterImage,
    /// The leader's own proposals not yet decided, by log index: (term, token).
    waiting: BTreeMap<u64, (u64, u64)>,
    /// Every undecided proposal (the leader's own and forwarded ones): token → ticks left
    /// before it is decided lost.
    deadlines: BTreeMap<u64, u64>,
    /// Decisions made outside a Ready (proposals out of time), for the next turn.
    expired: Vec<(u64, Decided)>,
    /// Applied entries kept in the log before it is compacted into a snapshot.
    compact_after_entries: u64,
}

impl MetaNode {
    /// A voter over `log` (new, or read back from its file); the image starts from the
    /// log's snapshot and the committed entries after it are applied again as raft-rs hands
    /// them out.
    pub fn new(
        config: &GroupConfig,
        log: RaftLog,
        compact_after_entries: u64,
    ) -> Result<MetaNode, RaftError> {
        let (meta, data) = log.snapshot_parts();
        let image = if data.is_empty() {
            ClusterImage {
                applied: meta.index,
                ..ClusterImage::default()
            }
        } else {
            ClusterImage::decode(data).expect("the metadata snapshot was written by us")
        };
        Ok(MetaNode {
            me: config.id,
            group: Group::new(config, log, &crate::raft::logger())?,
            image,
            waiting: BTreeMap::new(),
            deadlines: BTreeMap::new(),
            expired: Vec::new(),
            compact_after_entries: compact_after_entries.max(1),
        })
    }

    /// The image as of the last applied record.
    pub fn image(&self) -> &ClusterImage {
        &self.image
    }

    /// The group's log (to rewrite the file after a compaction).
    pub fn log(&self) -> &RaftLog {
        self.group.log()
    }

    /// Who leads, as this node sees it.
    pub fn leadership(&self) -> Leadership {
        self.group.leadership()
    }

    /// Whether this node leads (only the leader takes proposals).
    pub fn is_leader(&self) -> bool {
        self.group.is_leader()
    }

    /// On the leader: proposes adding broker `id` to the metadata log as a learner (it then
    /// receives the log without voting). One change at a time: an error means try later.
    pub fn add_learner(&mut self, id: u64) -> Result<(), RaftError> {
        self.group.add_learner(id)
    }

    /// Every member of the metadata log: voters and learners.
    pub fn members(&self) -> Vec<u64> {
        let (mut all, learners) = self.group.members();
        all.extend(learners);
        all
    }

    /// One tick of the shard's timer; proposals out of time are decided lost (a leader cut
    /// off from the others, or a forwarded proposal dropped on the way).
    pub fn tick(&mut self) {
        self.group.tick();
        self.deadlines.retain(|token, left| {
            *left = left.saturating_sub(1);
            if *left == 0 {
                self.expired.push((*token, Decided::Lost));
            }
            *left > 0
        });
    }

    /// A message from another voter.
    pub fn step(&mut self, m: Message) -> Result<(), RaftError> {
        self.group.step(m)
    }

    /// Proposes `record`; `token` (unique among this node's undecided proposals) comes
    /// back in [`Turn::decided`]. On the leader the proposal is appended here; elsewhere it
    /// is forwarded to the leader. Either way it is decided lost if not applied within
    /// `timeout_ticks`.
    /// An error: no leader is known, or the leader refused it (too much uncommitted).
    pub fn propose(
        &mut self,
        token: u64,
        record: &MetaRecord,
        timeout_ticks: u64,
    ) -> Result<(), RaftError> {
        let entry = LogEntry {
            origin: Some((self.me, token)),
            record: record.clone(),
        };
        if self.group.is_leader() {
            let (index, term) = self.group.propose(entry.encode())?;
            self.waiting.insert(index, (term, token));
        } else {
            self.group.forward(entry.encode())?;
        }
        self.deadlines.insert(token, timeout_ticks.max(1));
        Ok(())
    }

    /// Proposes an idempotent `record` from any voter, untracked (see [`Group::forward`]).
    pub fn forward(&mut self, record: &MetaRecord) -> Result<(), RaftError> {
        let entry = LogEntry {
            origin: None,
            record: record.clone(),
        };
        self.group.forward(entry.encode())
    }

    /// The write of turn `number` (and earlier) is durable.
    pub fn persisted(&mut self, number: u64) {
        if number == 0 {
            return; // a turn of decisions only: nothing was written
        }
        self.group.persisted(number);
    }

    /// The work this turn produced, if any.
    pub fn turn(&mut self) -> Option<Turn> {
        let Some(work) = self.group.work() else {
            if self.expired.is_empty() {
                return None;
            }
            let decided = std::mem::take(&mut self.expired);
            return Some(Turn {
                number: 0,
                decided,
                ..Turn::default()
            });
        };
        let mut turn = Turn {
            number: work.number,
            send: work.send,
            write: work.write,
            send_after_write: work.send_after_write,
            leadership: work.leadership,
            decided: std::mem::take(&mut self.expired),
            ..Turn::default()
        };
        if let Some((index, data)) = work.restore {
            self.image = ClusterImage::decode(&data).expect("a leader's snapshot is an image");
            assert_eq!(
                self.image.applied, index,
                "a snapshot's image is at its index"
            );
            turn.image_changed = true;
            self.decide_up_to(index, None, &mut turn);
        }
        for e in &work.committed {
            let result = self.apply_entry(e, &mut turn);
            self.decide_up_to(e.index, Some((e.term, result)), &mut turn);
        }
        self.maybe_compact(&mut turn);
        Some(turn)
    }

    /// Applies one committed entry to the image. An empty entry (a new leader's no-op, or a
    /// membership change the group applied) only moves the applied index; so does an entry
    /// that is not a record (a proposal any peer may send: every node skips it alike).
    fn apply_entry(&mut self, e: &Entry, turn: &mut Turn) -> Result<(), ApplyError> {
        let decoded = (!e.data.is_empty()).then(|| LogEntry::decode(&e.data));
        let entry = match decoded {
            Some(Ok(entry)) => entry,
            skipped => {
                if skipped.is_some() {
                    tracing::warn!(index = e.index, "a metadata log entry is not a record");
                }
                self.image.applied = e.index;
                return Ok(());
            }
        };
        let r = self.image.apply(e.index, &entry.record);
        if let Err(why) = &r {
            tracing::debug!(index = e.index, %why, "metadata record changed nothing");
        }
        turn.image_changed = true;
        self.decide_origin(entry.origin, &r, turn);
        r
    }

    /// Decides the leader's own proposals at or below `index` still undecided: the one at
    /// `index` by `applied` (the entry's term and result), every other as lost (another
    /// leader's entry took its index).
    fn decide_up_to(
        &mut self,
        index: u64,
        applied: Option<(u64, Result<(), ApplyError>)>,
        turn: &mut Turn,
    ) {
        let later = self.waiting.split_off(&(index + 1));
        let done = std::mem::replace(&mut self.waiting, later);
        for (at, (term, token)) in done {
            if self.deadlines.remove(&token).is_none() {
                continue; // decided already (by its origin, or out of time)
            }
            let outcome = match &applied {
                Some((t, r)) if at == index && *t == term => Decided::Committed(r.clone()),
                _ => Decided::Lost,
            };
            turn.decided.push((token, outcome));
        }
    }

    /// An applied entry this node proposed and still waits for: committed.
    fn decide_origin(
        &mut self,
        origin: Option<(u64, u64)>,
        r: &Result<(), ApplyError>,
        turn: &mut Turn,
    ) {
        if let Some((node, token)) = origin {
            if node == self.me && self.deadlines.remove(&token).is_some() {
                turn.decided.push((token, Decided::Committed(r.clone())));
            }
        }
    }

    /// Compacts the log into a snapshot of the image every `compact_after_entries` applied
    /// entries, and at once after a membership change: raft-rs refuses a snapshot whose
    /// members do not include the receiver, so a learner just added must get a new one.
    fn maybe_compact(&mut self, turn: &mut Turn) {
        let applied = self.image.applied;
        let log = self.group.log();
        let since = applied - log.snapshot_parts().0.index;
        let members_changed = log.snapshot_parts().0.get_conf_state() != log.conf_state();
        let due = since >= self.compact_after_entries || (members_changed && since > 0);
        if due && applied <= log.hard_state().commit {
            self.group.compact(applied, self.image.encode().into());
            turn.compacted = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::image::Broker;
    use crate::metadata::{TopicConfigs, TopicMeta};

    fn voters() -> Vec<MetaNode> {
        (1..=3)
            .map(|id| MetaNode::new(&GroupConfig::new(id), RaftLog::new(&[1, 2, 3]), 4).unwrap())
            .collect()
    }

    /// Runs every node's turns and delivers every message until quiet; returns what was
    /// decided, by token.
    fn settle(nodes: &mut [MetaNode], down: &[usize]) -> BTreeMap<u64, Decided> {
        let mut decided = BTreeMap::new();
        for _ in 0..200 {
            let mut wire = Vec::new();
            for (i, n) in nodes.iter_mut().enumerate() {
                if down.contains(&i) {
                    continue;
                }
                n.tick();
                while let Some(t) = n.turn() {
                    n.persisted(t.number);
                    wire.extend(t.send);
                    wire.extend(t.send_after_write);
                    decided.extend(t.decided);
                }
            }
            for m in wire {
                let to = (m.to - 1) as usize;
                if !down.contains(&to) {
                    let _ = nodes[to].step(m);
                }
            }
        }
        decided
    }

    fn register(id: i32) -> MetaRecord {
        MetaRecord::RegisterBroker(Broker {
            node_id: id,
            host: "127.0.0.1".into(),
            port: 9092,
            cluster_addr: "127.0.0.1:9192".into(),
            shards: 1,
            alive: true,
        })
    }

    fn create(name: &str, id: u128) -> MetaRecord {
        MetaRecord::CreateTopic {
            topic: TopicMeta {
                name: name.into(),
                id: uuid::Uuid::from_u128(id),
                partitions: 1,
                configs: TopicConfigs::default(),
            },
            brokers: vec![1],
            followers: Vec::new(),
        }
    }

    #[test]
    fn proposals_commit_on_every_voter_and_a_restarted_voter_rebuilds_the_image() {
        let mut nodes = voters();
        settle(&mut nodes, &[]);
        let leader = nodes.iter().position(|n| n.is_leader()).expect("a leader");
        nodes[leader].propose(1, &register(1), 100).unwrap();
        for t in 0..8u64 {
            nodes[leader]
                .propose(10 + t, &create(&format!("t{t}"), t as u128), 100)
                .unwrap();
        }
        nodes[leader].propose(99, &create("t0", 500), 100).unwrap();
        let decided = settle(&mut nodes, &[]);
        assert_eq!(decided[&1], Decided::Committed(Ok(())));
        assert_eq!(decided[&17], Decided::Committed(Ok(())));
        let exists = ApplyError::Topic("t0".into(), "exists");
        assert_eq!(decided[&99], Decided::Committed(Err(exists)));
        let image = nodes[leader].image().clone();
        assert_eq!(image.topics.len(), 8);
        assert!(
            nodes.iter().all(|n| n.image() == &image),
            "one image everywhere"
        );
        assert!(
            nodes[leader].log().snapshot_parts().0.index > 0,
            "compacted"
        );

        // A voter restarted from its log comes back to the same image.
        let follower = (leader + 1) % 3;
        let log = nodes[follower].log().clone();
        nodes[follower] = MetaNode::new(&GroupConfig::new(follower as u64 + 1), log, 4).unwrap();
        settle(&mut nodes, &[]);
        assert_eq!(nodes[follower].image(), &image);
    }

    #[test]
    fn a_proposal_cut_off_with_its_leader_is_decided_lost() {
        let mut nodes = voters();
        settle(&mut nodes, &[]);
        let old = nodes.iter().position(|n| n.is_leader()).unwrap();
        // The leader is cut off; its proposal cannot commit; the others elect a new leader.
        nodes[old].propose(7, &create("lost", 1), 100).unwrap();
        let others: Vec<usize> = (0..3).filter(|&i| i != old).collect();
        let mut isolated = nodes.remove(old);
        // Run the other two as a cluster of their own (messages to the old leader dropped).
        let mut pair: Vec<MetaNode> = nodes;
        let mut decided = BTreeMap::new();
        for _ in 0..200 {
            let mut wire = Vec::new();
            for n in pair.iter_mut() {
                n.tick();
                while let Some(t) = n.turn() {
                    n.persisted(t.number);
                    wire.extend(t.send);
                    wire.extend(t.send_after_write);
                }
            }
            for m in wire {
                if let Some(k) = others.iter().position(|&o| o as u64 + 1 == m.to) {
                    let _ = pair[k].step(m);
                }
            }
        }
        let new = pair
            .iter()
            .position(|n| n.is_leader())
            .expect("a new leader");
        pair[new].propose(6, &register(1), 100).unwrap();
        pair[new].propose(8, &create("kept", 2), 100).unwrap();
        pair.insert(old, {
            // Drain whatever the isolated node did meanwhile, then rejoin.
            while let Some(t) = isolated.turn() {
                isolated.persisted(t.number);
            }
            isolated
        });
        decided.extend(settle(&mut pair, &[]));
        assert_eq!(decided[&7], Decided::Lost);
        assert_eq!(decided[&8], Decided::Committed(Ok(())));
        assert!(pair.iter().all(|n| n.image().topics.contains_key("kept")));
        assert!(pair.iter().all(|n| !n.image().topics.contains_key("lost")));
    }

    #[test]
    fn a_followers_proposal_is_forwarded_and_decided_or_times_out() {
        let mut nodes = voters();
        settle(&mut nodes, &[]);
        let leader = nodes.iter().position(|n| n.is_leader()).unwrap();
        let follower = (leader + 1) % 3;
        nodes[follower].propose(5, &register(2), 100).unwrap();
        let decided = settle(&mut nodes, &[]);
        assert_eq!(decided[&5], Decided::Committed(Ok(())));
        assert!(nodes.iter().all(|n| n.image().brokers.contains_key(&2)));
        // With the leader down, the forwarded proposal goes nowhere and times out.
        nodes[follower].propose(6, &register(3), 3).unwrap();
        let decided = settle(&mut nodes, &[leader]);
        assert_eq!(decided[&6], Decided::Lost);
    }

    #[test]
    fn a_learner_added_by_the_leader_receives_the_image_but_never_votes() {
        let mut nodes = voters();
        nodes.push(MetaNode::new(&GroupConfig::new(4), RaftLog::new(&[1, 2, 3]), 4).unwrap());
        settle(&mut nodes, &[]);
        let leader = nodes.iter().position(|n| n.is_leader()).unwrap();
        assert_ne!(leader, 3, "the learner-to-be does not campaign");
        for t in 0..6u64 {
            let name = format!("t{t}");
            nodes[leader]
                .propose(t, &create(&name, t as u128), 100)
                .unwrap();
        }
        settle(&mut nodes, &[]);
        assert!(nodes[3].image().topics.is_empty(), "not a member yet");
        nodes[leader].add_learner(4).unwrap();
        settle(&mut nodes, &[]);
        assert_eq!(nodes[leader].members(), [1, 2, 3, 4]);
        assert_eq!(
            nodes[3].image(),
            nodes[leader].image(),
            "caught up (by snapshot)"
        );
        // With the leader gone, the two other voters elect one; the learner never leads.
        settle(&mut nodes, &[leader]);
        let leads: Vec<usize> = (0..4)
            .filter(|&i| i != leader && nodes[i].is_leader())
            .collect();
        assert_eq!(leads.len(), 1, "one new leader");
        assert_ne!(leads[0], 3, "the learner never leads");
    }

    #[test]
    fn a_cut_off_leaders_own_proposal_is_decided_lost_in_time() {
        let mut nodes = voters();
        settle(&mut nodes, &[]);
        let leader = nodes.iter().position(|n| n.is_leader()).unwrap();
        nodes[leader].propose(9, &register(1), 3).unwrap();
        // Nothing it sends arrives: after three ticks the proposal is lost.
        let mut decided = Vec::new();
        for _ in 0..4 {
            nodes[leader].tick();
            while let Some(t) = nodes[leader].turn() {
                nodes[leader].persisted(t.number);
                decided.extend(t.decided);
            }
        }
        assert_eq!(decided, [(9, Decided::Lost)]);
        // Healed, the entry may still commit; it is not decided twice.
        let later = settle(&mut nodes, &[]);
        assert!(!later.contains_key(&9), "{later:?}");
    }
}
