"""A transactional producer that shardlog must refuse at once, since it has no transactions
yet (tests/hostile.rs, issue 17 case 10): starts one with CLIENT (confluent-kafka or aiokafka)
and prints one JSON line {"refused": true, "fatal": bool, "error": "..."} when the client
reports an error, or {"refused": false} if the transaction API worked. Every client timeout
is left long (60 s), so a refusal that is only retried shows up as the test's time limit.
Usage: transactional.py CLIENT BOOTSTRAP"""
import asyncio
import json
import sys

client, bootstrap = sys.argv[1], sys.argv[2]


def confluent():
    from confluent_kafka import KafkaException, Producer
    p = Producer({"bootstrap.servers": bootstrap, "transactional.id": "tx-1",
                  "transaction.timeout.ms": 60000})
    try:
        p.init_transactions(60)
    except KafkaException as e:
        err = e.args[0]
        return {"refused": True, "fatal": err.fatal(), "error": err.str()}
    return {"refused": False}


async def aiokafka():
    from aiokafka import AIOKafkaProducer
    from aiokafka.errors import KafkaError
    p = AIOKafkaProducer(bootstrap_servers=bootstrap, transactional_id="tx-1",
                         request_timeout_ms=60000)
    try:
        await p.start()
    except KafkaError as e:
        await p.stop()
        return {"refused": True, "fatal": not e.retriable, "error": repr(e)}
    await p.stop()
    return {"refused": False}


result = confluent() if client == "confluent-kafka" else asyncio.run(aiokafka())
print(json.dumps(result), flush=True)
