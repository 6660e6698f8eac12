//! The merged shard snapshots as Prometheus metrics (`metrics`) and as the JSON of the `/v1`
//! API. Pure: snapshots and process facts in, text out. Metric names follow Prometheus's
//! conventions (`shardlog_` prefix, base units, `_total` for counters, `_bytes`, `_seconds`);
//! docs/operations.md lists them all.

use std::collections::HashMap;

use serde_json::json;

use super::collect::ShardSnapshot;
use crate::cli::error_name;
use crate::metadata::PartitionHealth;
use crate::metrics::{Buckets, Exposition, Format, Kind};

/// Facts about the process, read from /proc at scrape time (None where unreadable).
#[derive(Clone, Debug, Default)]
pub struct ProcessFacts {
    /// Resident memory, bytes.
    pub rss_bytes: Option<u64>,
    /// Open file descriptors.
    pub open_fds: Option<u64>,
    /// User plus system CPU time, seconds.
    pub cpu_s: Option<f64>,
    /// Seconds since the broker started.
    pub uptime_s: f64,
    /// When the broker started, seconds since the Unix epoch.
    pub start_time_s: f64,
    /// The metadata log as this broker's voter sees it (None outside a cluster).
    pub cluster: Option<ClusterFacts>,
}

/// The metadata log's state for the metrics (from `cluster::edge::view`), and the partitions'
/// health from this broker's registry snapshot.
#[derive(Clone, Debug, Default)]
pub struct ClusterFacts {
    /// The leader's node id, -1 while there is none.
    pub leader: i64,
    /// The term.
    pub term: u64,
    /// The last applied index.
    pub applied: u64,
    /// Registered brokers, and how many of them are alive.
    pub brokers: u64,
    /// Registered brokers marked alive.
    pub alive: u64,
    /// Leaders per broker, offline and under-replicated partitions.
    pub partitions: PartitionHealth,
}

/// The name of API key `api` ("Produce"), or its number.
pub fn api_name(api: i16) -> String {
    kafka_protocol::messages::ApiKey::try_from(api)
        .map_or_else(|_| api.to_string(), |k| format!("{k:?}"))
}

/// Puts each shard's partitions, groups and committed offsets in name order (shards take
/// their snapshots unsorted, to spend less of their time).
pub fn sort(snaps: &mut [ShardSnapshot]) {
    for s in snaps {
        let parts = &mut s.shard.partitions;
        parts.sort_by(|a, b| (&a.topic.name, a.partition).cmp(&(&b.topic.name, b.partition)));
        s.shard.groups.sort_by(|a, b| a.group.cmp(&b.group));
        for g in &mut s.shard.groups {
            g.committed.sort_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
        }
    }
}

/// Each partition's high watermark, by topic and partition.
fn high_watermarks(snaps: &[ShardSnapshot]) -> HashMap<(&str, i32), i64> {
    let parts = snaps.iter().flat_map(|s| &s.shard.partitions);
    parts
        .map(|p| ((p.topic.name.as_str(), p.partition), p.stats.high_watermark))
        .collect()
}

/// A group's lag on a partition: the high watermark less the committed offset, never below 0
/// (None when the partition is not known, e.g. a deleted topic).
fn lag(hw: &HashMap<(&str, i32), i64>, topic: &str, partition: i32, committed: i64) -> Option<i64> {
    hw.get(&(topic, partition)).map(|h| (h - committed).max(0))
}

/// The `/metrics` text.
pub fn metrics(snaps: &[ShardSnapshot], process: &ProcessFacts, format: Format) -> String {
    let mut e = Exposition::new(format);
    process_metrics(&mut e, process);
    shard_metrics(&mut e, snaps);
    request_metrics(&mut e, snaps);
    partition_metrics(&mut e, snaps);
    group_metrics(&mut e, snaps);
    e.finish()
}

