#!/usr/bin/env bash
# shardlog against librdkafka's own benchmark tool (issue 16), in one run on this machine:
#
#   1. the raw device: O_DIRECT write and read bandwidth of the data directory's disk (dd,
#      1 MiB blocks, one in flight), the yardstick every figure below is divided by;
#   2. rdkafka_performance (librdkafka's examples/rdkafka_performance.c, built here from the
#      rdkafka-sys crate's bundled source, the same librdkafka the load generator links)
#      against a freshly started broker: one partition produce; one partition consume from
#      the beginning with the data on disk (broker restarted, so no cache holds it); one
#      partition consume of data just produced (within the read cache); 16 partitions produce
#      and consume;
#   3. for each: MB/s (rdkafka_performance's own figure, 10^6 bytes of payload per second), its
#      ratio to the raw device, and the CPU seconds per GiB moved of the broker and of the
#      client (both share this machine's cores).
#
# Usage: benches/rdkafka-perf.sh [--data-dir DIR] [--shards N] [--messages N] [--rounds N]
#          [--recent-messages N] [--raw-mib N] [--warm-up-mib N] [--port P] [--out FILE]
#          [-- extra broker flags]
# --warm-up-mib N (default 0: a cold broker) first produces N MiB into a 16-partition topic
# after each start, and reads it back after the restart, so the measured runs meet full read
# caches and memory the broker has already touched: a broker that has been running. A cold
# broker pays for every page its caches grow into (docs/benchmarks.md).
# Each round starts from an empty data directory and measures the device again; the kernel
# spreads connections over the shards at random, so a client lands on its partition's shard
# in some rounds and not in others (a cross-shard hop per request): hence several rounds.
# The data directory must be on a real disk (not tmpfs: the log uses O_DIRECT); it is wiped.
# Prints a table and writes it (markdown) to --out. Asserts nothing: speed is reported, never
# tested.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

data_dir="$root/target/rdkafka-perf-data"
shards=2
messages=1000000
recent=500000
raw_mib=2048
rounds=3
warm_mib=0
out=""
port=19092
while [ $# -gt 0 ]; do
  case "$1" in
    --data-dir) data_dir=$2; shift 2 ;;
    --shards) shards=$2; shift 2 ;;
    --messages) messages=$2; shift 2 ;;
    --recent-messages) recent=$2; shift 2 ;;
    --raw-mib) raw_mib=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    --warm-up-mib) warm_mib=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --port) port=$2; shift 2 ;;
    --) shift; break ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
extra_broker_flags=("$@")
bootstrap="127.0.0.1:$port"

