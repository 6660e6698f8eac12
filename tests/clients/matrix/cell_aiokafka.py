"""aiokafka cell driver of the compatibility matrix (see README.md here): runs one feature
against the broker, each feature a coroutine under its own asyncio.run. (Not named aiokafka.py,
which would shadow the package.)
Usage: cell_aiokafka.py BOOTSTRAP FEATURE PREFIX"""
import asyncio
import collections
import contextlib
import inspect
import time

import aiokafka
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewPartitions, NewTopic, RecordsToDelete
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.coordinator.protocol import ConsumerProtocolMemberAssignment
from aiokafka.errors import MessageSizeTooLargeError

from matrix_common import (CLIENT_MAX_BYTES, DEADLINE_S, HEADERS, RECORDS, RECORD_1MIB_BYTES,
                           TIMESTAMP_MS, TOO_LARGE_BYTES, Failed, at_least, check,
                           check_offsets_increase, check_topic_holds, check_values_once, client_id,
                           keyed, features_of, main, offsets, random_bytes, seek_base_ms,
                           split_between, to_partition_0)

PARTITIONS = 3  # of every topic a feature creates, unless it says otherwise
CREATE_TIME = 0  # ConsumerRecord.timestamp_type


async def wait_until(fn, what, timeout_s=DEADLINE_S, step_s=0.1):
    """matrix_common.wait_until without blocking the loop; fn may be a coroutine function."""
    deadline = time.time() + timeout_s
    while True:
        v = fn()
        if inspect.isawaitable(v):
            v = await v
        if v:
            return v
        if time.time() > deadline:
            raise Failed(f"timed out waiting for {what}")
        await asyncio.sleep(step_s)


# --- clients -------------------------------------------------------------------------------

@contextlib.asynccontextmanager
async def admin_client(bootstrap):
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, client_id=client_id())
    await admin.start()
    try:
        yield admin
    finally:
        await admin.close()


def producer(bootstrap, **config):
    return AIOKafkaProducer(bootstrap_servers=bootstrap, client_id=client_id(), acks="all",
                            **config)


def consumer(bootstrap):
    return AIOKafkaConsumer(bootstrap_servers=bootstrap, client_id=client_id(),
                            enable_auto_commit=False)


def group_consumer(bootstrap, prefix, **config):
    """A consumer in PREFIX-g subscribed to PREFIX, reading from the earliest offset."""
    return AIOKafkaConsumer(prefix, bootstrap_servers=bootstrap, client_id=client_id(),
                            group_id=f"{prefix}-g", auto_offset_reset="earliest", **config)


# --- topics --------------------------------------------------------------------------------

async def partition_ids(admin, topic):
    """Partition ids of topic in the metadata ([] if absent)."""
    for t in await admin.describe_topics([topic]):
        if t["topic"] == topic and t["error_code"] == 0:
            return sorted(p["partition"] for p in t["partitions"])
    return []


def response_errors(response, items):
    """(name, error_code, error_message) of each entry of a raw response's `items` array,
    decoded by field name (older versions have no error_message)."""
    return [(e.get("topic", e.get("resource_name")), e["error_code"], e.get("error_message"))
            for e in response.to_object()[items]]


async def wait_partitions(admin, topic, count):
    async def shown():
        return await partition_ids(admin, topic) == list(range(count))
    await wait_until(shown, f"metadata to show {topic} with {count} partitions")


async def create_topic(admin, topic, partitions=PARTITIONS):
    """aiokafka returns the CreateTopics response without raising its errors."""
    response = await admin.create_topics([NewTopic(topic, partitions, 1)])
    for name, error_code, error_message in response_errors(response, "topic_errors"):
        check(error_code == 0, f"CreateTopics {name}: error {error_code} {error_message}")
    await wait_partitions(admin, topic, partitions)


async def setup_topic(bootstrap, topic):
    async with admin_client(bootstrap) as admin:
        await create_topic(admin, topic)


# --- produce and consume -------------------------------------------------------------------

async def produce(bootstrap, topic, records, **config):
    """Sends records (send() keyword dicts) and waits for every acknowledgement."""
    async with producer(bootstrap, **config) as p:
        futures = [await p.send(topic, **r) for r in records]
        return [await asyncio.wait_for(f, DEADLINE_S) for f in futures]


async def poll_until(c, done, what):
    """Polls c, collecting records, until done(records) holds; returns the records."""
    got = []

    async def step():
        for records in (await c.getmany(timeout_ms=200)).values():
            got.extend(records)
        return done(got)

    await wait_until(step, what)
    return got


