//! In a cluster, this shard's partition replicas (issue 21): the replica host
//! (`replica::Host`) with its cluster transport and listener, the replicas the registry
//! gives this shard opened and closed as registries are installed, and the elections they
//! win reported to the metadata log (a `PartitionLeader` record), which moves where clients
//! are sent. Produce reaches a replica through its `Partition` (`ReplicaLink`); reads end at
//! the replica's high watermark (`PartitionLog::set_commit`).
//!
//! Sits beside `metadata.rs` (the install) and `cluster.rs` (shard 0's admin path).

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::rc::Rc;
use std::sync::Arc;

use super::Shard;
use crate::cluster::edge;
use crate::cluster::transport::{self, Deliver, Endpoint, Transport, TransportConfig};
use crate::cluster::MetaRecord;
use crate::metadata::{ReplicaSet, Snapshot, TopicMeta};
use crate::partition::{Partition, ReplicaLink};
use crate::replica::{Host, Replica, ReplicaConfig, ReplicaStore};
use crate::runtime::{self, Task};
use crate::storage::{PartitionLog, StorageError};

/// How often a shard looks for elections its replicas won that the registry does not show.
const REPORT_CHECK: std::time::Duration = std::time::Duration::from_millis(250);

/// The longest a stopping shard waits for its leaderships to move elsewhere.
const HAND_OFF_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// The least time between two reports of a leader's in-sync set alone.
const ISR_REPORT_MIN: std::time::Duration = std::time::Duration::from_secs(5);

/// A shard's replica host and what runs around it.
pub(super) struct Replication {
    /// The replicas of the partitions this shard holds a copy of.
    pub host: Rc<Host>,
    /// Its outgoing side (peers learnt from the registry).
    out: Rc<Transport>,
    /// Each hosted group's partition: (topic name, index), for election reports.
    groups: RefCell<HashMap<u64, (String, i32)>>,
    /// Groups whose election report is on its way.
    reporting: RefCell<HashSet<u64>>,
    /// When each group's leadership was last reported.
    isr_reported: RefCell<HashMap<u64, std::time::Instant>>,
    /// The task that reports elections the registry does not show yet.
    checker: RefCell<Option<Task<()>>>,
    /// The task that hands leadership back to preferred replicas (auto.leader.rebalance).
    balancer: RefCell<Option<Task<()>>>,
    /// The task that keeps the coordinator serving the group logs led here
    /// (`group_logs.rs`).
    pub group_logs: RefCell<Option<Task<()>>>,
    /// The group logs' topic is being created from this shard.
    pub offsets_topic_asked: std::cell::Cell<bool>,
    /// A task trims the group logs followed here.
    pub trimming: std::cell::Cell<bool>,
    /// Each followed group log's bytes after its last trim.
    pub trimmed_bytes: RefCell<HashMap<usize, u64>>,
    /// The host's timer loop and (on shards other than 0) the listener.
    _tasks: Vec<Task<()>>,
}

impl Replication {
    /// Starts shard `shard`'s replica host for broker `node`: its transport to the voters'
    /// listeners (more peers come with the registry), its timer, and its listener — shard
    /// 0's messages arrive through the metadata voter's listener, shard i's on the cluster
    /// port + i. Fails if the listener cannot be bound.
    pub fn start(
        node: u64,
        shard: usize,
        cluster: &crate::config::ClusterConfig,
    ) -> std::io::Result<Replication> {
        let me = Endpoint {
            node,
            shard: shard as u32,
        };
        let config = TransportConfig::default();
        let out = Rc::new(Transport::new(me, cluster.voters.clone(), config));
        let host = Host::new(me, out.clone());
        let h = host.clone();
        let deliver: Deliver = Rc::new(move |_, msgs| h.deliver(msgs));
        let mut tasks = vec![runtime::spawn(host.clone().run())];
        if shard == 0 {
            edge::deliver_partitions_to(deliver);
        } else {
            let mut addr = cluster.listen;
            let port = u16::try_from(usize::from(addr.port()) + shard).map_err(|_| {
                std::io::Error::new(std::io::ErrorKind::InvalidInput, "cluster port + shard")
            })?;
            addr.set_port(port);
            let listener = runtime::listen_exclusive(addr)?;
            tasks.push(runtime::spawn(transport::serve(
                listener, me, config, deliver,
            )));
        }
        Ok(Replication {
            host,
            out,
            groups: RefCell::new(HashMap::new()),
            reporting: RefCell::new(HashSet::new()),
            isr_reported: RefCell::new(HashMap::new()),
            checker: RefCell::new(None),
            balancer: RefCell::new(None),
            group_logs: RefCell::new(None),
            offsets_topic_asked: std::cell::Cell::new(false),
            trimming: std::cell::Cell::new(false),
            trimmed_bytes: RefCell::new(HashMap::new()),
            _tasks: tasks,
        })
    }

