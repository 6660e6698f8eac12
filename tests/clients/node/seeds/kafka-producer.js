// Seed 002, "kafka-producer.js", as written; only the broker address comes from the test.
const { Kafka, Partitioners } = require('kafkajs');
const kafka = new Kafka({ clientId: 'my-app', brokers: [process.env.BROKER] });
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
