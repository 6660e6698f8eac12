//! Where partitions and groups live in a cluster, as one broker's registry snapshot says: the
//! brokers with their addresses and liveness, the metadata leader, and each partition's broker
//! and shard there. A single broker has none of this (every partition and group is its own);
//! in a cluster the metadata log's image builds it (`cluster::ClusterImage::registry_for`) and
//! every shard reads it from its snapshot to route a request or to tell the client to go
//! elsewhere (NOT_LEADER_OR_FOLLOWER, NOT_COORDINATOR).

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;

use uuid::Uuid;

/// A broker as clients reach it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BrokerAddr {
    /// The host it advertises.
    pub host: String,
    /// Its Kafka port.
    pub port: u16,
    /// Whether it is heart-beating (a dead broker's partitions have no leader).
    pub alive: bool,
}

/// A partition's home: the broker, and the shard on that broker.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Place {
    /// The broker's node id.
    pub broker: i32,
    /// The shard on that broker.
    pub shard: u32,
}

/// A partition's replicas as the registry places them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReplicaSet {
    /// Its Raft group id (0: one replica, no group).
    pub group: u64,
    /// Each replica's broker and its shard there, the preferred leader first.
    pub members: Vec<Place>,
    /// The leader epoch: the elected leader's as it reported it (0 before any report).
    pub epoch: i32,
    /// The in-sync replicas the elected leader last reported (None: none reported).
    pub isr: Option<Vec<i32>>,
}

impl ReplicaSet {
    /// Whether the partition has more than one replica (a Raft group).
    pub fn is_replicated(&self) -> bool {
        self.members.len() > 1
    }

    /// The replicas' brokers, the preferred leader first.
    pub fn brokers(&self) -> Vec<i32> {
        self.members.iter().map(|m| m.broker).collect()
    }
}

/// A partition as Metadata and DescribeTopicPartitions report it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartitionView {
    /// The leader, None while it (or, unreplicated, its only broker) is dead.
    pub leader: Option<i32>,
    /// The leader epoch.
    pub epoch: i32,
    /// Every replica's broker, the preferred leader first.
    pub replicas: Vec<i32>,
    /// The replicas in sync: as the leader last reported them (those on live brokers before
    /// it did); none while there is no leader.
    pub isr: Vec<i32>,
    /// The replicas on dead brokers.
    pub offline: Vec<i32>,
}

/// Partition counts by health (`ClusterMeta::partition_health`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PartitionHealth {
    /// Partitions led by each live broker, by node id.
    pub leaders: BTreeMap<i32, u64>,
    /// Partitions without a leader.
    pub offline: u64,
    /// Partitions this broker leads with fewer live replicas than assigned.
    pub under_replicated_here: u64,
}

/// Where a partition is served, as seen from one broker.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Where {
    /// On this broker, by this shard.
    Here(usize),
    /// On another broker, which is alive.
    There(i32),
    /// On a broker that is dead, or not known to this snapshot: no leader now.
    Nowhere,
}

/// The cluster part of a registry snapshot.
#[derive(Clone, Debug, Default)]
pub struct ClusterMeta {
    /// This broker's node id.
    pub me: i32,
    /// The metadata log's voters (sorted): the group coordinators are drawn from them.
    pub voters: Vec<i32>,
    /// The metadata leader (Kafka's controller), if known.
    pub controller: Option<i32>,
    /// Every registered broker by node id.
    pub brokers: BTreeMap<i32, BrokerAddr>,
    /// Each topic's partitions, in index order: where each is served (its leader's replica).
    pub placement: HashMap<Uuid, Arc<[Place]>>,
    /// Each topic's replica sets, in index order (absent: the placement's broker alone).
    pub replicas: HashMap<Uuid, Arc<[ReplicaSet]>>,
    /// Each registered broker's cluster listener (its shard 0's; shard i at port + i).
    pub cluster_addrs: BTreeMap<i32, SocketAddr>,
}

impl ClusterMeta {
    /// Where partition `index` of topic `id` is served (the index is in range).
    pub fn locate(&self, id: &Uuid, index: i32) -> Where {
        let place = self.placement.get(id).and_then(|p| p.get(index as usize));
        match place {
            Some(p) if p.broker == self.me => Where::Here(p.shard as usize),
            Some(p) if self.brokers.get(&p.broker).is_some_and(|b| b.alive) => {
                Where::There(p.broker)
            }
            _ => Where::Nowhere,
        }
    }

    /// The leader of a partition for Metadata: its broker if alive, else None.
    pub fn leader(&self, id: &Uuid, index: i32) -> Option<i32> {
        match self.locate(id, index) {
            Where::Here(_) => Some(self.me),
            Where::There(b) => Some(b),
            Where::Nowhere => None,
        }
    }

