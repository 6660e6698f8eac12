# Sourced by the cluster benchmark scripts (bash). `start_cluster D DIR` starts three voters
# of one shard each on 127.0.0.1 — Kafka ports D1092, D2092, D3092, cluster ports D{1,2,3}192,
# admin ports D{1,2,3}644 — with their data and logs under DIR, adds their pids to the
# caller's `pids` array, sets `bootstrap` to the three Kafka addresses, and returns once the
# first broker's admin listener lists all three.
start_cluster() {
  local d=$1 dir=$2 i n
  local voters="1@127.0.0.1:${d}1192,2@127.0.0.1:${d}2192,3@127.0.0.1:${d}3192"
  for i in 1 2 3; do
    RUST_LOG=warn target/release/shardlog --node-id "$i" --shards 1 --pin false \
      --listen "127.0.0.1:${d}${i}092" --advertised-listener "127.0.0.1:${d}${i}092" \
      --cluster-listen "127.0.0.1:${d}${i}192" --admin-listen "127.0.0.1:${d}${i}644" \
      --voters "$voters" --data-dir "$dir/n$i" 2>"$dir/n$i.log" &
    pids+=($!)
  done
  bootstrap="127.0.0.1:${d}1092,127.0.0.1:${d}2092,127.0.0.1:${d}3092"
  for _ in $(seq 100); do
    n=$(curl -s "127.0.0.1:${d}1644/v1/cluster" | grep -o '"node_id":[0-9]*' | wc -l || true)
    [ "$n" -ge 4 ] && return 0
    sleep 0.2
  done
  echo "the cluster did not form; logs in $dir" >&2
  return 1
}
