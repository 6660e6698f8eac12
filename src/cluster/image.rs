//! The metadata log's records and the image they build. Every voter applies the same
//! committed records in the same order, so `apply` is deterministic: every choice (a topic's
//! id, a partition's broker, a producer-id block) is made by the leader before it proposes
//! and travels inside the record. A record that no longer fits the image when applied (a
//! topic created twice by two leaders' proposals racing a term change) changes nothing and
//! says so, the same way on every node.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use super::place;
use crate::metadata::{
    BrokerAddr, ClusterMeta, Place, ReplicaSet, Snapshot, TopicConfigs, TopicMeta,
};

/// A broker as the cluster knows it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Broker {
    /// Its node id (Kafka's broker id).
    pub node_id: i32,
    /// The Kafka listener it advertises to clients.
    pub host: String,
    /// The Kafka listener's port.
    pub port: u16,
    /// Its cluster listener (shard i listens on this port + i), "host:port".
    pub cluster_addr: String,
    /// How many shards it runs.
    pub shards: u32,
    /// False while it is not heart-beating (its partitions have no leader then).
    pub alive: bool,
}

/// One committed change to the cluster's metadata. Serialized as JSON with a `type` tag:
/// records are few (admin operations, broker arrivals) and readable in a dump.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum MetaRecord {
    /// A broker joined, or came back with new addresses or shard count.
    RegisterBroker(Broker),
    /// A broker stopped (false) or resumed (true) heart-beating.
    BrokerAlive {
        /// The broker.
        node_id: i32,
        /// Its liveness now.
        alive: bool,
    },
    /// A new topic with the broker of each partition (index order).
    CreateTopic {
        /// The topic, its id drawn by the leader.
        topic: TopicMeta,
        /// Partition i lives on broker `brokers[i]` (its preferred leader).
        brokers: Vec<i32>,
        /// The other replicas of partition i, when the topic is replicated (empty: one
        /// replica each, as every record before replication).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        followers: Vec<Vec<i32>>,
    },
    /// A topic is deleted.
    DeleteTopic {
        /// Its name.
        name: String,
    },
    /// A topic grows to `brokers.len()` partitions; the new ones on the brokers listed
    /// (the existing ones keep theirs).
    CreatePartitions {
        /// The topic's name.
        name: String,
        /// The broker of every partition, old and new.
        brokers: Vec<i32>,
        /// The other replicas of every partition, old and new (empty: one replica each).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        followers: Vec<Vec<i32>>,
    },
    /// A topic's whole config set is replaced.
    SetConfigs {
        /// The topic's name.
        name: String,
        /// The configs it sets from now on.
        configs: TopicConfigs,
    },
    /// Producer ids `from..until` are handed out to `broker` (the block must start where the
    /// last one ended: two brokers asking at once get one block, the other asks again).
    ProducerIds {
        /// The broker that asked.
        broker: i32,
        /// The block's first id: the image's `producer_ids_until` when it was asked for.
        from: i64,
        /// One past the block's last id.
        until: i64,
    },
    /// A partition's replica won its Raft election: it leads from `epoch` (its term) on. A
    /// report whose epoch is not above the recorded one is stale and changes nothing, so
    /// reports may arrive late, twice or out of order (at most one leader per term).
    PartitionLeader {
        /// The topic's name.
        topic: String,
        /// The partition.
        partition: i32,
        /// Its Raft group id: a report from a deleted topic's group (the same name created
        /// again) matches no partition.
        group: u64,
        /// The leading broker (one of the partition's replicas).
        leader: i32,
        /// Its leader epoch.
        epoch: i32,
        /// The replicas the leader counts in sync, itself included (empty: not reported). A
        /// report in the same epoch by the same leader updates only this.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        isr: Vec<i32>,
    },
}

