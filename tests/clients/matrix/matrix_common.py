"""Shared by the python cell drivers of the compatibility matrix (see README.md here): argument
parsing, the result line the runner reads, a watchdog for hung cells, the constants every
client's cells agree on and the checks that do not depend on the client library."""
import collections
import faulthandler
import itertools
import os
import sys
import threading
import time
import traceback

RECORDS = 100
RECORD_1MIB_BYTES = 1_048_000
TOO_LARGE_BYTES = 1_100_000
CLIENT_MAX_BYTES = 4 * 1024 * 1024
TIMESTAMP_MS = 1_600_000_000_123
HEADERS = [("trace", b"abc"), ("bin", bytes([0, 255, 1])), ("trace", b"again")]
DEADLINE_S = 30
CODECS = ["none", "gzip", "snappy", "lz4", "zstd"]
# Every feature a driver runs (README.md defines each); tests/matrix/mod.rs lists the same ids.
FEATURES = [f"codec-{c}" for c in CODECS] + [
    "headers", "null-key", "null-value", "timestamp", "record-1mib", "too-large",
    "group", "commit-manual", "commit-auto", "seek-beginning", "seek-offset", "seek-timestamp",
    "admin-topics", "admin-partitions", "admin-describe-configs", "admin-alter-configs",
    "admin-list-groups", "admin-describe-groups", "admin-list-offsets", "admin-delete-records",
]
# The runner kills a cell after 120 s. Before that, a hung cell prints every thread's stack to
# stderr and a FAIL line (HANG_FAIL_S, from a python thread), or, if no python thread can run
# any more, at least the stacks (HANG_DUMP_S, from faulthandler's own C thread), and exits 1.
HANG_FAIL_S = 105
HANG_DUMP_S = 110

_cell = {"prefix": "matrix"}


def client_id():
    """The client id every client of a cell sends: the cell's prefix, so the runner can tell
    from the broker's request log which client used which API versions."""
    return _cell["prefix"]


class Lacks(Exception):
    """The client has no way to do this feature (not a failure)."""


class Failed(Exception):
    """A check of the feature did not hold."""


def check(cond, what):
    if not cond:
        raise Failed(what)


def wait_until(fn, what, timeout_s=DEADLINE_S, step_s=0.1):
    """Calls fn until it returns a truthy value; returns that value or raises Failed."""
    deadline = time.time() + timeout_s
    while True:
        v = fn()
        if v:
            return v
        if time.time() > deadline:
            raise Failed(f"timed out waiting for {what}")
        time.sleep(step_s)


def random_bytes(n):
    return os.urandom(n)


def seek_base_ms():
    """T0 of seek-timestamp: now - 600 s, whole seconds."""
    return (int(time.time()) - 600) * 1000


# ---- records to send, for the clients whose send() takes kafka-python's keywords ---------

def keyed(values):
    """send() keyword dicts (kafka-python, aiokafka): key k{i%5}, the value encoded."""
    return [dict(key=f"k{i % 5}".encode(), value=v.encode()) for i, v in enumerate(values)]


def to_partition_0(count, timestamp=None):
    """send() keyword dicts (kafka-python, aiokafka): count records to partition 0, with create
    timestamp timestamp(i) if given."""
    return [dict(value=f"v{i}".encode(), partition=0,
                 timestamp_ms=None if timestamp is None else timestamp(i)) for i in range(count)]


# ---- checks on consumed records ----------------------------------------------------------

def field(record, name):
    """record.name, whether the client has it as an attribute (kafka-python, aiokafka, kcat's
    parsed lines) or as a method (confluent-kafka's Message)."""
    v = getattr(record, name)
    return v() if callable(v) else v


def offsets(records):
    return [field(r, "offset") for r in records]


def values(records):
    """The records' values, sorted (for comparing as a multiset)."""
    return sorted(field(r, "value") for r in records)


def at_least(n):
    return lambda got: len(got) >= n


def check_offsets_increase(records):
    """Offsets strictly increase within each partition, in the order the records were read."""
    last = {}
    for r in records:
        p, o = field(r, "partition"), field(r, "offset")
        check(o > last.get(p, -1), f"offsets increase in partition {p}: {o} after {last.get(p)}")
        last[p] = o


def check_values_once(records, expected):
    """Each expected value (str or bytes) is read exactly once, and nothing else is."""
    want = collections.Counter(e.encode() if isinstance(e, str) else e for e in expected)
    got = collections.Counter(field(r, "value") for r in records)
    check(got == want, f"each value exactly once: missing {sorted(want - got)}, "
                       f"extra {sorted(got - want)}")


def check_topic_holds(topic, marks, n):
    """marks: {partition: (low, high)} watermarks of every partition of topic. Consumers stop at
    the count they expect, so this is what shows extra copies past it: exactly n records."""
    held = sum(high - low for low, high in marks.values())
    check(held == n, f"{topic} holds exactly {n} records: {held} (watermarks {marks})")


def split_between(assignments, partitions):
    """assignments: each member's set of partitions. True when every member has some, no two
    share one, and together they cover partitions."""
    sets = [set(a) for a in assignments]
    return (all(sets) and all(not a & b for a, b in itertools.combinations(sets, 2))
            and set().union(*sets) == set(partitions))


# ---- the cell ------------------------------------------------------------------------------

def _hung():
    faulthandler.dump_traceback(all_threads=True)
    print(f"FAIL no verdict after {HANG_FAIL_S} s (stacks on stderr)", flush=True)
    os._exit(1)


def _watch_for_hangs():
    faulthandler.enable()
    faulthandler.dump_traceback_later(HANG_DUMP_S, exit=True)
    timer = threading.Timer(HANG_FAIL_S, _hung)
    timer.daemon = True
    timer.start()


def features_of(driver):
    """A driver's feature table from its module namespace: `codec-X` is `codec_feature("X")`,
    every other feature the function named like it (dashes as underscores). A feature the
    driver does not define is left out, so running it fails as "no such feature"."""
    table = {}
    for name in FEATURES:
        if name.startswith("codec-") and "codec_feature" in driver:
            table[name] = driver["codec_feature"](name.removeprefix("codec-"))
        elif name.replace("-", "_") in driver:
            table[name] = driver[name.replace("-", "_")]
    return table


def main(features, version):
    """features: {name: fn(bootstrap, prefix) -> optional note}; version: fn() -> str."""
    if len(sys.argv) != 4:
        sys.exit(f"usage: {sys.argv[0]} BOOTSTRAP FEATURE PREFIX")
    bootstrap, feature, prefix = sys.argv[1:4]
    _watch_for_hangs()
    if feature == "version":
        print(f"VERSION {version()}", flush=True)
        os._exit(0)
    _cell["prefix"] = prefix
    fn = features.get(feature)
    if fn is None:
        print(f"FAIL no such feature {feature}", flush=True)
        os._exit(1)
    try:
        note = fn(bootstrap, prefix)
    except Lacks as e:
        print(f"LACKS {e}", flush=True)
        os._exit(0)
    except Exception as e:  # noqa: BLE001 - every failure becomes a FAIL line
        traceback.print_exc()
        print(f"FAIL {type(e).__name__}: {e}".replace("\n", " "), flush=True)
        os._exit(1)
    print(f"PASS {note}" if note else "PASS", flush=True)
    # Skip interpreter teardown: some clients' background threads can hang it.
    os._exit(0)
