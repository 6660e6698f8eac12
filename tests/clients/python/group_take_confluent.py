"""confluent-kafka (librdkafka) group consumer for tests/consumer_groups.rs: subscribes to TOPIC
in GROUP (earliest when the group has no commit), takes exactly N records, commits
synchronously (enable.auto.commit=false, commit(asynchronous=False): the offsets past the
records returned by poll) and closes (LeaveGroup).
Prints one JSON line: {"client","mode","taken":[[p,o,value]..],"first":{"p":first offset}}.
Usage: group_take_confluent.py BOOTSTRAP TOPIC GROUP N"""
import json
import sys
import time

from confluent_kafka import Consumer

bootstrap, topic, group, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
c = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "client.id": "ck-take",
              "auto.offset.reset": "earliest", "enable.auto.commit": False,
              "session.timeout.ms": 6000, "heartbeat.interval.ms": 1000})
c.subscribe([topic])
taken, first = [], {}
deadline = time.monotonic() + 30
while len(taken) < n:
    if time.monotonic() > deadline:
        sys.exit(f"timed out after {len(taken)} of {n} records: {taken}")
    m = c.poll(0.5)
    if m is None:
        continue
    if m.error():
        sys.exit(f"consumer error {m.error()}")
    first.setdefault(str(m.partition()), m.offset())
    taken.append([m.partition(), m.offset(), m.value().decode()])
c.commit(asynchronous=False)
c.close()
print(json.dumps({"client": "confluent-kafka", "mode": "manual", "taken": taken, "first": first}))
