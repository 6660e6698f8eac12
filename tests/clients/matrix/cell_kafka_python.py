"""kafka-python cell driver of the compatibility matrix (see README.md here): runs one feature
against the broker. The same file serves kafka-python 3.x (PyPI) and Debian's kafka-python 2.0.2,
whose KafkaAdminClient is older: where the two differ, the code detects what the installed
client has (and says so in the PASS note when it falls back to an older way).
Usage: cell_kafka_python.py BOOTSTRAP FEATURE PREFIX"""
import collections
import inspect
import threading
import time
from contextlib import closing

import kafka
import kafka.errors as Errors
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import ConfigResource, ConfigResourceType, NewPartitions, NewTopic

from matrix_common import (CLIENT_MAX_BYTES, DEADLINE_S, HEADERS, RECORDS, RECORD_1MIB_BYTES,
                           TIMESTAMP_MS, TOO_LARGE_BYTES, Failed, Lacks, at_least, check,
                           check_offsets_increase, check_topic_holds, check_values_once, client_id,
                           keyed, features_of, main, offsets, random_bytes, seek_base_ms,
                           split_between, to_partition_0, wait_until)

CREATE_TIME = 0  # ConsumerRecord.timestamp_type


# --- clients -------------------------------------------------------------------------------

def admin_client(bootstrap):
    return KafkaAdminClient(bootstrap_servers=bootstrap, client_id=client_id())


def producer(bootstrap, **config):
    return KafkaProducer(bootstrap_servers=bootstrap, client_id=client_id(), acks="all", **config)


def consumer(bootstrap):
    return KafkaConsumer(bootstrap_servers=bootstrap, client_id=client_id(),
                         enable_auto_commit=False)


def group_consumer(bootstrap, prefix, **config):
    """A consumer in PREFIX-g subscribed to PREFIX, reading from the earliest offset."""
    c = KafkaConsumer(bootstrap_servers=bootstrap, client_id=client_id(), group_id=f"{prefix}-g",
                      auto_offset_reset="earliest", **config)
    c.subscribe([prefix])
    return c


# --- topics --------------------------------------------------------------------------------

def partition_ids(admin, topic):
    """Partition ids of topic in the metadata ([] if absent); 3.x and 2.0.2 name fields apart."""
    for t in admin.describe_topics([topic]):
        if t.get("name", t.get("topic")) == topic and t["error_code"] == 0:
            return sorted(p.get("partition_index", p.get("partition")) for p in t["partitions"])
    return []


def wait_partitions(admin, topic, count):
    wait_until(lambda: partition_ids(admin, topic) == list(range(count)),
               f"metadata to show {topic} with {count} partitions")


def create_topic(admin, topic, partitions=3):
    admin.create_topics([NewTopic(topic, partitions, 1)])
    wait_partitions(admin, topic, partitions)


def setup_topic(bootstrap, topic):
    """Creates topic with 3 partitions through a short-lived admin client."""
    with closing(admin_client(bootstrap)) as admin:
        create_topic(admin, topic)


# --- produce and consume -------------------------------------------------------------------

def produce(bootstrap, topic, records, **config):
    """Sends records (send() keyword dicts) and waits for every acknowledgement."""
    p = producer(bootstrap, **config)
    try:
        futures = [p.send(topic, **r) for r in records]
        return [f.get(timeout=DEADLINE_S) for f in futures]
    finally:
        p.close(timeout=DEADLINE_S)


def poll_until(c, done, what):
    """Polls c, collecting records, until done(records) holds; returns the records."""
    got = []

    def step():
        for records in c.poll(timeout_ms=200).values():
            got.extend(records)
        return done(got)

    wait_until(step, what)
    return got


def all_partitions(c, topic):
    return [TopicPartition(topic, p) for p in sorted(c.partitions_for_topic(topic))]


def consume(bootstrap, topic, count):
    """The first `count` records of topic's partitions, read from the beginning."""
    with closing(consumer(bootstrap)) as c:
        parts = all_partitions(c, topic)
        c.assign(parts)
        c.seek_to_beginning(*parts)
        return poll_until(c, at_least(count), f"{count} records of {topic}")