fn cluster_metrics(e: &mut Exposition, c: &ClusterFacts) {
    let gauges = [
        (
            "shardlog_cluster_metadata_leader_id",
            "The metadata log's leader as this broker sees it (-1: none).",
            c.leader as f64,
        ),
        (
            "shardlog_cluster_metadata_term",
            "The metadata log's term.",
            c.term as f64,
        ),
        (
            "shardlog_cluster_metadata_applied_index",
            "The last metadata log entry this broker applied.",
            c.applied as f64,
        ),
    ];
    for (name, help, v) in gauges {
        e.family(name, Kind::Gauge, help);
        e.sample(name, &[], v);
    }
    let b = "shardlog_cluster_brokers";
    e.family(
        b,
        Kind::Gauge,
        "Brokers registered in the metadata log, by liveness.",
    );
    e.sample(b, &[("state", "alive")], c.alive as f64);
    e.sample(b, &[("state", "dead")], (c.brokers - c.alive) as f64);
    partition_health_metrics(e, &c.partitions);
}

/// Kafka's LeaderCount, OfflinePartitionsCount and UnderReplicatedPartitions.
fn partition_health_metrics(e: &mut Exposition, h: &PartitionHealth) {
    let leaders = "shardlog_cluster_leader_partitions";
    e.family(
        leaders,
        Kind::Gauge,
        "Partitions each live broker leads, as this broker's metadata image says.",
    );
    for (broker, n) in &h.leaders {
        e.sample(leaders, &[("broker", &broker.to_string())], *n as f64);
    }
    let gauges = [
        (
            "shardlog_cluster_offline_partitions",
            "Partitions without a leader (their broker is dead).",
            h.offline,
        ),
        (
            "shardlog_cluster_under_replicated_partitions",
            "Partitions this broker leads with fewer live replicas than assigned.",
            h.under_replicated_here,
        ),
    ];
    for (name, help, v) in gauges {
        e.family(name, Kind::Gauge, help);
        e.sample(name, &[], v as f64);
    }
}

fn process_metrics(e: &mut Exposition, p: &ProcessFacts) {
    let gauges = [
        (
            "process_resident_memory_bytes",
            "Resident memory size in bytes.",
            p.rss_bytes.map(|v| v as f64),
        ),
        (
            "process_open_fds",
            "Number of open file descriptors.",
            p.open_fds.map(|v| v as f64),
        ),
        (
            "process_start_time_seconds",
            "Start time of the process since the Unix epoch, seconds.",
            Some(p.start_time_s),
        ),
        (
            "shardlog_uptime_seconds",
            "Seconds since the broker started.",
            Some(p.uptime_s),
        ),
    ];
    for (name, help, value) in gauges {
        if let Some(v) = value {
            e.family(name, Kind::Gauge, help);
            e.sample(name, &[], v);
        }
    }
    if let Some(c) = &p.cluster {
        cluster_metrics(e, c);
    }
    if let Some(v) = p.cpu_s {
        e.family(
            "process_cpu_seconds_total",
            Kind::Counter,
            "User and system CPU time, seconds.",
        );
        e.sample("process_cpu_seconds_total", &[], v);
    }
}

type ShardValue = fn(&ShardSnapshot) -> f64;