/// Bits of a Raft group id that hold the partition index (`PlacedTopic::group`).
const GROUP_PARTITION_BITS: u32 = 24;

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// A topic in the image: its registry entry and where its partitions live.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PlacedTopic {
    /// The registry entry (name, id, partitions, configs).
    pub meta: TopicMeta,
    /// The broker of partition i (its preferred leader).
    pub brokers: Vec<i32>,
    /// The other replicas of partition i; empty when the topic has one replica.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub followers: Vec<Vec<i32>>,
    /// The topic's sequence number in the cluster, from 1 (0: created before topics were
    /// numbered); its partitions' Raft group ids derive from it ([`PlacedTopic::group`]).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub seq: u64,
    /// The elected leader and its epoch of the partitions whose replicas reported one
    /// (others are led by their preferred leader, `brokers[i]`, in epoch 0).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub elected: BTreeMap<i32, (i32, i32)>,
    /// The in-sync replicas the elected leaders last reported, by partition (sorted).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub isr: BTreeMap<i32, Vec<i32>>,
}

impl PlacedTopic {
    /// The replication factor.
    pub fn replication_factor(&self) -> usize {
        1 + self.followers.first().map_or(0, Vec::len)
    }

    /// The Raft group id of partition `p`: the topic's sequence number above 24 bits of
    /// partition index, so no two partitions of the cluster share one and none is the
    /// metadata log's (0). None for a topic without a number or a partition past 2^24.
    pub fn group(&self, p: i32) -> Option<u64> {
        let p = u64::try_from(p)
            .ok()
            .filter(|&p| p < 1 << GROUP_PARTITION_BITS)?;
        (self.seq != 0).then_some(self.seq << GROUP_PARTITION_BITS | p)
    }

    /// The leader of partition `p` (in range) and its epoch.
    pub fn leader(&self, p: usize) -> (i32, i32) {
        let elected = self.elected.get(&(p as i32)).copied();
        elected.unwrap_or((self.brokers[p], 0))
    }

    /// The replicas of partition `p` (in range), preferred leader first.
    pub fn replicas(&self, p: usize) -> Vec<i32> {
        let mut r = vec![self.brokers[p]];
        r.extend(self.followers.get(p).into_iter().flatten());
        r
    }
}

/// What the metadata log says, as of `applied`.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ClusterImage {
    /// The last log index applied (0 for none); the registry version derives from it.
    pub applied: u64,
    /// Brokers by node id.
    pub brokers: BTreeMap<i32, Broker>,
    /// Topics by name.
    pub topics: BTreeMap<String, PlacedTopic>,
    /// One past the last producer id handed out.
    pub producer_ids_until: i64,
    /// Topics created so far: the sequence number of the newest (Raft group ids derive
    /// from it; images written before it counted start at 0).
    #[serde(default)]
    pub topics_created: u64,
}

/// Why a committed record changed nothing.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ApplyError {
    /// It names a topic that does not exist (or creates one that does).
    #[error("topic {0}: {1}")]
    Topic(String, &'static str),
    /// It names a broker that never registered.
    #[error("unknown broker {0}")]
    UnknownBroker(i32),
    /// A partition list that does not match the topic.
    #[error("topic {0}: {1} partitions where {2} were expected")]
    Partitions(String, usize, i32),
    /// A producer-id block that does not start where the last one ended.
    #[error("producer-id block from {0} is not the next one")]
    ProducerIds(i64),
}

