//! Replicated partitions in memory: three replicas (`Replica` over a model partition log —
//! batches in offset order, a hard state and a checkpoint, as the segments and the two small
//! files hold them) on a network that drops, delays and cuts messages, with replicas crashing
//! (losing writes not yet durable) and restarting through the same fold `rebuild` uses.
//! Checked on every step: one leader per term, every replica's log contiguous and agreeing
//! with every other below its high watermark, high watermarks never going back while a
//! replica runs. Checked at the end, once healed: every batch answered Done for acks=all is
//! on every replica at its offset, and all logs are the same bytes. Tests only.

use std::collections::BTreeMap;

use bytes::{Bytes, BytesMut};
use raft::eraftpb::{HardState, Message};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::machine::{Answer, Replica, ReplicaConfig, ReplicaError, Turn, Wait};
use super::{Checkpoint, Fold};
use crate::raft::sim::{one_leader_per_term, Wire};
use crate::storage::batch::{build_test_batch, parse_header};
use crate::types::{Offset, TimestampMs};

/// What a replica's disk holds.
#[derive(Clone, Debug, Default)]
struct Disk {
    /// Batches from offset 0, contiguous.
    batches: Vec<Bytes>,
    hard: HardState,
    checkpoint: Checkpoint,
}

impl Disk {
    fn end(&self) -> Offset {
        self.batches.last().map_or(Offset(0), |b| next_of(b))
    }

    /// The index of the batch starting at `at` (`len` for the end).
    fn position(&self, at: Offset) -> usize {
        if at == self.end() {
            return self.batches.len();
        }
        let found = self.batches.iter().position(|b| base_of(b) == at);
        found.unwrap_or_else(|| panic!("{at:?} is not a batch boundary"))
    }
}

fn base_of(b: &[u8]) -> Offset {
    parse_header(b).expect("a stored batch").base_offset
}

fn next_of(b: &[u8]) -> Offset {
    parse_header(b).expect("a stored batch").next_offset()
}

/// A write handed out by a turn, carried out when the simulated disk gets to it.
struct Pending {
    number: u64,
    turn: Turn,
}

struct Node {
    id: u64,
    replica: Option<Replica>,
    disk: Disk,
    pending: Vec<Pending>,
    /// The high watermark last published (reset by a restart).
    high_watermark: Offset,
    /// Batches below the high watermark already compared with the history.
    checked: usize,
}

struct Sim {
    rng: StdRng,
    step: u64,
    nodes: Vec<Node>,
    wire: Wire,
    leaders: BTreeMap<u64, u64>,
    /// Proposals waiting: token → (proposer, base offset, the batch's id).
    proposed: BTreeMap<u64, (u64, Offset, i64)>,
    next_token: u64,
    /// The committed batches, as the first replica to commit each reported it.
    history: Vec<Bytes>,
    /// acks=all batches answered Done: base offset → batch id.
    acked: BTreeMap<Offset, i64>,
    catch_ups: u64,
    /// Catch-up writes that waited for their copy source to come back.
    blocked_copies: u64,
    /// Checkpoints received while an earlier catch-up was still queued.
    stacked_restores: u64,
    crashes: u64,
    /// Every answer given, by kind.
    answers: BTreeMap<String, u64>,
    min_insync: usize,
    /// The leader is sent batches (stopped to let the replicas settle).
    proposing: bool,
}

fn config(id: u64, min_insync: usize) -> ReplicaConfig {
    ReplicaConfig {
        held_entries_max: 6,
        min_insync,
        ..ReplicaConfig::new(id)
    }
}

const VOTERS: [u64; 3] = [1, 2, 3];

impl Sim {
    fn new(seed: u64) -> Sim {
        Sim::with_min_insync(seed, 2)
    }