fn shard_metrics(e: &mut Exposition, snaps: &[ShardSnapshot]) {
    let rows: [(&str, Kind, &str, ShardValue); 17] = [
        (
            "shardlog_shard_scrape_seconds",
            Kind::Gauge,
            "The shard thread's CPU time spent taking this scrape's snapshot.",
            |s| s.took_s,
        ),
        (
            "shardlog_shard_connections",
            Kind::Gauge,
            "Client connections open on the shard.",
            |s| s.net.connections_open as f64,
        ),
        (
            "shardlog_shard_connections_accepted_total",
            Kind::Counter,
            "Client connections accepted.",
            |s| s.net.connections_accepted as f64,
        ),
        (
            "shardlog_shard_connections_refused_total",
            Kind::Counter,
            "Client connections refused by the connection limits.",
            |s| s.net.connections_refused as f64,
        ),
        (
            "shardlog_shard_inflight_requests",
            Kind::Gauge,
            "Requests being handled on the shard.",
            |s| s.shard.inflight_requests as f64,
        ),
        (
            "shardlog_shard_cross_shard_calls_waiting",
            Kind::Gauge,
            "Calls to other shards over the mesh waiting for their replies.",
            |s| s.shard.calls_waiting as f64,
        ),
        (
            "shardlog_shard_busy_seconds_total",
            Kind::Counter,
            "Time the shard's executor spent running tasks and polling I/O.",
            |s| s.exec.busy_s,
        ),
        (
            "shardlog_shard_io_uring_submissions_total",
            Kind::Counter,
            "io_uring submission queue entries the shard handed to the kernel (files, sockets, timers).",
            |s| s.exec.sqes as f64,
        ),
        (
            "shardlog_shard_tasks_total",
            Kind::Counter,
            "Tasks the shard's executor ran.",
            |s| s.exec.tasks as f64,
        ),
        (
            "shardlog_shard_read_cache_bytes",
            Kind::Gauge,
            "Bytes held by the shard's read cache.",
            |s| s.read_cache.bytes as f64,
        ),
        (
            "shardlog_shard_read_cache_max_bytes",
            Kind::Gauge,
            "The shard's read cache budget.",
            |s| s.read_cache.bytes_max as f64,
        ),
        (
            "shardlog_shard_read_cache_hits_total",
            Kind::Counter,
            "Reads below the tail cache answered from the read cache.",
            |s| s.read_cache.hits as f64,
        ),
        (
            "shardlog_shard_read_cache_misses_total",
            Kind::Counter,
            "Reads below the tail cache that went to the disk.",
            |s| s.read_cache.misses as f64,
        ),
        (
            "shardlog_shard_tail_cache_hits_total",
            Kind::Counter,
            "Log reads answered from a partition's tail cache (recently produced data).",
            |s| s.io.tail_hits as f64,
        ),
        (
            "shardlog_shard_tail_cache_misses_total",
            Kind::Counter,
            "Log reads the tail cache could not answer (served by the read cache or the disk).",
            |s| s.io.tail_misses as f64,
        ),
        (
            "shardlog_shard_tail_cache_bytes",
            Kind::Gauge,
            "Bytes of recent batches held by the shard's partitions' tail caches.",
            |s| {
                s.shard
                    .partitions
                    .iter()
                    .map(|p| p.stats.tail_cache_bytes as f64)
                    .sum()
            },
        ),
        (
            "shardlog_shard_partitions",
            Kind::Gauge,
            "Partitions the shard owns.",
            |s| s.shard.partitions.len() as f64,
        ),
    ];
    for (name, kind, help, value) in rows {
        e.family(name, kind, help);
        for s in snaps {
            let shard = s.shard.shard.to_string();
            e.sample(name, &[("shard", &shard)], value(s));
        }
    }
    io_metrics(e, snaps);
    mesh_metrics(e, snaps);
}

/// Jobs in each mesh channel (`from` → `shard`): what the sender put in less what the
/// receiver took out, from snapshots taken a moment apart (so never below 0), and the
/// receiver's count of jobs taken.
fn mesh_metrics(e: &mut Exposition, snaps: &[ShardSnapshot]) {
    let depth = "shardlog_shard_mesh_queue_depth";
    e.family(
        depth,
        Kind::Gauge,
        "Jobs from shard `from` waiting in the mesh channel to this shard.",
    );
    let received = "shardlog_shard_mesh_jobs_received_total";
    e.family(
        received,
        Kind::Counter,
        "Jobs this shard took from the mesh channel from shard `from`.",
    );
    for to in snaps {
        let shard = to.shard.shard.to_string();
        for from in snaps.iter().filter(|f| f.shard.shard != to.shard.shard) {
            let got = to.shard.mesh_received.get(from.shard.shard).copied();
            let put = from.shard.mesh_sent.get(to.shard.shard).copied();
            let (Some(got), Some(put)) = (got, put) else {
                continue;
            };
            let labels = [
                ("shard", shard.as_str()),
                ("from", &from.shard.shard.to_string()),
            ];
            e.sample(depth, &labels, put.saturating_sub(got) as f64);
            e.sample(received, &labels, got as f64);
        }
    }
}

