"""confluent-kafka (librdkafka) cell driver of the compatibility matrix (see README.md here).

The same file runs under confluent-kafka 2.x and under Debian's 1.7.0, whose AdminClient has no
consumer-group, list-offsets, delete-records or incremental-alter calls: those features use the
older way 1.7.0 offers (AdminClient.list_groups, the consumer's offset queries, alter_configs)
and say so in the PASS note, or report LACKS where there is none.
Usage: cell_confluent.py BOOTSTRAP FEATURE PREFIX"""
import sys
import time

from confluent_kafka import (OFFSET_BEGINNING, TIMESTAMP_CREATE_TIME, Consumer, KafkaError,
                             Producer, TopicPartition, admin, libversion, version)

from matrix_common import (CLIENT_MAX_BYTES, DEADLINE_S, HEADERS, RECORD_1MIB_BYTES, RECORDS,
                           TIMESTAMP_MS, TOO_LARGE_BYTES, Lacks, check, check_offsets_increase,
                           check_topic_holds, check_values_once, client_id, features_of, main,
                           offsets, random_bytes, seek_base_ms, split_between, values, wait_until)

# version() is a string in 2.x, a (string, int) pair in 1.x.
CLIENT = f"confluent-kafka {version() if isinstance(version(), str) else version()[0]}"
LIMITS = {"message.max.bytes": CLIENT_MAX_BYTES, "compression.type": "none"}
GROUP_TIMEOUTS = {"session.timeout.ms": 6000, "heartbeat.interval.ms": 1000}


# ---- admin -------------------------------------------------------------------------------

def admin_client(bootstrap):
    return admin.AdminClient({"bootstrap.servers": bootstrap, "client.id": client_id()})


def partition_count(adm, topic):
    """Partitions of topic in a full metadata listing (None if not listed). A full listing, not
    list_topics(topic), so that asking never auto-creates the topic."""
    t = adm.list_topics(timeout=DEADLINE_S).topics.get(topic)
    return len(t.partitions) if t is not None else None


def create_topic(bootstrap, topic, partitions=3):
    adm = admin_client(bootstrap)
    new = admin.NewTopic(topic, num_partitions=partitions, replication_factor=1)
    adm.create_topics([new])[topic].result(DEADLINE_S)
    wait_until(lambda: partition_count(adm, topic) == partitions,
               f"metadata to show {topic} with {partitions} partitions")
    return adm


def topic_configs(adm, topic):
    resource = admin.ConfigResource("topic", topic)
    return adm.describe_configs([resource])[resource].result(DEADLINE_S)


# ---- produce -----------------------------------------------------------------------------

def new_producer(bootstrap, conf=None):
    return Producer({"bootstrap.servers": bootstrap, "client.id": client_id(), "acks": "all",
                     **(conf or {})})


def send(producer, topic, records):
    """Produces records (Producer.produce keyword arguments) and waits for every delivery
    report; returns the reports as (error, message) pairs."""
    reports = []
    for r in records:
        producer.produce(topic, on_delivery=lambda err, msg: reports.append((err, msg)), **r)
    check(producer.flush(DEADLINE_S) == 0, "every delivery report within 30 s")
    return reports


def produce(bootstrap, topic, records, conf=None):
    reports = send(new_producer(bootstrap, conf), topic, records)
    errors = [err for err, _ in reports if err]
    check(not errors, f"delivery errors: {errors}")
    return [msg for _, msg in reports]


def numbered(tag, n, **fields):
    return [{"value": f"{tag}-{i}".encode(), **fields} for i in range(n)]


def timestamped(n):
    """n records to partition 0 with create timestamps T0 + i*1000; returns (records, T0)."""
    t0 = seek_base_ms()
    return [{"value": f"t-{i}".encode(), "partition": 0, "timestamp": t0 + i * 1000}
            for i in range(n)], t0


# ---- consume -----------------------------------------------------------------------------

