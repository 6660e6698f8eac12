// Seed 002, "kafka-consumer.js", as written; only the broker address comes from the test.
const { Kafka } = require('kafkajs');
const kafka = new Kafka({ clientId: 'my-app', brokers: [process.env.BROKER] });
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
