// Seed 003, "payment-consumer.ts", as written but as JavaScript: TypeScript's types and ES module syntax
// taken out (Node runs it without a compiler); only the broker address comes from the test.
const { kafka } = require("./kafka");
 
const consumer = kafka.consumer({ groupId: "payment-service" });
 
async function startPaymentConsumer() {
  await consumer.connect();
  await consumer.subscribe({ topic: "order.created", fromBeginning: false });
 
  await consumer.run({
    eachMessage: async ({ message }) => {
      if (!message.value) return;
 
      const order = JSON.parse(message.value.toString());
 
      console.log(`Processing payment for order: ${order.orderId}`);
      console.log(`Amount: ₹${order.totalAmount}`);
 
      // Process payment logic here
      await processPayment(order.orderId, order.totalAmount);
    },
  });
}
 
async function processPayment(orderId, amount) {
  console.log(`Payment of ₹${amount} processed for order ${orderId}`);
 
  // After processing, publish a new event for downstream services
  const producer = kafka.producer();
  await producer.connect();
 
  await producer.send({
    topic: "payment.completed",
    messages: [
      {
        key: orderId,
        value: JSON.stringify({ orderId, status: "success" }),
      },
    ],
  });
 
  await producer.disconnect();
}
 
startPaymentConsumer();