impl ClusterImage {
    /// Applies the record committed at `index` (indexes only grow). On an error the image is
    /// unchanged but for `applied`.
    pub fn apply(&mut self, index: u64, r: &MetaRecord) -> Result<(), ApplyError> {
        assert!(index > self.applied, "records apply in log order");
        self.applied = index;
        match r {
            MetaRecord::RegisterBroker(b) => {
                self.brokers.insert(b.node_id, b.clone());
                Ok(())
            }
            MetaRecord::BrokerAlive { node_id, alive } => {
                let b = self.brokers.get_mut(node_id);
                b.ok_or(ApplyError::UnknownBroker(*node_id))?.alive = *alive;
                Ok(())
            }
            MetaRecord::CreateTopic {
                topic,
                brokers,
                followers,
            } => self.create(topic, brokers, followers),
            MetaRecord::DeleteTopic { name } => self
                .topics
                .remove(name)
                .map(|_| ())
                .ok_or(ApplyError::Topic(name.clone(), "unknown")),
            MetaRecord::CreatePartitions {
                name,
                brokers,
                followers,
            } => self.grow(name, brokers, followers),
            MetaRecord::SetConfigs { name, configs } => {
                let t = self.topics.get_mut(name);
                let t = t.ok_or(ApplyError::Topic(name.clone(), "unknown"))?;
                t.meta.configs = configs.clone();
                Ok(())
            }
            MetaRecord::PartitionLeader {
                topic,
                partition,
                group,
                leader,
                epoch,
                isr,
            } => self.elect(topic, (*partition, *group), (*leader, *epoch), isr),
            MetaRecord::ProducerIds { from, until, .. } => {
                if *from != self.producer_ids_until || until <= from {
                    return Err(ApplyError::ProducerIds(*from));
                }
                self.producer_ids_until = *until;
                Ok(())
            }
        }
    }

    fn create(
        &mut self,
        topic: &TopicMeta,
        brokers: &[i32],
        followers: &[Vec<i32>],
    ) -> Result<(), ApplyError> {
        let name = &topic.name;
        if self.topics.contains_key(name) {
            return Err(ApplyError::Topic(name.clone(), "exists"));
        }
        if self.topics.values().any(|t| t.meta.id == topic.id) {
            return Err(ApplyError::Topic(name.clone(), "its id is taken"));
        }
        self.check_brokers(name, brokers, topic.partitions)?;
        self.check_followers(name, brokers, followers)?;
        self.topics_created += 1;
        let placed = PlacedTopic {
            meta: topic.clone(),
            brokers: brokers.to_vec(),
            followers: followers.to_vec(),
            seq: self.topics_created,
            elected: BTreeMap::new(),
            isr: BTreeMap::new(),
        };
        self.topics.insert(name.clone(), placed);
        Ok(())
    }

    fn grow(
        &mut self,
        name: &str,
        brokers: &[i32],
        followers: &[Vec<i32>],
    ) -> Result<(), ApplyError> {
        let t = self.topics.get(name);
        let t = t.ok_or(ApplyError::Topic(name.to_string(), "unknown"))?;
        let count = t.meta.partitions as usize;
        let kept = brokers.len() > count
            && brokers[..count] == t.brokers[..]
            && (t.followers.is_empty() || followers.get(..count) == Some(&t.followers[..]))
            && (followers.is_empty() || followers.len() == brokers.len());
        if !kept || t.replication_factor() != 1 + followers.first().map_or(0, Vec::len) {
            return Err(ApplyError::Partitions(
                name.into(),
                brokers.len(),
                count as i32,
            ));
        }
        self.check_brokers(name, brokers, brokers.len() as i32)?;
        self.check_followers(name, brokers, followers)?;
        let t = self.topics.get_mut(name).expect("looked up above");
        t.meta.partitions = brokers.len() as i32;
        t.brokers = brokers.to_vec();
        t.followers = followers.to_vec();
        Ok(())
    }

    fn elect(
        &mut self,
        name: &str,
        (p, group): (i32, u64),
        (leader, epoch): (i32, i32),
        isr: &[i32],
    ) -> Result<(), ApplyError> {
        let t = self.topics.get_mut(name);
        let t = t.ok_or(ApplyError::Topic(name.to_string(), "unknown"))?;
        let at = usize::try_from(p).ok().filter(|&p| p < t.brokers.len());
        let Some(at) = at.filter(|_| t.group(p) == Some(group)) else {
            return Err(ApplyError::Topic(name.into(), "no such partition"));
        };
        if !t.replicas(at).contains(&leader) {
            return Err(ApplyError::Topic(
                name.into(),
                "the leader is not a replica",
            ));
        }
        let replicas = t.replicas(at);
        if isr.iter().any(|b| !replicas.contains(b)) {
            return Err(ApplyError::Topic(
                name.into(),
                "an in-sync replica is not a replica",
            ));
        }
        let same = t.leader(at) == (leader, epoch) && t.elected.contains_key(&p);
        if epoch <= t.leader(at).1 && !same {
            return Err(ApplyError::Topic(name.into(), "stale leader epoch"));
        }
        t.elected.insert(p, (leader, epoch));
        if isr.is_empty() {
            t.isr.remove(&p);
        } else {
            let mut isr = isr.to_vec();
            isr.push(leader);
            isr.sort_unstable();
            isr.dedup();
            t.isr.insert(p, isr);
        }
        Ok(())
    }

