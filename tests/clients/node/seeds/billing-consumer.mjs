// Seed 000, "Step 3: Create a Consumer", as written; only the broker address comes from the
// test (and this line and the file name are added).
import { Kafka } from "kafkajs";
const kafka = new Kafka({
brokers: [process.env.BROKER],
});
const consumer = kafka.consumer({ groupId: "billing-service" });
async function run() {
await consumer.connect();
await consumer.subscribe({ topic: "orders" });
await consumer.run({
eachMessage: async ({ message }) => {
const event = JSON.parse(message.value.toString());
console.log("Processing order:", event.orderId);
},
});
}
run();