    fn with_min_insync(seed: u64, min_insync: usize) -> Sim {
        let nodes = VOTERS
            .iter()
            .map(|&id| Node {
                id,
                replica: None,
                disk: Disk::default(),
                pending: Vec::new(),
                high_watermark: Offset(0),
                checked: 0,
            })
            .collect();
        let mut sim = Sim {
            rng: StdRng::seed_from_u64(seed),
            step: 0,
            nodes,
            wire: Wire::default(),
            leaders: BTreeMap::new(),
            proposed: BTreeMap::new(),
            next_token: 1,
            acked: BTreeMap::new(),
            history: Vec::new(),
            catch_ups: 0,
            blocked_copies: 0,
            stacked_restores: 0,
            crashes: 0,
            answers: BTreeMap::new(),
            min_insync,
            proposing: true,
        };
        for i in 0..VOTERS.len() {
            sim.start(i);
        }
        sim
    }

    /// Starts replica `i` from its disk, as `rebuild` does from the segments.
    fn start(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        let disk = &node.disk;
        let mut fold = Fold::new(disk.checkpoint, disk.hard.clone());
        for b in &disk.batches[disk.position(disk.checkpoint.offset)..] {
            fold.push(&parse_header(b).unwrap(), b.clone());
        }
        let rebuilt = fold.finish(&VOTERS);
        node.disk.checkpoint = rebuilt.checkpoint;
        let c = config(node.id, self.min_insync);
        let r = Replica::new(&c, rebuilt.raft_log, rebuilt.checkpoint).unwrap();
        node.high_watermark = r.high_watermark();
        node.replica = Some(r);
    }

    fn crash(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        node.replica = None;
        node.pending.clear();
        self.crashes += 1;
    }

    fn send(&mut self, msgs: Vec<Message>, drop: f64) {
        self.wire
            .send(&mut self.rng, msgs, self.step, (drop, 0.0, 3));
    }

    fn deliver(&mut self) {
        for m in self.wire.due(self.step) {
            if let Some(r) = self.nodes[(m.to - 1) as usize].replica.as_mut() {
                let _ = r.step(m); // a stale message may be refused
            }
        }
    }

    /// Runs node `i`'s turns; writes are queued for the disk (or done at once if `sync`).
    fn drain(&mut self, i: usize, drop: f64, sync: bool) {
        loop {
            let Some(r) = self.nodes[i].replica.as_mut() else {
                return;
            };
            let Some(mut t) = r.turn() else { return };
            self.send(std::mem::take(&mut t.send), drop);
            self.publish(i, &mut t);
            let queued = self.nodes[i]
                .pending
                .iter()
                .any(|p| p.turn.catch_up.is_some());
            if t.catch_up.is_some() && queued {
                self.stacked_restores += 1;
            }
            if t.number != 0 {
                self.nodes[i].pending.push(Pending {
                    number: t.number,
                    turn: t,
                });
            }
            if sync {
                self.write(i, drop);
            }
        }
    }

    /// The turn's answers, high watermark and checkpoint.
    fn publish(&mut self, i: usize, t: &mut Turn) {
        let node = &mut self.nodes[i];
        if let Some(hw) = t.high_watermark.take() {
            assert!(hw >= node.high_watermark, "node {} hw went back", node.id);
            node.high_watermark = hw;
        }
        if let Some(cp) = t.checkpoint.take() {
            assert!(
                cp.offset <= node.high_watermark,
                "checkpoints are committed"
            );
            node.disk.checkpoint = cp;
        }
        for (token, answer) in std::mem::take(&mut t.decided) {
            let (_, base, id) = self.proposed.remove(&token).expect("a proposed token");
            *self.answers.entry(format!("{answer:?}")).or_default() += 1;
            if answer == Answer::Done {
                self.acked.insert(base, id);
            }
        }
    }

