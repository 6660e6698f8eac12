"""kafka-python group consumer for tests/consumer_groups.rs: joins GROUP on TOPIC (earliest
when the group has no commit), takes exactly N records (poll max_records=1, so the consumed
position is exactly past the records taken), then commits and closes (LeaveGroup).
MODE manual: enable_auto_commit=False and consumer.commit() before close(autocommit=False).
MODE auto: enable_auto_commit=True (200 ms interval); close() makes the final auto-commit.
Prints one JSON line: {"client","mode","taken":[[p,o,value]..],"first":{"p":first offset}}.
Usage: group_take_kafka_python.py BOOTSTRAP TOPIC GROUP N MODE"""
import json
import sys
import time

from kafka import KafkaConsumer

bootstrap, topic, group, n, mode = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5]
assert mode in ("manual", "auto"), mode
auto = mode == "auto"
c = KafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=group, client_id=f"kp-{mode}",
                  auto_offset_reset="earliest", enable_auto_commit=auto,
                  auto_commit_interval_ms=200, session_timeout_ms=6000,
                  heartbeat_interval_ms=1000)
taken, first = [], {}
deadline = time.monotonic() + 30
while len(taken) < n:
    if time.monotonic() > deadline:
        sys.exit(f"timed out after {len(taken)} of {n} records: {taken}")
    for tp, records in c.poll(timeout_ms=500, max_records=1).items():
        for r in records:
            first.setdefault(str(tp.partition), r.offset)
            taken.append([tp.partition, r.offset, r.value.decode()])
if not auto:
    c.commit()
c.close(autocommit=auto)
print(json.dumps({"client": "kafka-python", "mode": mode, "taken": taken, "first": first}))
