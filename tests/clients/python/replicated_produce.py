"""Produces N records to TOPIC with confluent-kafka's idempotent producer (acks=all), keys
and values FIRST..FIRST+N-1, spread over the topic's partitions, and waits for every
acknowledgement; for tests/cluster.rs's replicated topics, where a broker may be dead and
partitions move to new leaders meanwhile. Prints one JSON line: {"acked": count}.

Usage: replicated_produce.py BOOTSTRAP TOPIC FIRST N
"""
import json
import sys

from confluent_kafka import Producer

bootstrap, topic = sys.argv[1], sys.argv[2]
first, n = int(sys.argv[3]), int(sys.argv[4])
acked = 0
failed = []


def done(err, msg):
    global acked
    if err is not None:
        failed.append(str(err))
    else:
        acked += 1


p = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "acks": "all",
              "linger.ms": 5, "message.timeout.ms": 60000})
for i in range(first, first + n):
    while True:
        try:
            p.produce(topic, key=f"k{i}", value=f"v{i}", on_delivery=done)
            break
        except BufferError:
            p.poll(0.1)
    p.poll(0)
if p.flush(90) != 0:
    sys.exit("records left unacknowledged")
if failed:
    sys.exit(f"{len(failed)} deliveries failed, first: {failed[0]}")
print(json.dumps({"acked": acked}))
