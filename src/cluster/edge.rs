//! Shard 0's cluster edge: the I/O around this broker's metadata-log voter. It owns the
//! voter (`node.rs`), its log file (`raft::disk`) and the shard's transport, and runs one
//! loop: wait for the tick timer or for messages from the other voters, tick, then carry
//! out each turn (send, write and sync, report persisted, send what waited for the write,
//! rewrite the file after a compaction). What it knows of the cluster (leader, term, applied
//! index) is published for the admin API on the same thread ([`view`]).

use std::cell::{Cell, RefCell};
use std::path::Path;
use std::rc::Rc;
use std::time::{Duration, Instant};

use super::image::{Broker, MetaRecord};
use super::node::MetaNode;
use super::transport::{self, Deliver, Endpoint, Transport, TransportConfig};
use crate::config::ClusterConfig;
use crate::raft::disk::LogFile;
use crate::raft::GroupConfig;
use crate::runtime::{self, local_channel};

/// The metadata log's group id on the wire.
const METADATA_GROUP: u64 = 0;
/// The timer tick; elections start after 10-20 ticks without a leader (0.5-1 s).
const TICK: Duration = Duration::from_millis(50);
/// Ticks between checks that this broker's registration is in the metadata log.
const REGISTER_EVERY_TICKS: u64 = 20;
/// Applied entries kept in the metadata log before it is compacted.
const COMPACT_AFTER_ENTRIES: u64 = 1000;

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

thread_local! {
    static VIEW: RefCell<Option<ClusterView>> = const { RefCell::new(None) };
}

/// The cluster as this broker's voter sees it (None: not a cluster member, or not on the
/// voter's shard).
pub fn view() -> Option<ClusterView> {
    VIEW.with(|v| v.borrow().clone())
}

/// Runs this broker's metadata voter until the task is dropped; `me` is the registration it
/// keeps in the metadata log. Exits the process if the log cannot be opened or the listener
/// bound (as the Kafka listener does).
pub async fn run_voter(me: Broker, cluster: ClusterConfig, data_dir: &Path) {
    let node_id = me.node_id as u64;
    let voters: Vec<u64> = cluster.voters.keys().copied().collect();
    let dir = data_dir.join("__cluster").join("metadata");
    let (mut file, log) = match LogFile::open(&dir, &voters) {
        Ok(opened) => opened,
        Err(e) => fatal("cannot open the metadata log", &e),
    };
    let node = MetaNode::new(&GroupConfig::new(node_id), log, COMPACT_AFTER_ENTRIES)
        .unwrap_or_else(|e| fatal("cannot start the metadata voter", &e));
    let node = Rc::new(RefCell::new(node));
    let listener = runtime::listen_exclusive(cluster.listen)
        .unwrap_or_else(|e| fatal("cannot listen for cluster traffic", &e));
    let here = Endpoint {
        node: node_id,
        shard: 0,
    };
    let config = TransportConfig::default();
    let (wake_tx, wake_rx) = local_channel::new_bounded::<()>(1);
    let deliver: Deliver = {
        let node = node.clone();
        Rc::new(move |_, msgs| {
            for (group, m) in msgs {
                if group == METADATA_GROUP {
                    let _ = node.borrow_mut().step(m);
                }
            }
            let _ = wake_tx.try_send(());
        })
    };
    let _server = runtime::spawn(transport::serve(listener, here, config, deliver));
    let out = Transport::new(here, cluster.voters.clone(), config);
    let started = Instant::now();
    let since = Cell::new(0.0);
    publish(node_id, &voters, &node.borrow(), since.get());
    tracing::info!(node_id, voters = ?voters, listen = %cluster.listen, "metadata voter started");
    let mut next_tick = Instant::now() + TICK;
    let mut ticks: u64 = 0;
    loop {
        let wait = next_tick.saturating_duration_since(Instant::now());
        futures_lite::future::or(runtime::sleep(wait), async {
            let _ = wake_rx.recv().await;
        })
        .await;
        if Instant::now() >= next_tick {
            node.borrow_mut().tick();
            next_tick += TICK;
            ticks += 1;
            if ticks % REGISTER_EVERY_TICKS == 0 {
                register(&mut node.borrow_mut(), &me);
            }
        }
        drive(&node, &mut file, &out, started, &since);
        publish(node_id, &voters, &node.borrow(), since.get());
    }
}

/// Proposes this broker's registration (forwarded to the leader) while the metadata log
/// does not hold it as it is; a dropped proposal is made again at the next check.
fn register(node: &mut MetaNode, me: &Broker) {
    if node.image().brokers.get(&me.node_id) == Some(me) || node.leadership().leader.is_none() {
        return;
    }
    if let Err(e) = node.forward(&MetaRecord::RegisterBroker(me.clone())) {
        tracing::debug!(error = %e, "registration not proposed; trying again");
    }
}

/// Carries out every pending turn of the voter.
fn drive(
    node: &RefCell<MetaNode>,
    file: &mut LogFile,
    out: &Transport,
    started: Instant,
    since: &Cell<f64>,
) {
    loop {
        let mut n = node.borrow_mut();
        let Some(turn) = n.turn() else { break };
        turn.send
            .into_iter()
            .for_each(|m| out.send(0, METADATA_GROUP, m));
        if let Err(e) = file.write(&turn.write) {
            fatal("cannot write the metadata log", &e);
        }
        n.persisted(turn.number);
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
        }
    }
    out.flush();
}

fn publish(node_id: u64, voters: &[u64], n: &MetaNode, since: f64) {
    let l = n.leadership();
    let v = ClusterView {
        node_id,
        voters: voters.to_vec(),
        leader: l.leader,
        term: l.term,
        applied: n.image().applied,
        leader_since_s: since,
        brokers: n.image().brokers.values().cloned().collect(),
    };
    VIEW.with(|cell| *cell.borrow_mut() = Some(v));
}

fn fatal(what: &str, e: &dyn std::fmt::Display) -> ! {
    tracing::error!(error = %e, "{what}");
    std::process::exit(2);
}