def all_partitions(topic):
    return [TopicPartition(topic, p) for p in range(PARTITIONS)]


async def consume(bootstrap, topic, count):
    """The first `count` records of topic's partitions, read from the beginning."""
    async with consumer(bootstrap) as c:
        c.assign(all_partitions(topic))
        await c.seek_to_beginning()
        return await poll_until(c, at_least(count), f"{count} records of {topic}")


async def read_partition_0(bootstrap, topic, count, seek):
    """Offsets of the first `count` records of partition 0 after `await seek(consumer, tp)`."""
    tp = TopicPartition(topic, 0)
    async with consumer(bootstrap) as c:
        c.assign([tp])
        await seek(c, tp)
        return offsets(await poll_until(c, at_least(count), f"{count} records"))


async def to_beginning(c, tp):
    await c.seek_to_beginning(tp)


async def watermarks(bootstrap, topic):
    """{partition: (low, high)} of every partition of topic, asked of the broker."""
    async with admin_client(bootstrap) as admin:
        parts = [TopicPartition(topic, p) for p in await partition_ids(admin, topic)]
    check(parts, f"metadata lists {topic}")
    async with consumer(bootstrap) as c:
        starts, ends = await c.beginning_offsets(parts), await c.end_offsets(parts)
    return {tp.partition: (starts[tp], ends[tp]) for tp in parts}


async def check_holds(bootstrap, topic, n):
    check_topic_holds(topic, await watermarks(bootstrap, topic), n)


# --- record features -----------------------------------------------------------------------

def codec_feature(codec):
    async def run(bootstrap, prefix):
        await setup_topic(bootstrap, prefix)
        values = [f"{codec}-{i}" for i in range(RECORDS)]
        await produce(bootstrap, prefix, keyed(values),
                      compression_type=None if codec == "none" else codec)
        got = await consume(bootstrap, prefix, RECORDS)
        check_values_once(got, values)
        check_offsets_increase(got)
        await check_holds(bootstrap, prefix, RECORDS)
    return run


async def headers(bootstrap, prefix):
    await setup_topic(bootstrap, prefix)
    records = [dict(value=f"h{i}".encode(), headers=HEADERS) for i in range(3)]
    await produce(bootstrap, prefix, records)
    got = await consume(bootstrap, prefix, 3)
    check(len(got) == 3, f"{len(got)} records")
    for r in got:
        check(list(r.headers) == HEADERS, f"headers {r.headers}")
    await check_holds(bootstrap, prefix, 3)


async def null_key(bootstrap, prefix):
    await setup_topic(bootstrap, prefix)
    values = [f"v{i}" for i in range(10)]
    await produce(bootstrap, prefix, [dict(key=None, value=v.encode()) for v in values])
    got = await consume(bootstrap, prefix, 10)
    check(all(r.key is None for r in got), f"keys {[r.key for r in got]}")
    check_values_once(got, values)
    await check_holds(bootstrap, prefix, 10)


async def null_value(bootstrap, prefix):
    await setup_topic(bootstrap, prefix)
    await produce(bootstrap, prefix, [dict(key=b"k", value=None)])
    (r,) = await consume(bootstrap, prefix, 1)
    check(r.key == b"k" and r.value is None, f"key {r.key!r} value {r.value!r}")
    await check_holds(bootstrap, prefix, 1)


async def timestamp(bootstrap, prefix):
    await setup_topic(bootstrap, prefix)
    await produce(bootstrap, prefix, [dict(value=b"t", timestamp_ms=TIMESTAMP_MS)])
    (r,) = await consume(bootstrap, prefix, 1)
    check(r.timestamp == TIMESTAMP_MS, f"timestamp {r.timestamp}")
    check(r.timestamp_type == CREATE_TIME, f"timestamp type {r.timestamp_type}")
    await check_holds(bootstrap, prefix, 1)


async def record_1mib(bootstrap, prefix):
    await setup_topic(bootstrap, prefix)
    value = random_bytes(RECORD_1MIB_BYTES)
    await produce(bootstrap, prefix, [dict(value=value)], max_request_size=CLIENT_MAX_BYTES)
    (r,) = await consume(bootstrap, prefix, 1)
    check(r.value == value, f"value differs ({len(r.value)} bytes)")
    await check_holds(bootstrap, prefix, 1)