def watermarks(bootstrap, topic):
    """{partition: (low, high)} of every partition of topic, asked of the broker."""
    with closing(consumer(bootstrap)) as c:
        parts = all_partitions(c, topic)
        starts, ends = c.beginning_offsets(parts), c.end_offsets(parts)
    return {tp.partition: (starts[tp], ends[tp]) for tp in parts}


def check_holds(bootstrap, topic, n):
    check_topic_holds(topic, watermarks(bootstrap, topic), n)


# --- record features -----------------------------------------------------------------------

def codec_feature(codec):
    def run(bootstrap, prefix):
        setup_topic(bootstrap, prefix)
        values = [f"{codec}-{i}" for i in range(RECORDS)]
        produce(bootstrap, prefix, keyed(values),
                compression_type=None if codec == "none" else codec)
        got = consume(bootstrap, prefix, RECORDS)
        check_values_once(got, values)
        check_offsets_increase(got)
        check_holds(bootstrap, prefix, RECORDS)
    return run


def headers(bootstrap, prefix):
    setup_topic(bootstrap, prefix)
    produce(bootstrap, prefix, [dict(value=f"h{i}".encode(), headers=HEADERS) for i in range(3)])
    got = consume(bootstrap, prefix, 3)
    check(len(got) == 3, f"{len(got)} records")
    for r in got:
        check(list(r.headers) == HEADERS, f"headers {r.headers}")
    check_holds(bootstrap, prefix, 3)


def null_key(bootstrap, prefix):
    setup_topic(bootstrap, prefix)
    values = [f"v{i}" for i in range(10)]
    produce(bootstrap, prefix, [dict(key=None, value=v.encode()) for v in values])
    got = consume(bootstrap, prefix, 10)
    check(all(r.key is None for r in got), f"keys {[r.key for r in got]}")
    check_values_once(got, values)
    check_holds(bootstrap, prefix, 10)


def null_value(bootstrap, prefix):
    setup_topic(bootstrap, prefix)
    produce(bootstrap, prefix, [dict(key=b"k", value=None)])
    (r,) = consume(bootstrap, prefix, 1)
    check(r.key == b"k" and r.value is None, f"key {r.key!r} value {r.value!r}")
    check_holds(bootstrap, prefix, 1)


def timestamp(bootstrap, prefix):
    setup_topic(bootstrap, prefix)
    produce(bootstrap, prefix, [dict(value=b"t", timestamp_ms=TIMESTAMP_MS)])
    (r,) = consume(bootstrap, prefix, 1)
    check(r.timestamp == TIMESTAMP_MS, f"timestamp {r.timestamp}")
    check(r.timestamp_type == CREATE_TIME, f"timestamp type {r.timestamp_type}")
    check_holds(bootstrap, prefix, 1)


def record_1mib(bootstrap, prefix):
    setup_topic(bootstrap, prefix)
    value = random_bytes(RECORD_1MIB_BYTES)
    produce(bootstrap, prefix, [dict(value=value)], max_request_size=CLIENT_MAX_BYTES)
    (r,) = consume(bootstrap, prefix, 1)
    check(r.value == value, f"value differs ({len(r.value)} bytes)")
    check_holds(bootstrap, prefix, 1)


IDEMPOTENCE_NOTE = ("enable_idempotence=False: with its default idempotent producer, "
                    "kafka-python 3 also reports MESSAGE_TOO_LARGE but then fails every later "
                    "send (a client-side fatal state)")


def without_idempotence():
    """(producer config, note). kafka-python 3's idempotent producer (its default) turns fatal
    on any non-retriable error, failing every later send; 2.0.2 has no idempotence."""
    if "enable_idempotence" in KafkaProducer.DEFAULT_CONFIG:
        return {"enable_idempotence": False}, IDEMPOTENCE_NOTE
    return {}, None


