"""confluent-kafka (librdkafka) producer and consumer against shardlog: N keyed records per
codec (acks=all), read back by an assign()ed consumer; checks every record arrives once, in
per-partition order. Usage: roundtrip_confluent.py BOOTSTRAP TOPIC N"""
import sys

from confluent_kafka import Consumer, Producer, TopicPartition

bootstrap, topic, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
codecs = ["none", "gzip", "snappy", "lz4", "zstd"]
sent = {}
for codec in codecs:
    p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "compression.type": codec,
                  "linger.ms": 5})
    errors = []
    for i in range(n):
        key = f"k{i % 7}"
        p.produce(topic, key=key, value=f"{codec}-{i}".encode(),
                  on_delivery=lambda err, msg: errors.append(err) if err else None)
    assert p.flush(30) == 0, "all delivered"
    assert not errors, errors
    sent[codec] = n

c = Consumer({"bootstrap.servers": bootstrap, "group.id": "unused", "enable.auto.commit": False})
md = c.list_topics(topic, timeout=10)
parts = sorted(md.topics[topic].partitions)
c.assign([TopicPartition(topic, p, 0) for p in parts])
total = n * len(codecs)
seen, last = [], {}
while len(seen) < total:
    m = c.poll(10)
    if m is None:
        sys.exit(f"timed out after {len(seen)} of {total}")
    if m.error():
        sys.exit(f"consumer error {m.error()}")
    assert m.offset() > last.get(m.partition(), -1), "per-partition order"
    last[m.partition()] = m.offset()
    seen.append(m.value().decode())
c.close()
assert sorted(seen) == sorted(f"{c}-{i}" for c in codecs for i in range(n)), "each once"
print(f"ok {len(seen)}")