async def too_large(bootstrap, prefix):
    await setup_topic(bootstrap, prefix)
    async with producer(bootstrap, max_request_size=CLIENT_MAX_BYTES) as p:
        # send() raises the same MessageSizeTooLargeError when the client itself rejects the
        # record (max_request_size), so it stays outside the try: only the broker's answer,
        # delivered through the future, counts.
        fut = await p.send(prefix, value=random_bytes(TOO_LARGE_BYTES), partition=0)
        try:
            await asyncio.wait_for(fut, DEADLINE_S)
            raise Failed("the broker acknowledged a 1,100,000-byte record")
        except MessageSizeTooLargeError as e:
            check(e.errno == 10, f"error code {e.errno}")
        await p.send_and_wait(prefix, value=b"small", partition=0)
    await check_holds(bootstrap, prefix, 1)
    (r,) = await consume(bootstrap, prefix, 1)
    check(r.value == b"small", f"value {r.value[:20]!r}")


# --- group features ------------------------------------------------------------------------

async def collect(c, records, stop):
    """Polls group member c into records until stop is set."""
    while not stop.is_set():
        for batch in (await c.getmany(timeout_ms=200)).values():
            records.extend(batch)


def polling(tasks):
    """Raises what ended a collect task, if one has ended; for wait_until conditions."""
    for t in tasks:
        if t.done() and not t.cancelled() and t.exception() is not None:
            raise Failed(f"a member's poll failed: {t.exception()!r}") from t.exception()
    return False


def assignments(members):
    return [{tp.partition for tp in c.assignment()} for c in members]


async def group(bootstrap, prefix):
    await setup_topic(bootstrap, prefix)
    async with group_consumer(bootstrap, prefix) as a, group_consumer(bootstrap, prefix) as b:
        records, stop = [], asyncio.Event()
        polls = [asyncio.create_task(collect(c, records, stop)) for c in (a, b)]
        try:
            await wait_until(lambda: polling(polls)
                             or split_between(assignments([a, b]), {0, 1, 2}),
                             "both members to split 3 partitions")
            async with admin_client(bootstrap) as admin:
                note = f"assignor {(await describe_group(admin, f'{prefix}-g')).protocol}"
            values = [f"g{i}" for i in range(60)]
            await produce(bootstrap, prefix, keyed(values))
            await wait_until(lambda: polling(polls) or len(records) >= 60,
                             "60 records in the group")
            check_values_once(records, values)
        finally:
            stop.set()
            # An error here was raised already (polling), or surfaces in the checks above:
            # it must not replace the exception in flight.
            await asyncio.gather(*polls, return_exceptions=True)
    await check_holds(bootstrap, prefix, 60)
    return note


async def commit_manual(bootstrap, prefix):
    await setup_topic(bootstrap, prefix)
    await produce(bootstrap, prefix, keyed([f"c{i}" for i in range(20)]))
    async with group_consumer(bootstrap, prefix, enable_auto_commit=False) as c:
        await poll_until(c, at_least(20), "20 records")
        await c.commit()
    await check_resumes_after_commit(bootstrap, prefix)


async def commit_auto(bootstrap, prefix):
    await setup_topic(bootstrap, prefix)
    await produce(bootstrap, prefix, keyed([f"c{i}" for i in range(20)]))
    async with group_consumer(bootstrap, prefix, enable_auto_commit=True,
                              auto_commit_interval_ms=500) as c:
        await poll_until(c, at_least(20), "20 records")
        keep_until = time.time() + 2
        extra = await poll_until(c, lambda _: time.time() > keep_until, "2 s of polling")
        check(not extra, f"nothing past the 20 records: {extra}")
        # Before close: what auto commit alone committed (close would commit too).
        await check_committed_all(bootstrap, prefix, c, 20)
    await check_resumes_after_commit(bootstrap, prefix)


async def check_committed_all(bootstrap, prefix, c, n):
    """PREFIX-g's committed offsets (c.committed asks the coordinator) are each partition's
    end, n in total."""
    committed = {p: await c.committed(TopicPartition(prefix, p)) for p in range(PARTITIONS)}
    ends = {p: high for p, (_, high) in (await watermarks(bootstrap, prefix)).items()}
    check(committed == ends and sum(ends.values()) == n,
          f"committed offsets {committed} are the partitions' ends {ends} ({n} records)")