    fn check_brokers(&self, name: &str, brokers: &[i32], n: i32) -> Result<(), ApplyError> {
        if brokers.len() != n as usize {
            return Err(ApplyError::Partitions(name.into(), brokers.len(), n));
        }
        match brokers.iter().find(|b| !self.brokers.contains_key(b)) {
            Some(b) => Err(ApplyError::UnknownBroker(*b)),
            None => Ok(()),
        }
    }

    /// Followers, if any: one set per partition, all of one size, of known brokers, none
    /// repeated within a set or the partition's own leader.
    fn check_followers(
        &self,
        name: &str,
        brokers: &[i32],
        followers: &[Vec<i32>],
    ) -> Result<(), ApplyError> {
        if followers.is_empty() {
            return Ok(());
        }
        if followers.len() != brokers.len() {
            let n = brokers.len() as i32;
            return Err(ApplyError::Partitions(name.into(), followers.len(), n));
        }
        let rf = followers[0].len();
        if rf == 0 {
            return Err(ApplyError::Topic(name.into(), "empty replica sets"));
        }
        for (leader, set) in brokers.iter().zip(followers) {
            let mut all = set.clone();
            all.push(*leader);
            all.sort_unstable();
            all.dedup();
            if set.len() != rf || all.len() != rf + 1 {
                return Err(ApplyError::Topic(
                    name.into(),
                    "replica sets are not distinct",
                ));
            }
            if let Some(b) = set.iter().find(|b| !self.brokers.contains_key(b)) {
                return Err(ApplyError::UnknownBroker(*b));
            }
        }
        Ok(())
    }

    /// The topic registry every shard installs: the version is the applied index, so it
    /// grows with every record, as the single-node registry's version grows with every change.
    pub fn registry(&self) -> Snapshot {
        let topics = self.topics.values().map(|t| t.meta.clone());
        Snapshot::from_topics(self.applied, topics)
    }

    /// The registry as broker `me` = (node id, shards) installs it: the topics with where
    /// each partition lives (its broker, and the shard there by `place::shard_on_broker`,
    /// for this broker by its own shard count: a registration with another count may not be
    /// committed yet), the brokers, the `voters` (group coordinators) and the metadata
    /// `leader`.
    pub fn registry_for(&self, me: (i32, u32), voters: &[i32], leader: Option<i32>) -> Snapshot {
        let brokers = self
            .brokers
            .iter()
            .map(|(id, b)| {
                let addr = BrokerAddr {
                    host: b.host.clone(),
                    port: b.port,
                    alive: b.alive,
                };
                (*id, addr)
            })
            .collect();
        let sets: HashMap<uuid::Uuid, Arc<[ReplicaSet]>> = self
            .topics
            .values()
            .map(|t| (t.meta.id, self.replica_sets(t, me)))
            .collect();
        let placement = self
            .topics
            .values()
            .map(|t| (t.meta.id, Self::places(t, &sets[&t.meta.id])))
            .collect();
        let cluster_addrs = self
            .brokers
            .iter()
            .filter_map(|(id, b)| Some((*id, b.cluster_addr.parse().ok()?)))
            .collect();
        let mut voters = voters.to_vec();
        voters.sort_unstable();
        let mut snap = self.registry();
        snap.cluster = Some(Arc::new(ClusterMeta {
            me: me.0,
            voters,
            controller: leader,
            brokers,
            placement,
            replicas: sets,
            cluster_addrs,
        }));
        snap
    }

