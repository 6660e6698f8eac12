#!/usr/bin/env bash
# The whole test suite, as the README gives it: installs the real clients if missing, then
# formatting, lints, unit/property/crash tests, and end-to-end tests against the real binary.
set -euo pipefail
cd "$(dirname "$0")/.."
ulimit -l unlimited 2>/dev/null || true
bash tests/setup-clients.sh
cargo fmt -- --check
cargo clippy --all-targets -- -D warnings
cargo test --all-targets
