//! Shard 0's cluster edge: the I/O around this broker's metadata-log voter. It owns the
//! voter (`node.rs`), its log file (`raft::disk`) and the shard's transport, and runs one
//! loop: wait for the tick timer or for messages from the other voters, tick, then carry
//! out each turn (send, write and sync, report persisted, send what waited for the write,
//! rewrite the file after a compaction, hand the new registry to the broker, answer the
//! proposals decided). Admin changes reach it through [`submit`] on the same thread; what it
//! knows of the cluster is published for the admin API ([`view`]). On the leader it also
//! watches the brokers' liveness: one not heard from for the session timeout is marked dead.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::path::Path;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use raft::eraftpb::{Entry, EntryType, Message, MessageType};

use super::image::{ApplyError, Broker, LogEntry, MetaRecord};
use super::node::{Decided, MetaNode};
use super::transport::{self, Deliver, Endpoint, Transport, TransportConfig};
use crate::config::ClusterConfig;
use crate::metadata::Snapshot;
use crate::raft::disk::LogFile;
use crate::raft::GroupConfig;
use crate::runtime::{self, local_channel};

/// The metadata log's group id on the wire.
const METADATA_GROUP: u64 = 0;
/// The timer tick; elections start after 10-20 ticks without a leader (0.5-1 s).
const TICK: Duration = Duration::from_millis(50);
/// Ticks between checks that this broker's registration is in the metadata log.
const REGISTER_EVERY_TICKS: u64 = 20;
/// Ticks between the leader's checks of the brokers' liveness.
const LIVENESS_EVERY_TICKS: u64 = 10;
/// Applied entries kept in the metadata log before it is compacted.
const COMPACT_AFTER_ENTRIES: u64 = 1000;
/// Ticks a proposal (this broker's own as leader, or forwarded to the leader) may take to be
/// applied (3 s) before the request that made it is answered with a retriable error.
const PROPOSAL_TIMEOUT_TICKS: u64 = 60;
/// Admin proposals waiting for their outcome at once, at most.
const WAITING_MAX: usize = 1024;

/// What this broker knows of the cluster, for the admin API.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ClusterView {
    /// This broker's node id.
    pub node_id: u64,
    /// The voters' ids.
    pub voters: Vec<u64>,
    /// The metadata leader, if known.
    pub leader: Option<u64>,
    /// The metadata log's term.
    pub term: u64,
    /// The last applied metadata log index.
    pub applied: u64,
    /// When this node last saw a leader change, seconds after the voter started.
    pub leader_since_s: f64,
    /// The brokers registered in the metadata log.
    pub brokers: Vec<Broker>,
}

/// Why a proposal has no outcome.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SubmitError {
    /// This broker runs no metadata voter (or it has stopped).
    #[error("this broker is not a cluster member")]
    NotMember,
    /// No metadata leader is known, or it refused the proposal; try again.
    #[error("no metadata leader takes proposals now: {0}")]
    NoLeader(String),
    /// The proposal was lost in a leader change, or not seen applied in time; it may still
    /// be applied later.
    #[error("the proposal was lost or not applied in time")]
    Lost,
    /// Too many proposals wait already.
    #[error("too many metadata changes in flight")]
    Busy,
}

/// A committed proposal: the record's apply result, and the log index applied by then (the
/// registry version that holds it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Committed {
    /// Whether the record changed the image (an error says why not).
    pub result: Result<(), ApplyError>,
    /// The image's applied index when the outcome was known.
    pub applied: u64,
}

/// Called with every new registry the metadata log's image gives this broker.
pub type Install = Rc<dyn Fn(Arc<Snapshot>)>;

/// The voter and what waits on it, shared by the edge's loop and [`submit`] on shard 0.
struct Edge {
    node: RefCell<MetaNode>,
    me: Broker,
    voters: Vec<u64>,
    session: Duration,
    next_token: Cell<u64>,
    waiting: RefCell<HashMap<u64, local_channel::LocalSender<Result<Committed, SubmitError>>>>,
    /// When each broker was last heard from (any message of its shard 0).
    heard: RefCell<HashMap<u64, Instant>>,
    /// When this node last became leader (liveness gives every broker a grace from then).
    leading_since: Cell<Option<Instant>>,
    /// When the leader last checked liveness.
    last_check: Cell<Option<Instant>>,
    wake: local_channel::LocalSender<()>,
    install: Install,
}

thread_local! {
    static VIEW: RefCell<Option<ClusterView>> = const { RefCell::new(None) };
    static EDGE: RefCell<Option<Rc<Edge>>> = const { RefCell::new(None) };
}