async def check_resumes_after_commit(bootstrap, prefix):
    """Produces 5 more; a new member of PREFIX-g must get exactly those 5. Records arrive in
    offset order per partition, so a lost commit shows as an old record among the first 5."""
    new = [f"c{i}" for i in range(20, 25)]
    await produce(bootstrap, prefix, keyed(new))
    async with group_consumer(bootstrap, prefix, enable_auto_commit=False) as c:
        got = await poll_until(c, at_least(5), "the 5 new records")
    check(sorted(r.value.decode() for r in got) == new,
          f"resumed with {[r.value.decode() for r in got]}")
    await check_holds(bootstrap, prefix, 25)


# --- seek features -------------------------------------------------------------------------

async def seek_beginning(bootstrap, prefix):
    await setup_topic(bootstrap, prefix)
    await produce(bootstrap, prefix, to_partition_0(10))
    tp = TopicPartition(prefix, 0)
    async with consumer(bootstrap) as c:
        c.assign([tp])
        await c.seek_to_beginning(tp)
        first = offsets(await poll_until(c, at_least(10), "10 records"))
        await c.seek_to_beginning(tp)
        again = offsets(await poll_until(c, at_least(10), "10 records after the seek"))
    check(first == list(range(10)), f"first read {first}")
    check(again == list(range(10)), f"after seek_to_beginning {again}")
    await check_holds(bootstrap, prefix, 10)


async def seek_offset(bootstrap, prefix):
    await setup_topic(bootstrap, prefix)
    await produce(bootstrap, prefix, to_partition_0(10))

    async def to_6(c, tp):
        c.seek(tp, 6)

    got = await read_partition_0(bootstrap, prefix, 4, to_6)
    check(got == [6, 7, 8, 9], f"offsets {got}")
    await check_holds(bootstrap, prefix, 10)


async def seek_timestamp(bootstrap, prefix):
    await setup_topic(bootstrap, prefix)
    t0 = seek_base_ms()
    await produce(bootstrap, prefix, to_partition_0(10, lambda i: t0 + i * 1000))

    async def to_time(c, tp):
        found = (await c.offsets_for_times({tp: t0 + 4500}))[tp]
        check(found is not None and found.offset == 5, f"offset for T0+4500: {found}")
        c.seek(tp, found.offset)

    got = await read_partition_0(bootstrap, prefix, 5, to_time)
    check(got == [5, 6, 7, 8, 9], f"offsets {got}")
    await check_holds(bootstrap, prefix, 10)


# --- admin features ------------------------------------------------------------------------

def with_admin(fn):
    """Runs coroutine fn(admin, bootstrap, prefix) with a started admin client."""
    async def run(bootstrap, prefix):
        async with admin_client(bootstrap) as admin:
            return await fn(admin, bootstrap, prefix)
    return run


@with_admin
async def admin_topics(admin, bootstrap, prefix):
    await create_topic(admin, prefix, 2)
    response = await admin.delete_topics([prefix])
    for name, error_code, _ in response_errors(response, "topic_error_codes"):
        check(error_code == 0, f"DeleteTopics {name}: error {error_code}")

    async def gone():
        # list_topics asks for all topics, so it cannot auto-create the deleted one.
        return prefix not in await admin.list_topics()

    await wait_until(gone, "the deleted topic to leave metadata", timeout_s=10)


@with_admin
async def admin_partitions(admin, bootstrap, prefix):
    await create_topic(admin, prefix, 1)
    await admin.create_partitions({prefix: NewPartitions(5)})
    await wait_partitions(admin, prefix, 5)
    (meta,) = await produce(bootstrap, prefix, [dict(value=b"p4", partition=4)])
    check(meta.partition == 4, f"acknowledged on partition {meta.partition}")
    await check_holds(bootstrap, prefix, 1)


async def topic_configs(admin, topic):
    """{name: value} of every config of topic, from the raw DescribeConfigs response."""
    (response,) = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)])
    (described,) = response.to_object()["resources"]
    check(described["error_code"] == 0,
          f"DescribeConfigs error {described['error_code']} {described['error_message']}")
    return {e["config_names"]: e["config_value"] for e in described["config_entries"]}


@with_admin
async def admin_describe_configs(admin, bootstrap, prefix):
    await create_topic(admin, prefix)
    configs = await topic_configs(admin, prefix)
    retention, policy = configs.get("retention.ms"), configs.get("cleanup.policy")
    check(retention == "604800000", f"retention.ms {retention}")
    check(policy == "delete", f"cleanup.policy {policy}")


