//! What a shard shows the metrics endpoint and the admin API about itself: its partitions'
//! traffic, offsets and sizes, its groups' states, members and committed offsets, and its
//! requests and cross-shard calls in flight. Each snapshot is taken on the shard's own thread
//! (the admin server asks every shard with `Shard::on`) and is `Send`, plain data.

use std::sync::Arc;

pub use crate::group::GroupStats;
use crate::metadata::TopicMeta;
use crate::partition::PartitionStats;

use super::Shard;

/// One partition this shard owns, named.
#[derive(Clone, Debug)]
pub struct OwnedPartition {
    /// The topic (its name is `topic.name`; shared, so naming costs no allocation).
    pub topic: Arc<TopicMeta>,
    /// The partition's index.
    pub partition: i32,
    /// Its counters and sizes.
    pub stats: PartitionStats,
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
    /// Jobs this shard put into the mesh channel to each shard (by shard id).
    pub mesh_sent: Vec<u64>,
    /// Jobs this shard took out of the mesh channel from each shard (by shard id).
    pub mesh_received: Vec<u64>,
}

impl Shard {
    /// This shard's snapshot: one walk over its partitions and one over its groups, no I/O,
    /// no sorting (the admin server sorts off the shard's thread).
    pub fn stats(&self) -> ShardStats {
        let partitions = self.partitions.borrow();
        let partitions = partitions.values().map(|p| OwnedPartition {
            topic: p.topic.clone(),
            partition: p.index,
            stats: p.stats(),
        });
        let (mesh_sent, mesh_received) = self.mesh_counters.totals();
        ShardStats {
            shard: self.id,
            mesh_sent,
            mesh_received,
            partitions: partitions.collect(),
            groups: self.groups.stats(),
            inflight_requests: self.inflight.get(),
            calls_waiting: self.replies.waiting(),
        }
    }
}