/// The cluster as this broker's voter sees it (None: not a cluster member, or not on the
/// voter's shard).
pub fn view() -> Option<ClusterView> {
    VIEW.with(|v| v.borrow().clone())
}

fn edge() -> Option<Rc<Edge>> {
    EDGE.with(|e| e.borrow().clone())
}

/// Proposes `record` to the metadata log (from shard 0 of a cluster member) and waits for
/// its outcome.
pub async fn submit(record: MetaRecord) -> Result<Committed, SubmitError> {
    let edge = edge().ok_or(SubmitError::NotMember)?;
    if edge.waiting.borrow().len() >= WAITING_MAX {
        return Err(SubmitError::Busy);
    }
    let token = edge.next_token.get();
    edge.next_token.set(token + 1);
    let (tx, rx) = local_channel::new_bounded(1);
    edge.node
        .borrow_mut()
        .propose(token, &record, PROPOSAL_TIMEOUT_TICKS)
        .map_err(|e| SubmitError::NoLeader(e.to_string()))?;
    edge.waiting.borrow_mut().insert(token, tx);
    let _ = edge.wake.try_send(());
    let outcome = rx.recv().await;
    edge.waiting.borrow_mut().remove(&token);
    outcome.unwrap_or(Err(SubmitError::NotMember))
}

/// The first producer id the next block would start at (the image's end of handed-out ids).
pub fn producer_ids_until() -> Option<i64> {
    edge().map(|e| e.node.borrow().image().producer_ids_until)
}

/// Runs this broker's metadata voter until the task is dropped; `me` is the registration it
/// keeps in the metadata log; `install` gets every new registry. Exits the process if the
/// log cannot be opened or the listener bound (as the Kafka listener does).
pub async fn run_voter(me: Broker, cluster: ClusterConfig, data_dir: &Path, install: Install) {
    let node_id = me.node_id as u64;
    let voters: Vec<u64> = cluster.voters.keys().copied().collect();
    let dir = data_dir.join("__cluster").join("metadata");
    let (mut file, log) = match LogFile::open(&dir, &voters) {
        Ok(opened) => opened,
        Err(e) => fatal("cannot open the metadata log", &e),
    };
    let node = MetaNode::new(&GroupConfig::new(node_id), log, COMPACT_AFTER_ENTRIES)
        .unwrap_or_else(|e| fatal("cannot start the metadata voter", &e));
    let listener = runtime::listen_exclusive(cluster.listen)
        .unwrap_or_else(|e| fatal("cannot listen for cluster traffic", &e));
    let (wake, wake_rx) = local_channel::new_bounded::<()>(1);
    let edge = Rc::new(Edge {
        node: RefCell::new(node),
        me,
        voters: voters.clone(),
        session: Duration::from_millis(cluster.broker_session_timeout_ms),
        // Tokens name this run's proposals in the entries (origin): a random start keeps
        // them apart from those of an earlier run still in the log.
        next_token: Cell::new(uuid::Uuid::new_v4().as_u64_pair().0 >> 2),
        waiting: RefCell::new(HashMap::new()),
        heard: RefCell::new(HashMap::new()),
        leading_since: Cell::new(None),
        last_check: Cell::new(None),
        wake,
        install,
    });
    let here = Endpoint {
        node: node_id,
        shard: 0,
    };
    let config = TransportConfig::default();
    let _server = runtime::spawn(transport::serve(listener, here, config, deliver(&edge)));
    let out = Transport::new(here, cluster.voters.clone(), config);
    EDGE.with(|e| *e.borrow_mut() = Some(edge.clone()));
    let _unset = Unset;
    let started = Instant::now();
    let since = Cell::new(0.0);
    edge.publish(since.get());
    edge.install_image();
    tracing::info!(node_id, voters = ?voters, listen = %cluster.listen, "metadata voter started");
    let mut ticker = runtime::Ticker::new(TICK);
    let mut ticks: u64 = 0;
    loop {
        if ticker.wait_or(&wake_rx).await {
            edge.node.borrow_mut().tick();
            ticks += 1;
            if ticks % REGISTER_EVERY_TICKS == 0 {
                edge.register(&out);
            }
            if ticks % LIVENESS_EVERY_TICKS == 0 {
                edge.check_liveness();
            }
        }
        edge.drive(&mut file, &out, started, &since);
        edge.publish(since.get());
    }
}

/// Clears the thread's edge when the voter's task ends; the proposals still waiting are
/// answered (their channels close: `SubmitError::NotMember`).
struct Unset;

impl Drop for Unset {
    fn drop(&mut self) {
        if let Some(edge) = EDGE.with(|e| e.borrow_mut().take()) {
            edge.waiting.borrow_mut().clear();
        }
    }
}