    /// Carries out node `i`'s queued writes, in order, and reports them durable.
    fn write(&mut self, i: usize, drop: f64) {
        let mut pending = std::mem::take(&mut self.nodes[i].pending).into_iter();
        while let Some(p) = pending.next() {
            let mut t = p.turn;
            if let Some(c) = t.catch_up {
                // As the host: the leader that sent the checkpoint, else any running
                // replica holding the range (committed, so a majority does).
                let leader = c.leader.expect("a snapshot comes from a leader");
                // Only below its high watermark is a replica's log the committed history.
                let holds = |n: &Node| n.replica.is_some() && n.high_watermark >= c.until;
                let source = std::iter::once(leader)
                    .chain(VOTERS)
                    .find(|&s| s != i as u64 + 1 && holds(&self.nodes[(s - 1) as usize]));
                let Some(leader) = source else {
                    // No source runs: this write and those after it wait (and with them
                    // every message of this replica, votes included).
                    self.blocked_copies += 1;
                    let mut rest = vec![Pending { turn: t, ..p }];
                    rest.extend(pending);
                    self.nodes[i].pending = rest;
                    return;
                };
                self.catch_ups += 1;
                let from = self.nodes[(leader - 1) as usize].disk.clone();
                let disk = &mut self.nodes[i].disk;
                disk.batches.truncate(disk.position(c.keep));
                let copy = &from.batches[from.position(c.keep)..from.position(c.until)];
                disk.batches.extend_from_slice(copy);
            }
            let disk = &mut self.nodes[i].disk;
            if let Some(at) = t.truncate_to {
                disk.batches.truncate(disk.position(at));
            }
            for b in t.append.drain(..) {
                assert_eq!(base_of(&b), disk.end(), "node {} appends in place", i + 1);
                disk.batches.push(b);
            }
            if let Some(hs) = t.hard_state.take() {
                disk.hard = hs;
            }
            let r = self.nodes[i].replica.as_mut().expect("up while writing");
            r.persisted(p.number);
            self.send(t.send_after_write, drop);
        }
    }

    fn leader(&self) -> Option<usize> {
        let leads = |n: &Node| n.replica.as_ref().is_some_and(|r| r.is_leader());
        self.nodes.iter().position(leads)
    }

    /// The leader, if any, proposes a batch.
    fn propose(&mut self) {
        let Some(i) = self.leader() else {
            return;
        };
        let id = self.next_token as i64;
        let count = self.rng.gen_range(1..4);
        let batch = build_test_batch(count, 8, TimestampMs(id));
        let wait = if self.rng.gen_bool(0.7) {
            Wait::Committed
        } else {
            Wait::Written
        };
        let token = self.next_token;
        let r = self.nodes[i].replica.as_mut().expect("the leader");
        if let Ok(base) = r.propose(token, BytesMut::from(&batch[..]), wait, 40) {
            self.next_token += 1;
            if wait == Wait::Committed {
                self.proposed.insert(token, (i as u64 + 1, base, id));
            } else {
                self.proposed.insert(token, (i as u64 + 1, base, -id));
            }
        }
    }

    fn check(&mut self) {
        for n in &self.nodes {
            let Some(r) = &n.replica else { continue };
            if r.is_leader() {
                one_leader_per_term(&mut self.leaders, r.leadership().term, n.id);
            }
            let mut at = Offset(0);
            for b in &n.disk.batches {
                assert_eq!(base_of(b), at, "node {} log is contiguous", n.id);
                at = next_of(b);
            }
        }
        // What replicas hold below their high watermarks (committed) is one history.
        for n in self.nodes.iter_mut() {
            let hw = n.high_watermark;
            let k = n.disk.batches.partition_point(|x| next_of(x) <= hw);
            n.checked = n.checked.min(k);
            for (j, b) in n.disk.batches[n.checked..k].iter().enumerate() {
                let j = n.checked + j;
                match self.history.get(j) {
                    Some(h) => assert_eq!(h, b, "node {} disagrees at batch {j}", n.id),
                    None => self.history.push(b.clone()),
                }
            }
            n.checked = k;
        }
    }

    fn chaos(&mut self) {
        for i in 0..self.nodes.len() {
            let down = self.nodes[i].replica.is_none();
            if down && self.rng.gen_bool(0.05) {
                self.start(i);
            } else if !down && self.rng.gen_bool(0.004) {
                self.crash(i);
            }
        }
        if self.rng.gen_bool(0.01) {
            self.wire.cut.clear();
            let a = self.rng.gen_range(1..=3u64);
            for b in VOTERS.into_iter().filter(|&b| b != a) {
                self.wire.cut.insert((a, b));
                self.wire.cut.insert((b, a));
            }
        } else if self.rng.gen_bool(0.03) {
            self.wire.cut.clear();
        }
    }

