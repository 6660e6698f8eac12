"""kcat cell driver of the compatibility matrix (see README.md here): implements each feature by
running the kcat binary (librdkafka inside) as subprocesses, always with a timeout.

kcat produces (-P) and consumes (-C, or -G for a balanced consumer group), lists metadata (-L)
and queries offsets for timestamps (-Q); it has no admin API, no commit call and no way to set a
record's timestamp, so features that need those report LACKS. Topics are auto-created (3
partitions). Usage: cell_kcat.py BOOTSTRAP FEATURE PREFIX"""
import contextlib
import json
import re
import subprocess
import tempfile
import threading
import time
import traceback
from collections import namedtuple

from matrix_common import (CLIENT_MAX_BYTES, DEADLINE_S, RECORD_1MIB_BYTES, RECORDS,
                           TOO_LARGE_BYTES, Failed, Lacks, check, check_offsets_increase,
                           check_topic_holds, check_values_once, client_id, features_of, main,
                           offsets, random_bytes, split_between, values, wait_until)

KCAT = "kcat"
NO_ADMIN = "kcat has no admin API"
GROUP_OPTS = ["-X", "auto.offset.reset=earliest", "-X", "session.timeout.ms=6000",
              "-X", "heartbeat.interval.ms=1000"]
# One record a line; %K and %S are -1 for a null key or value.
FORMAT = "%p|%o|%T|%K|%S|%k|%s|%h\n"
Record = namedtuple("Record", "partition offset timestamp key value headers")


# ---- running kcat ------------------------------------------------------------------------

def command(bootstrap):
    """kcat for this broker, with the cell's client id (see matrix_common.client_id)."""
    return [KCAT, "-b", bootstrap, "-X", f"client.id={client_id()}"]


def run(bootstrap, *args, stdin=b""):
    """Runs kcat to its end (30 s at most); returns the CompletedProcess."""
    try:
        return subprocess.run([*command(bootstrap), *args], input=stdin, capture_output=True,
                              timeout=DEADLINE_S)
    except subprocess.TimeoutExpired as e:
        raise Failed(f"kcat {' '.join(args)} still running after {DEADLINE_S} s; "
                     f"stderr: {e.stderr}") from None


def kcat(bootstrap, *args, stdin=b""):
    """Runs kcat and checks it exits 0; returns its stdout."""
    r = run(bootstrap, *args, stdin=stdin)
    check(r.returncode == 0, f"kcat {' '.join(args)} exit {r.returncode}: {r.stderr}")
    return r.stdout


def collect(stream, lines):
    for line in stream:
        lines.append(line)


