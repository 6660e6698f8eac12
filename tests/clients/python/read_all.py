"""Reads every record of a topic with kafka-python (assign, no group) until the end offsets
seen at start, and prints one JSON line per record: [partition, offset, key, value].
Usage: read_all.py BOOTSTRAP TOPIC"""
import json
import sys

from kafka import KafkaConsumer, TopicPartition

bootstrap, topic = sys.argv[1], sys.argv[2]
c = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, consumer_timeout_ms=10000)
parts = [TopicPartition(topic, p) for p in sorted(c.partitions_for_topic(topic))]
c.assign(parts)
c.seek_to_beginning(*parts)
end = c.end_offsets(parts)
left = {tp: end[tp] for tp in parts if end[tp] > 0}
while left:
    polled = c.poll(timeout_ms=5000)
    if not polled:
        sys.exit(f"timed out with {left} left")
    for tp, records in polled.items():
        for r in records:
            key = r.key.decode() if r.key is not None else None
            val = r.value.decode() if r.value is not None else None
            print(json.dumps([tp.partition, r.offset, key, val]))
            if r.offset + 1 >= end[tp]:
                left.pop(tp, None)
c.close()
