// Seed 002, "kafka-consumer.js", as written; only the broker addresses come from the test (BROKER, a
// comma-separated list: one broker, or a cluster's bootstrap list).
const { Kafka } = require('kafkajs');
const kafka = new Kafka({ clientId: 'my-app', brokers: process.env.BROKER.split(',') });
const consumer = kafka.consumer({ groupId: 'notification-service' });
async function startConsuming() {
await consumer.connect();
await consumer.subscribe({ topic: 'user-events', fromBeginning: true });
await consumer.run({
eachMessage: async ({ topic, partition, message }) => {
const event = JSON.parse(message.value.toString());
console.log(`Received event:`, event);
// Do something useful - send email, update DB, etc.
},
});
}
startConsuming();
