#!/usr/bin/env bash
# Produce and consume throughput of a 3-broker cluster (one shard each, partitions spread over
# the brokers, one replica) against one broker with the same total shards (3), alternated by
# `shardlog-bench compare` on the same machine. Usage:
#   bash benches/cluster-compare.sh [WORKLOAD] [OUT_DIR]
# Needs `cargo build --release -p shardlog -p shardlog-bench`. Ports 2x092..2x644 on
# 127.0.0.1; data under a temporary directory, removed at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
workload=${1:-benches/loadgen/workloads/1-topic-16-partitions-1kb-max.toml}
out=${2:-target/cluster-compare}
bin=target/release/shardlog
tmp=$(mktemp -d)
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$tmp"' EXIT
. benches/cluster-lib.sh
start_cluster 2 "$tmp"
RUST_LOG=warn "$bin" --shards 3 --pin false --listen 127.0.0.1:24092 --admin-listen off \
  --data-dir "$tmp/single" 2>"$tmp/single.log" &
single=$!
pids+=("$single")
target/release/shardlog-bench compare \
  --a "$bootstrap" --a-label "3 brokers x 1 shard" \
  --b 127.0.0.1:24092 --b-label "1 broker x 3 shards" --b-pid "$single" \
  --workload "$workload" --rounds "${ROUNDS:-3}" --warmup-s "${WARMUP_S:-5}" \
  --duration-s "${DURATION_S:-20}" --quiet --out "$out"