def reader(bootstrap, prefix, partitions):
    """A consumer assign()ed to partitions of prefix from the earliest offset (it never joins
    or commits to its group)."""
    c = Consumer({"bootstrap.servers": bootstrap, "client.id": client_id(),
                  "group.id": f"{prefix}-g-reader", "enable.auto.commit": False})
    c.assign([TopicPartition(prefix, p, OFFSET_BEGINNING) for p in partitions])
    return c


def member(bootstrap, prefix, conf=None):
    """A consumer of group PREFIX-g subscribed to prefix (earliest when nothing is committed)."""
    c = Consumer({"bootstrap.servers": bootstrap, "client.id": client_id(),
                  "group.id": f"{prefix}-g", "auto.offset.reset": "earliest", **GROUP_TIMEOUTS,
                  **(conf or {})})
    c.subscribe([prefix])
    return c


def pump(consumers, got):
    """Polls each consumer once, appending the records it returns to got. A consumer error
    fails the cell if it is fatal or names a partition (and is not retriable); other errors
    (e.g. _TRANSPORT, _ALL_BROKERS_DOWN: librdkafka reconnects by itself) are only logged, and
    if they persist the caller's deadline runs out."""
    for c in consumers:
        m = c.poll(0.1)
        if m is None:
            continue
        err = m.error()
        if err is None:
            got.append(m)
            continue
        where = f"{m.topic()} [{m.partition()}]" if m.topic() is not None else "client"
        check(not err.fatal() and (m.topic() is None or err.retriable()),
              f"consumer error on {where}: {err}")
        print(f"transient consumer error on {where} (retriable: {err.retriable()}): {err}",
              file=sys.stderr, flush=True)


def read(consumers, n):
    got = []
    wait_until(lambda: pump(consumers, got) or len(got) >= n, f"{n} records", step_s=0)
    return got


def keep_polling(consumers, seconds):
    """Polls for seconds; returns anything that arrived (expected: nothing)."""
    got, end = [], time.time() + seconds
    while time.time() < end:
        pump(consumers, got)
    return got


def consume(bootstrap, prefix, n, partitions=(0, 1, 2)):
    c = reader(bootstrap, prefix, partitions)
    got = read([c], n)
    c.close()
    return got


def watermarks(bootstrap, prefix):
    """{partition: (low, high)} of every partition of topic prefix, asked of the broker."""
    c = reader(bootstrap, prefix, [])
    parts = c.list_topics(prefix, timeout=DEADLINE_S).topics[prefix].partitions
    marks = {p: c.get_watermark_offsets(TopicPartition(prefix, p), DEADLINE_S, False)
             for p in sorted(parts)}
    c.close()
    return marks


def check_holds(bootstrap, prefix, n):
    """Topic prefix holds exactly n records."""
    check_topic_holds(prefix, watermarks(bootstrap, prefix), n)


# ---- features: records -------------------------------------------------------------------

def codec_feature(codec):
    def run(bootstrap, prefix):
        create_topic(bootstrap, prefix)
        records = [{"key": f"k{i % 5}", "value": f"{codec}-{i}".encode()} for i in range(RECORDS)]
        produce(bootstrap, prefix, records, {"compression.type": codec})
        got = consume(bootstrap, prefix, RECORDS)
        check_values_once(got, [r["value"] for r in records])
        check_offsets_increase(got)
        check_holds(bootstrap, prefix, RECORDS)
    return run


def headers(bootstrap, prefix):
    create_topic(bootstrap, prefix)
    produce(bootstrap, prefix, numbered("h", 3, headers=HEADERS))
    for m in consume(bootstrap, prefix, 3):
        check(m.headers() == HEADERS, f"headers {m.headers()} == {HEADERS}")
    check_holds(bootstrap, prefix, 3)


