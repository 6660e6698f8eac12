//! An in-memory cluster of raft-rs groups over a simulated network that drops, duplicates,
//! delays (so reorders) and cuts messages, with nodes crashing and restarting from what they
//! made durable. It checks what the cluster relies on: at most one leader per term, one
//! history of applied entries (an index applied anywhere holds the same entry everywhere),
//! and, once the faults stop, a leader and every node caught up. Tests only.

use std::collections::{BTreeMap, HashSet};

use bytes::Bytes;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::{Group, GroupConfig, Message, RaftLog};

/// How hostile the network and the nodes are (probabilities per event, per step).
#[derive(Clone, Copy)]
struct Faults {
    drop: f64,
    duplicate: f64,
    delay_steps_max: u64,
    crash: f64,
    cut: f64,
    compact: f64,
}

const CALM: Faults = Faults {
    drop: 0.0,
    duplicate: 0.0,
    delay_steps_max: 1,
    crash: 0.0,
    cut: 0.0,
    compact: 0.0,
};

/// Messages in flight on a simulated network, by the step they arrive at: dropped, duplicated
/// and delayed when sent, lost on a cut link when due. Shared with the replica simulation.
#[derive(Default)]
pub(crate) struct Wire {
    queued: Vec<(u64, Message)>,
    /// Links that lose everything: (from, to).
    pub cut: HashSet<(u64, u64)>,
}

impl Wire {
    /// Sends `msgs` at step `now`: each dropped with probability `drop`, else sent twice with
    /// probability `duplicate`, each copy arriving 1 to `delay_steps_max` steps later.
    pub fn send(
        &mut self,
        rng: &mut StdRng,
        msgs: Vec<Message>,
        now: u64,
        (drop, duplicate, delay_steps_max): (f64, f64, u64),
    ) {
        for m in msgs {
            if rng.gen_bool(drop) {
                continue;
            }
            let copies = if rng.gen_bool(duplicate) { 2 } else { 1 };
            for _ in 0..copies {
                let at = now + 1 + rng.gen_range(0..delay_steps_max.max(1));
                self.queued.push((at, m.clone()));
            }
        }
    }

    /// The messages due by step `now` over links that are not cut.
    pub fn due(&mut self, now: u64) -> Vec<Message> {
        let (due, later): (Vec<_>, Vec<_>) = self.queued.drain(..).partition(|(at, _)| *at <= now);
        self.queued = later;
        let open = |m: &Message| !self.cut.contains(&(m.from, m.to));
        due.into_iter().map(|(_, m)| m).filter(open).collect()
    }
}

/// Records that `id` leads in `term` (term → leader seen); fails if another did.
pub(crate) fn one_leader_per_term(leaders: &mut BTreeMap<u64, u64>, term: u64, id: u64) {
    let seen = *leaders.entry(term).or_insert(id);
    assert_eq!(seen, id, "two leaders in term {term}");
}

struct Node {
    id: u64,
    group: Option<Group>,
    /// What the node made durable: its log as of its last persisted write.
    disk: RaftLog,
    /// The state machine: applied entries by index (term, data).
    applied: BTreeMap<u64, (u64, Bytes)>,
    applied_to: u64,
}

struct Sim {
    rng: StdRng,
    step: u64,
    nodes: Vec<Node>,
    /// (deliver at step, message).
    wire: Wire,
    /// term → leader seen.
    leaders: BTreeMap<u64, u64>,
    /// index → (term, data) applied by anyone.
    history: BTreeMap<u64, (u64, Bytes)>,
    proposed: u64,
    /// Faults that happened: snapshots installed, crashes.
    restores: u64,
    crashes: u64,
}

fn config(id: u64) -> GroupConfig {
    GroupConfig::new(id)
}

fn silent() -> slog::Logger {
    slog::Logger::root(slog::Discard, slog::o!())
}

/// The state machine's snapshot: "index term data" lines.
fn encode(applied: &BTreeMap<u64, (u64, Bytes)>) -> Bytes {
    let mut out = String::new();
    for (i, (t, d)) in applied {
        out.push_str(&format!("{i} {t} {}\n", String::from_utf8_lossy(d)));
    }
    Bytes::from(out)
}

