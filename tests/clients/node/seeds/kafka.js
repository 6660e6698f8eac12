// Seed 003, "kafka.ts", as written but as JavaScript: TypeScript's types and ES module syntax
// taken out (Node runs it without a compiler); only the broker address comes from the test.
const { Kafka } = require("kafkajs");
 
exports.kafka = new Kafka({
  clientId: "ecommerce-app",
  brokers: [process.env.BROKER],
});
