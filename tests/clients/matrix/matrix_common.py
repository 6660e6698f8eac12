"""Shared by the python cell drivers of the compatibility matrix (see README.md here): argument
parsing, the result line the runner reads, and the constants every client's cells agree on."""
import os
import sys
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


def main(features, version):
    """features: {name: fn(bootstrap, prefix) -> optional note}; version: fn() -> str."""
    if len(sys.argv) != 4:
        sys.exit(f"usage: {sys.argv[0]} BOOTSTRAP FEATURE PREFIX")
    bootstrap, feature, prefix = sys.argv[1:4]
    if feature == "version":
        print(f"VERSION {version()}", flush=True)
        return
    _cell["prefix"] = prefix
    fn = features.get(feature)
    if fn is None:
        print(f"FAIL no such feature {feature}", flush=True)
        sys.exit(1)
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