def null_key(bootstrap, prefix):
    create_topic(bootstrap, prefix)
    records = numbered("nk", 10, key=None)
    produce(bootstrap, prefix, records)
    got = consume(bootstrap, prefix, 10)
    check(all(m.key() is None for m in got), "every key is null")
    check_values_once(got, [r["value"] for r in records])
    check_holds(bootstrap, prefix, 10)


def null_value(bootstrap, prefix):
    create_topic(bootstrap, prefix)
    produce(bootstrap, prefix, [{"key": "k", "value": None}])
    [m] = consume(bootstrap, prefix, 1)
    check(m.key() == b"k" and m.value() is None, f"key k, null value: {m.key()} {m.value()}")
    check_holds(bootstrap, prefix, 1)


def timestamp(bootstrap, prefix):
    create_topic(bootstrap, prefix)
    produce(bootstrap, prefix, [{"value": b"ts", "timestamp": TIMESTAMP_MS}])
    [m] = consume(bootstrap, prefix, 1)
    check(m.timestamp() == (TIMESTAMP_CREATE_TIME, TIMESTAMP_MS),
          f"timestamp (CreateTime, {TIMESTAMP_MS}): {m.timestamp()}")
    check_holds(bootstrap, prefix, 1)


def record_1mib(bootstrap, prefix):
    create_topic(bootstrap, prefix)
    value = random_bytes(RECORD_1MIB_BYTES)
    produce(bootstrap, prefix, [{"value": value, "partition": 0}], LIMITS)
    [m] = consume(bootstrap, prefix, 1, [0])
    check(m.value() == value, "the 1 MiB value reads back equal")
    check_holds(bootstrap, prefix, 1)


def too_large(bootstrap, prefix):
    create_topic(bootstrap, prefix)
    producer = new_producer(bootstrap, LIMITS)
    # produce() itself raises if librdkafka rejects the record against message.max.bytes; a
    # delivery report with MSG_SIZE_TOO_LARGE is the broker's answer.
    big = {"value": random_bytes(TOO_LARGE_BYTES), "partition": 0}
    [(err, _)] = send(producer, prefix, [big])
    check(err is not None and err.code() == KafkaError.MSG_SIZE_TOO_LARGE,
          f"delivery error MSG_SIZE_TOO_LARGE (10): {err}")
    [(err, _)] = send(producer, prefix, [{"value": b"small", "partition": 0}])
    check(err is None, f"the small record is acknowledged: {err}")
    check_holds(bootstrap, prefix, 1)
    c = reader(bootstrap, prefix, [0, 1, 2])
    [m] = read([c], 1)
    c.close()
    check(m.value() == b"small", "the one record is the small one")


# ---- features: groups and commits --------------------------------------------------------

def partitions_of(consumer):
    return {tp.partition for tp in consumer.assignment()}


def balanced(consumers):
    return split_between([partitions_of(c) for c in consumers], {0, 1, 2})


def group(bootstrap, prefix):
    create_topic(bootstrap, prefix)
    consumers = [member(bootstrap, prefix) for _ in range(2)]
    got = []
    wait_until(lambda: pump(consumers, got) or balanced(consumers),
               "assignments non-empty, disjoint, covering 3 partitions", step_s=0)
    assignor = describe_group(bootstrap, f"{prefix}-g")["assignor"]
    records = [{"key": f"k{i}", "value": f"g-{i}".encode()} for i in range(60)]
    produce(bootstrap, prefix, records)
    wait_until(lambda: pump(consumers, got) or len(got) >= 60, "60 records", step_s=0)
    check_values_once(got, [r["value"] for r in records])
    for c in consumers:
        c.close()
    check_holds(bootstrap, prefix, 60)
    return f"default assignor: {assignor}"