    /// Each partition's replica set: every replica's broker and its shard there
    /// (`place::shard_of_replica`; for this broker by its own shard count, as a
    /// registration with another count may not be committed yet), its group and epoch.
    fn replica_sets(&self, t: &PlacedTopic, me: (i32, u32)) -> Arc<[ReplicaSet]> {
        let n = t.meta.partitions as usize;
        let sets: Vec<Vec<i32>> = (0..n).map(|p| t.replicas(p)).collect();
        let shards_of = |broker: i32| match self.brokers.get(&broker) {
            _ if broker == me.0 => me.1.max(1),
            Some(b) => b.shards.max(1),
            None => 1,
        };
        (0..n)
            .map(|p| {
                let members = sets[p]
                    .iter()
                    .enumerate()
                    .map(|(j, &broker)| {
                        let shards = shards_of(broker) as usize;
                        let shard = place::shard_of_replica(&t.meta.id, p as i32, j, &sets, shards);
                        Place {
                            broker,
                            shard: shard as u32,
                        }
                    })
                    .collect();
                let replicated = sets[p].len() > 1;
                ReplicaSet {
                    group: if replicated {
                        t.group(p as i32).unwrap_or(0)
                    } else {
                        0
                    },
                    members,
                    epoch: t.leader(p).1,
                    isr: t.isr.get(&(p as i32)).cloned(),
                }
            })
            .collect()
    }

    /// Where each partition is served: its leader's replica (the elected leader, else the
    /// preferred one) among `sets`.
    fn places(t: &PlacedTopic, sets: &[ReplicaSet]) -> Arc<[Place]> {
        sets.iter()
            .enumerate()
            .map(|(p, set)| {
                let leader = t.leader(p).0;
                let place = set.members.iter().find(|m| m.broker == leader);
                *place.unwrap_or(&set.members[0])
            })
            .collect()
    }

    /// The broker leading `partition` of topic `name`, if both exist.
    pub fn broker_of(&self, name: &str, partition: i32) -> Option<&Broker> {
        let t = self.topics.get(name)?;
        let p = usize::try_from(partition)
            .ok()
            .filter(|&p| p < t.brokers.len())?;
        self.brokers.get(&t.leader(p).0)
    }

    /// The image as bytes (the metadata log's snapshot).
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("an image always serializes")
    }

    /// An image from [`ClusterImage::encode`]'s bytes.
    pub fn decode(b: &[u8]) -> Result<ClusterImage, serde_json::Error> {
        serde_json::from_slice(b)
    }
}

/// A metadata log entry: a record, and who proposed it when the proposer waits for it
/// (`node`, `token`): a broker that is not the leader forwards its proposal and learns its
/// fate only by seeing its origin applied.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LogEntry {
    /// (node id, token) of a proposer that waits for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<(u64, u64)>,
    /// The change.
    pub record: MetaRecord,
}

impl LogEntry {
    /// The entry as a log entry's bytes.
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("an entry always serializes")
    }

    /// An entry from [`LogEntry::encode`]'s bytes.
    pub fn decode(b: &[u8]) -> Result<LogEntry, serde_json::Error> {
        serde_json::from_slice(b)
    }
}