    /// A partition's preferred leader, alive or not (the broker new partitions' records
    /// keep for the existing ones).
    pub fn replica(&self, id: &Uuid, index: i32) -> Option<i32> {
        match self.replica_set(id, index) {
            Some(set) => set.members.first().map(|m| m.broker),
            None => Some(self.placement.get(id)?.get(index as usize)?.broker),
        }
    }

    /// A partition's replica set, if the registry gives one.
    pub fn replica_set(&self, id: &Uuid, index: i32) -> Option<&ReplicaSet> {
        self.replicas.get(id)?.get(usize::try_from(index).ok()?)
    }

    /// Whether broker `b` is alive (this broker always is, to itself).
    fn alive(&self, b: i32) -> bool {
        b == self.me || self.brokers.get(&b).is_some_and(|a| a.alive)
    }

    /// Partition `index` of topic `id` for Metadata.
    pub fn view(&self, id: &Uuid, index: i32) -> PartitionView {
        let leader = self.leader(id, index);
        let (replicas, epoch, reported) = match self.replica_set(id, index) {
            Some(set) => (set.brokers(), set.epoch, set.isr.clone()),
            None => (self.replica(id, index).into_iter().collect(), 0, None),
        };
        let (live, offline): (Vec<i32>, Vec<i32>) = replicas.iter().partition(|&&b| self.alive(b));
        // The leader's own count where it reported one (of those still alive), else every
        // replica on a live broker.
        let mut isr = match reported {
            Some(r) => r.into_iter().filter(|&b| self.alive(b)).collect(),
            None => live,
        };
        if leader.is_none() {
            isr.clear();
        }
        PartitionView {
            leader,
            epoch,
            replicas,
            isr,
            offline,
        }
    }

    /// The partitions' health as this broker's image sees it, for the metrics: how many
    /// partitions each live broker leads, how many have no leader (their broker is dead), and
    /// how many of those this broker leads have a replica that is not alive (none while a
    /// partition has one replica, its leader).
    pub fn partition_health(&self) -> PartitionHealth {
        let mut h = PartitionHealth::default();
        for (id, places) in &self.placement {
            for (i, place) in places.iter().enumerate() {
                if !self.alive(place.broker) {
                    h.offline += 1;
                    continue;
                }
                *h.leaders.entry(place.broker).or_default() += 1;
                let v = self.view(id, i as i32);
                if place.broker == self.me && v.isr.len() < v.replicas.len() {
                    h.under_replicated_here += 1;
                }
            }
        }
        h
    }

    /// The brokers clients are told about: the live ones (this one always, so a client that
    /// reached it has somewhere to go while the image is young).
    pub fn live_brokers(&self, me: &BrokerAddr) -> Vec<(i32, BrokerAddr)> {
        let mut out: Vec<(i32, BrokerAddr)> = self
            .brokers
            .iter()
            .filter(|(_, b)| b.alive)
            .map(|(id, b)| (*id, b.clone()))
            .collect();
        if !out.iter().any(|(id, _)| *id == self.me) {
            out.push((self.me, me.clone()));
            out.sort_by_key(|(id, _)| *id);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta() -> ClusterMeta {
        let addr = |alive| BrokerAddr {
            host: "h".into(),
            port: 1,
            alive,
        };
        let id = Uuid::from_u128(9);
        let places = [(1, 0), (2, 1), (3, 0)].map(|(broker, shard)| Place { broker, shard });
        ClusterMeta {
            me: 1,
            voters: vec![1, 2, 3],
            controller: Some(2),
            brokers: [(1, addr(true)), (2, addr(true)), (3, addr(false))].into(),
            placement: [(id, Arc::from(places.as_slice()))].into(),
            ..ClusterMeta::default()
        }
    }

    #[test]
    fn partitions_are_here_there_or_nowhere() {
        let m = meta();
        let id = Uuid::from_u128(9);
        assert_eq!(m.locate(&id, 0), Where::Here(0));
        assert_eq!(m.locate(&id, 1), Where::There(2));
        assert_eq!(m.locate(&id, 2), Where::Nowhere, "broker 3 is dead");
        assert_eq!(m.locate(&Uuid::from_u128(1), 0), Where::Nowhere);
        assert_eq!((m.leader(&id, 2), m.replica(&id, 2)), (None, Some(3)));
    }

    #[test]
    fn dead_brokers_are_not_listed() {
        let m = meta();
        let me = m.brokers[&1].clone();
        let live: Vec<i32> = m.live_brokers(&me).into_iter().map(|(id, _)| id).collect();
        assert_eq!(live, vec![1, 2]);
    }

    #[test]
    fn health_counts_leaders_per_live_broker_and_offline_partitions() {
        let h = meta().partition_health();
        assert_eq!(h.leaders, [(1, 1), (2, 1)].into());
        assert_eq!((h.offline, h.under_replicated_here), (1, 0));
    }
}
