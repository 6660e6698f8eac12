"""Prints the committed offsets of GROUP for every partition of TOPIC, read with kafka-python's
KafkaConsumer.committed() (FindCoordinator + OffsetFetch; the consumer joins nothing), as one
JSON line {"0": offset or null, ...}. Usage: group_committed.py BOOTSTRAP TOPIC GROUP"""
import json
import sys

from kafka import KafkaConsumer, TopicPartition

bootstrap, topic, group = sys.argv[1], sys.argv[2], sys.argv[3]
c = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
parts = sorted(c.partitions_for_topic(topic) or [])
if not parts:
    sys.exit(f"no partitions for {topic}")
print(json.dumps({str(p): c.committed(TopicPartition(topic, p), timeout_ms=10000) for p in parts}))
c.close(autocommit=False)
