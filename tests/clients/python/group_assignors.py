"""Two kafka-python members of GROUP, both using ASSIGNOR (range, roundrobin or sticky), in
two threads: each polls until the group has split TOPIC's partitions between them. Prints one
JSON line {"protocol": chosen name, "a": [partitions], "b": [partitions]}.
Usage: group_assignors.py BOOTSTRAP TOPIC GROUP ASSIGNOR"""
import json
import sys
import threading
import time

from kafka import KafkaConsumer
from kafka.coordinator.assignors.range import RangePartitionAssignor
from kafka.coordinator.assignors.roundrobin import RoundRobinPartitionAssignor
from kafka.coordinator.assignors.sticky.sticky_assignor import StickyPartitionAssignor

bootstrap, topic, group, name = sys.argv[1:5]
assignor = {"range": RangePartitionAssignor, "roundrobin": RoundRobinPartitionAssignor,
            "sticky": StickyPartitionAssignor}[name]
stop = threading.Event()
members = [KafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=group,
                         partition_assignment_strategy=[assignor], session_timeout_ms=6000,
                         heartbeat_interval_ms=500, enable_auto_commit=False)
           for _ in range(2)]


def run(c):
    while not stop.is_set():
        c.poll(timeout_ms=200)


threads = [threading.Thread(target=run, args=(c,), daemon=True) for c in members]
for t in threads:
    t.start()
deadline = time.monotonic() + 40
result = None
while time.monotonic() < deadline:
    got = [sorted(tp.partition for tp in c.assignment()) for c in members]
    if all(got) and sorted(got[0] + got[1]) == list(range(4)):
        time.sleep(1.5)  # settled: no further rebalance moves them
        again = [sorted(tp.partition for tp in c.assignment()) for c in members]
        if again == got:
            result = got
            break
    time.sleep(0.2)
protocol = None
if result is not None:
    from kafka import KafkaAdminClient
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    described = admin.describe_groups([group])[group]
    assert described["group_state"] == "Stable", described
    protocol = described["protocol_data"]
    admin.close()
stop.set()
for t in threads:
    t.join()
for c in members:
    c.close()
if result is None:
    sys.exit(f"no stable split of 4 partitions with {name}")
print(json.dumps({"protocol": protocol, "a": result[0], "b": result[1]}))
