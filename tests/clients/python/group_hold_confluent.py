"""confluent-kafka group member for tests/consumer_groups.rs' lag test: subscribes to TOPIC in
GROUP, takes exactly N records, commits them synchronously, prints one JSON line
{"taken": N, "committed": {partition: offset}}, then stays in the group without consuming
more (its partitions paused) until killed, so the group lags behind the log end.
Usage: group_hold_confluent.py BOOTSTRAP TOPIC GROUP N"""
import json
import sys
import time

from confluent_kafka import Consumer

bootstrap, topic, group, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
c = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "client.id": "ck-hold",
              "auto.offset.reset": "earliest", "enable.auto.commit": False,
              "session.timeout.ms": 6000, "heartbeat.interval.ms": 1000,
              "max.partition.fetch.bytes": 64})
c.subscribe([topic])
taken = 0
deadline = time.monotonic() + 30
while taken < n:
    if time.monotonic() > deadline:
        sys.exit(f"timed out after {taken} of {n} records")
    m = c.poll(0.5)
    if m is None:
        continue
    if m.error():
        sys.exit(f"consumer error {m.error()}")
    taken += 1
    c.commit(message=m, asynchronous=False)
c.pause(c.assignment())
committed = {tp.partition: tp.offset for tp in c.committed(c.assignment(), timeout=10)}
print(json.dumps({"taken": taken, "committed": committed}), flush=True)
while True:
    c.poll(0.5)  # keeps the member alive (heartbeats run in librdkafka's own thread)
