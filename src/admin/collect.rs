//! Gathering what the admin endpoints show: each shard fills a [`ShardSnapshot`] on its own
//! thread (its partitions and groups, its network counters, its executor's and storage's
//! totals) and sends it back over the mesh; the scrape merges them on shard 0. The data path
//! pays for one short job per shard per scrape and takes no lock.

use std::rc::Rc;

use crate::net::stats::NetSnapshot;
use crate::runtime::{self, CpuTimer, ExecutorTotals};
use crate::shard::{Shard, ShardStats};
use crate::storage::{readcache, stats as io_stats};

/// One shard's state at scrape time.
#[derive(Clone, Debug, Default)]
pub struct ShardSnapshot {
    /// Partitions, groups, requests and calls in flight.
    pub shard: ShardStats,
    /// Connections and request latencies.
    pub net: NetSnapshot,
    /// The executor's busy time and tasks.
    pub exec: ExecutorTotals,
    /// The read cache: bytes held, budget, hits, misses.
    pub read_cache: ReadCacheStats,
    /// Segment writes and reads, fdatasyncs.
    pub io: io_stats::IoSnapshot,
    /// Error codes in responses: (API key, error code, count).
    pub errors: Vec<(i16, i16, u64)>,
    /// The shard thread's CPU time taking this snapshot, seconds (CPU time rather than
    /// elapsed time, so a preemption by another thread of the host is not counted).
    pub took_s: f64,
}

/// The shard's read cache counters.
#[derive(Clone, Copy, Debug, Default)]
pub struct ReadCacheStats {
    /// Bytes held.
    pub bytes: u64,
    /// The budget.
    pub bytes_max: u64,
    /// Reads answered from memory.
    pub hits: u64,
    /// Reads that went to disk.
    pub misses: u64,
}

/// This shard's snapshot; runs on the shard's thread (letting its other tasks run between
/// turns of the partition walk).
pub async fn local(s: &Shard) -> ShardSnapshot {
    let mut cpu = CpuTimer::default();
    let shard = s.stats(&mut cpu).await;
    let mut snap = cpu.time(|| ShardSnapshot {
        shard,
        net: crate::net::stats::snapshot(),
        exec: runtime::executor_totals(),
        read_cache: read_cache_stats(),
        io: io_stats::snapshot(),
        errors: crate::kafka::error_counts::snapshot(),
        took_s: 0.0,
    });
    snap.took_s = cpu.spent_s;
    snap
}

fn read_cache_stats() -> ReadCacheStats {
    readcache::with(|c| {
        let (hits, misses) = c.hit_counts();
        ReadCacheStats {
            bytes: c.bytes() as u64,
            bytes_max: c.bytes_max() as u64,
            hits,
            misses,
        }
    })
}

/// Every shard's snapshot, in shard order; a shard that cannot answer (stopping) is left out.
pub async fn all(s: &Rc<Shard>) -> Vec<ShardSnapshot> {
    let asks = (0..s.shards()).map(|i| {
        let s = s.clone();
        async move { s.on(i, |s| async move { local(&s).await }).await }
    });
    runtime::join_all(asks)
        .await
        .into_iter()
        .flatten()
        .collect()
}
