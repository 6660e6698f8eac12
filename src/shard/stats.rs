//! What a shard shows the metrics endpoint and the admin API about itself: its partitions'
//! traffic, offsets and sizes, its groups' states, members and committed offsets, and its
//! requests and cross-shard calls in flight. Each snapshot is taken on the shard's own thread
//! (the admin server asks every shard with `Shard::on`) and is `Send`, plain data.

use crate::partition::PartitionStats;

use super::Shard;

/// One partition this shard owns, named.
#[derive(Clone, Debug)]
pub struct OwnedPartition {
    /// The topic's name.
    pub topic: String,
    /// The partition's index.
    pub partition: i32,
    /// Its counters and sizes.
    pub stats: PartitionStats,
}

/// One group this shard coordinates.
#[derive(Clone, Debug)]
pub struct GroupStats {
    /// The group id.
    pub group: String,
    /// Kafka's state name ("Empty", "Stable", ...).
    pub state: &'static str,
    /// The protocol type ("consumer"; "" for a group that only commits offsets).
    pub protocol_type: String,
    /// Members now.
    pub members: usize,
    /// Every committed offset: topic, partition, offset.
    pub committed: Vec<(String, i32, i64)>,
}

/// A shard's state as the metrics endpoint shows it.
#[derive(Clone, Debug, Default)]
pub struct ShardStats {
    /// The shard's id.
    pub shard: usize,
    /// Its partitions, by topic and index.
    pub partitions: Vec<OwnedPartition>,
    /// The groups it coordinates, by id.
    pub groups: Vec<GroupStats>,
    /// Requests being handled on this shard.
    pub inflight_requests: usize,
    /// Calls this shard made to other shards and is waiting on.
    pub calls_waiting: usize,
}

impl Shard {
    /// This shard's snapshot (cheap: a walk over its partitions and groups, no I/O).
    pub fn stats(&self) -> ShardStats {
        let mut partitions: Vec<OwnedPartition> = self
            .partitions
            .borrow()
            .values()
            .map(|p| OwnedPartition {
                topic: p.topic.name.clone(),
                partition: p.index,
                stats: p.stats(),
            })
            .collect();
        partitions.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
        ShardStats {
            shard: self.id,
            partitions,
            groups: self.group_stats(),
            inflight_requests: self.inflight.get(),
            calls_waiting: self.replies.waiting(),
        }
    }

    fn group_stats(&self) -> Vec<GroupStats> {
        let mut groups: Vec<GroupStats> = self
            .groups
            .list()
            .into_iter()
            .map(|g| {
                let committed = self.groups.fetch_offsets(&g.group, None);
                let committed = committed.into_iter().flat_map(|(topic, parts)| {
                    parts
                        .into_iter()
                        .filter_map(move |(p, c)| c.map(|c| (topic.clone(), p, c.offset.0)))
                });
                GroupStats {
                    state: g.state,
                    protocol_type: g.protocol_type,
                    members: g.members,
                    committed: committed.collect(),
                    group: g.group,
                }
            })
            .collect();
        groups.sort_by(|a, b| a.group.cmp(&b.group));
        groups
    }
}
