// Seed 002, "kafka-topic.js", as written; only the broker address comes from the test.
const { Kafka } = require('kafkajs');
const kafka = new Kafka({ clientId: 'my-app', brokers: [process.env.BROKER] });
const admin = kafka.admin();
async function createTopic() {
await admin.connect();
await admin.createTopics({
topics: [{ topic: 'user-events', numPartitions: 3 }],
});
await admin.disconnect();
console.log('Topic created!');
}
createTopic();