def too_large(bootstrap, prefix):
    setup_topic(bootstrap, prefix)
    config, note = without_idempotence()
    p = producer(bootstrap, max_request_size=CLIENT_MAX_BYTES, **config)
    try:
        # The client's own size check raises the same MessageSizeTooLargeError: 3.x from send()
        # (left to fail the cell here), 2.0.2 as a future that send() returns already failed.
        big = p.send(prefix, value=random_bytes(TOO_LARGE_BYTES), partition=0)
        check(not big.is_done, f"the client rejected the record itself: {big.exception!r}")
        try:
            big.get(timeout=DEADLINE_S)
            raise Failed("the broker acknowledged a 1,100,000-byte record")
        except Errors.MessageSizeTooLargeError as e:
            check(e.errno == 10, f"error code {e.errno}")
            # The broker's error carries no message (2.0.2) or the response's error_message
            # (3.x); the client's own says "... the max_request_size configuration".
            check(not any("max_request_size" in str(a) for a in e.args),
                  f"the client, not the broker, rejected the record: {e!r}")
        p.send(prefix, value=b"small", partition=0).get(timeout=DEADLINE_S)
    finally:
        p.close(timeout=DEADLINE_S)
    check_holds(bootstrap, prefix, 1)
    (r,) = consume(bootstrap, prefix, 1)
    check(r.value == b"small", f"value {r.value[:20]!r}")
    return note


# --- group features ------------------------------------------------------------------------

class Member(threading.Thread):
    """A group consumer polled in its own thread (a poll blocked in a rebalance cannot starve
    the other member); the main thread reads only `assigned`, `records` and `error` (what
    ended the polling, if anything did)."""

    def __init__(self, bootstrap, prefix):
        super().__init__(daemon=True)
        self.consumer = group_consumer(bootstrap, prefix)
        self.assigned, self.records, self.error = set(), [], None
        self.stopping = threading.Event()

    def run(self):
        try:
            while not self.stopping.is_set():
                for records in self.consumer.poll(timeout_ms=200).values():
                    self.records.extend(records)
                self.assigned = {tp.partition for tp in self.consumer.assignment()}
        except Exception as e:  # noqa: BLE001 - handed to the main thread, see polling()
            self.error = e
        finally:
            self.consumer.close()

    def stop(self):
        self.stopping.set()
        self.join(DEADLINE_S)


def polling(members):
    """Raises what ended a member's polling, if anything has; for wait_until conditions."""
    for m in members:
        if m.error is not None:
            raise Failed(f"a member's poll failed: {m.error!r}") from m.error
    return False


def group(bootstrap, prefix):
    setup_topic(bootstrap, prefix)
    members = [Member(bootstrap, prefix) for _ in range(2)]
    for m in members:
        m.start()
    try:
        wait_until(lambda: polling(members)
                   or split_between([m.assigned for m in members], {0, 1, 2}),
                   "both members to split 3 partitions")
        with closing(admin_client(bootstrap)) as admin:
            note = f"assignor {describe_group(admin, f'{prefix}-g').protocol}"
        values = [f"g{i}" for i in range(60)]
        produce(bootstrap, prefix, keyed(values))
        wait_until(lambda: polling(members) or sum(len(m.records) for m in members) >= 60,
                   "60 records in the group")
        check_values_once([r for m in members for r in m.records], values)
    finally:
        for m in members:
            m.stop()
    check_holds(bootstrap, prefix, 60)
    return note


def commit_manual(bootstrap, prefix):
    setup_topic(bootstrap, prefix)
    produce(bootstrap, prefix, keyed([f"c{i}" for i in range(20)]))
    c = group_consumer(bootstrap, prefix, enable_auto_commit=False)
    poll_until(c, at_least(20), "20 records")
    c.commit()
    c.close()
    check_resumes_after_commit(bootstrap, prefix)


