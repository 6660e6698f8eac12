"""confluent-kafka (librdkafka) consumers with partition.assignment.strategy cooperative-sticky,
both in this process, polled in turn. Consumer A joins GROUP alone and must own every partition
of TOPIC; then consumer B joins. With the incremental protocol, A gives up only the partitions
that move to B (on_revoke lists only those) and keeps consuming the rest; B gets them in a
follow-up rebalance. The on_assign/on_revoke/on_lost callbacks only log: in cooperative mode
the client then calls incremental_assign/incremental_unassign itself.
Runs until A and B together own every partition, each owns some, every one of the EXPECTED
records (produced by the test) has been consumed, and nothing changed for 2 s; or 45 s pass.
Prints one JSON summary line (the test asserts on it):
  {"partitions":[..], "events":[{"c","ev","parts","t"}..],
   "a_owned_alone":[..], "owned":{"A":[..],"B":[..]}, "assignment":{"A":[..],"B":[..]},
   "consumed":{"A":n,"B":n}, "distinct":n, "done":bool, "errors":[..]}
`events` t is seconds since start (to the ms); B is created at "b_joined_at", after the first
"events_before_b" events (A's own assignment can fall in the same millisecond).
Usage: cooperative.py BOOTSTRAP TOPIC GROUP EXPECTED"""
import json
import sys
import time

from confluent_kafka import Consumer

bootstrap, topic, group, expected = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
start = time.monotonic()
events, errors = [], []
owned = {"A": set(), "B": set()}
consumed = {"A": 0, "B": 0}
seen = set()


def now():
    return round(time.monotonic() - start, 3)


def callbacks(name):
    def on_assign(consumer, parts):
        ps = sorted(p.partition for p in parts)
        events.append({"c": name, "ev": "assign", "parts": ps, "t": now()})
        owned[name] |= set(ps)

    def on_revoke(consumer, parts):
        ps = sorted(p.partition for p in parts)
        events.append({"c": name, "ev": "revoke", "parts": ps, "t": now()})
        owned[name] -= set(ps)

    def on_lost(consumer, parts):
        ps = sorted(p.partition for p in parts)
        events.append({"c": name, "ev": "lost", "parts": ps, "t": now()})
        owned[name] -= set(ps)

    return dict(on_assign=on_assign, on_revoke=on_revoke, on_lost=on_lost)


def consumer(name):
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "client.id": f"coop-{name}",
                  "partition.assignment.strategy": "cooperative-sticky",
                  "session.timeout.ms": 6000, "heartbeat.interval.ms": 500,
                  "auto.offset.reset": "earliest", "enable.auto.commit": True,
                  "auto.commit.interval.ms": 200})
    c.subscribe([topic], **callbacks(name))
    return c


def poll(name, c):
    m = c.poll(0.1)
    if m is None:
        return
    if m.error():
        errors.append(f"{name}: {m.error()}")
        return
    consumed[name] += 1
    seen.add((m.partition(), m.offset()))


a = consumer("A")
md = a.list_topics(topic, timeout=10)
partitions = set(md.topics[topic].partitions)
deadline = start + 45
while owned["A"] != partitions and time.monotonic() < deadline:
    poll("A", a)
a_alone = sorted(owned["A"])
b_joined_at, events_before_b = now(), len(events)
b = consumer("B")
last_change, last_state, done = time.monotonic(), None, False
while time.monotonic() < deadline:
    poll("A", a)
    poll("B", b)
    state = (frozenset(owned["A"]), frozenset(owned["B"]), len(events))
    if state != last_state:
        last_state, last_change = state, time.monotonic()
    covered = owned["A"] | owned["B"] == partitions and not owned["A"] & owned["B"]
    if (covered and owned["A"] and owned["B"] and len(seen) >= expected
            and time.monotonic() - last_change > 2):
        done = True
        break
summary = {
    "partitions": sorted(partitions),
    "events": events,
    "a_owned_alone": a_alone,
    "b_joined_at": b_joined_at,
    "events_before_b": events_before_b,
    "owned": {k: sorted(v) for k, v in owned.items()},
    "assignment": {"A": sorted(p.partition for p in a.assignment()),
                   "B": sorted(p.partition for p in b.assignment())},
    "consumed": consumed,
    "distinct": len(seen),
    "done": done,
    "errors": errors,
}
print(json.dumps(summary), flush=True)
b.close()
a.close()
