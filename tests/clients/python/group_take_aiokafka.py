"""aiokafka group consumer for tests/consumer_groups.rs: joins GROUP on TOPIC (earliest when the
group has no commit), takes exactly N records with getone(), then commits and stops (LeaveGroup).
MODE manual: enable_auto_commit=False and `await consumer.commit()` before stop().
MODE auto: enable_auto_commit=True (200 ms interval); stop() makes the final auto-commit.
Prints one JSON line: {"client","mode","taken":[[p,o,value]..],"first":{"p":first offset}}.
Usage: group_take_aiokafka.py BOOTSTRAP TOPIC GROUP N MODE"""
import asyncio
import json
import sys

from aiokafka import AIOKafkaConsumer

bootstrap, topic, group, n, mode = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5]
assert mode in ("manual", "auto"), mode
auto = mode == "auto"


async def main():
    c = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=group,
                         client_id=f"aio-{mode}", auto_offset_reset="earliest",
                         enable_auto_commit=auto, auto_commit_interval_ms=200,
                         session_timeout_ms=6000, heartbeat_interval_ms=1000)
    await c.start()
    taken, first = [], {}
    try:
        while len(taken) < n:
            try:
                r = await asyncio.wait_for(c.getone(), timeout=30)
            except asyncio.TimeoutError:
                sys.exit(f"timed out after {len(taken)} of {n} records: {taken}")
            first.setdefault(str(r.partition), r.offset)
            taken.append([r.partition, r.offset, r.value.decode()])
        if not auto:
            await c.commit()
    finally:
        await c.stop()
    print(json.dumps({"client": "aiokafka", "mode": mode, "taken": taken, "first": first}))


asyncio.run(main())