def commit_auto(bootstrap, prefix):
    setup_topic(bootstrap, prefix)
    produce(bootstrap, prefix, keyed([f"c{i}" for i in range(20)]))
    c = group_consumer(bootstrap, prefix, enable_auto_commit=True, auto_commit_interval_ms=500)
    poll_until(c, at_least(20), "20 records")
    keep_until = time.time() + 2
    extra = poll_until(c, lambda _: time.time() > keep_until, "2 s of polling")
    check(not extra, f"nothing past the 20 records: {extra}")
    # Before close: what auto commit alone committed (close would commit too).
    check_committed_all(bootstrap, prefix, 20)
    c.close()
    check_resumes_after_commit(bootstrap, prefix)


def committed_offsets(bootstrap, prefix):
    """{partition: offset} PREFIX-g has committed for PREFIX, asked of the broker through the
    admin client: 3.x has list_group_offsets, 2.0.2 list_consumer_group_offsets."""
    group_id, parts = f"{prefix}-g", [TopicPartition(prefix, p) for p in range(3)]
    with closing(admin_client(bootstrap)) as admin:
        if hasattr(admin, "list_group_offsets"):
            found = admin.list_group_offsets({group_id: parts})[group_id]
        else:
            found = admin.list_consumer_group_offsets(group_id, partitions=parts)
    return {tp.partition: o.offset for tp, o in found.items()}


def check_committed_all(bootstrap, prefix, n):
    """PREFIX-g's committed offsets are each partition's end, n in total."""
    committed = committed_offsets(bootstrap, prefix)
    ends = {p: high for p, (_, high) in watermarks(bootstrap, prefix).items()}
    check(committed == ends and sum(ends.values()) == n,
          f"committed offsets {committed} are the partitions' ends {ends} ({n} records)")


def check_resumes_after_commit(bootstrap, prefix):
    """Produces 5 more; a new member of PREFIX-g must get exactly those 5. Records arrive in
    offset order per partition, so a lost commit shows as an old record among the first 5."""
    new = [f"c{i}" for i in range(20, 25)]
    produce(bootstrap, prefix, keyed(new))
    with closing(group_consumer(bootstrap, prefix, enable_auto_commit=False)) as c:
        got = poll_until(c, at_least(5), "the 5 new records")
    check(sorted(r.value.decode() for r in got) == new,
          f"resumed with {[r.value.decode() for r in got]}")
    check_holds(bootstrap, prefix, 25)


# --- seek features -------------------------------------------------------------------------

def seek_beginning(bootstrap, prefix):
    setup_topic(bootstrap, prefix)
    produce(bootstrap, prefix, to_partition_0(10))
    tp = TopicPartition(prefix, 0)
    with closing(consumer(bootstrap)) as c:
        c.assign([tp])
        c.seek_to_beginning(tp)
        first = offsets(poll_until(c, at_least(10), "10 records"))
        c.seek_to_beginning(tp)
        again = offsets(poll_until(c, at_least(10), "10 records after the seek"))
    check(first == list(range(10)), f"first read {first}")
    check(again == list(range(10)), f"after seek_to_beginning {again}")
    check_holds(bootstrap, prefix, 10)


def seek_offset(bootstrap, prefix):
    setup_topic(bootstrap, prefix)
    produce(bootstrap, prefix, to_partition_0(10))
    tp = TopicPartition(prefix, 0)
    with closing(consumer(bootstrap)) as c:
        c.assign([tp])
        c.seek(tp, 6)
        got = offsets(poll_until(c, at_least(4), "4 records"))
    check(got == [6, 7, 8, 9], f"offsets {got}")
    check_holds(bootstrap, prefix, 10)


def seek_timestamp(bootstrap, prefix):
    setup_topic(bootstrap, prefix)
    t0 = seek_base_ms()
    produce(bootstrap, prefix, to_partition_0(10, lambda i: t0 + i * 1000))
    tp = TopicPartition(prefix, 0)
    with closing(consumer(bootstrap)) as c:
        c.assign([tp])
        found = c.offsets_for_times({tp: t0 + 4500})[tp]
        check(found is not None and found.offset == 5, f"offset for T0+4500: {found}")
        c.seek(tp, found.offset)
        got = offsets(poll_until(c, at_least(5), "5 records"))
    check(got == [5, 6, 7, 8, 9], f"offsets {got}")
    check_holds(bootstrap, prefix, 10)


