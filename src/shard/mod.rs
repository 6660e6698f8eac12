//! A shard: one core's share of the broker. It owns the partitions `shard_for` maps to it and
//! the groups `shard_for_group` maps to it, and holds a read-only copy of the topic registry.
//! Shard 0 is also the controller (`controller.rs`) and allocates producer ids. The files:
//!
//! - `calls.rs`: [`Shard::on`], a closure run on another shard, its result brought back;
//! - `route.rs`: a request's partitions sent to their owner shards, one call per owner, and
//!   group calls sent to the group's coordinator;
//! - `metadata.rs`: a newer registry snapshot installed (partitions opened, closed, deleted);
//! - `lifecycle.rs`: start, periodic work, the drain and close at shutdown;
//! - `controller.rs`, `producer_ids.rs`: shard 0's duties;
//! - `cluster.rs`: in a cluster, shard 0's admin path through the metadata log and the
//!   install of the registries it gives;
//! - `replicas.rs`: in a cluster, the shard's partition replicas (replica host, transport,
//!   election reports).
//!
//! Handlers reach partitions and groups only through the methods here; the network edge
//! (`crate::net`) counts requests in flight with [`Shard::request_started`].

mod calls;
mod cluster;
pub mod controller;
mod copy;
mod group_logs;
mod lifecycle;
mod metadata;
pub mod producer_ids;
mod replicas;
pub mod route;
pub use group_logs::GroupHome;
mod stats;

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::{Rc, Weak};
use std::sync::atomic::{AtomicBool, AtomicUsize};
use std::sync::Arc;

use uuid::Uuid;

use crate::config::Config;
use crate::group::Coordinator;
use crate::metadata::{shard_for, BrokerAddr, Snapshot, Where};
use crate::partition::Partition;
use crate::runtime::MeshSenders;

use calls::Replies;
pub use controller::{AdminError, Controller};
pub use lifecycle::{handed_off, wait_for_peers, InFlight};
pub use stats::{GroupStats, OwnedPartition, ShardStats};

/// A cross-shard call failed: the target shard is gone (shutting down).
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("shard {0} is unavailable")]
pub struct ShardGone(pub usize);

/// Startup state every shard needs before serving.
#[derive(Clone)]
pub struct Boot {
    /// The broker's settings.
    pub config: Arc<Config>,
    /// The cluster id from the stored registry.
    pub cluster_id: String,
    /// The registry as loaded at startup; each shard opens what it owns of it.
    pub snapshot: Arc<Snapshot>,
    /// Set by SIGINT or SIGTERM (`runtime::shutdown_flag`); shards stop once it is.
    pub shutdown: Arc<AtomicBool>,
    /// Shards that have opened their partitions and groups: none listens before all have, so
    /// the first client is never answered by a shard whose peers cannot answer yet.
    pub started: Arc<AtomicUsize>,
    /// Shards that have handed their leaderships off at shutdown (`hand_off_leadership`):
    /// shard 0 keeps the metadata voter, which carries every shard's registry updates, until
    /// all have.
    pub handed_off: Arc<AtomicUsize>,
}

/// One core's state: its partitions and groups, its copy of the registry, its ends of the mesh,
/// and (on shard 0) the controller. Lives on its executor's thread as `Rc<Shard>`.
pub struct Shard {
    /// This shard's index, 0..config.shards; 0 is the controller.
    pub id: usize,
    /// The broker's settings.
    pub config: Arc<Config>,
    /// The cluster id Metadata and DescribeCluster report.
    pub cluster_id: String,
    metadata: RefCell<Arc<Snapshot>>,
    partitions: RefCell<HashMap<(Uuid, i32), Rc<Partition>>>,
    senders: MeshSenders<Shard>,
    this: Weak<Shard>,
    /// Only on shard 0.
    controller: Option<Controller>,
    /// Only on shard 0: the producer-id allocator (InitProducerId).
    producer_ids: Option<producer_ids::ProducerIds>,
    /// The consumer groups this shard coordinates (`group::shard_for_group`).
    groups: Rc<Coordinator>,
    /// Requests being handled on this shard (drained before shutdown).
    inflight: Cell<usize>,
    stopping: Cell<bool>,
    /// Cross-shard calls made from this shard, waiting for their replies.
    replies: Replies,
    /// Jobs sent into and taken out of the mesh channels.
    mesh_counters: calls::MeshCounters,
    /// In a cluster: this shard's partition replicas.
    replication: Option<replicas::Replication>,
}

impl Shard {
    /// How many shards the broker runs.
    pub fn shards(&self) -> usize {
        self.config.shards
    }

    /// This shard's copy of the registry: the newest snapshot installed here. A handler holds
    /// on to the one it got for the whole request.
    pub fn metadata(&self) -> Arc<Snapshot> {
        self.metadata.borrow().clone()
    }

    fn rc(&self) -> Rc<Shard> {
        self.this.upgrade().expect("shard alive while in use")
    }

    /// The partition, if this shard owns it and it is open.
    pub fn partition(&self, topic: &Uuid, index: i32) -> Option<Rc<Partition>> {
        self.partitions.borrow().get(&(*topic, index)).cloned()
    }

    /// Where partition `index` of `topic` is served: on a shard here, on another broker, or
    /// nowhere now (see `Snapshot::locate`); a replicated partition by its replica here.
    pub fn locate(&self, topic: &Uuid, index: i32) -> Where {
        let snap = self.metadata.borrow();
        // A replicated partition with a replica here is served by that replica: the leader
        // takes produce, a follower answers NOT_LEADER_OR_FOLLOWER to it, and any replica
        // serves reads below its high watermark (a follower's catch-up copies use that).
        let c = snap.cluster.as_ref();
        let set = c.and_then(|c| c.replica_set(topic, index));
        let mine = set
            .filter(|s| s.is_replicated())
            .and_then(|s| s.members.iter().find(|m| m.broker == self.config.node_id));
        match mine {
            Some(m) if (m.shard as usize) < self.shards() => Where::Here(m.shard as usize),
            _ => snap.locate(topic, index, self.shards()),
        }
    }

    /// The shard here that owns partition `index` of `topic` if it is on this broker (else
    /// the shard `metadata::shard_for` gives, for estimates only).
    pub fn owner_of(&self, topic: &Uuid, index: i32) -> usize {
        match self.locate(topic, index) {
            Where::Here(shard) => shard,
            _ => shard_for(topic, index, self.shards()),
        }
    }

    /// The brokers clients are told about, (node id, address), and the controller (-1 while
    /// a cluster has none): a single broker lists itself as both; a cluster member the live
    /// brokers of `snap`, itself always among them (`ClusterMeta::live_brokers`).
    pub fn client_brokers(&self, snap: &Snapshot) -> (Vec<(i32, BrokerAddr)>, i32) {
        let c = &self.config;
        let me = BrokerAddr {
            host: c.advertised_host.clone(),
            port: u16::try_from(c.advertised_port).expect("a port, as the config parsed it"),
            alive: true,
        };
        match &snap.cluster {
            None => (vec![(c.node_id, me)], c.node_id),
            Some(cluster) => (cluster.live_brokers(&me), cluster.controller.unwrap_or(-1)),
        }
    }
}
