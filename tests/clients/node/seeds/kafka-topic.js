// Seed 002, "kafka-topic.js", as written; only the broker addresses come from the test (BROKER, a
// comma-separated list: one broker, or a cluster's bootstrap list).
const { Kafka } = require('kafkajs');
const kafka = new Kafka({ clientId: 'my-app', brokers: process.env.BROKER.split(',') });
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