fn decode(b: &[u8]) -> BTreeMap<u64, (u64, Bytes)> {
    let text = std::str::from_utf8(b).expect("snapshot is text");
    let line = |l: &str| {
        let mut f = l.splitn(3, ' ');
        let i: u64 = f.next()?.parse().ok()?;
        let t: u64 = f.next()?.parse().ok()?;
        Some((i, (t, Bytes::from(f.next()?.to_string()))))
    };
    text.lines().filter_map(line).collect()
}

impl Sim {
    fn new(seed: u64, n: u64) -> Sim {
        let voters: Vec<u64> = (1..=n).collect();
        let nodes = voters
            .iter()
            .map(|&id| {
                let disk = RaftLog::new(&voters);
                let group = Group::new(&config(id), disk.clone(), &silent()).unwrap();
                Node {
                    id,
                    group: Some(group),
                    disk,
                    applied: BTreeMap::new(),
                    applied_to: 0,
                }
            })
            .collect();
        Sim {
            rng: StdRng::seed_from_u64(seed),
            step: 0,
            nodes,
            wire: Wire::default(),
            leaders: BTreeMap::new(),
            history: BTreeMap::new(),
            proposed: 0,
            restores: 0,
            crashes: 0,
        }
    }

    fn send(&mut self, msgs: Vec<Message>, f: &Faults) {
        let faults = (f.drop, f.duplicate, f.delay_steps_max);
        self.wire.send(&mut self.rng, msgs, self.step, faults);
    }

    fn deliver(&mut self) {
        for m in self.wire.due(self.step) {
            let node = &mut self.nodes[(m.to - 1) as usize];
            if let Some(g) = node.group.as_mut() {
                // A stale or duplicated message may be refused; raft-rs stays consistent.
                let _ = g.step(m);
            }
        }
    }

    /// Runs node `i`'s work until it has none, persisting at once.
    fn drain(&mut self, i: usize, f: &Faults) {
        loop {
            let node = &mut self.nodes[i];
            let Some(g) = node.group.as_mut() else { return };
            let Some(work) = g.work() else { return };
            if let Some((index, state)) = work.restore {
                self.restores += 1;
                node.applied = decode(&state);
                node.applied_to = index;
            }
            for e in &work.committed {
                assert_eq!(
                    e.index,
                    node.applied_to + 1,
                    "node {} applies in order",
                    node.id
                );
                node.applied_to = e.index;
                if !e.data.is_empty() {
                    node.applied.insert(e.index, (e.term, e.data.clone()));
                }
                let entry = (e.term, e.data.clone());
                let first = self.history.entry(e.index).or_insert(entry.clone());
                assert_eq!(*first, entry, "index {} applied with two entries", e.index);
            }
            let g = node.group.as_mut().expect("still up");
            node.disk = g.log().clone();
            g.persisted(work.number);
            let mut out = work.send;
            out.extend(work.send_after_write);
            self.send(out, f);
        }
    }

    fn check_leaders(&mut self) {
        for n in &self.nodes {
            let Some(g) = &n.group else { continue };
            if g.is_leader() {
                one_leader_per_term(&mut self.leaders, g.leadership().term, n.id);
            }
        }
    }

    fn chaos(&mut self, f: &Faults) {
        for i in 0..self.nodes.len() {
            let down = self.nodes[i].group.is_none();
            if down && self.rng.gen_bool(0.2) {
                self.restart(i);
            } else if !down && self.rng.gen_bool(f.crash) {
                self.crashes += 1;
                self.nodes[i].group = None;
            }
        }
        if self.rng.gen_bool(f.cut) {
            let n = self.nodes.len() as u64;
            let (a, b) = (self.rng.gen_range(1..=n), self.rng.gen_range(1..=n));
            if !self.wire.cut.remove(&(a, b)) {
                self.wire.cut.insert((a, b));
            }
        }
        for n in &mut self.nodes {
            let Some(g) = n.group.as_mut() else { continue };
            if n.applied_to > 0 && self.rng.gen_bool(f.compact) {
                let keep: BTreeMap<_, _> = n
                    .applied
                    .range(..=n.applied_to)
                    .map(|(k, v)| (*k, v.clone()))
                    .collect();
                g.compact(n.applied_to, encode(&keep));
                n.disk = g.log().clone();
            }
        }
    }