# --- admin features ------------------------------------------------------------------------

def with_admin(fn):
    """Runs fn(admin, bootstrap, prefix) with an admin client that is closed afterwards."""
    def run(bootstrap, prefix):
        with closing(admin_client(bootstrap)) as admin:
            return fn(admin, bootstrap, prefix)
    return run


@with_admin
def admin_topics(admin, bootstrap, prefix):
    create_topic(admin, prefix, 2)
    admin.delete_topics([prefix])
    # list_topics asks for all topics, so it cannot auto-create the deleted one.
    wait_until(lambda: prefix not in admin.list_topics(), "the deleted topic to leave metadata",
               timeout_s=10)


@with_admin
def admin_partitions(admin, bootstrap, prefix):
    create_topic(admin, prefix, 1)
    admin.create_partitions({prefix: NewPartitions(5)})
    wait_partitions(admin, prefix, 5)
    (meta,) = produce(bootstrap, prefix, [dict(value=b"p4", partition=4)])
    check(meta.partition == 4, f"acknowledged on partition {meta.partition}")
    check_holds(bootstrap, prefix, 1)


def topic_configs(admin, topic):
    """{name: value} of every config of topic. 3.x returns only modified ones unless told
    config_filter="all"; 2.0.2 returns the raw DescribeConfigs response."""
    resource = ConfigResource(ConfigResourceType.TOPIC, topic)
    if "config_filter" in inspect.signature(admin.describe_configs).parameters:
        described = admin.describe_configs([resource], config_filter="all")
        return {name: c["value"] for name, c in described["topic"][topic].items()}
    (response,) = admin.describe_configs([resource])
    (described,) = response.to_object()["resources"]
    check(described["error_code"] == 0,
          f"DescribeConfigs error {described['error_code']} {described['error_message']}")
    return {e["config_names"]: e["config_value"] for e in described["config_entries"]}


@with_admin
def admin_describe_configs(admin, bootstrap, prefix):
    create_topic(admin, prefix)
    configs = topic_configs(admin, prefix)
    retention, policy = configs.get("retention.ms"), configs.get("cleanup.policy")
    check(retention == "604800000", f"retention.ms {retention}")
    check(policy == "delete", f"cleanup.policy {policy}")


def set_retention(admin, topic, value):
    """Sets retention.ms of topic; returns the API used (3.x has incremental, 2.0.2 not)."""
    resource = ConfigResource(ConfigResourceType.TOPIC, topic, {"retention.ms": value})
    if "incremental" in inspect.signature(admin.alter_configs).parameters:
        result = admin.alter_configs([resource], incremental=True)["topic"][topic]
        check(result == "OK", f"IncrementalAlterConfigs: {result}")
        return "IncrementalAlterConfigs"
    for r in admin.alter_configs([resource]).to_object()["resources"]:
        check(r["error_code"] == 0, f"AlterConfigs error {r['error_code']} {r['error_message']}")
    return "AlterConfigs (no incremental alter in this kafka-python)"


@with_admin
def admin_alter_configs(admin, bootstrap, prefix):
    create_topic(admin, prefix)
    api = set_retention(admin, prefix, "3600000")
    retention = topic_configs(admin, prefix).get("retention.ms")
    check(retention == "3600000", f"retention.ms after alter: {retention}")
    return f"via {api}"


def group_ids(admin):
    if hasattr(admin, "list_groups"):
        return {g["group_id"] for g in admin.list_groups()}
    return {group_id for group_id, _protocol_type in admin.list_consumer_groups()}


@with_admin
def admin_list_groups(admin, bootstrap, prefix):
    create_topic(admin, prefix)
    produce(bootstrap, prefix, keyed(["l0"]))
    c = group_consumer(bootstrap, prefix, enable_auto_commit=False)
    poll_until(c, at_least(1), "1 record")
    c.commit()
    c.close()
    check(f"{prefix}-g" in group_ids(admin), f"{prefix}-g not listed")
    check_holds(bootstrap, prefix, 1)


