#!/usr/bin/env bash
# Installs the real Kafka clients the end-to-end tests and the compatibility matrix drive
# (idempotent; needs root for apt):
# - Debian: kcat and python3-confluent-kafka (librdkafka 2.0.2), python3-kafka 2.0.2 and its
#   codec modules, all for Debian's /usr/bin/python3; prometheus and promtool (tests/metrics.rs);
# - PyPI, pinned in tests/clients/python/requirements.txt, for the default python3;
# - npm: kafkajs and its codec packages (tests/clients/node/package-lock.json).
set -euo pipefail
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive
debian=(kcat python3-confluent-kafka python3-kafka python3-snappy python3-lz4 python3-zstandard
  prometheus)
if ! dpkg -s "${debian[@]}" >/dev/null 2>&1; then
  apt-get update -q
  apt-get install -y -q "${debian[@]}"
fi
requirements=tests/clients/python/requirements.txt
python3 -m pip install -q --disable-pip-version-check --root-user-action=ignore -r "$requirements"
if [ ! -d tests/clients/node/node_modules/kafkajs ] \
    || ! (cd tests/clients/node && npm ls --depth=0 >/dev/null 2>&1); then
  (cd tests/clients/node && npm ci --no-audit --no-fund --loglevel=error)
fi
