// Seed 003, "order-producer.ts", as written but as JavaScript: TypeScript's types and ES module syntax
// taken out (Node runs it without a compiler); only the broker address comes from the test.
const { kafka } = require("./kafka");
 
const producer = kafka.producer();
 
async function publishOrderCreated(order) {
  await producer.connect();
 
  await producer.send({
    topic: "order.created",
    messages: [
      {
        key: order.orderId,
        value: JSON.stringify(order),
      },
    ],
  });
 
  console.log(`Order event published: ${order.orderId}`);
 
  await producer.disconnect();
}
 
publishOrderCreated({
  orderId: "ORD-1001",
  userId: "USR-42",
  items: [{ productId: "PROD-5", quantity: 2 }],
  totalAmount: 1999,
});