def check_committed_all(bootstrap, prefix, c, n):
    """PREFIX-g's committed offsets, asked of the broker through c, are each partition's end,
    n in total. A partition that holds no records may have no commit (librdkafka 2.0.2 commits
    no position it never fetched from): that is the same resume point as 0."""
    parts = [TopicPartition(prefix, p) for p in range(3)]
    committed = {tp.partition: tp.offset for tp in c.committed(parts, timeout=DEADLINE_S)}
    ends = {p: high for p, (_, high) in watermarks(bootstrap, prefix).items()}
    committed = {p: 0 if o < 0 and ends[p] == 0 else o for p, o in committed.items()}
    check(committed == ends and sum(ends.values()) == n,
          f"committed offsets {committed} are the partitions' ends {ends} ({n} records)")


def resumes_after_commit(bootstrap, prefix):
    """Produces 5 more records; a new member of PREFIX-g receives exactly those."""
    produce(bootstrap, prefix, numbered("after", 5))
    c = member(bootstrap, prefix)
    got = read([c], 5) + keep_polling([c], 1)
    c.close()
    check(values(got) == sorted(f"after-{i}".encode() for i in range(5)),
          f"exactly the 5 new records: {values(got)}")
    check_holds(bootstrap, prefix, 25)


def commit_manual(bootstrap, prefix):
    create_topic(bootstrap, prefix)
    produce(bootstrap, prefix, numbered("before", 20))
    c = member(bootstrap, prefix, {"enable.auto.commit": False})
    read([c], 20)
    c.commit(asynchronous=False)
    c.close()
    resumes_after_commit(bootstrap, prefix)


def commit_auto(bootstrap, prefix):
    create_topic(bootstrap, prefix)
    produce(bootstrap, prefix, numbered("before", 20))
    c = member(bootstrap, prefix, {"enable.auto.commit": True, "auto.commit.interval.ms": 500})
    read([c], 20)
    check(not keep_polling([c], 2), "nothing past the 20 records")
    # Before close: what auto commit alone committed (close would commit too).
    check_committed_all(bootstrap, prefix, c, 20)
    c.close()
    resumes_after_commit(bootstrap, prefix)


# ---- features: seeking -------------------------------------------------------------------

def read_after_seek(c, topic, offset, n):
    c.seek(TopicPartition(topic, 0, offset))
    return offsets(read([c], n))


def seek_beginning(bootstrap, prefix):
    create_topic(bootstrap, prefix)
    produce(bootstrap, prefix, numbered("s", 10, partition=0))
    c = reader(bootstrap, prefix, [0])
    check(offsets(read([c], 10)) == list(range(10)), "first read: offsets 0..9")
    again = read_after_seek(c, prefix, OFFSET_BEGINNING, 10)
    c.close()
    check(again == list(range(10)), f"after seek to the beginning: offsets 0..9: {again}")
    check_holds(bootstrap, prefix, 10)


def seek_offset(bootstrap, prefix):
    create_topic(bootstrap, prefix)
    produce(bootstrap, prefix, numbered("s", 10, partition=0))
    c = reader(bootstrap, prefix, [0])
    read([c], 1)
    got = read_after_seek(c, prefix, 6, 4)
    c.close()
    check(got == [6, 7, 8, 9], f"after seek to 6: offsets 6..9: {got}")
    check_holds(bootstrap, prefix, 10)


def seek_timestamp(bootstrap, prefix):
    create_topic(bootstrap, prefix)
    records, t0 = timestamped(10)
    produce(bootstrap, prefix, records)
    c = reader(bootstrap, prefix, [0])
    read([c], 1)
    [found] = c.offsets_for_times([TopicPartition(prefix, 0, t0 + 4500)], DEADLINE_S)
    check(found.offset == 5, f"offset for T0 + 4500 is 5: {found.offset}")
    got = read_after_seek(c, prefix, found.offset, 5)
    c.close()
    check(got == [5, 6, 7, 8, 9], f"after seek: offsets 5..9: {got}")
    check_holds(bootstrap, prefix, 10)


# ---- features: admin ---------------------------------------------------------------------

def admin_topics(bootstrap, prefix):
    adm = create_topic(bootstrap, prefix, 2)
    adm.delete_topics([prefix])[prefix].result(DEADLINE_S)
    wait_until(lambda: partition_count(adm, prefix) is None, "metadata to drop the topic", 10)