    /// A crashed node comes back with what it made durable; its state machine is rebuilt
    /// from the log's snapshot and the entries raft-rs hands out again.
    fn restart(&mut self, i: usize) {
        let n = &mut self.nodes[i];
        let (meta, data) = n.disk.snapshot_parts();
        n.applied = decode(data);
        n.applied_to = meta.index;
        n.group = Some(Group::new(&config(n.id), n.disk.clone(), &silent()).unwrap());
    }

    fn run(&mut self, steps: u64, f: Faults) {
        for _ in 0..steps {
            self.step += 1;
            self.chaos(&f);
            if self.step % 2 == 0 {
                for g in self.nodes.iter_mut().filter_map(|n| n.group.as_mut()) {
                    g.tick();
                }
            }
            self.deliver();
            self.propose();
            for i in 0..self.nodes.len() {
                self.drain(i, &f);
            }
            self.check_leaders();
        }
    }

    fn propose(&mut self) {
        if self.step % 3 != 0 {
            return;
        }
        let leader = self
            .nodes
            .iter_mut()
            .filter_map(|n| n.group.as_mut())
            .find(|g| g.is_leader());
        if let Some(g) = leader {
            self.proposed += 1;
            let _ = g.propose(format!("p{}", self.proposed).into_bytes());
        }
    }

    fn heal(&mut self) {
        self.wire.cut.clear();
        for i in 0..self.nodes.len() {
            if self.nodes[i].group.is_none() {
                self.restart(i);
            }
        }
    }
}

/// Runs a faulty phase, heals, and checks the cluster converged; returns the sim.
fn converges(seed: u64, faults: Faults) -> Sim {
    let mut sim = Sim::new(seed, 3);
    sim.run(600, faults);
    sim.heal();
    sim.run(400, CALM);
    let leaders = sim
        .nodes
        .iter()
        .filter(|n| n.group.as_ref().unwrap().is_leader());
    assert_eq!(leaders.count(), 1, "seed {seed}: one leader after healing");
    let before = sim.proposed;
    sim.run(200, CALM);
    assert!(
        sim.proposed > before,
        "seed {seed}: the leader takes proposals"
    );
    let top = *sim.history.keys().last().expect("something committed");
    for n in &sim.nodes {
        assert_eq!(n.applied_to, top, "seed {seed}: node {} caught up", n.id);
        let mine: Vec<_> = n.applied.iter().collect();
        let all: Vec<_> = sim
            .history
            .iter()
            .filter(|(_, (_, d))| !d.is_empty())
            .collect();
        assert_eq!(
            mine, all,
            "seed {seed}: node {} holds the one history",
            n.id
        );
    }
    sim
}

#[test]
fn a_calm_cluster_elects_one_leader_and_replicates() {
    let sim = converges(1, CALM);
    assert_eq!(sim.leaders.len(), 1, "no needless election");
}

#[test]
fn lossy_reordering_network_with_crashes_cuts_and_compaction_keeps_one_history() {
    let faults = Faults {
        drop: 0.1,
        duplicate: 0.05,
        delay_steps_max: 6,
        crash: 0.01,
        cut: 0.05,
        compact: 0.02,
    };
    let (mut terms, mut restores, mut crashes, mut entries) = (0, 0, 0, 0);
    for seed in 0..40 {
        let sim = converges(seed, faults);
        terms += sim.leaders.len();
        restores += sim.restores;
        crashes += sim.crashes;
        entries += sim.history.len();
    }
    eprintln!("{terms} terms, {crashes} crashes, {restores} restores, {entries} entries");
    // The faults did happen: leaders changed, nodes crashed and caught up from snapshots.
    assert!(
        terms > 24 && crashes > 12 && restores > 0 && entries > 1000,
        "{terms} terms, {crashes} crashes, {restores} restores, {entries} entries"
    );
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(12))]

    /// Any mix of faults, at any seed: at most one leader per term (asserted on every
    /// step), and after healing one leader and every node holding every committed entry.
    #[test]
    fn any_faults_at_any_seed_keep_one_history(
        seed in proptest::prelude::any::<u64>(),
        drop in 0.0..0.3f64,
        duplicate in 0.0..0.2f64,
        delay_steps_max in 1u64..10,
        crash in 0.0..0.03f64,
        cut in 0.0..0.1f64,
        compact in 0.0..0.05f64,
    ) {
        let faults = Faults { drop, duplicate, delay_steps_max, crash, cut, compact };
        converges(seed, faults);
    }
}
