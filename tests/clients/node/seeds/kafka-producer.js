// Seed 002, "kafka-producer.js", as written; only the broker addresses come from the test (BROKER, a
// comma-separated list: one broker, or a cluster's bootstrap list).
const { Kafka, Partitioners } = require('kafkajs');
const kafka = new Kafka({ clientId: 'my-app', brokers: process.env.BROKER.split(',') });
const producer = kafka.producer({
createPartitioner: Partitioners.LegacyPartitioner
});
async function sendMessage() {
await producer.connect();
await producer.send({
topic: 'user-events',
messages: [
{ key: 'user-1', value: JSON.stringify({ event: 'signup', userId: 'user-1' }) },
],
});
await producer.disconnect();
console.log('Message sent!');
}
sendMessage();
