//! The topic registry: names, ids, partition counts and configs of every topic.
//!
//! Shard 0 is the controller: it alone changes the registry (create/delete topics, add
//! partitions, alter configs), persists it (`store.rs`) and then hands every shard the new
//! immutable [`Snapshot`]. Shards read their copy without locks on every request; placement
//! (`shard_for`) tells them which shard owns a partition.

pub mod configs;
pub mod placement;
pub mod store;

use std::collections::BTreeMap;
use std::sync::Arc;

use uuid::Uuid;

pub use configs::{TopicConfigError, TopicConfigs};
pub use placement::{
    BrokerAddr, ClusterMeta, PartitionHealth, PartitionView, Place, ReplicaSet, Where,
};

/// One topic as the registry knows it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TopicMeta {
    /// The topic's name (see [`valid_topic_name`]); also names its partition directories.
    pub name: String,
    /// Kafka's topic id, drawn at creation; placement ([`shard_for`]) hashes it, so a topic
    /// re-created under the same name may land elsewhere.
    pub id: Uuid,
    /// Number of partitions, indexed 0..partitions; at least 1, and it only grows
    /// (CreatePartitions).
    pub partitions: i32,
    /// The configs the topic overrides; the rest take their defaults.
    pub configs: TopicConfigs,
}

/// An immutable view of the registry; `version` grows with every change.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    /// The registry's version: 0 for a new data directory, one more per change (it is
    /// persisted with the topics in `store::StoredRegistry`).
    pub version: u64,
    /// Every topic by name.
    pub topics: BTreeMap<String, Arc<TopicMeta>>,
    /// The same topics by id (Fetch, Metadata and DeleteTopics may name a topic by its id).
    pub by_id: BTreeMap<Uuid, Arc<TopicMeta>>,
    /// In a cluster: the brokers and where each partition lives (None on a single broker,
    /// where everything is here).
    pub cluster: Option<Arc<ClusterMeta>>,
}

impl Snapshot {
    /// A snapshot at `version` holding `topics`, indexed by name and by id.
    pub fn from_topics(version: u64, topics: impl IntoIterator<Item = TopicMeta>) -> Snapshot {
        let mut s = Snapshot {
            version,
            ..Snapshot::default()
        };
        for t in topics {
            let t = Arc::new(t);
            s.by_id.insert(t.id, t.clone());
            s.topics.insert(t.name.clone(), t);
        }
        s
    }

    /// The topic named `name`, if it exists.
    pub fn topic(&self, name: &str) -> Option<&Arc<TopicMeta>> {
        self.topics.get(name)
    }

    /// Where partition `index` of topic `id` is served, for a broker of `shards` shards: on
    /// a single broker always here, on the shard [`shard_for`] gives.
    pub fn locate(&self, id: &Uuid, index: i32, shards: usize) -> Where {
        match &self.cluster {
            None => Where::Here(shard_for(id, index, shards)),
            Some(c) => match c.locate(id, index) {
                Where::Here(shard) if shard >= shards => Where::Nowhere,
                w => w,
            },
        }
    }

    /// A partition as Metadata reports it, for broker `me`: on a single broker `me` leads
    /// and is the only replica; in a cluster the registry's replica set, leader and epoch.
    pub fn partition_view(&self, id: &Uuid, index: i32, me: i32) -> PartitionView {
        match &self.cluster {
            None => PartitionView {
                leader: Some(me),
                epoch: 0,
                replicas: vec![me],
                isr: vec![me],
                offline: Vec::new(),
            },
            Some(c) => c.view(id, index),
        }
    }

    /// The topic with id `id`, if it exists.
    pub fn topic_by_id(&self, id: &Uuid) -> Option<&Arc<TopicMeta>> {
        self.by_id.get(id)
    }

    /// A copy with one topic added or replaced and the version bumped.
    pub fn with_topic(&self, t: TopicMeta) -> Snapshot {
        let mut topics: Vec<TopicMeta> = self
            .topics
            .values()
            .filter(|x| x.name != t.name)
            .map(|x| (**x).clone())
            .collect();
        topics.push(t);
        Snapshot::from_topics(self.version + 1, topics)
    }

    /// A copy without the topic named `name` and the version bumped (bumped even when there
    /// was no such topic).
    pub fn without_topic(&self, name: &str) -> Snapshot {
        let topics = self
            .topics
            .values()
            .filter(|x| x.name != name)
            .map(|x| (**x).clone());
        Snapshot::from_topics(self.version + 1, topics)
    }
}

/// The shard that owns a partition: topic id hash plus partition index, modulo shards. Spreads
/// a topic's partitions round-robin over shards, starting at a per-topic offset, so many
/// single-partition topics do not all land on shard 0. Stable for a given shard count.
pub fn shard_for(topic: &Uuid, partition: i32, shards: usize) -> usize {
    let h = topic.as_u64_pair();
    let start = (h.0 ^ h.1) % shards as u64;
    ((start + partition as u64) % shards as u64) as usize
}

/// Kafka's topic name rule: 1..=249 chars of [a-zA-Z0-9._-], not "." or "..".
pub fn valid_topic_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 249
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placement_spreads_partitions_over_shards() {
        let id = Uuid::from_u128(0x1234_5678_9abc_def0_1122_3344_5566_7788);
        let owners: Vec<usize> = (0..16).map(|p| shard_for(&id, p, 4)).collect();
        for s in 0..4 {
            assert_eq!(owners.iter().filter(|&&o| o == s).count(), 4);
        }
        assert!((0..8).all(|p| shard_for(&id, p, 1) == 0));
    }

    #[test]
    fn topic_names() {
        assert!(valid_topic_name("order.created"));
        assert!(valid_topic_name("user-events_2"));
        assert!(!valid_topic_name(""));
        assert!(!valid_topic_name(".."));
        assert!(!valid_topic_name("a/b"));
        assert!(!valid_topic_name(&"x".repeat(250)));
    }

    #[test]
    fn snapshot_edits_bump_version() {
        let t = TopicMeta {
            name: "a".into(),
            id: Uuid::from_u128(1),
            partitions: 3,
            configs: TopicConfigs::default(),
        };
        let s = Snapshot::default().with_topic(t);
        assert_eq!(s.version, 1);
        assert_eq!(s.topic("a").unwrap().partitions, 3);
        assert!(s.topic_by_id(&Uuid::from_u128(1)).is_some());
        let s = s.without_topic("a");
        assert_eq!((s.version, s.topics.len()), (2, 0));
    }
}
