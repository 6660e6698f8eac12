#!/usr/bin/env bash
# Replication's cost (issue 21): the load generator's WORKLOAD with acks=all on a 3-broker
# cluster (one shard each), once with one replica per partition and once with three (RF 3,
# every batch committed by Raft on a majority before it is acknowledged), alternated for
# ROUNDS rounds on the same cluster. Prints per run the produced MiB/s, publish p50/p99/p99.9
# and the three brokers' CPU seconds per GiB produced (utime+stime from /proc). Usage:
#   bash benches/replication-compare.sh [WORKLOAD] [OUT_DIR]
# Needs `cargo build --release -p shardlog -p shardlog-bench`. Ports 3x092..3x644 on
# 127.0.0.1; data under a temporary directory, removed at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
workload=${1:-benches/loadgen/workloads/1-topic-16-partitions-1kb-max.toml}
out=${2:-target/replication-compare}
bench=target/release/shardlog-bench
tmp=$(mktemp -d)
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$tmp"' EXIT
. benches/cluster-lib.sh
start_cluster 3 "$tmp"
# CPU seconds of the three brokers so far.
cpu() {
  local ticks sum=0
  ticks=$(getconf CLK_TCK)
  for p in "${pids[@]}"; do
    read -r -a f < "/proc/$p/stat"
    sum=$((sum + f[13] + f[14]))
  done
  echo "scale=2; $sum / $ticks" | bc
}
mkdir -p "$out"
for round in $(seq "${ROUNDS:-2}"); do
  for rf in 1 3; do
    w="$tmp/rf$rf.toml"
    grep -v -e '^acks' -e '^replication_factor' -e '^name' "$workload" > "$w"
    printf 'name = "rf%s"\nacks = "all"\nreplication_factor = %s\n' "$rf" "$rf" >> "$w"
    dir="$out/round-$round-rf$rf"
    before=$(cpu)
    "$bench" run --bootstrap "$bootstrap" --workload "$w" --label "rf$rf" \
      --warmup-s "${WARMUP_S:-5}" --duration-s "${DURATION_S:-20}" --quiet --out "$dir"
    after=$(cpu)
    python3 - "$dir/summary.json" "$before" "$after" "$rf" <<'EOF'
import json, sys
s = json.load(open(sys.argv[1]))
cpu = float(sys.argv[3]) - float(sys.argv[2])
p, lat = s["produced"], s["publish_latency"]
gib = p["bytes"] / 2**30
print(f"rf{sys.argv[4]}: produced {p['mib_per_s']:.1f} MiB/s, consumed "
      f"{s['consumed']['mib_per_s']:.1f} MiB/s, publish p50 {lat['p50_ms']:.2f} "
      f"p99 {lat['p99_ms']:.2f} p99.9 {lat['p99_9_ms']:.2f} ms, brokers' CPU {cpu:.1f} s "
      f"= {cpu / gib if gib else 0:.1f} s per GiB measured (warm-up CPU included)")
EOF
  done
done
