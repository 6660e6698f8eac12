"""Kafka's operator APIs through real admin clients, for tests/operator_apis.rs: each command
makes the calls kafka-configs, kafka-log-dirs, kafka-features and the like make, and prints
what the client library returned as one JSON line.

Usage: operator_admin.py BOOTSTRAP COMMAND [ARGS]
  configs-confluent BROKER_ID    DescribeConfigs BROKER (confluent-kafka): {name: {value, source,
                                 read_only, sensitive, synonyms}}
  configs-kafka-python BROKER_ID DescribeConfigs BROKER (kafka-python, all configs, synonyms)
  alter-confluent BROKER_ID NAME VALUE
                                 IncrementalAlterConfigs SET on the broker: {"error": str|null}
  log-dirs                       DescribeLogDirs (kafka-python)
  features                       ApiVersions' features (kafka-python describe_features)
  produce-batch TOPIC T1,T2,...  one confluent-kafka batch (lz4) of records at these timestamps
                                 to partition 0: {"offsets": [...]}
  max-timestamp TOPIC            ListOffsets MAX_TIMESTAMP for partition 0 (confluent-kafka)
  topic-partitions LIMIT TOPIC.. DescribeTopicPartitions, paged by LIMIT (kafka-python)
  producers TOPIC                DescribeProducers for partition 0 (kafka-python)
  idempotent TOPIC N             N records from an idempotent confluent-kafka producer
  reassignments                  ListPartitionReassignments (kafka-python)
"""
import json
import sys

bootstrap, command, args = sys.argv[1], sys.argv[2], sys.argv[3:]


def confluent_admin():
    from confluent_kafka.admin import AdminClient
    return AdminClient({"bootstrap.servers": bootstrap})


def kafka_python_admin():
    from kafka import KafkaAdminClient
    return KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=20000)


def configs_confluent(broker_id):
    from confluent_kafka.admin import ConfigResource, ConfigSource, ResourceType
    resource = ConfigResource(ResourceType.BROKER, broker_id)
    admin = confluent_admin()  # kept alive until the futures are done
    got = admin.describe_configs([resource], request_timeout=20)
    entries = got[resource].result(timeout=20)
    return {
        name: {
            "value": e.value,
            "source": ConfigSource(e.source).name,
            "read_only": e.is_read_only,
            "sensitive": e.is_sensitive,
            "synonyms": sorted(e.synonyms.keys()),
        }
        for name, e in entries.items()
    }


def configs_kafka_python(broker_id):
    from kafka.admin import ConfigResource, ConfigResourceType
    resource = ConfigResource(ConfigResourceType.BROKER, broker_id)
    got = kafka_python_admin().describe_configs([resource], include_synonyms=True,
                                                config_filter="all")
    return got["broker"][broker_id]


def alter_confluent(broker_id, name, value):
    from confluent_kafka.admin import (AlterConfigOpType, ConfigEntry, ConfigResource,
                                       ResourceType)
    entry = ConfigEntry(name, value, incremental_operation=AlterConfigOpType.SET)
    resource = ConfigResource(ResourceType.BROKER, broker_id, incremental_configs=[entry])
    admin = confluent_admin()
    got = admin.incremental_alter_configs([resource], request_timeout=20)
    try:
        got[resource].result(timeout=20)
        return {"error": None}
    except Exception as e:  # the KafkaException carrying the broker's error
        return {"error": str(e)}


def produce_batch(topic, timestamps):
    from confluent_kafka import Producer
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 2000,
                  "compression.type": "lz4", "acks": "all"})
    offsets = []

    def done(err, msg):
        if err is not None:
            raise SystemExit(f"delivery failed: {err}")
        offsets.append(msg.offset())

    for i, ts in enumerate(timestamps):
        p.produce(topic, value=f"record {i}".encode() * 20, partition=0, timestamp=ts,
                  on_delivery=done)
    if p.flush(30) != 0:
        raise SystemExit("records left unsent")
    return {"offsets": offsets}


def max_timestamp(topic):
    from confluent_kafka import TopicPartition
    from confluent_kafka.admin import OffsetSpec
    tp = TopicPartition(topic, 0)
    admin = confluent_admin()
    got = admin.list_offsets({tp: OffsetSpec.max_timestamp()}, request_timeout=20)
    info = got[tp].result(timeout=20)
    return {"offset": info.offset, "timestamp": info.timestamp}


def idempotent(topic, n):
    from confluent_kafka import Producer
    p = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True})
    for i in range(n):
        p.produce(topic, value=str(i).encode(), partition=0)
    if p.flush(30) != 0:
        raise SystemExit("records left unsent")
    return {"produced": n}


def topic_partitions(limit, topics):
    admin = kafka_python_admin()
    pages, cursor = [], None
    for _ in range(100):
        page = admin.describe_topic_partitions(topics, response_partition_limit=limit,
                                               cursor=cursor)
        pages.append([
            {"name": t["name"], "error_code": t["error_code"],
             "partitions": [{k: p[k] for k in ("partition_index", "leader_id", "leader_epoch",
                                                "replica_nodes", "isr_nodes",
                                                "eligible_leader_replicas")}
                            for p in t["partitions"]]}
            for t in page["topics"]
        ])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    return {"pages": pages}


def producers(topic):
    from kafka import TopicPartition
    got = kafka_python_admin().describe_producers([TopicPartition(topic, 0)])
    state = got[TopicPartition(topic, 0)]
    return {"producers": [
        p._asdict() for p in state.active_producers
    ]}


def log_dirs():
    return {"brokers": kafka_python_admin().describe_log_dirs()}


def features():
    got = kafka_python_admin().describe_features()
    return {name: {k: list(v) if isinstance(v, tuple) else v for k, v in f.items()}
            for name, f in got.items()}


def reassignments():
    got = kafka_python_admin().list_partition_reassignments()
    return {"reassignments": {f"{tp.topic}-{tp.partition}": r for tp, r in got.items()}}


commands = {
    "configs-confluent": lambda: configs_confluent(args[0]),
    "configs-kafka-python": lambda: configs_kafka_python(args[0]),
    "alter-confluent": lambda: alter_confluent(args[0], args[1], args[2]),
    "log-dirs": log_dirs,
    "features": features,
    "produce-batch": lambda: produce_batch(args[0], [int(t) for t in args[1].split(",")]),
    "max-timestamp": lambda: max_timestamp(args[0]),
    "topic-partitions": lambda: topic_partitions(int(args[0]), args[1:]),
    "producers": lambda: producers(args[0]),
    "idempotent": lambda: idempotent(args[0], int(args[1])),
    "reassignments": reassignments,
}
print(json.dumps(commands[command](), default=str), flush=True)
