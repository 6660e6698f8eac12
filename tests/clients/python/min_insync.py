"""acks=all against min.insync.replicas (tests/real_clients.rs): creates topic `strict` with
min.insync.replicas=2 (more than its one replica) and `plain` with the default, then produces
one record to each with kafka-python and confluent-kafka, acks=all and acks=1, no retries.
Prints one JSON line per attempt: {"client", "topic", "acks", "error"} (error null on success).
Usage: min_insync.py BOOTSTRAP"""
import json
import sys

from confluent_kafka import Producer as CProducer
from kafka import KafkaProducer
from kafka.admin import KafkaAdminClient, NewTopic

bootstrap = sys.argv[1]

admin = KafkaAdminClient(bootstrap_servers=bootstrap)
admin.create_topics([
    NewTopic("strict", 1, 1, topic_configs={"min.insync.replicas": "2"}),
    NewTopic("plain", 1, 1),
])
admin.close()


def kafka_python(topic, acks):
    p = KafkaProducer(bootstrap_servers=bootstrap, acks=acks, retries=0)
    try:
        p.send(topic, b"v").get(timeout=20)
        return None
    except Exception as e:  # the error class names the Kafka error
        return type(e).__name__
    finally:
        p.close()


def confluent(topic, acks):
    p = CProducer({"bootstrap.servers": bootstrap, "acks": str(acks),
                   "message.send.max.retries": 0, "message.timeout.ms": 20000})
    errors = []
    p.produce(topic, b"v", on_delivery=lambda err, msg: errors.append(err))
    p.flush(30)
    if not errors:
        return "no delivery report"
    return errors[0].name() if errors[0] else None


for client, produce in [("kafka-python", kafka_python), ("confluent-kafka", confluent)]:
    for topic in ["strict", "plain"]:
        for acks in ["all", 1]:
            acks_value = -1 if acks == "all" else acks
            if client == "kafka-python":
                error = produce(topic, acks)
            else:
                error = produce(topic, acks_value)
            print(json.dumps({"client": client, "topic": topic, "acks": acks_value,
                              "error": error}), flush=True)