fn io_metrics(e: &mut Exposition, snaps: &[ShardSnapshot]) {
    let ops = "shardlog_storage_operations_total";
    e.family(
        ops,
        Kind::Counter,
        "Segment reads and writes submitted to io_uring.",
    );
    for s in snaps {
        let shard = s.shard.shard.to_string();
        let (reads, writes) = (s.io.reads, s.io.write.count());
        e.sample(ops, &[("shard", &shard), ("op", "read")], reads as f64);
        e.sample(ops, &[("shard", &shard), ("op", "write")], writes as f64);
    }
    let bytes = "shardlog_storage_bytes_total";
    e.family(
        bytes,
        Kind::Counter,
        "Bytes of segment reads and writes (writes padded to the block).",
    );
    for s in snaps {
        let shard = s.shard.shard.to_string();
        e.sample(
            bytes,
            &[("shard", &shard), ("op", "read")],
            s.io.read_bytes as f64,
        );
        e.sample(
            bytes,
            &[("shard", &shard), ("op", "write")],
            s.io.written_bytes as f64,
        );
    }
    type Pick = fn(&ShardSnapshot) -> &Buckets;
    let latencies: [(&str, &str, Pick); 2] = [
        (
            "shardlog_storage_write_seconds",
            "Time of each segment write (O_DIRECT) on the device.",
            |s| &s.io.write,
        ),
        (
            "shardlog_storage_fdatasync_seconds",
            "Time of each segment fdatasync.",
            |s| &s.io.sync,
        ),
    ];
    for (name, help, pick) in latencies {
        e.family(name, Kind::Histogram, help);
        for s in snaps {
            let shard = s.shard.shard.to_string();
            e.histogram(name, &[("shard", &shard)], pick(s));
        }
    }
}

fn request_metrics(e: &mut Exposition, snaps: &[ShardSnapshot]) {
    let mut by_api: std::collections::BTreeMap<i16, (Buckets, Buckets)> = Default::default();
    for a in snaps.iter().flat_map(|s| &s.net.apis) {
        let entry = by_api.entry(a.api).or_default();
        entry.0.merge(&a.total);
        entry.1.merge(&a.handle);
    }
    let name = "shardlog_requests_total";
    e.family(name, Kind::Counter, "Requests answered, by API.");
    for (api, (total, _)) in &by_api {
        e.sample(name, &[("api", &api_name(*api))], total.count() as f64);
    }
    let mut errors: std::collections::BTreeMap<(i16, i16), u64> = Default::default();
    for &(api, code, n) in snaps.iter().flat_map(|s| &s.errors) {
        *errors.entry((api, code)).or_default() += n;
    }
    let name = "shardlog_request_errors_total";
    e.family(
        name,
        Kind::Counter,
        "Error codes in responses, by API and error (partition-level codes each count).",
    );
    for ((api, code), n) in errors {
        let error = error_name(code);
        e.sample(
            name,
            &[("api", &api_name(api)), ("error", &error)],
            n as f64,
        );
    }
    let name = "shardlog_request_duration_seconds";
    e.family(
        name,
        Kind::Histogram,
        "Time from a request's arrival to its response's send, by API (all shards merged).",
    );
    for (api, (total, _)) in &by_api {
        e.histogram(name, &[("api", &api_name(*api))], total);
    }
    let name = "shardlog_request_handle_seconds";
    e.family(
        name,
        Kind::Histogram,
        "The handler's part of a request's time, by API (all shards merged).",
    );
    for (api, (_, handle)) in &by_api {
        e.histogram(name, &[("api", &api_name(*api))], handle);
    }
}

type PartitionValue = fn(&crate::partition::PartitionStats) -> f64;

