// A kafkajs transactional producer that shardlog must refuse at once, since it has no
// transactions yet (tests/hostile.rs, issue 17 case 10). Prints one JSON line
// {"refused": true, "error": NAME, "retriable": bool} when producer.transaction() rejects,
// or {"refused": false} if it worked.
// Usage: BROKER=host:port node transactional.js
const { Kafka } = require('kafkajs');
const kafka = new Kafka({ clientId: 'shardlog-tests', brokers: [process.env.BROKER], logLevel: 0 });
async function main() {
  const producer = kafka.producer({ transactionalId: 'tx-1', maxInFlightRequests: 1, idempotent: true });
  await producer.connect();
  try {
    const tx = await producer.transaction();
    await tx.abort();
    console.log(JSON.stringify({ refused: false }));
  } catch (e) {
    console.log(JSON.stringify({ refused: true, error: e.name, retriable: !!e.retriable }));
  }
  await producer.disconnect();
}
main().catch((e) => { console.error(e); process.exit(1); });
