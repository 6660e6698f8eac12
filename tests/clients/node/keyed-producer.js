// The seed producer's pattern at volume: N keyed events (keys user-0..user-9), each carrying
// its per-key sequence number, sent in several batches with the seed's LegacyPartitioner.
// Usage: BROKER=host:port node keyed-producer.js TOPIC N
const { Kafka, Partitioners } = require('kafkajs');
const [topic, n] = [process.argv[2], parseInt(process.argv[3], 10)];
const kafka = new Kafka({ clientId: 'shardlog-tests', brokers: process.env.BROKER.split(','), logLevel: 1 });
async function main() {
  const producer = kafka.producer({ createPartitioner: Partitioners.LegacyPartitioner });
  await producer.connect();
  const perKey = {};
  for (let start = 0; start < n; start += 50) {
    const messages = [];
    for (let i = start; i < Math.min(n, start + 50); i++) {
      const key = `user-${i % 10}`;
      perKey[key] = (perKey[key] || 0) + 1;
      messages.push({ key, value: JSON.stringify({ key, seq: perKey[key] }) });
    }
    await producer.send({ topic, messages });
  }
  await producer.disconnect();
  console.log(`sent ${n}`);
}
main().catch((e) => { console.error(e); process.exit(1); });