impl MetaRecord {
    /// The record as bytes (JSON with its `type` tag).
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a record always serializes")
    }

    /// A record from [`MetaRecord::encode`]'s bytes.
    pub fn decode(b: &[u8]) -> Result<MetaRecord, serde_json::Error> {
        serde_json::from_slice(b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    fn broker(id: i32) -> MetaRecord {
        MetaRecord::RegisterBroker(Broker {
            node_id: id,
            host: "127.0.0.1".into(),
            port: 19092 + 100 * id as u16,
            cluster_addr: format!("127.0.0.1:{}", 19192 + 100 * id),
            shards: 2,
            alive: true,
        })
    }

    fn topic(name: &str, id: u128, brokers: &[i32]) -> MetaRecord {
        replicated(name, id, brokers, &[])
    }

    fn replicated(name: &str, id: u128, brokers: &[i32], followers: &[&[i32]]) -> MetaRecord {
        MetaRecord::CreateTopic {
            topic: TopicMeta {
                name: name.into(),
                id: Uuid::from_u128(id),
                partitions: brokers.len() as i32,
                configs: TopicConfigs::default(),
            },
            brokers: brokers.to_vec(),
            followers: followers.iter().map(|f| f.to_vec()).collect(),
        }
    }

    fn grow(name: &str, brokers: &[i32]) -> MetaRecord {
        grow_replicated(name, brokers, &[])
    }

    fn grow_replicated(name: &str, brokers: &[i32], followers: &[&[i32]]) -> MetaRecord {
        MetaRecord::CreatePartitions {
            name: name.into(),
            brokers: brokers.to_vec(),
            followers: followers.iter().map(|f| f.to_vec()).collect(),
        }
    }

    /// Each row: a record and what applying it after the rows above gives.
    #[test]
    fn records_apply_in_order_and_misfits_change_nothing() {
        let dead = MetaRecord::BrokerAlive {
            node_id: 2,
            alive: false,
        };
        let pids = |from, until| MetaRecord::ProducerIds {
            broker: 1,
            from,
            until,
        };
        let rows: Vec<(MetaRecord, Result<(), ApplyError>)> = vec![
            (broker(1), Ok(())),
            (broker(2), Ok(())),
            (topic("orders", 1, &[1, 2, 1]), Ok(())),
            (
                topic("orders", 2, &[1]),
                Err(ApplyError::Topic("orders".into(), "exists")),
            ),
            (
                topic("bills", 1, &[1]),
                Err(ApplyError::Topic("bills".into(), "its id is taken")),
            ),
            (topic("pay", 3, &[3]), Err(ApplyError::UnknownBroker(3))),
            (
                grow("orders", &[1, 2]),
                Err(ApplyError::Partitions("orders".into(), 2, 3)),
            ),
            (
                grow("orders", &[2, 2, 1, 2]),
                Err(ApplyError::Partitions("orders".into(), 4, 3)),
            ),
            (grow("orders", &[1, 2, 1, 2]), Ok(())),
            (dead, Ok(())),
            (pids(0, 1000), Ok(())),
            (pids(0, 1000), Err(ApplyError::ProducerIds(0))),
            (pids(1000, 1000), Err(ApplyError::ProducerIds(1000))),
            (
                MetaRecord::DeleteTopic { name: "pay".into() },
                Err(ApplyError::Topic("pay".into(), "unknown")),
            ),
        ];
        let mut image = ClusterImage::default();
        for (i, (record, want)) in rows.iter().enumerate() {
            let before = image.clone();
            let got = image.apply(i as u64 + 1, record);
            assert_eq!(&got, want, "row {i}: {record:?}");
            if got.is_err() {
                assert_eq!(image.topics, before.topics, "row {i} changed nothing");
                assert_eq!(image.brokers, before.brokers, "row {i} changed nothing");
            }
        }
        assert_eq!(image.applied, rows.len() as u64);
        assert_eq!(image.topics["orders"].meta.partitions, 4);
        assert_eq!(image.broker_of("orders", 3).map(|b| b.node_id), Some(2));
        assert!(!image.brokers[&2].alive);
        assert_eq!(image.producer_ids_until, 1000);
        let registry = image.registry();
        assert_eq!(registry.version, rows.len() as u64);
        assert_eq!(registry.topic("orders").map(|t| t.partitions), Some(4));
        let mine = image.registry_for((1, 2), &[2, 1], Some(2));
        let c = mine.cluster.as_ref().expect("a cluster registry");
        let id = Uuid::from_u128(1);
        assert_eq!((c.voters.clone(), c.controller), (vec![1, 2], Some(2)));
        assert_eq!(c.replica(&id, 3), Some(2));
        assert_eq!(c.leader(&id, 3), None, "broker 2 is dead");
        assert!(matches!(
            mine.locate(&id, 0, 2),
            crate::metadata::Where::Here(_)
        ));
    }

    #[test]
    fn records_and_images_round_trip_through_bytes() {
        let mut image = ClusterImage::default();
        let records = [broker(1), topic("orders", 9, &[1, 1])];
        for (i, r) in records.iter().enumerate() {
            let bytes = r.encode();
            assert_eq!(&MetaRecord::decode(&bytes).unwrap(), r);
            image.apply(i as u64 + 1, r).unwrap();
        }
        assert!(String::from_utf8(records[0].encode())
            .unwrap()
            .contains(r#""type":"register_broker""#));
        assert_eq!(ClusterImage::decode(&image.encode()).unwrap(), image);
        assert!(MetaRecord::decode(b"{\"type\":\"nope\"}").is_err());
    }

    /// Applies each row's record in order, checking it gives the row's result and that a
    /// refused one changes no topic.
    fn apply_rows(rows: &[(MetaRecord, Result<(), ApplyError>)]) -> ClusterImage {
        let mut image = ClusterImage::default();
        for (i, (record, want)) in rows.iter().enumerate() {
            let before = image.topics.clone();
            let got = image.apply(i as u64 + 1, record);
            assert_eq!(&got, want, "row {i}: {record:?}");
            if got.is_err() {
                assert_eq!(image.topics, before, "row {i} changed nothing");
            }
        }
        image
    }

    /// Replica sets: one per partition, all of one size, distinct, of known brokers; a
    /// replicated topic grows with sets for the old partitions unchanged.
    #[test]
    fn replica_sets_are_checked_and_kept() {
        let rows: Vec<(MetaRecord, Result<(), ApplyError>)> = vec![
            (broker(1), Ok(())),
            (broker(2), Ok(())),
            (broker(3), Ok(())),
            (replicated("a", 1, &[1, 2], &[&[2, 3], &[3, 1]]), Ok(())),
            (
                replicated("b", 2, &[1, 2], &[&[2]]),
                Err(ApplyError::Partitions("b".into(), 1, 2)),
            ),
            (
                replicated("b", 2, &[1, 2], &[&[1], &[3]]),
                Err(ApplyError::Topic(
                    "b".into(),
                    "replica sets are not distinct",
                )),
            ),
            (
                replicated("b", 2, &[1, 2], &[&[2], &[3, 1]]),
                Err(ApplyError::Topic(
                    "b".into(),
                    "replica sets are not distinct",
                )),
            ),
            (
                replicated("b", 2, &[1], &[&[4]]),
                Err(ApplyError::UnknownBroker(4)),
            ),
            (
                replicated("b", 2, &[1, 2], &[&[], &[]]),
                Err(ApplyError::Topic("b".into(), "empty replica sets")),
            ),
            (
                grow("a", &[1, 2, 3]),
                Err(ApplyError::Partitions("a".into(), 3, 2)),
            ),
            (
                grow_replicated("a", &[1, 2, 3], &[&[2, 3], &[1, 3], &[1, 2]]),
                Err(ApplyError::Partitions("a".into(), 3, 2)),
            ),
            (
                grow_replicated("a", &[1, 2, 3], &[&[2, 3], &[3, 1], &[1, 2]]),
                Ok(()),
            ),
        ];
        let image = apply_rows(&rows);
        let a = &image.topics["a"];
        assert_eq!(a.replication_factor(), 3);
        assert_eq!(a.replicas(2), [3, 1, 2]);
        assert_eq!(ClusterImage::decode(&image.encode()).unwrap(), image);
        // A record written before replication, without the field, still reads.
        let old = r#"{"type":"create_partitions","name":"a","brokers":[1]}"#;
        let read = MetaRecord::decode(old.as_bytes()).unwrap();
        assert!(
            matches!(read, MetaRecord::CreatePartitions { followers, .. } if followers.is_empty())
        );
        assert!(!String::from_utf8(topic("x", 5, &[1]).encode())
            .unwrap()
            .contains("followers"));
    }

    /// Leadership reports: a replica of the partition in a newer epoch moves where the
    /// partition is served; stale, foreign or misplaced reports change nothing.
    #[test]
    fn elected_leaders_move_where_a_partition_is_served() {
        let lead = |topic: &str, partition, leader, epoch| MetaRecord::PartitionLeader {
            topic: topic.into(),
            partition,
            group: (1 << 24) + partition.max(0) as u64,
            leader,
            epoch,
            isr: Vec::new(),
        };
        let with_isr = |mut r: MetaRecord, set: &[i32]| {
            if let MetaRecord::PartitionLeader { isr, .. } = &mut r {
                *isr = set.to_vec();
            }
            r
        };
        let rows: Vec<(MetaRecord, Result<(), ApplyError>)> = vec![
            (broker(1), Ok(())),
            (broker(2), Ok(())),
            (broker(3), Ok(())),
            (replicated("a", 1, &[1, 2], &[&[2, 3], &[3, 1]]), Ok(())),
            (lead("a", 0, 2, 3), Ok(())),
            (with_isr(lead("a", 0, 2, 3), &[3, 2]), Ok(())),
            (
                with_isr(lead("a", 0, 2, 3), &[2, 4]),
                Err(ApplyError::Topic(
                    "a".into(),
                    "an in-sync replica is not a replica",
                )),
            ),
            (
                lead("a", 0, 3, 3),
                Err(ApplyError::Topic("a".into(), "stale leader epoch")),
            ),
            (
                lead("a", 0, 1, 2),
                Err(ApplyError::Topic("a".into(), "stale leader epoch")),
            ),
            (
                lead("a", 1, 4, 5),
                Err(ApplyError::Topic("a".into(), "the leader is not a replica")),
            ),
            (
                lead("a", 2, 1, 5),
                Err(ApplyError::Topic("a".into(), "no such partition")),
            ),
            (
                lead("b", 0, 1, 5),
                Err(ApplyError::Topic("b".into(), "unknown")),
            ),
            (lead("a", 1, 1, 1), Ok(())),
            (
                MetaRecord::PartitionLeader {
                    topic: "a".into(),
                    partition: 1,
                    group: (7 << 24) + 1,
                    leader: 2,
                    epoch: 9,
                    isr: Vec::new(),
                },
                Err(ApplyError::Topic("a".into(), "no such partition")),
            ),
        ];
        let image = apply_rows(&rows);
        let a = &image.topics["a"];
        assert_eq!((a.leader(0), a.leader(1)), ((2, 3), (1, 1)));
        assert_eq!(
            (a.group(0), a.group(1)),
            (Some(1 << 24), Some((1 << 24) + 1))
        );
        assert_eq!((a.group(-1), a.group(1 << 24)), (None, None));
        assert_eq!(image.broker_of("a", 0).map(|b| b.node_id), Some(2));
        let snap = image.registry_for((2, 2), &[1, 2, 3], Some(1));
        let c = snap.cluster.as_ref().unwrap();
        let id = Uuid::from_u128(1);
        assert_eq!(c.leader(&id, 0), Some(2), "served by its elected leader");
        assert_eq!(
            c.replica(&id, 0),
            Some(a.brokers[0]),
            "the preferred leader"
        );
        let view = c.view(&id, 0);
        assert_eq!((view.epoch, view.replicas), (3, a.replicas(0)));
        assert_eq!(view.isr, vec![2, 3], "as the leader reported it");
        let other = c.view(&id, 1);
        assert_eq!(
            other.isr, other.replicas,
            "none reported: the live replicas"
        );
        assert_eq!(c.replica_set(&id, 0).unwrap().group, 1 << 24);
        let sets = [a.replicas(0), a.replicas(1)];
        let shard = place::shard_of_replica(&id, 0, 1, &sets, 2);
        assert!(matches!(snap.locate(&id, 0, 2), crate::metadata::Where::Here(s) if s == shard));
        assert_eq!(ClusterImage::decode(&image.encode()).unwrap(), image);
    }
}