thread_local! {
    /// Where shard 0's cluster listener hands the messages of partition groups (every
    /// group but the metadata log's): shard 0's replica host.
    static PARTITIONS: RefCell<Option<Deliver>> = const { RefCell::new(None) };
}

/// Has the messages of partition groups that reach this shard's cluster listener (the
/// voter's, on shard 0) go to `d`.
pub fn deliver_partitions_to(d: Deliver) {
    PARTITIONS.with(|p| *p.borrow_mut() = Some(d));
}

/// Hands the voter the messages that arrive, noting who was heard from; partition groups'
/// messages go to the replica host (`deliver_partitions_to`).
fn deliver(edge: &Rc<Edge>) -> Deliver {
    let edge = edge.clone();
    Rc::new(move |from: Endpoint, msgs: Vec<(u64, Message)>| {
        let (msgs, partitions): (Vec<_>, Vec<_>) = msgs
            .into_iter()
            .partition(|(group, _)| *group == METADATA_GROUP);
        if !partitions.is_empty() {
            let to = PARTITIONS.with(|p| p.borrow().clone());
            if let Some(to) = to {
                to(from, partitions);
            }
        }
        // Only registered brokers are judged, so only they are remembered (a bound).
        let registered = i32::try_from(from.node)
            .is_ok_and(|id| edge.node.borrow().image().brokers.contains_key(&id));
        if registered {
            edge.heard.borrow_mut().insert(from.node, Instant::now());
        }
        for (group, m) in msgs {
            // A proposal from a peer may only carry records (a broker's registration): a
            // configuration change is the leader's own to make.
            let foreign_change = m.get_msg_type() == MessageType::MsgPropose
                && m.entries
                    .iter()
                    .any(|e| e.get_entry_type() != EntryType::EntryNormal);
            if group == METADATA_GROUP && !foreign_change {
                let _ = edge.node.borrow_mut().step(m);
            }
        }
        let _ = edge.wake.try_send(());
    })
}

impl Edge {
    /// Proposes this broker's registration while the metadata log does not hold it as it
    /// is; a dropped proposal is made again at the next check. Liveness is the leader's to
    /// judge, so it is not compared. With a leader known the proposal is forwarded to it; a
    /// broker that is not a voter knows no leader until the leader has added it to the log's
    /// members, which happens once it is registered: it sends its proposal to every voter
    /// (a follower forwards it to the leader, as raft-rs forwards any proposal).
    fn register(&self, out: &Transport) {
        let mut node = self.node.borrow_mut();
        let held = node.image().brokers.get(&self.me.node_id).map(|b| Broker {
            alive: true,
            ..b.clone()
        });
        if held.as_ref() == Some(&self.me) {
            return;
        }
        let record = MetaRecord::RegisterBroker(self.me.clone());
        if node.leadership().leader.is_some() {
            if let Err(e) = node.forward(&record) {
                tracing::debug!(error = %e, "registration not proposed; trying again");
            }
            return;
        }
        let me = self.me.node_id as u64;
        for &voter in self.voters.iter().filter(|&&v| v != me) {
            out.send(0, METADATA_GROUP, proposal(me, voter, &record));
        }
        out.flush();
    }

    /// On the leader: marks dead the brokers not heard from for the session timeout (every
    /// broker gets that long from the leader's election) and alive again those heard since.
    fn check_liveness(&self) {
        let mut node = self.node.borrow_mut();
        if !node.is_leader() {
            self.leading_since.set(None);
            return;
        }
        let now = Instant::now();
        // After a pause of this shard (a long write, a stalled machine) messages that
        // arrived meanwhile are not read yet: judge no one until the brokers had a session
        // timeout to be heard again.
        let paused = self
            .last_check
            .replace(Some(now))
            .is_some_and(|last| now - last > self.session / 2);
        let since = match self.leading_since.get() {
            Some(since) if !paused => since,
            _ => now,
        };
        self.leading_since.set(Some(since));
        let heard = self.heard.borrow();
        let changes: Vec<MetaRecord> = node
            .image()
            .brokers
            .values()
            .filter_map(|b| {
                let id = b.node_id as u64;
                let last = heard.get(&id).copied().unwrap_or(since).max(since);
                let alive = id == self.me.node_id as u64 || now - last < self.session;
                (alive != b.alive).then_some(MetaRecord::BrokerAlive {
                    node_id: b.node_id,
                    alive,
                })
            })
            .collect();
        for record in changes {
            tracing::info!(?record, "broker liveness changed");
            if let Err(e) = node.forward(&record) {
                tracing::debug!(error = %e, "liveness change not proposed; trying again");
            }
        }
        // A registered broker that is not a member of the log yet joins it as a learner.
        let members = node.members();
        let joining = node.image().brokers.keys().map(|&b| b as u64);
        let joining: Vec<u64> = joining.filter(|b| !members.contains(b)).collect();
        if let Some(&id) = joining.first() {
            match node.add_learner(id) {
                Ok(()) => tracing::info!(node_id = id, "adding a broker to the metadata log"),
                Err(e) => tracing::debug!(error = %e, "learner not added; trying again"),
            }
        }
    }

