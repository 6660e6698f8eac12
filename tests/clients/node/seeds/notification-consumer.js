// Seed 003, "notification-consumer.ts", as written but as JavaScript: TypeScript's types and ES module syntax
// taken out (Node runs it without a compiler); only the broker address comes from the test.
const { kafka } = require("./kafka");
 
const consumer = kafka.consumer({ groupId: "notification-service" });
 
async function startNotificationConsumer() {
  await consumer.connect();
 
  // Subscribe to multiple topics
  await consumer.subscribe({ topic: "order.created", fromBeginning: false });
  await consumer.subscribe({
    topic: "payment.completed",
    fromBeginning: false,
  });
 
  await consumer.run({
    eachMessage: async ({ topic, message }) => {
      if (!message.value) return;
 
      const payload = JSON.parse(message.value.toString());
 
      if (topic === "order.created") {
        console.log(`Sending order confirmation email for ${payload.orderId}`);
      }
 
      if (topic === "payment.completed") {
        console.log(`Sending payment receipt for ${payload.orderId}`);
      }
    },
  });
}
 
startNotificationConsumer();