Group = collections.namedtuple("Group", "state protocol_type protocol assignments")


def describe_group(admin, group_id):
    """The group's state, protocol type, assignor and each member's [(topic, [partitions])];
    3.x names it describe_groups (and decodes to dicts), 2.0.2 describe_consumer_groups."""
    if hasattr(admin, "describe_groups"):
        g = admin.describe_groups([group_id])[group_id]
        check(g["error"] is None, f"DescribeGroups error {g['error']}")
        assignments = [[(t["topic"], sorted(t["partitions"]))
                        for t in m["member_assignment"]["assigned_partitions"]]
                       for m in g["members"]]
        return Group(g["group_state"], g["protocol_type"], g["protocol_data"], assignments)
    (g,) = admin.describe_consumer_groups([group_id])
    assignments = [[(t, sorted(ps)) for t, ps in m.member_assignment.assignment]
                   for m in g.members]
    return Group(g.state, g.protocol_type, g.protocol, assignments)


@with_admin
def admin_describe_groups(admin, bootstrap, prefix):
    create_topic(admin, prefix)
    with closing(group_consumer(bootstrap, prefix, enable_auto_commit=False)) as c:
        poll_until(c, lambda _: c.assignment(), "the consumer's assignment")
        g = describe_group(admin, f"{prefix}-g")
    check(g.state == "Stable", f"state {g.state}")
    check(g.protocol_type == "consumer", f"protocol type {g.protocol_type}")
    check(g.assignments == [[(prefix, [0, 1, 2])]], f"members' assignments {g.assignments}")


def list_offsets(bootstrap, admin, tp, timestamp_ms):
    """(earliest, latest, offset for timestamp_ms) of tp, and how they were asked."""
    if hasattr(admin, "list_partition_offsets"):
        specs = [kafka.OffsetSpec.EARLIEST, kafka.OffsetSpec.LATEST, timestamp_ms]
        return [admin.list_partition_offsets({tp: s})[tp].offset for s in specs], None
    with closing(consumer(bootstrap)) as c:
        answers = [c.beginning_offsets([tp])[tp], c.end_offsets([tp])[tp],
                   c.offsets_for_times({tp: timestamp_ms})[tp].offset]
    return answers, ("via KafkaConsumer.beginning_offsets/end_offsets/offsets_for_times: "
                     "no admin list offsets in this kafka-python")


@with_admin
def admin_list_offsets(admin, bootstrap, prefix):
    create_topic(admin, prefix)
    t0 = seek_base_ms()
    produce(bootstrap, prefix, to_partition_0(7, lambda i: t0 + i * 1000))
    got, note = list_offsets(bootstrap, admin, TopicPartition(prefix, 0), t0 + 2500)
    check(got == [0, 7, 3], f"earliest, latest, offset for T0+2500: {got}")
    return note


@with_admin
def admin_delete_records(admin, bootstrap, prefix):
    if not hasattr(admin, "delete_records"):
        raise Lacks(f"kafka-python {kafka.__version__}'s KafkaAdminClient has no delete_records")
    create_topic(admin, prefix)
    produce(bootstrap, prefix, to_partition_0(10))
    tp = TopicPartition(prefix, 0)
    low = admin.delete_records({tp: 4})[tp]["low_watermark"]
    check(low == 4, f"low watermark {low}")
    earliest = admin.list_partition_offsets({tp: kafka.OffsetSpec.EARLIEST})[tp].offset
    check(earliest == 4, f"earliest offset {earliest}")
    with closing(consumer(bootstrap)) as c:
        c.assign([tp])
        c.seek_to_beginning(tp)
        got = offsets(poll_until(c, at_least(6), "6 records"))
    check(got == list(range(4, 10)), f"offsets from the beginning {got}")
    check_holds(bootstrap, prefix, 6)



if __name__ == "__main__":
    main(features_of(globals()), lambda: f"kafka-python {kafka.__version__}")