    fn run(&mut self, steps: u64, faults: bool) {
        for _ in 0..steps {
            self.step += 1;
            if faults {
                self.chaos();
            }
            self.deliver();
            for i in 0..self.nodes.len() {
                if let Some(r) = self.nodes[i].replica.as_mut() {
                    r.tick();
                }
            }
            if self.proposing && self.rng.gen_bool(0.5) {
                self.propose();
            }
            let drop = if faults { 0.05 } else { 0.0 };
            for i in 0..self.nodes.len() {
                let sync = !faults || self.rng.gen_bool(0.6);
                self.drain(i, drop, sync);
                if !sync && self.rng.gen_bool(0.5) {
                    self.write(i, drop);
                }
            }
            self.check();
        }
    }

    /// Heals the network, restarts every replica and runs until they agree.
    fn settle(&mut self) {
        self.wire.cut.clear();
        self.proposing = false;
        for i in 0..self.nodes.len() {
            if self.nodes[i].replica.is_none() {
                self.start(i);
            }
        }
        for _ in 0..400 {
            self.run(1, false);
            let first = &self.nodes[0].disk.batches;
            let same = self.nodes.iter().all(|n| &n.disk.batches == first);
            let hw = self.nodes[0].disk.end();
            if same && self.nodes.iter().all(|n| n.high_watermark == hw) {
                return;
            }
        }
        let state: Vec<String> = self
            .nodes
            .iter()
            .map(|n| {
                let r = n.replica.as_ref().unwrap();
                format!(
                    "node {}: end {:?} hw {:?} log_end {:?} cp {:?} {:?} leader {}",
                    n.id,
                    n.disk.end(),
                    n.high_watermark,
                    r.log_end(),
                    r.checkpoint(),
                    r.leadership(),
                    r.is_leader()
                )
            })
            .collect();
        panic!("the replicas did not converge: {state:#?}");
    }
}

fn sim(seed: u64) -> Sim {
    let mut s = Sim::new(seed);
    s.run(3000, true);
    s.settle();
    let disk = &s.nodes[0].disk;
    for (base, id) in &s.acked {
        if *id < 0 {
            continue; // acks=1: a leader's write, which a new leader may cut
        }
        let at = disk.position(*base);
        let h = parse_header(&disk.batches[at]).unwrap();
        assert_eq!(
            h.base_timestamp,
            TimestampMs(*id),
            "acked batch at {base:?}"
        );
    }
    s
}

#[test]
fn replicas_agree_and_keep_every_acknowledged_batch_under_faults() {
    let (mut acked, mut catch_ups, mut crashes, mut terms) = (0, 0, 0, 0);
    let (mut blocked, mut stacked) = (0, 0);
    for seed in 0..12 {
        let s = sim(seed);
        acked += s.acked.values().filter(|id| **id > 0).count();
        catch_ups += s.catch_ups;
        crashes += s.crashes;
        terms += s.leaders.len();
        blocked += s.blocked_copies;
        stacked += s.stacked_restores;
    }
    // The faults happened and the work got done.
    assert!(acked > 1000, "acked {acked}");
    eprintln!(
        "acked {acked}, catch-ups {catch_ups} ({blocked} waited, {stacked} stacked), \
         crashes {crashes}, terms {terms}"
    );
    assert!(
        catch_ups > 0 && crashes > 0 && terms > 24,
        "{catch_ups} {crashes} {terms}"
    );
}

#[test]
fn a_calm_group_elects_writes_no_op_batches_and_commits() {
    let mut s = Sim::new(99);
    for _ in 0..40 {
        s.run(20, false);
        if s.leader().is_some() && !s.nodes[s.leader().unwrap()].disk.batches.is_empty() {
            break;
        }
    }
    let leader = &s.nodes[s.leader().expect("a leader")];
    let first = parse_header(&leader.disk.batches[0]).unwrap();
    assert!(
        first.is_control(),
        "a new leader's no-op is a control batch"
    );
    assert!(
        first.leader_epoch >= 1,
        "stamped with the first leader's term"
    );
    s.run(100, false);
    s.settle();
    assert!(s.acked.len() > 10);
}