class Running:
    """A kcat left running, its stdout and stderr lines collected as they arrive."""

    def __init__(self, bootstrap, *args):
        self.proc = subprocess.Popen([*command(bootstrap), *args], stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.out, self.err = [], []
        for stream, lines in ((self.proc.stdout, self.out), (self.proc.stderr, self.err)):
            threading.Thread(target=collect, args=(stream, lines), daemon=True).start()

    def alive(self):
        check(self.proc.poll() is None,
              f"kcat exited {self.proc.returncode}: {b''.join(self.err)}")

    def received(self):
        """How many records kcat has printed so far; fails if it has exited."""
        self.alive()
        return len(self.out)

    def records(self):
        return [parse(line) for line in list(self.out)]

    def assignment(self):
        """Partitions of the latest "assigned:" rebalance message, empty after "revoked:"."""
        self.alive()
        current = set()
        for line in list(self.err):
            m = re.search(rb"rebalanced .*(assigned|revoked): (.*)", line)
            if m:
                listed = {int(p) for p in re.findall(rb"\[(\d+)\]", m.group(2))}
                current = listed if m.group(1) == b"assigned" else set()
        return current

    def stop(self):
        """SIGTERM: kcat closes its consumer (leaving the group, committing if auto commit).
        Returns kcat's exit code."""
        self.proc.terminate()
        try:
            return self.proc.wait(DEADLINE_S)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise Failed(f"kcat did not stop within {DEADLINE_S} s") from None

    def kill(self):
        """SIGKILL: kcat gets no chance to commit, leave the group or close anything."""
        self.proc.kill()
        self.proc.wait(DEADLINE_S)


@contextlib.contextmanager
def group_member(bootstrap, prefix, *opts, kill=False):
    """kcat -G: a member of PREFIX-g subscribed to prefix; on leaving the block stopped (SIGTERM,
    checked to exit 0) or, with kill, killed (SIGKILL)."""
    member = Running(bootstrap, "-G", f"{prefix}-g", "-u", "-f", FORMAT, *GROUP_OPTS, *opts,
                     prefix)
    try:
        yield member
    except BaseException:
        # The failure already in flight is the verdict; one in stopping kcat must not hide it.
        try:
            member.stop()
        except Exception:  # noqa: BLE001 - reported, then the original failure goes on
            traceback.print_exc()
        raise
    if kill:
        member.kill()
        return
    code = member.stop()
    check(code == 0, f"kcat -G exit {code} when stopped: {b''.join(member.err)}")


# ---- produce and consume -----------------------------------------------------------------

def produce(bootstrap, topic, lines, *opts):
    """One record per line (bytes), acks=all; kcat exits non-zero if any delivery fails."""
    kcat(bootstrap, "-P", "-t", topic, "-X", "acks=all", *opts, stdin=b"\n".join(lines) + b"\n")


def produce_spaced(bootstrap, topic, n):
    """n records to partition 0, one kcat run each, so each has its own (later) timestamp."""
    for i in range(n):
        produce(bootstrap, topic, [f"t-{i}".encode()], "-p", "0")


def parse(line):
    p, o, ts, klen, vlen, key, value, headers = line.rstrip(b"\n").split(b"|")
    return Record(int(p), int(o), int(ts), None if klen == b"-1" else key,
                  None if vlen == b"-1" else value,
                  [tuple(h.split(b"=", 1)) for h in headers.split(b",") if h])


def consume(bootstrap, topic, n, *opts, start="beginning"):
    """The first n records kcat -C reads from start (-o: beginning, an offset, s@<ms>), of all
    partitions unless opts has -p."""
    out = kcat(bootstrap, "-C", "-t", topic, "-o", start, "-c", str(n), "-f", FORMAT, *opts)
    got = [parse(line) for line in out.splitlines()]
    check(len(got) == n, f"{n} records read: {len(got)}")
    return got


def partition_ids(bootstrap, topic):
    """Partition ids of topic in kcat -L -t topic (a metadata request that auto-creates it)."""
    listing = json.loads(kcat(bootstrap, "-L", "-t", topic, "-J"))
    return sorted(p["partition"] for t in listing["topics"] if t["topic"] == topic
                  for p in t["partitions"])


def ensure_topic(bootstrap, topic):
    """Auto-creates topic through a metadata request (kcat -L -t) and waits for 3 partitions."""
    wait_until(lambda: partition_ids(bootstrap, topic) == [0, 1, 2],
               f"metadata to show {topic} with 3 partitions")


def query(bootstrap, topic, partitions, timestamp):
    """kcat -Q: {partition: offset} for timestamp (-1 latest, -2 earliest)."""
    args = [a for p in partitions for a in ("-t", f"{topic}:{p}:{timestamp}")]
    answer = json.loads(kcat(bootstrap, "-Q", "-J", *args))[topic]
    return {p: answer[str(p)]["offset"] for p in partitions}


def check_holds(bootstrap, topic, n):
    """The topic holds exactly n records: kcat -Q for each partition's earliest (-2) and
    latest (-1) offset."""
    parts = partition_ids(bootstrap, topic)
    earliest, latest = (query(bootstrap, topic, parts, t) for t in (-2, -1))
    check_topic_holds(topic, {p: (earliest[p], latest[p]) for p in parts}, n)


def spaced_timestamps(bootstrap, topic, n):
    """Produces n spaced records to partition 0; returns their timestamps (checked increasing)."""
    produce_spaced(bootstrap, topic, n)
    stamps = [r.timestamp for r in consume(bootstrap, topic, n, "-p", "0")]
    check(stamps == sorted(set(stamps)), f"timestamps increase: {stamps}")
    return stamps


# ---- features: records -------------------------------------------------------------------

def codec_feature(codec):
    def run_codec(bootstrap, prefix):
        lines = [f"k{i % 5}:{codec}-{i}".encode() for i in range(RECORDS)]
        produce(bootstrap, prefix, lines, "-K", ":", "-z", codec)
        got = consume(bootstrap, prefix, RECORDS)
        check_values_once(got, [f"{codec}-{i}" for i in range(RECORDS)])
        check_offsets_increase(got)
        check_holds(bootstrap, prefix, RECORDS)
    return run_codec


def headers(bootstrap, prefix):
    text = [(b"trace", b"abc"), (b"trace", b"again")]
    produce(bootstrap, prefix, [b"h-0", b"h-1", b"h-2"], "-H", "trace=abc", "-H", "trace=again")
    for r in consume(bootstrap, prefix, 3):
        check(r.headers == text, f"headers {r.headers} == {text}")
    check_holds(bootstrap, prefix, 3)
    raise Lacks("kcat -H takes a header value as a C string, so it cannot send bin=00 ff 01 "
                "(a NUL byte); text headers with a repeated key round-trip")


def null_key(bootstrap, prefix):
    lines = [f"nk-{i}".encode() for i in range(10)]
    produce(bootstrap, prefix, lines)
    got = consume(bootstrap, prefix, 10)
    check(all(r.key is None for r in got), "every key is null")
    check_values_once(got, lines)
    check_holds(bootstrap, prefix, 10)


def null_value(bootstrap, prefix):
    produce(bootstrap, prefix, [b"k:"], "-K", ":", "-Z")
    [r] = consume(bootstrap, prefix, 1)
    check(r.key == b"k" and r.value is None, f"key k, null value: {r.key} {r.value}")
    check_holds(bootstrap, prefix, 1)
    return "-Z sends an empty value as null"


def timestamp(bootstrap, prefix):
    raise Lacks("kcat 1.7.1 has no option to set a record's timestamp when producing")


def value_file(directory, name, data):
    path = f"{directory}/{name}"
    with open(path, "wb") as f:
        f.write(data)
    return path


def record_1mib(bootstrap, prefix):
    value = random_bytes(RECORD_1MIB_BYTES)
    with tempfile.TemporaryDirectory() as d:
        kcat(bootstrap, "-P", "-t", prefix, "-p", "0", "-X", "acks=all",
             "-X", f"message.max.bytes={CLIENT_MAX_BYTES}", value_file(d, "value", value))
    out = kcat(bootstrap, "-C", "-t", prefix, "-p", "0", "-o", "beginning", "-c", "1", "-f", "%s")
    check(out == value, f"the 1 MiB value reads back equal ({len(out)} bytes)")
    check_holds(bootstrap, prefix, 1)


def too_large(bootstrap, prefix):
    with tempfile.TemporaryDirectory() as d:
        big = value_file(d, "big", random_bytes(TOO_LARGE_BYTES))
        small = value_file(d, "small", b"small")
        # -v -v prints each delivery report; one producer sends both files, in order.
        r = run(bootstrap, "-P", "-v", "-v", "-t", prefix, "-p", "0", "-X", "acks=all",
                "-X", f"message.max.bytes={CLIENT_MAX_BYTES}", big, small)
    log = r.stderr.decode(errors="replace")
    failed = re.findall(r"Delivery failed for message: (.*)", log)
    check(failed == ["Broker: Message size too large"],
          f"one delivery failure, MSG_SIZE_TOO_LARGE (10): {failed}")
    check(len(re.findall(r"Message delivered to partition 0", log)) == 1,
          f"the small record is acknowledged: {log}")
    check_holds(bootstrap, prefix, 1)
    [rec] = consume(bootstrap, prefix, 1)
    check(rec.value == b"small", "the one record is the small one")


# ---- features: groups and commits --------------------------------------------------------

def group(bootstrap, prefix):
    ensure_topic(bootstrap, prefix)
    with group_member(bootstrap, prefix) as a, group_member(bootstrap, prefix) as b:
        wait_until(lambda: split_between([a.assignment(), b.assignment()], {0, 1, 2}),
                   "assignments non-empty, disjoint, covering 3 partitions")
        lines = [f"k{i}:g-{i}".encode() for i in range(60)]
        produce(bootstrap, prefix, lines, "-K", ":")
        wait_until(lambda: a.received() + b.received() >= 60, "60 records")
        got = a.records() + b.records()
    check_values_once(got, [f"g-{i}" for i in range(60)])
    check_holds(bootstrap, prefix, 60)


def commit_manual(bootstrap, prefix):
    raise Lacks("kcat has no commit call: a -G consumer's offsets are committed only by "
                "librdkafka's auto commit")


def group_conf(bootstrap, prefix):
    """{property: value} of the global (not topic) librdkafka configuration of a kcat -G, from
    -X dump (which prints the configuration and exits without connecting)."""
    out = kcat(bootstrap, "-G", f"{prefix}-g", "-X", "dump", prefix).decode()
    global_section = out.split("# Topic config")[0]
    return dict(re.findall(r"^(\S+) = (.*)$", global_section, re.M))


def commit_auto(bootstrap, prefix):
    # kcat -X tries a property on the topic config first, and librdkafka's topic config has
    # legacy enable.auto.commit and auto.commit.interval.ms properties (for the old simple
    # consumer): the group consumer's own cannot be set through kcat, and keep librdkafka's
    # defaults (auto commit on, every 5000 ms), which kcat -X dump shows.
    conf = group_conf(bootstrap, prefix)
    on = conf.get("enable.auto.commit")
    check(on == "true", f"kcat's group consumer auto commits: enable.auto.commit {on}")
    interval_ms = int(conf["auto.commit.interval.ms"])
    polled_s = max(2, interval_ms / 1000 + 1.5)
    produce(bootstrap, prefix, [f"before-{i}".encode() for i in range(20)])
    # kcat cannot show the group's committed offsets, so the first member is killed (SIGKILL)
    # instead of closed: it cannot commit on close, so only what auto commit committed while it
    # polled can make the next member start after the 20 records. (Killed, it does not leave
    # the group either: the next member's join completes once its session, 6 s, has expired.)
    with group_member(bootstrap, prefix, kill=True) as c:
        wait_until(lambda: c.received() >= 20, "20 records")
        # kcat keeps polling meanwhile: an auto commit happens after the 20th record (at most
        # one interval later), and nothing more arrives.
        time.sleep(polled_s)
        check(c.received() == 20, f"nothing past the 20 records: {c.received()}")
    produce(bootstrap, prefix, [f"after-{i}".encode() for i in range(5)])
    with group_member(bootstrap, prefix) as c:
        wait_until(lambda: c.received() >= 5, "5 records")
        time.sleep(1)  # room for a wrongly re-read old record to show up
        got = c.records()
    check(values(got) == sorted(f"after-{i}".encode() for i in range(5)),
          f"exactly the 5 new records: {values(got)}")
    check_holds(bootstrap, prefix, 25)
    return (f"auto commit every {interval_ms} ms, librdkafka's default (kcat -X "
            "auto.commit.interval.ms sets a legacy topic property), so the first member polls "
            f"{polled_s:g} s past the 20 records; it is then killed (SIGKILL), not closed: kcat "
            "cannot show committed offsets")


# ---- features: seeking -------------------------------------------------------------------

def seek_beginning(bootstrap, prefix):
    produce(bootstrap, prefix, [f"s-{i}".encode() for i in range(10)], "-p", "0")
    for _ in range(2):
        got = offsets(consume(bootstrap, prefix, 10, "-p", "0"))
        check(got == list(range(10)), f"offsets 0..9: {got}")
    check_holds(bootstrap, prefix, 10)
    return "a new kcat -C -o beginning: kcat cannot seek a running consumer"


def seek_offset(bootstrap, prefix):
    produce(bootstrap, prefix, [f"s-{i}".encode() for i in range(10)], "-p", "0")
    got = offsets(consume(bootstrap, prefix, 4, "-p", "0", start="6"))
    check(got == [6, 7, 8, 9], f"from offset 6: offsets 6..9: {got}")
    check_holds(bootstrap, prefix, 10)
    return "kcat -C -o 6: kcat starts at an offset, it cannot seek a running consumer"


def seek_timestamp(bootstrap, prefix):
    stamps = spaced_timestamps(bootstrap, prefix, 10)
    at = stamps[4] + 1
    found = query(bootstrap, prefix, [0], at)[0]
    check(found == 5, f"offset for a time between records 4 and 5 is 5: {found}")
    got = offsets(consume(bootstrap, prefix, 5, "-p", "0", start=f"s@{at}"))
    check(got == [5, 6, 7, 8, 9], f"from that time: offsets 5..9: {got}")
    check_holds(bootstrap, prefix, 10)
    return ("records carry their send times (kcat cannot set one); -Q finds the offset, "
            "kcat -C -o s@<ms> starts there")


# ---- features: admin ---------------------------------------------------------------------

def no_admin(what):
    def lacks(bootstrap, prefix):
        raise Lacks(f"{NO_ADMIN} ({what})")
    return lacks


def admin_list_offsets(bootstrap, prefix):
    stamps = spaced_timestamps(bootstrap, prefix, 7)
    got = (query(bootstrap, prefix, [0], -2)[0], query(bootstrap, prefix, [0], -1)[0],
           query(bootstrap, prefix, [0], stamps[3])[0])
    check(got == (0, 7, 3), f"earliest 0, latest 7, offset for record 3's time is 3: {got}")
    return (f"via kcat -Q (timestamps -2/-1 for earliest/latest; records carry their send "
            f"times, kcat cannot set one): {NO_ADMIN}")


admin_topics = no_admin("it lists topics with -L but cannot create or delete them")
admin_partitions = no_admin("cannot create partitions")
admin_describe_configs = no_admin("cannot describe configs")
admin_alter_configs = no_admin("cannot alter configs")
admin_list_groups = no_admin("cannot list groups")
admin_describe_groups = no_admin("cannot describe groups")
admin_delete_records = no_admin("cannot delete records")


def kcat_version():
    banner = subprocess.run([KCAT, "-V"], capture_output=True, text=True, timeout=DEADLINE_S)
    m = re.search(r"Version (\S+) .*librdkafka (\S+)", banner.stdout + banner.stderr)
    return f"kcat {m.group(1)} (librdkafka {m.group(2)})"


if __name__ == "__main__":
    main(features_of(globals()), kcat_version)