def admin_partitions(bootstrap, prefix):
    adm = create_topic(bootstrap, prefix, 1)
    adm.create_partitions([admin.NewPartitions(prefix, 5)])[prefix].result(DEADLINE_S)
    wait_until(lambda: partition_count(adm, prefix) == 5, "metadata to show 5 partitions")
    [m] = produce(bootstrap, prefix, [{"value": b"p4", "partition": 4}])
    check(m.partition() == 4, f"acknowledged in partition 4: {m.partition()}")
    check_holds(bootstrap, prefix, 1)


def admin_describe_configs(bootstrap, prefix):
    configs = topic_configs(create_topic(bootstrap, prefix), prefix)
    got = {k: configs[k].value for k in ("retention.ms", "cleanup.policy") if k in configs}
    check(got == {"retention.ms": "604800000", "cleanup.policy": "delete"}, f"configs: {got}")


def set_retention(adm, topic, value):
    """Sets retention.ms, incrementally where the client can; returns the call it used."""
    if hasattr(adm, "incremental_alter_configs"):
        entry = admin.ConfigEntry("retention.ms", value,
                                  incremental_operation=admin.AlterConfigOpType.SET)
        resource = admin.ConfigResource("topic", topic, incremental_configs=[entry])
        adm.incremental_alter_configs([resource])[resource].result(DEADLINE_S)
        return "incremental_alter_configs"
    resource = admin.ConfigResource("topic", topic, set_config={"retention.ms": value})
    adm.alter_configs([resource])[resource].result(DEADLINE_S)
    return f"alter_configs: {CLIENT} has no incremental_alter_configs"


def admin_alter_configs(bootstrap, prefix):
    adm = create_topic(bootstrap, prefix)
    how = set_retention(adm, prefix, "3600000")
    value = topic_configs(adm, prefix)["retention.ms"].value
    check(value == "3600000", f"retention.ms described as 3600000: {value}")
    return f"via {how}"


def group_ids(adm):
    """Group ids the broker lists, and the call used."""
    if hasattr(adm, "list_consumer_groups"):
        listed = adm.list_consumer_groups().result(DEADLINE_S)
        check(not listed.errors, f"list_consumer_groups errors: {listed.errors}")
        return {g.group_id for g in listed.valid}, None
    groups = adm.list_groups(timeout=DEADLINE_S)
    note = f"via AdminClient.list_groups: {CLIENT} has no list_consumer_groups"
    return {g.id for g in groups}, note


def admin_list_groups(bootstrap, prefix):
    adm = create_topic(bootstrap, prefix)
    c = Consumer({"bootstrap.servers": bootstrap, "client.id": client_id(),
                  "group.id": f"{prefix}-g"})
    c.commit(offsets=[TopicPartition(prefix, 0, 0)], asynchronous=False)
    c.close()
    ids, note = group_ids(adm)
    check(f"{prefix}-g" in ids, f"{prefix}-g is listed")
    return note


def describe_group(bootstrap, group_id):
    """{state, protocol_type, assignor, members: [partitions as {(topic, p)}, or None where the
    client does not decode assignments], note}."""
    adm = admin_client(bootstrap)
    if hasattr(adm, "describe_consumer_groups"):
        d = adm.describe_consumer_groups([group_id])[group_id].result(DEADLINE_S)
        # librdkafka fails the description of a group whose protocol type is neither empty (a
        # simple group) nor "consumer", so a non-simple described group is of type consumer.
        return {"state": d.state.name.capitalize(), "assignor": d.partition_assignor,
                "protocol_type": "" if d.is_simple_consumer_group else "consumer",
                "members": [{(tp.topic, tp.partition) for tp in m.assignment.topic_partitions}
                            for m in d.members], "note": None}
    groups = adm.list_groups(group_id, timeout=DEADLINE_S)
    check(len(groups) == 1, f"list_groups({group_id}) finds the group: {groups}")
    g = groups[0]
    check(g.error is None, f"describe error: {g.error}")
    return {"state": g.state, "assignor": g.protocol, "protocol_type": g.protocol_type,
            "members": [None for _ in g.members],
            "note": f"via AdminClient.list_groups(group): {CLIENT} has no describe_consumer_groups"
                    " and does not decode the member assignment"}