/// min.insync.replicas = 3 of 3: with a follower down, acks=all batches already proposed are
/// committed by the other two but answered NOT_ENOUGH_REPLICAS_AFTER_APPEND, and once the
/// follower is out of sync new ones are refused NOT_ENOUGH_REPLICAS; acks=1 goes on.
#[test]
fn acks_all_counts_min_insync_replicas() {
    let mut s = Sim::with_min_insync(7, 3);
    // raft-rs draws election timeouts from its own random source: run until some are done.
    for _ in 0..40 {
        s.run(20, false);
        if s.answers.get("Done").copied().unwrap_or(0) > 5 {
            break;
        }
    }
    let leader = s.leader().expect("a leader");
    assert!(s.answers.get("Done").copied().unwrap_or(0) > 5);
    s.crash((leader + 1) % 3);
    s.answers.clear();
    s.run(100, false);
    let r = s.nodes[leader].replica.as_mut().unwrap();
    assert!(r.is_leader(), "two of three keep the leader");
    assert_eq!(r.in_sync(), 2);
    let b = BytesMut::from(&build_test_batch(1, 8, TimestampMs(1))[..]);
    match r.propose(999_999, b.clone(), Wait::Committed, 40) {
        Err(ReplicaError::NotEnoughReplicas {
            in_sync: 2,
            required: 3,
        }) => {}
        other => panic!("{other:?}"),
    }
    assert!(
        r.propose(999_999, b, Wait::Nothing, 40).is_ok(),
        "acks=0 is taken"
    );
    let after_append = s.answers.get("NotEnoughReplicasAfterAppend").copied();
    assert!(after_append.unwrap_or(0) > 0, "{:?}", s.answers);
    assert!(
        s.answers.get("Done").copied().unwrap_or(0) > 5,
        "acks=1: {:?}",
        s.answers
    );
    s.proposing = false;
    s.run(20, false);
    let hw = s.nodes[leader].high_watermark;
    assert!(hw > Offset(0) && hw == s.nodes[(leader + 2) % 3].high_watermark);
    assert_eq!(
        hw,
        s.nodes[leader].disk.end(),
        "a majority commits without min.insync"
    );
}

/// A follower sent a second checkpoint while its first catch-up is still being written
/// keeps what the first one copies (writes run in order), reaches the second, and hands out
/// the second checkpoint to store only once it is durable.
#[test]
fn a_second_checkpoint_during_a_catch_up_continues_from_the_first() {
    let snapshot = |index: u64, offset: i64| {
        let cp = Checkpoint {
            index,
            term: 1,
            offset: Offset(offset),
        };
        let mut m = Message::default();
        m.set_msg_type(raft::eraftpb::MessageType::MsgSnapshot);
        (m.from, m.to, m.term) = (1, 2, 1);
        m.set_snapshot(cp.snapshot(&VOTERS));
        (m, cp)
    };
    let rebuilt = Fold::new(Checkpoint::default(), HardState::default()).finish(&VOTERS);
    let mut r = Replica::new(&config(2, 1), rebuilt.raft_log, rebuilt.checkpoint).unwrap();
    let (m, first) = snapshot(10, 40);
    r.step(m).unwrap();
    let t1 = r.turn().expect("a restore turn");
    let c = t1.catch_up.expect("a catch-up");
    assert_eq!(
        (c.leader, c.keep, c.until),
        (Some(1), Offset(0), Offset(40))
    );
    let (m, second) = snapshot(20, 90);
    r.step(m).unwrap();
    let t2 = r.turn().expect("a second restore turn");
    let c = t2.catch_up.expect("a second catch-up");
    assert_eq!(
        (c.keep, c.until),
        (first.offset, Offset(90)),
        "from the first's end"
    );
    assert_eq!(t2.checkpoint, None, "nothing durable yet");
    r.persisted(t1.number);
    r.persisted(t2.number);
    assert_eq!(r.high_watermark(), Offset(90));
    let t3 = r.turn().expect("the caught-up checkpoint");
    assert_eq!(t3.checkpoint, Some(second));
}
