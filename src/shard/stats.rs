//! What a shard shows the metrics endpoint and the admin API about itself: its partitions'
//! traffic, offsets and sizes, its groups' states, members and committed offsets, and its
//! requests and cross-shard calls in flight. Each snapshot is taken on the shard's own thread
//! (the admin server asks every shard with `Shard::on`) and is `Send`, plain data.

use std::rc::Rc;
use std::sync::Arc;

pub use crate::group::GroupStats;
use crate::metadata::TopicMeta;
use crate::partition::{Partition, PartitionStats};
use crate::runtime::{self, CpuTimer};

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

/// Partitions a snapshot reads before it lets the shard's other tasks run. Reading one costs
/// 0.1-0.4 µs (the more when its state has left the CPU caches), so a scrape holds the shard's
/// thread for some 25 µs at most at a time, whatever the number of partitions.
const PARTITIONS_PER_TURN: usize = 64;

impl Shard {
    /// This shard's snapshot: one walk over its partitions, in turns of
    /// [`PARTITIONS_PER_TURN`] with the shard's other tasks run between them, and one over its
    /// groups; no I/O, no sorting (the admin server sorts off the shard's thread). `cpu` counts
    /// the thread time the walks take.
    pub async fn stats(&self, cpu: &mut CpuTimer) -> ShardStats {
        let all: Vec<Rc<Partition>> =
            cpu.time(|| self.partitions.borrow().values().cloned().collect());
        let mut partitions = Vec::with_capacity(all.len());
        for (i, turn) in all.chunks(PARTITIONS_PER_TURN).enumerate() {
            if i > 0 {
                runtime::yield_now().await;
            }
            cpu.time(|| partitions.extend(turn.iter().map(|p| OwnedPartition::of(p))));
        }
        cpu.time(|| {
            let (mesh_sent, mesh_received) = self.mesh_counters.totals();
            ShardStats {
                shard: self.id,
                mesh_sent,
                mesh_received,
                partitions,
                groups: self.groups.stats(),
                inflight_requests: self.inflight.get(),
                calls_waiting: self.replies.waiting(),
            }
        })
    }
}

impl OwnedPartition {
    fn of(p: &Partition) -> OwnedPartition {
        OwnedPartition {
            topic: p.topic.clone(),
            partition: p.index,
            stats: p.stats(),
        }
    }
}