def admin_describe_groups(bootstrap, prefix):
    create_topic(bootstrap, prefix)
    c = member(bootstrap, prefix)
    wait_until(lambda: pump([c], []) or partitions_of(c) == {0, 1, 2}, "assignment", step_s=0)
    d = describe_group(bootstrap, f"{prefix}-g")
    c.close()
    check(d["state"] == "Stable", f"state Stable: {d['state']}")
    check(d["protocol_type"] == "consumer", f"protocol type consumer: {d['protocol_type']}")
    check(len(d["members"]) == 1, f"one member: {d['members']}")
    assigned = d["members"][0]
    check(assigned is None or assigned == {(prefix, p) for p in range(3)},
          f"the member is assigned {prefix} [0..2]: {assigned}")
    return d["note"]


def list_offsets_admin(adm, tp, t):
    """(earliest, latest, offset for timestamp t) of tp through AdminClient.list_offsets."""
    specs = [admin.OffsetSpec.earliest(), admin.OffsetSpec.latest(),
             admin.OffsetSpec.for_timestamp(t)]
    return tuple(adm.list_offsets({tp: s})[tp].result(DEADLINE_S).offset for s in specs)


def list_offsets_consumer(bootstrap, prefix, tp, t):
    """(earliest, latest, offset for timestamp t) of tp through the consumer's queries."""
    c = reader(bootstrap, prefix, [])
    low, high = c.get_watermark_offsets(tp, DEADLINE_S, False)
    [found] = c.offsets_for_times([TopicPartition(tp.topic, tp.partition, t)], DEADLINE_S)
    c.close()
    return low, high, found.offset


def admin_list_offsets(bootstrap, prefix):
    adm = create_topic(bootstrap, prefix)
    records, t0 = timestamped(7)
    produce(bootstrap, prefix, records)
    tp, note = TopicPartition(prefix, 0), None
    if hasattr(adm, "list_offsets"):
        got = list_offsets_admin(adm, tp, t0 + 3000)
    else:
        got = list_offsets_consumer(bootstrap, prefix, tp, t0 + 3000)
        note = (f"via Consumer.get_watermark_offsets and offsets_for_times: {CLIENT} has no"
                " admin list_offsets")
    check(got == (0, 7, 3), f"earliest 0, latest 7, offset for T0 + 3000 is 3: {got}")
    return note


def admin_delete_records(bootstrap, prefix):
    if not hasattr(admin.AdminClient, "delete_records"):
        raise Lacks(f"{CLIENT} AdminClient has no delete_records")
    adm = create_topic(bootstrap, prefix)
    produce(bootstrap, prefix, numbered("d", 10, partition=0))
    tp = TopicPartition(prefix, 0)
    deleted = adm.delete_records([TopicPartition(prefix, 0, 4)])[tp].result(DEADLINE_S)
    check(deleted.low_watermark == 4, f"low watermark 4: {deleted.low_watermark}")
    earliest = adm.list_offsets({tp: admin.OffsetSpec.earliest()})[tp].result(DEADLINE_S)
    check(earliest.offset == 4, f"earliest offset 4: {earliest.offset}")
    got = offsets(consume(bootstrap, prefix, 6, [0]))
    check(got == list(range(4, 10)), f"a consumer from the beginning reads 4..9: {got}")
    check_holds(bootstrap, prefix, 6)



if __name__ == "__main__":
    main(features_of(globals()), lambda: f"{CLIENT} (librdkafka {libversion()[0]})")
