#!/usr/bin/env bash
# Installs the real Kafka clients the end-to-end tests drive (idempotent; needs root for apt):
# kcat (Debian's librdkafka), confluent-kafka, kafka-python and aiokafka (PyPI), kafkajs (npm).
set -euo pipefail
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive
if ! command -v kcat >/dev/null 2>&1; then
  apt-get update -q
  apt-get install -y -q kcat
fi
if ! python3 -c "import confluent_kafka, kafka, aiokafka" 2>/dev/null; then
  python3 -m pip install -q --disable-pip-version-check confluent-kafka kafka-python aiokafka
fi
if [ ! -d tests/clients/node/node_modules/kafkajs ]; then
  (cd tests/clients/node && npm ci --no-audit --no-fund --loglevel=error)
fi
