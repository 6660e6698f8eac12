"""Creates a topic and produces to it with one Python client, for tests/cluster.rs: the admin
client creates TOPIC with PARTITIONS partitions through BOOTSTRAP (one broker or a list),
then an idempotent producer (acks=all) sends N keyed records spread over every partition and
waits for each acknowledgement. Prints one JSON line: {"created": true, "acked": {partition:
count}}.

Usage: cluster_create_produce.py CLIENT BOOTSTRAP TOPIC PARTITIONS N
  CLIENT: confluent (confluent-kafka's AdminClient and Producer) or kafka-python
"""
import json
import sys
import time

client, bootstrap, topic = sys.argv[1], sys.argv[2], sys.argv[3]
partitions, n = int(sys.argv[4]), int(sys.argv[5])
acked = {}


def confluent():
    from confluent_kafka import Producer
    from confluent_kafka.admin import AdminClient, NewTopic
    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics([NewTopic(topic, num_partitions=partitions)])
    futures[topic].result(timeout=30)
    p = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "acks": "all",
                  "linger.ms": 5})

    def done(err, msg):
        if err is not None:
            sys.exit(f"delivery failed: {err}")
        acked[msg.partition()] = acked.get(msg.partition(), 0) + 1

    for i in range(n):
        # The topic's metadata may reach the producer a moment after creation: retry.
        while True:
            try:
                p.produce(topic, key=f"k{i}", value=f"v{i}", partition=i % partitions,
                          on_delivery=done)
                break
            except BufferError:
                p.poll(0.1)
        p.poll(0)
    if p.flush(30) != 0:
        sys.exit("records left unacknowledged")


def kafka_python():
    from kafka import KafkaProducer
    from kafka.admin import KafkaAdminClient, NewTopic
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1)])
    admin.close()
    p = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    deadline = time.time() + 30
    while len(p.partitions_for(topic) or ()) < partitions:
        if time.time() > deadline:
            sys.exit("the topic's partitions never showed")
        time.sleep(0.1)
    futures = [p.send(topic, key=f"k{i}".encode(), value=f"v{i}".encode(), partition=i % partitions)
               for i in range(n)]
    for f in futures:
        md = f.get(timeout=30)
        acked[md.partition] = acked.get(md.partition, 0) + 1
    p.close()


{"confluent": confluent, "kafka-python": kafka_python}[client]()
print(json.dumps({"created": True, "acked": acked}))