fn partition_metrics(e: &mut Exposition, snaps: &[ShardSnapshot]) {
    let rows: [(&str, Kind, &str, PartitionValue); 12] = [
        (
            "shardlog_partition_bytes_in_total",
            Kind::Counter,
            "Bytes of record batches produced to the partition since the broker started.",
            |p| p.bytes_in as f64,
        ),
        (
            "shardlog_partition_records_in_total",
            Kind::Counter,
            "Records produced to the partition since the broker started.",
            |p| p.records_in as f64,
        ),
        (
            "shardlog_partition_bytes_out_total",
            Kind::Counter,
            "Bytes of record batches read by fetches since the broker started.",
            |p| p.bytes_out as f64,
        ),
        (
            "shardlog_partition_records_out_total",
            Kind::Counter,
            "Records read by fetches since the broker started.",
            |p| p.records_out as f64,
        ),
        (
            "shardlog_partition_log_start_offset",
            Kind::Gauge,
            "The first offset kept.",
            |p| p.log_start as f64,
        ),
        (
            "shardlog_partition_log_end_offset",
            Kind::Gauge,
            "The log end offset consumers see (high watermark).",
            |p| p.high_watermark as f64,
        ),
        (
            "shardlog_partition_size_bytes",
            Kind::Gauge,
            "Bytes of the partition's segments on disk.",
            |p| p.size_bytes as f64,
        ),
        (
            "shardlog_partition_segments",
            Kind::Gauge,
            "Segments of the partition, the active one included.",
            |p| p.segments as f64,
        ),
        (
            "shardlog_partition_tail_cache_bytes",
            Kind::Gauge,
            "Bytes of recent batches held in memory for the partition.",
            |p| p.tail_cache_bytes as f64,
        ),
        (
            "shardlog_partition_producers",
            Kind::Gauge,
            "Idempotent producer ids the partition tracks.",
            |p| p.producers as f64,
        ),
        (
            "shardlog_partition_in_sync_replicas",
            Kind::Gauge,
            "Replicas in sync as this replica counts them (0 on a follower).",
            |p| p.in_sync_replicas as f64,
        ),
        (
            "shardlog_partition_replica_lag_max_offsets",
            Kind::Gauge,
            "On a leader: offsets the furthest follower is behind the log end.",
            |p| p.replica_lag_max as f64,
        ),
    ];
    for (name, kind, help, value) in rows {
        e.family(name, kind, help);
        for s in snaps {
            for p in &s.shard.partitions {
                let partition = p.partition.to_string();
                let labels = [
                    ("topic", p.topic.name.as_str()),
                    ("partition", partition.as_str()),
                ];
                e.sample(name, &labels, value(&p.stats));
            }
        }
    }
}

fn group_metrics(e: &mut Exposition, snaps: &[ShardSnapshot]) {
    let groups: Vec<_> = snaps.iter().flat_map(|s| &s.shard.groups).collect();
    let name = "shardlog_group_state";
    e.family(
        name,
        Kind::Gauge,
        "1 for the consumer group's current state.",
    );
    for g in &groups {
        e.sample(name, &[("group", &g.group), ("state", g.state)], 1.0);
    }
    let name = "shardlog_group_members";
    e.family(name, Kind::Gauge, "Members of the consumer group.");
    for g in &groups {
        e.sample(name, &[("group", &g.group)], g.members as f64);
    }
    let hw = high_watermarks(snaps);
    type Value<'a> = &'a dyn Fn(&str, i32, i64) -> Option<i64>;
    let families: [(&str, &str, Value); 2] = [
        (
            "shardlog_group_committed_offset",
            "The group's committed offset on the partition.",
            &|_, _, offset| Some(offset),
        ),
        (
            "shardlog_group_lag",
            "Records between the group's committed offset and the partition's high watermark.",
            &|topic, p, offset| lag(&hw, topic, p, offset),
        ),
    ];
    for (name, help, value) in families {
        e.family(name, Kind::Gauge, help);
        for g in &groups {
            for (topic, p, offset) in &g.committed {
                let Some(v) = value(topic, *p, *offset) else {
                    continue; // a partition that no longer exists has no lag
                };
                let part = p.to_string();
                let labels = [
                    ("group", g.group.as_str()),
                    ("topic", topic),
                    ("partition", &part),
                ];
                e.sample(name, &labels, v as f64);
            }
        }
    }
}

/// `/v1/topics`: every partition with its offsets and size, by topic.
pub fn topics_json(snaps: &[ShardSnapshot]) -> serde_json::Value {
    let mut topics: std::collections::BTreeMap<&str, Vec<serde_json::Value>> = Default::default();
    for s in snaps {
        for p in &s.shard.partitions {
            topics
                .entry(p.topic.name.as_str())
                .or_default()
                .push(json!({
                    "partition": p.partition,
                    "shard": s.shard.shard,
                    "log_start_offset": p.stats.log_start,
                    "high_watermark": p.stats.high_watermark,
                    "size_bytes": p.stats.size_bytes,
                    "segments": p.stats.segments,
                    "bytes_in": p.stats.bytes_in,
                    "records_in": p.stats.records_in,
                }));
        }
    }
    let list: Vec<_> = topics
        .into_iter()
        .map(|(name, mut parts)| {
            parts.sort_by_key(|p| p["partition"].as_i64());
            json!({"name": name, "partitions": parts})
        })
        .collect();
    json!(list)
}