@with_admin
async def admin_alter_configs(admin, bootstrap, prefix):
    await create_topic(admin, prefix)
    resource = ConfigResource(ConfigResourceType.TOPIC, prefix, {"retention.ms": "3600000"})
    for response in await admin.alter_configs([resource]):
        for name, error_code, error_message in response_errors(response, "resources"):
            check(error_code == 0, f"AlterConfigs {name}: error {error_code} {error_message}")
    retention = (await topic_configs(admin, prefix)).get("retention.ms")
    check(retention == "3600000", f"retention.ms after alter: {retention}")
    return "via AlterConfigs: aiokafka has no incremental alter"


@with_admin
async def admin_list_groups(admin, bootstrap, prefix):
    await create_topic(admin, prefix)
    await produce(bootstrap, prefix, keyed(["l0"]))
    async with group_consumer(bootstrap, prefix, enable_auto_commit=False) as c:
        await poll_until(c, at_least(1), "1 record")
        await c.commit()
    listed = {group_id for group_id, _protocol_type in await admin.list_consumer_groups()}
    check(f"{prefix}-g" in listed, f"{prefix}-g not listed")
    await check_holds(bootstrap, prefix, 1)


Group = collections.namedtuple("Group", "state protocol_type protocol assignments")


async def describe_group(admin, group_id):
    """The group's state, protocol type, assignor and each member's [(topic, [partitions])].
    aiokafka returns the raw DescribeGroups response; its consumer protocol decodes the
    assignment bytes."""
    (response,) = await admin.describe_consumer_groups([group_id])
    (g,) = response.to_object()["groups"]
    check(g["error_code"] == 0, f"DescribeGroups error {g['error_code']}")
    decoded = [ConsumerProtocolMemberAssignment.decode(m["member_assignment"]).assignment
               for m in g["members"]]
    return Group(g["state"], g["protocol_type"], g["protocol"],
                 [[(t, sorted(ps)) for t, ps in a] for a in decoded])


@with_admin
async def admin_describe_groups(admin, bootstrap, prefix):
    await create_topic(admin, prefix)
    async with group_consumer(bootstrap, prefix, enable_auto_commit=False) as c:
        await poll_until(c, lambda _: c.assignment(), "the consumer's assignment")
        g = await describe_group(admin, f"{prefix}-g")
    check(g.state == "Stable", f"state {g.state}")
    check(g.protocol_type == "consumer", f"protocol type {g.protocol_type}")
    check(g.assignments == [[(prefix, [0, 1, 2])]], f"members' assignments {g.assignments}")


@with_admin
async def admin_list_offsets(admin, bootstrap, prefix):
    await create_topic(admin, prefix)
    t0 = seek_base_ms()
    await produce(bootstrap, prefix, to_partition_0(7, lambda i: t0 + i * 1000))
    tp = TopicPartition(prefix, 0)
    async with consumer(bootstrap) as c:
        got = [(await c.beginning_offsets([tp]))[tp], (await c.end_offsets([tp]))[tp],
               (await c.offsets_for_times({tp: t0 + 2500}))[tp].offset]
    check(got == [0, 7, 3], f"earliest, latest, offset for T0+2500: {got}")
    return ("via AIOKafkaConsumer.beginning_offsets/end_offsets/offsets_for_times: "
            "aiokafka's admin client has no list offsets")


@with_admin
async def admin_delete_records(admin, bootstrap, prefix):
    await create_topic(admin, prefix)
    await produce(bootstrap, prefix, to_partition_0(10))
    tp = TopicPartition(prefix, 0)
    low = (await admin.delete_records({tp: RecordsToDelete(4)}))[tp]
    check(low == 4, f"low watermark {low}")
    async with consumer(bootstrap) as c:
        earliest = (await c.beginning_offsets([tp]))[tp]
    check(earliest == 4, f"earliest offset {earliest}")
    got = await read_partition_0(bootstrap, prefix, 6, to_beginning)
    check(got == list(range(4, 10)), f"offsets from the beginning {got}")
    await check_holds(bootstrap, prefix, 6)


def blocking(feature):
    """main() calls feature(bootstrap, prefix) and wants its note: one asyncio.run per call."""
    def run(bootstrap, prefix):
        return asyncio.run(feature(bootstrap, prefix))
    return run



if __name__ == "__main__":
    main({name: blocking(fn) for name, fn in features_of(globals()).items()},
         lambda: f"aiokafka {aiokafka.__version__}")
