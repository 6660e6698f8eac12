"""An idempotent producer for tests/idempotence.rs: sends N records with values "0".."N-1"
(key "k{i % 4}") to TOPIC with CLIENT's defaults for idempotence (kafka-python 3: on by
default; confluent-kafka: enable.idempotence=true), retrying through dropped connections and
broker restarts. Prints {"acked": k} lines as deliveries are confirmed, and a final
{"acked": N, "failed": f} line; exits non-zero if any record failed.
Usage: idempotent_produce.py CLIENT BOOTSTRAP TOPIC N"""
import json
import sys
import threading
import time

client, bootstrap, topic, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
acked = 0
failed = []
lock = threading.Lock()
last_report = [0.0]


def report(force=False):
    now = time.monotonic()
    if force or now - last_report[0] > 0.2:
        last_report[0] = now
        print(json.dumps({"acked": acked}), flush=True)


def ok(*_):
    global acked
    with lock:
        acked += 1
        report()


def bad(err):
    with lock:
        failed.append(str(err))


if client == "kafka-python":
    from kafka import KafkaProducer
    p = KafkaProducer(bootstrap_servers=bootstrap, acks="all", retries=2**31 - 1,
                      delivery_timeout_ms=120_000, request_timeout_ms=5_000,
                      reconnect_backoff_ms=50, retry_backoff_ms=50, linger_ms=5)
    assert p.config["enable_idempotence"], "kafka-python 3 defaults to idempotence"
    for i in range(n):
        f = p.send(topic, key=f"k{i % 4}".encode(), value=str(i).encode())
        f.add_callback(ok)
        f.add_errback(bad)
    p.flush(timeout=180)
    p.close()
else:
    from confluent_kafka import Producer

    def delivered(err, _msg):
        if err is None:
            ok()
        else:
            bad(err)

    import os
    conf = {"bootstrap.servers": bootstrap, "enable.idempotence": True,
            "message.timeout.ms": 120_000, "socket.timeout.ms": 5_000,
            "reconnect.backoff.ms": 50, "retry.backoff.ms": 50, "linger.ms": 5}
    if os.environ.get("IDEM_DEBUG"):
        conf["debug"] = os.environ["IDEM_DEBUG"]
    p = Producer(conf)
    for i in range(n):
        while True:
            try:
                p.produce(topic, key=f"k{i % 4}", value=str(i), on_delivery=delivered)
                break
            except BufferError:
                p.poll(0.05)
        p.poll(0)
        if i % 1000 == 999:
            time.sleep(0.05)  # spread the run over seconds, so connection drops hit it
    remaining = p.flush(180)
    if remaining:
        failed.append(f"{remaining} undelivered")
report(force=True)
print(json.dumps({"acked": acked, "failed": len(failed), "errors": failed[:5]}), flush=True)
sys.exit(1 if failed else 0)