    /// Learns the brokers' cluster listeners from an installed registry.
    pub fn learn_peers(&self, snap: &Snapshot) {
        if let Some(c) = &snap.cluster {
            for (&id, &addr) in &c.cluster_addrs {
                if let Ok(id) = u64::try_from(id) {
                    self.out.add_peer(id, addr);
                }
            }
        }
    }
}

/// A topic's min.insync.replicas as a count.
fn min_insync(topic: &TopicMeta) -> usize {
    usize::try_from(topic.configs.min_insync_replicas()).unwrap_or(1)
}

impl Shard {
    /// Whether `snap` places a replica of partition `index` of topic `id` on this shard:
    /// its replica set, if the partition is replicated and one member is this one.
    pub(super) fn replica_here<'a>(
        &self,
        snap: &'a Snapshot,
        id: &uuid::Uuid,
        index: i32,
    ) -> Option<&'a ReplicaSet> {
        let c = snap.cluster.as_ref()?;
        let set = c.replica_set(id, index).filter(|s| s.is_replicated())?;
        let me = self.config.node_id;
        let here = set
            .members
            .iter()
            .any(|m| m.broker == me && m.shard as usize == self.id);
        here.then_some(set)
    }

    /// Opens this shard's replica of a replicated partition (its log, its Raft files, its
    /// place in the host), unless open. A replica whose files cannot be read is left closed
    /// with an error logged: the others serve the partition.
    pub(super) async fn ensure_replica(
        &self,
        topic: &Arc<TopicMeta>,
        index: i32,
        set: &ReplicaSet,
    ) -> Result<(), StorageError> {
        if self.partition(&topic.id, index).is_some() {
            if let Some(r) = &self.replication {
                r.host.set_min_insync(set.group, min_insync(topic));
            }
            return self.ensure_partition(topic, index).await; // renamed, configs applied
        }
        let Some(repl) = self.replication.as_ref() else {
            return Ok(());
        };
        let dir = self.partition_dir(topic, index);
        super::metadata::claim_dir(&dir, &topic.id)?;
        let log = PartitionLog::open(&dir, self.log_config(topic)).await?;
        super::metadata::mark_dir(&dir, &topic.id)?;
        let me = self.config.node_id as u64;
        let voters: Vec<u64> = set.members.iter().map(|m| m.broker as u64).collect();
        let opened = ReplicaStore::open(log.clone(), &dir, &voters).await;
        let config = ReplicaConfig {
            min_insync: min_insync(topic),
            ..ReplicaConfig::new(me)
        };
        let replica = opened.and_then(|(store, rebuilt)| {
            let r = Replica::new(&config, rebuilt.raft_log, rebuilt.checkpoint)?;
            Ok((store, r))
        });
        let (store, replica) = match replica {
            Ok(opened) => opened,
            Err(e) => {
                tracing::error!(topic = %topic.name, partition = index, error = %e,
                    "cannot open the partition's replica; left closed");
                let _ = log.close().await;
                return Ok(());
            }
        };
        let peers: BTreeMap<u64, u32> = set
            .members
            .iter()
            .map(|m| (m.broker as u64, m.shard))
            .collect();
        let source = self.catch_up_source(topic.name.clone(), index);
        repl.host.add(set.group, replica, store, peers, source);
        repl.groups
            .borrow_mut()
            .insert(set.group, (topic.name.clone(), index));
        let link = ReplicaLink::new(repl.host.clone(), set.group);
        let part = Partition::open_replicated(topic.clone(), index, log, link);
        self.partitions
            .borrow_mut()
            .insert((topic.id, index), Rc::new(part));
        Ok(())
    }

    /// Stops hosting `part`'s replica, if it has one (before its log is closed).
    pub(super) async fn remove_replica(&self, part: &Partition) {
        let (Some(link), Some(repl)) = (part.replica(), self.replication.as_ref()) else {
            return;
        };
        repl.host.remove(link.group).await;
        repl.groups.borrow_mut().remove(&link.group);
        repl.isr_reported.borrow_mut().remove(&link.group);
    }

    /// Keeps the elections this shard's replicas win, and their in-sync replicas, reported to
    /// the metadata log (from shard 0, where the voter is), so the registry sends clients
    /// here and Metadata shows the ISR: at once when one is won, and again every
    /// [`REPORT_CHECK`] while the registry does not name this broker in the replica's term
    /// with the in-sync set it counts now (a report lost to a metadata leader change, never
    /// made, or a follower that fell behind or caught up). Reports are idempotent.
    pub(super) fn report_elections(self: &Rc<Self>) {
        let Some(repl) = self.replication.as_ref() else {
            return;
        };
        let shard = Rc::downgrade(self);
        repl.host.on_leadership(Rc::new(move |group, _| {
            if let Some(s) = shard.upgrade() {
                s.report_if_unknown(group);
            }
        }));
        let shard = Rc::downgrade(self);
        let check = runtime::spawn(async move {
            loop {
                runtime::sleep(REPORT_CHECK).await;
                let Some(s) = shard.upgrade() else { return };
                let groups: Vec<u64> = match s.replication.as_ref() {
                    Some(r) => r.groups.borrow().keys().copied().collect(),
                    None => return,
                };
                for group in groups {
                    s.report_if_unknown(group);
                }
            }
        });
        *repl.checker.borrow_mut() = Some(check);
    }

    /// With auto.leader.rebalance on: every `leader_imbalance_check_interval_ms`, each
    /// replica here that leads a partition whose preferred replica (the first of its set) is
    /// another one, in sync, hands leadership to it — so leadership spreads over the brokers
    /// and shards again once a broker that died is back (Kafka's preferred leader election).
    pub(super) fn balance_leaders(self: &Rc<Self>) {
        let Some(repl) = self.replication.as_ref() else {
            return;
        };
        if !self.config.auto_leader_rebalance {
            return;
        }
        let every =
            std::time::Duration::from_millis(self.config.leader_imbalance_check_interval_ms);
        let shard = Rc::downgrade(self);
        let task = runtime::spawn(async move {
            loop {
                runtime::sleep(every).await;
                let Some(s) = shard.upgrade() else { return };
                s.hand_back_leadership();
            }
        });
        *repl.balancer.borrow_mut() = Some(task);
    }

    /// One balancing pass (`balance_leaders`).
    fn hand_back_leadership(&self) {
        let Some(repl) = self.replication.as_ref() else {
            return;
        };
        let me = self.config.node_id;
        let snap = self.metadata();
        let groups: Vec<(u64, (String, i32))> = repl
            .groups
            .borrow()
            .iter()
            .map(|(g, p)| (*g, p.clone()))
            .collect();
        for (group, (topic, partition)) in groups {
            let leads = repl
                .host
                .leadership(group)
                .is_some_and(|l| l.leader == Some(me as u64));
            if !leads || !repl.host.term_started(group) {
                continue;
            }
            let preferred = snap.topic(&topic).and_then(|t| {
                let set = snap.cluster.as_ref()?.replica_set(&t.id, partition)?;
                set.members.first().map(|m| m.broker)
            });
            let alive = |b: i32| {
                let c = snap.cluster.as_ref();
                c.is_some_and(|c| c.brokers.get(&b).is_some_and(|a| a.alive))
            };
            let Some(preferred) = preferred.filter(|&p| p != me && alive(p)) else {
                continue;
            };
            // In sync and holding the whole log now (a follower a new leader only presumes
            // in sync is not handed leadership).
            let in_sync = repl.host.in_sync_ids(group).unwrap_or_default();
            let lags = repl.host.follower_lag(group).unwrap_or_default();
            let level = lags
                .iter()
                .any(|&(id, lag)| id == preferred as u64 && lag == 0);
            if in_sync.contains(&(preferred as u64)) && level {
                tracing::info!(
                    topic,
                    partition,
                    to = preferred,
                    "handing leadership back to the preferred replica"
                );
                repl.host.transfer_leader(group, preferred as u64);
            }
        }
    }

    /// Controlled shutdown (Kafka's controlled.shutdown.enable): hands the leadership of
    /// every partition this shard's replicas lead to its in-sync follower furthest along,
    /// then waits — at most [`HAND_OFF_WAIT`] — until none leads here and the registry
    /// names other leaders, so clients (and group members, whose logs move too) follow at
    /// once instead of waiting for an election after the broker is gone. The Kafka listener
    /// is still open meanwhile: requests get NOT_LEADER_OR_FOLLOWER or NOT_COORDINATOR.
    pub async fn hand_off_leadership(&self) {
        let Some(repl) = self.replication.as_ref() else {
            return;
        };
        let me = self.config.node_id as u64;
        let deadline = std::time::Instant::now() + HAND_OFF_WAIT;
        let mut asked_to: HashMap<u64, u64> = HashMap::new();
        loop {
            let groups: Vec<u64> = repl.groups.borrow().keys().copied().collect();
            let (mut leading, mut movable) = (0usize, 0usize);
            for group in groups {
                let leads = repl
                    .host
                    .leadership(group)
                    .is_some_and(|l| l.leader == Some(me));
                if !leads {
                    continue;
                }
                leading += 1;
                let lags = repl.host.follower_lag(group).unwrap_or_default();
                let in_sync = repl.host.in_sync_ids(group).unwrap_or_default();
                // The in-sync follower furthest along (one level with the leader first):
                // Raft's transfer brings it level (proposals wait meanwhile), then lets it
                // campaign. The same one is asked each round, so a transfer is not restarted.
                let chosen = asked_to.get(&group).copied();
                let to = chosen.or_else(|| {
                    lags.iter()
                        .filter(|&&(id, _)| in_sync.contains(&id))
                        .min_by_key(|&&(_, lag)| lag)
                        .map(|&(id, _)| id)
                });
                if let Some(to) = to {
                    movable += 1;
                    if asked_to.insert(group, to).is_none() {
                        tracing::info!(group, to, "handing leadership off before stopping");
                        repl.host.transfer_leader(group, to);
                    }
                }
            }
            let listed = self.leader_in_registry();
            // Done when nothing is led here any more and the registry knows it; given up
            // when no follower can take what is still led (none in sync), or at the deadline.
            let stuck = leading > 0 && movable == 0;
            if (leading == 0 && !listed) || stuck || std::time::Instant::now() >= deadline {
                if leading > 0 {
                    tracing::warn!(leading, "stopping while still leading partitions");
                }
                return;
            }
            runtime::sleep(std::time::Duration::from_millis(50)).await;
        }
    }

    /// Whether the registry names this broker the leader of a partition this shard hosts a
    /// replica of.
    fn leader_in_registry(&self) -> bool {
        let Some(repl) = self.replication.as_ref() else {
            return false;
        };
        let snap = self.metadata();
        let Some(c) = snap.cluster.as_ref() else {
            return false;
        };
        let me = self.config.node_id;
        let hosted: Vec<(String, i32)> = repl.groups.borrow().values().cloned().collect();
        hosted.iter().any(|(topic, partition)| {
            snap.topic(topic)
                .is_some_and(|t| c.leader(&t.id, *partition) == Some(me))
        })
    }

    /// Reports `group`'s election if its replica here leads and the registry does not say
    /// so for its term, unless a report is on its way.
    fn report_if_unknown(self: &Rc<Self>, group: u64) {
        let Some(repl) = self.replication.as_ref() else {
            return;
        };
        let me = self.config.node_id;
        let Some(l) = repl.host.leadership(group) else {
            return;
        };
        if l.leader != Some(me as u64) || repl.reporting.borrow().contains(&group) {
            return;
        }
        let Some((topic, partition)) = repl.groups.borrow().get(&group).cloned() else {
            return;
        };
        let epoch = i32::try_from(l.term).unwrap_or(i32::MAX);
        let mut isr: Vec<i32> = repl
            .host
            .in_sync_ids(group)
            .unwrap_or_default()
            .into_iter()
            .filter_map(|id| i32::try_from(id).ok())
            .collect();
        isr.sort_unstable();
        // What the registry holds: whether it names this election (leader and epoch), and
        // whether with this in-sync set. Nothing to report if both, or the topic is gone here.
        let snap = self.metadata();
        let held = snap.topic(&topic).and_then(|t| {
            let c = snap.cluster.as_ref()?;
            let set = c.replica_set(&t.id, partition)?;
            let election = c.leader(&t.id, partition) == Some(me) && set.epoch == epoch;
            Some((election, set.isr.as_deref() == Some(&isr[..])))
        });
        let Some((same_election, same_isr)) = held else {
            return;
        };
        if same_election && same_isr {
            return;
        }
        // A change of the in-sync set alone (same leader, same epoch) is reported at most
        // every ISR_REPORT_MIN, so followers dropping out and back in under bursts do not
        // make a metadata record each time (acks=all counts in sync locally, not from here).
        let now = std::time::Instant::now();
        let last = repl.isr_reported.borrow().get(&group).copied();
        if same_election && last.is_some_and(|at| now - at < ISR_REPORT_MIN) {
            return;
        }
        repl.isr_reported.borrow_mut().insert(group, now);
        repl.reporting.borrow_mut().insert(group);
        let record = MetaRecord::PartitionLeader {
            topic,
            partition,
            group,
            leader: me,
            epoch,
            isr,
        };
        let s = self.clone();
        runtime::spawn(async move {
            let submitted = s.on(0, move |_| async move {
                edge::submit(record)
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            });
            if let Err(e) = submitted.await.map_err(|e| e.to_string()).and_then(|r| r) {
                tracing::debug!(group, error = %e, "election not reported; trying again");
            }
            if let Some(r) = s.replication.as_ref() {
                r.reporting.borrow_mut().remove(&group);
            }
        })
        .detach();
    }
}