# --- rdkafka_performance, from the bundled librdkafka source --------------------------------
perf_dir="$root/target/rdkafka-perf"
perf_bin="$perf_dir/rdkafka_performance"
build_perf() {
  local src
  src=$(cargo metadata --format-version 1 --manifest-path benches/loadgen/Cargo.toml |
    python3 -c 'import json,sys,os
for p in json.load(sys.stdin)["packages"]:
    if p["name"] == "rdkafka-sys":
        print(os.path.join(os.path.dirname(p["manifest_path"]), "librdkafka"))')
  [ -d "$src" ] || { echo "rdkafka-sys source not found (cargo fetch?)" >&2; exit 1; }
  echo "building rdkafka_performance from $src" >&2
  rm -rf "$perf_dir/src-copy" && mkdir -p "$perf_dir" && cp -a "$src" "$perf_dir/src-copy"
  (
    cd "$perf_dir/src-copy"
    ./configure --disable-ssl --disable-gssapi --disable-zstd --disable-curl --disable-lz4-ext \
      --disable-sasl >"$perf_dir/configure.log" 2>&1
    make -j"$(nproc)" -C src librdkafka.a >"$perf_dir/make.log" 2>&1
    libs=$(sed -n 's/^LIBS+=//p' Makefile.config | tr '\n' ' ')
    # shellcheck disable=SC2086
    gcc -O2 -Isrc examples/rdkafka_performance.c src/librdkafka.a -o "$perf_bin" $libs -lpthread -lm
  )
}
[ -x "$perf_bin" ] || build_perf

# --- the broker ------------------------------------------------------------------------------
cargo build --release -q -p shardlog
broker_bin="$root/target/release/shardlog"
mkdir -p "$data_dir"
data_dir=$(cd "$data_dir" && pwd)
broker_pid=""
clk_tck=$(getconf CLK_TCK)
start_broker() {
  SHARDLOG_ADMIN_LISTEN=${SHARDLOG_ADMIN_LISTEN:-127.0.0.1:0} \
    "$broker_bin" --listen "$bootstrap" --data-dir "$data_dir/broker" --shards "$shards" \
    "${extra_broker_flags[@]}" 2>>"$data_dir/broker.log" &
  broker_pid=$!
  for _ in $(seq 100); do
    "$broker_bin" topics list --bootstrap-server "$bootstrap" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "broker did not start; see $data_dir/broker.log" >&2
  exit 1
}
stop_broker() {
  [ -n "$broker_pid" ] || return 0
  kill "$broker_pid" 2>/dev/null || true
  wait "$broker_pid" 2>/dev/null || true
  broker_pid=""
}
trap stop_broker EXIT
broker_cpu() { awk '{print $14 + $15}' "/proc/$broker_pid/stat"; }

# --- the raw device --------------------------------------------------------------------------
# "N bytes (...) copied, S s, ..." -> MB/s (10^6 bytes), the unit rdkafka_performance uses.
dd_mbps() { awk '/copied/ {printf "%.0f", $1 / $(NF-3) / 1e6}'; }
raw_write="" raw_read=""
measure_device() {
  local raw_file="$data_dir/raw-device.bin"
  sync
  raw_write=$(dd if=/dev/zero of="$raw_file" bs=1M count="$raw_mib" oflag=direct conv=fsync 2>&1 | dd_mbps)
  raw_read=$(dd if="$raw_file" of=/dev/null bs=1M iflag=direct 2>&1 | dd_mbps)
  rm -f "$raw_file"
  echo "raw O_DIRECT, 1 MiB blocks, one in flight: write $raw_write MB/s, read $raw_read MB/s" >&2
}

# --- the runs --------------------------------------------------------------------------------
names=()
declare -A cells mbps_of
# run NAME RAW_MBPS(or -) -- rdkafka_performance arguments...
run() {
  local name=$1 raw=$2
  shift 3
  local c0 c1 line mbps bytes cpu_per_gib client_per_gib ratio client_cpu
  sync
  c0=$(broker_cpu)
  local TIMEFORMAT='%U %S'
  { time "$perf_bin" -b "$bootstrap" -q "$@" >"$data_dir/client.out" 2>&1; } 2>"$data_dir/client.time"
  line=$(grep -E '^% [0-9]+ messages.*(produced|consumed) ' "$data_dir/client.out" | tail -1)
  client_cpu=$(awk '{print $1 + $2}' "$data_dir/client.time")
  c1=$(broker_cpu)
  mbps=$(sed -E "s/.*[ (]([0-9.]+) MB\/s.*/\1/" <<<"$line")
  bytes=$(sed -E 's/^% [0-9]+ messages (produced )?\(([0-9]+) bytes\).*/\2/' <<<"$line")
  cpu_per_gib=$(awk -v c="$((c1 - c0))" -v t="$clk_tck" -v b="$bytes" \
    'BEGIN {printf "%.2f", (c / t) / (b / 1073741824)}')
  client_per_gib=$(awk -v c="$client_cpu" -v b="$bytes" 'BEGIN {printf "%.2f", c / (b / 1073741824)}')
  ratio=""
  [ "$raw" != "-" ] && ratio=$(awk -v m="$mbps" -v r="$raw" 'BEGIN {printf " (%.0f %%)", 100 * m / r}')
  echo "round $round, $name: $line" >&2
  [ -n "${cells[$name]+x}" ] || names+=("$name")
  cells[$name]+=" ${mbps%.*}$ratio, $cpu_per_gib / $client_per_gib;"
  mbps_of[$name]+=" $mbps"
}
topic() { "$broker_bin" topics create "$1" --partitions "$2" --bootstrap-server "$bootstrap" >/dev/null; }
all_partitions() { for p in $(seq 0 $(($1 - 1))); do printf -- '-p %s ' "$p"; done; }
median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{v[NR] = $1} END {printf "%.0f", NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }

# Fills the caches before the measured runs (--warm-up-mib): produces, or reads back, the
# warm-up topic; nothing of it is reported.
warm_up() {
  [ "$warm_mib" -gt 0 ] || return 0
  local n=$((warm_mib * 1024))
  if [ "$1" = produce ]; then
    topic perf-warm 16
    "$perf_bin" -b "$bootstrap" -q -P -t perf-warm -s 1024 -c "$n" -a 1 -X linger.ms=5 >/dev/null 2>&1
  else
    # shellcheck disable=SC2046
    "$perf_bin" -b "$bootstrap" -q -C -t perf-warm $(all_partitions 16) -o beginning -c "$n" \
      -X fetch.wait.max.ms=10 >/dev/null 2>&1
  fi
}

devices=()
for round in $(seq "$rounds"); do
  rm -rf "${data_dir:?}/broker"
  measure_device
  devices+=("write $raw_write, read $raw_read")
  start_broker
  topic perf-1p 1
  topic perf-recent 1
  topic perf-16p 16
  warm_up produce
  run "1 partition, produce" "$raw_write" -- -P -t perf-1p -p 0 -s 1024 -c "$messages" -a 1 -X linger.ms=5
  run "16 partitions, produce" "$raw_write" -- -P -t perf-16p -s 1024 -c "$messages" -a 1 -X linger.ms=5
  run "1 partition, produce (then consumed as recent data)" "$raw_write" -- \
    -P -t perf-recent -p 0 -s 1024 -c "$recent" -a 1 -X linger.ms=5
  run "1 partition, consume recent data (read cache)" - -- \
    -C -t perf-recent -p 0 -o beginning -c "$recent" -X fetch.wait.max.ms=10
  stop_broker
  start_broker # a fresh process: nothing of the logs is in memory
  warm_up consume
  run "1 partition, consume from disk" "$raw_read" -- \
    -C -t perf-1p -p 0 -o beginning -c "$messages" -X fetch.wait.max.ms=10
  # shellcheck disable=SC2046
  run "16 partitions, consume from disk" "$raw_read" -- \
    -C -t perf-16p $(all_partitions 16) -o beginning -c "$messages" -X fetch.wait.max.ms=10
  stop_broker
done

table=$(
  echo "raw O_DIRECT (dd, 1 MiB blocks, one in flight), MB/s, by round: $(IFS=';'; echo "${devices[*]}")"
  echo "$messages messages of 1024 B ($recent for the recent-data pair), --shards $shards, $rounds rounds, warm-up $warm_mib MiB"
  echo
  echo "| run | median MB/s | each round: MB/s (of raw device), broker / rdkafka_performance CPU-s per GiB |"
  echo "|---|---|---|"
  for n in "${names[@]}"; do
    echo "| $n | $(median <<<"${mbps_of[$n]}") |${cells[$n]%;} |"
  done
)
echo "$table"
[ -z "$out" ] || echo "$table" >"$out"
