// Seed 000, "Step 2: Create a Producer (Node.js)", as written; only the broker address comes
// from the test (and this line and the file name are added).
import { Kafka } from "kafkajs";
const kafka = new Kafka({
brokers: [process.env.BROKER],
});
const producer = kafka.producer();
async function sendEvent() {
await producer.connect();
await producer.send({
topic: "orders",
messages: [
{
value: JSON.stringify({
orderId: 123,
total: 49.99,
}),
},
],
});
await producer.disconnect();
}
sendEvent();