    /// Carries out every pending turn of the voter.
    fn drive(&self, file: &mut LogFile, out: &Transport, started: Instant, since: &Cell<f64>) {
        let mut changed = false;
        loop {
            let mut n = self.node.borrow_mut();
            let Some(turn) = n.turn() else { break };
            turn.send
                .into_iter()
                .for_each(|m| out.send(0, METADATA_GROUP, m));
            if turn.number > 0 {
                if let Err(e) = file.write(&turn.write) {
                    fatal("cannot write the metadata log", &e);
                }
                n.persisted(turn.number);
            }
            turn.send_after_write
                .into_iter()
                .for_each(|m| out.send(0, METADATA_GROUP, m));
            if turn.compacted {
                if let Err(e) = file.rewrite(n.log()) {
                    fatal("cannot rewrite the metadata log", &e);
                }
            }
            if let Some(l) = turn.leadership {
                since.set(started.elapsed().as_secs_f64());
                tracing::info!(leader = ?l.leader, term = l.term, "metadata leader");
                changed = true;
            }
            changed |= turn.image_changed;
            let applied = n.image().applied;
            drop(n);
            if changed {
                self.learn_peers(out);
                self.install_image();
                changed = false;
            }
            self.answer(turn.decided, applied);
        }
        out.flush();
    }

    /// Tells the transport the cluster listener of every registered broker that is not a
    /// voter (known only from its registration; the voters' addresses are the configured
    /// ones, which a registration's listen address, say 0.0.0.0, must not replace).
    fn learn_peers(&self, out: &Transport) {
        let node = self.node.borrow();
        let configured = |id: i32| self.voters.contains(&(id as u64));
        for b in node
            .image()
            .brokers
            .values()
            .filter(|b| !configured(b.node_id))
        {
            match b.cluster_addr.parse() {
                Ok(addr) => out.add_peer(b.node_id as u64, addr),
                Err(_) => {
                    tracing::warn!(broker = b.node_id, addr = %b.cluster_addr, "bad cluster address")
                }
            }
        }
    }

    /// Hands the broker the registry of the current image.
    fn install_image(&self) {
        let node = self.node.borrow();
        let voters: Vec<i32> = self.voters.iter().map(|&v| v as i32).collect();
        let leader = node.leadership().leader.map(|l| l as i32);
        let me = (self.me.node_id, self.me.shards);
        let snap = node.image().registry_for(me, &voters, leader);
        drop(node);
        (self.install)(Arc::new(snap));
    }

    fn answer(&self, decided: Vec<(u64, Decided)>, applied: u64) {
        for (token, outcome) in decided {
            let answer = match outcome {
                Decided::Committed(result) => Ok(Committed { result, applied }),
                Decided::Lost => Err(SubmitError::Lost),
            };
            if let Some(tx) = self.waiting.borrow_mut().remove(&token) {
                let _ = tx.try_send(answer);
            }
        }
    }

    fn publish(&self, since: f64) {
        let n = self.node.borrow();
        let l = n.leadership();
        let v = ClusterView {
            node_id: self.me.node_id as u64,
            voters: self.voters.clone(),
            leader: l.leader,
            term: l.term,
            applied: n.image().applied,
            leader_since_s: since,
            brokers: n.image().brokers.values().cloned().collect(),
        };
        VIEW.with(|cell| *cell.borrow_mut() = Some(v));
    }
}

/// A proposal of `record` from `from`, addressed to `to` as raft-rs's forwarded proposals are.
fn proposal(from: u64, to: u64, record: &MetaRecord) -> Message {
    let entry = LogEntry {
        origin: None,
        record: record.clone(),
    };
    let e = Entry {
        data: entry.encode().into(),
        ..Entry::default()
    };
    let mut m = Message::default();
    m.set_msg_type(MessageType::MsgPropose);
    m.from = from;
    m.to = to;
    m.set_entries(vec![e].into());
    m
}

fn fatal(what: &str, e: &dyn std::fmt::Display) -> ! {
    tracing::error!(error = %e, "{what}");
    std::process::exit(2);
}
