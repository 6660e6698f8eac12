"""kafka-python producer and consumer against shardlog: N keyed records with headers and a null
value (tombstone), acks=all; read back in per-partition order. Usage: roundtrip_kafka_python.py
BOOTSTRAP TOPIC N"""
import sys

from kafka import KafkaConsumer, KafkaProducer, TopicPartition

bootstrap, topic, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
# Idempotence (kafka-python 3 default) is issue 5; this checks plain acks=all production.
p = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5, enable_idempotence=False)
futures = [p.send(topic, key=f"k{i % 5}".encode(), value=f"v{i}".encode(),
                  headers=[("h", str(i).encode())]) for i in range(n)]
futures.append(p.send(topic, key=b"gone", value=None))
for f in futures:
    f.get(timeout=30)
p.close()

c = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
parts = [TopicPartition(topic, x) for x in sorted(c.partitions_for_topic(topic))]
c.assign(parts)
c.seek_to_beginning(*parts)
got, last = [], {}
while len(got) < n + 1:
    polled = c.poll(timeout_ms=10000)
    if not polled:
        sys.exit(f"timed out after {len(got)}")
    for tp, records in polled.items():
        for r in records:
            assert r.offset > last.get(tp.partition, -1)
            last[tp.partition] = r.offset
            got.append(r)
c.close()
values = sorted(r.value.decode() for r in got if r.value is not None)
assert values == sorted(f"v{i}" for i in range(n)), "each record once"
assert any(r.key == b"gone" and r.value is None for r in got), "tombstone kept"
assert all(dict(r.headers)["h"] == r.value[1:] for r in got if r.value is not None), "headers kept"
print(f"ok {len(got)}")
