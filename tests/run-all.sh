#!/usr/bin/env bash
# The whole test suite, as the README gives it: installs the real clients if missing, then
# formatting, lints, unit/property/crash tests, and end-to-end tests against the real binary;
# then the load generator (benches/loadgen, its own workspace package so rdkafka never becomes
# a broker dependency): its lints, unit tests and a smoke run against the broker binary that
# the root tests just built. Its librdkafka is compiled from the rdkafka crate's bundled source
# with gcc and make (no cmake, no system librdkafka).
set -euo pipefail
cd "$(dirname "$0")/.."
ulimit -l unlimited 2>/dev/null || true
bash tests/setup-clients.sh
bash tests/check-vendor.sh
cargo fmt -- --check
cargo clippy --all-targets -- -D warnings
cargo test --all-targets
cargo clippy -p shardlog-bench --all-targets -- -D warnings
cargo test -p shardlog-bench