/// `/v1/groups`: every group with its state, members, and committed offsets with their lag.
pub fn groups_json(snaps: &[ShardSnapshot]) -> serde_json::Value {
    let hw = high_watermarks(snaps);
    let mut groups: Vec<serde_json::Value> = Vec::new();
    for s in snaps {
        for g in &s.shard.groups {
            let offsets: Vec<_> = g
                .committed
                .iter()
                .map(|(t, p, o)| {
                    let end = hw.get(&(t.as_str(), *p));
                    json!({"topic": t, "partition": p, "committed_offset": o,
                           "high_watermark": end, "lag": lag(&hw, t, *p, *o)})
                })
                .collect();
            groups.push(json!({
                "group": g.group, "state": g.state, "protocol_type": g.protocol_type,
                "members": g.members, "coordinator_shard": s.shard.shard, "offsets": offsets,
            }));
        }
    }
    groups.sort_by(|a, b| a["group"].as_str().cmp(&b["group"].as_str()));
    json!(groups)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::partition::PartitionStats;
    use crate::shard::{GroupStats, OwnedPartition};

    /// Two shards: the partition on one, the group committing on it on the other.
    fn snaps() -> Vec<ShardSnapshot> {
        let mut a = ShardSnapshot::default();
        a.shard.shard = 0;
        a.shard.partitions.push(OwnedPartition {
            topic: std::sync::Arc::new(crate::metadata::TopicMeta {
                name: "orders".into(),
                id: uuid::Uuid::new_v4(),
                partitions: 1,
                configs: Default::default(),
            }),
            partition: 0,
            stats: PartitionStats {
                high_watermark: 100,
                bytes_in: 4096,
                ..PartitionStats::default()
            },
        });
        a.errors.push((0, 3, 2));
        a.shard.mesh_sent = vec![0, 5];
        a.shard.mesh_received = vec![0, 7];
        let mut b = ShardSnapshot::default();
        b.shard.shard = 1;
        b.shard.groups.push(GroupStats {
            group: "billing".into(),
            state: "Stable",
            protocol_type: "consumer".into(),
            members: 2,
            committed: vec![("orders".into(), 0, 60), ("gone".into(), 0, 5)],
        });
        b.errors.push((0, 3, 1));
        b.shard.mesh_sent = vec![7, 0];
        b.shard.mesh_received = vec![3, 0];
        vec![a, b]
    }

    #[test]
    fn lag_joins_a_groups_offsets_with_partitions_on_other_shards() {
        let text = metrics(&snaps(), &ProcessFacts::default(), Format::Prometheus);
        let has = |line: &str| text.lines().any(|l| l == line);
        assert!(has(
            r#"shardlog_group_lag{group="billing",topic="orders",partition="0"} 40"#
        ));
        assert!(!text.contains(r#"shardlog_group_lag{group="billing",topic="gone""#));
        assert!(has(
            r#"shardlog_group_committed_offset{group="billing",topic="gone",partition="0"} 5"#
        ));
        assert!(has(
            r#"shardlog_group_state{group="billing",state="Stable"} 1"#
        ));
        assert!(has(
            r#"shardlog_partition_bytes_in_total{topic="orders",partition="0"} 4096"#
        ));
        assert!(has(
            r#"shardlog_request_errors_total{api="Produce",error="UNKNOWN_TOPIC_OR_PARTITION"} 3"#
        ));
        assert!(has(r#"shardlog_shard_partitions{shard="1"} 0"#));
        assert!(has(
            r#"shardlog_shard_mesh_queue_depth{shard="1",from="0"} 2"#
        ));
        assert!(has(
            r#"shardlog_shard_mesh_queue_depth{shard="0",from="1"} 0"#
        ));
        let groups = groups_json(&snaps());
        assert_eq!(groups[0]["offsets"][0]["lag"], 40);
        assert_eq!(groups[0]["offsets"][1]["lag"], serde_json::Value::Null);
        assert_eq!(
            topics_json(&snaps())[0]["partitions"][0]["high_watermark"],
            100
        );
    }
}
