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
voters=1@127.0.0.1:21192,2@127.0.0.1:22192,3@127.0.0.1:23192
for i in 1 2 3; do
  RUST_LOG=warn "$bin" --node-id "$i" --shards 1 --pin false \
    --listen "127.0.0.1:2${i}092" --advertised-listener "127.0.0.1:2${i}092" \
    --cluster-listen "127.0.0.1:2${i}192" --admin-listen "127.0.0.1:2${i}644" \
    --voters "$voters" --data-dir "$tmp/n$i" 2>"$tmp/n$i.log" &
  pids+=($!)
done
RUST_LOG=warn "$bin" --shards 3 --pin false --listen 127.0.0.1:24092 --admin-listen off \
  --data-dir "$tmp/single" 2>"$tmp/single.log" &
single=$!
pids+=("$single")
# The cluster is ready once a broker's Metadata lists all three brokers.
for _ in $(seq 100); do
  n=$(curl -s 127.0.0.1:21644/v1/cluster | grep -o '"node_id":[0-9]*' | wc -l || true)
  [ "$n" -ge 4 ] && break
  sleep 0.2
done
target/release/shardlog-bench compare \
  --a 127.0.0.1:21092,127.0.0.1:22092,127.0.0.1:23092 --a-label "3 brokers x 1 shard" \
  --b 127.0.0.1:24092 --b-label "1 broker x 3 shards" --b-pid "$single" \
  --workload "$workload" --rounds "${ROUNDS:-3}" --warmup-s "${WARMUP_S:-5}" \
  --duration-s "${DURATION_S:-20}" --quiet --out "$out"
