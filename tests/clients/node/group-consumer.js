// One kafkajs consumer in a consumer group, for tests/consumer_groups.rs. It commits each
// record's offset right after processing it (autoCommitThreshold: 1) and prints JSON lines on
// stdout (kafkajs's own log goes to stderr):
//   {"event":"join","member":ID,"leader":BOOL,"protocol":NAME,"partitions":[..]}  after each
//                                                        JoinGroup + SyncGroup (GROUP_JOIN)
//   {"p":PARTITION,"o":OFFSET,"k":KEY,"v":VALUE}         one per record processed
//   {"event":"commit","p":PARTITION,"o":NEXT_OFFSET}     one per partition of each OffsetCommit
//   {"event":"rebalancing"} / {"event":"crash",...}      diagnostics (exit 3 on a crash that
//                                                        kafkajs does not restart from)
//   {"event":"stopped"}                                  after SIGTERM: consumer.disconnect()
//                                                        (which sends LeaveGroup) finished
// Usage: BROKER=host:port node group-consumer.js GROUP TOPIC [SESSION_TIMEOUT_MS]
// KAFKAJS_LOG_LEVEL=debug shows kafkajs's protocol log on stderr.
const { Kafka, logLevel } = require('kafkajs');

const [groupId, topic] = process.argv.slice(2, 4);
const sessionTimeout = parseInt(process.argv[4] || '6000', 10);
if (!groupId || !topic || !process.env.BROKER) {
  console.error('usage: BROKER=host:port node group-consumer.js GROUP TOPIC [SESSION_TIMEOUT_MS]');
  process.exit(2);
}

const out = (o) => process.stdout.write(`${JSON.stringify(o)}\n`);
const toStderr = () => ({ namespace, label, log }) => {
  const { message, ...rest } = log;
  process.stderr.write(`${new Date().toISOString()} ${label} [${namespace}] ${message} ${JSON.stringify(rest)}\n`);
};

const kafka = new Kafka({
  clientId: `group-consumer-${process.pid}`,
  brokers: [process.env.BROKER],
  logLevel: logLevel.WARN,
  logCreator: toStderr,
});
const consumer = kafka.consumer({
  groupId,
  sessionTimeout,
  heartbeatInterval: 500,
  rebalanceTimeout: 30000,
  // Heartbeats go out between fetches: keep an idle fetch well under the session timeout.
  maxWaitTimeInMs: 500,
});

const { GROUP_JOIN, COMMIT_OFFSETS, REBALANCING, CRASH } = consumer.events;
consumer.on(GROUP_JOIN, ({ payload }) => out({
  event: 'join',
  member: payload.memberId,
  leader: payload.isLeader,
  protocol: payload.groupProtocol,
  partitions: (payload.memberAssignment[topic] || []).slice().sort((a, b) => a - b),
}));
consumer.on(COMMIT_OFFSETS, ({ payload }) => {
  for (const t of payload.topics) {
    for (const p of t.partitions) out({ event: 'commit', p: Number(p.partition), o: Number(p.offset) });
  }
});
consumer.on(REBALANCING, () => out({ event: 'rebalancing' }));
// A crash kafkajs will not restart from leaves a process that consumes nothing: exit instead.
consumer.on(CRASH, ({ payload }) => {
  out({ event: 'crash', error: String(payload.error), restart: payload.restart });
  if (!payload.restart) process.exit(3);
});

let stopping = false;
async function stop() {
  if (stopping) return;
  stopping = true;
  try {
    await consumer.disconnect();
    out({ event: 'stopped' });
    process.exit(0);
  } catch (e) {
    console.error(e);
    process.exit(1);
  }
}
process.on('SIGTERM', stop);
process.on('SIGINT', stop);

async function main() {
  await consumer.connect();
  await consumer.subscribe({ topic, fromBeginning: true });
  await consumer.run({
    autoCommit: true,
    autoCommitThreshold: 1,
    eachMessage: async ({ partition, message }) => {
      out({
        p: partition,
        o: Number(message.offset),
        k: message.key === null ? null : message.key.toString(),
        v: message.value === null ? null : message.value.toString(),
      });
    },
  });
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
