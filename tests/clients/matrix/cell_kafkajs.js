// Compatibility-matrix cell driver for kafkajs (see README.md here): runs one feature against a
// running broker and prints the result line (PASS / LACKS / FAIL) last on stdout. It mirrors the
// python drivers' matrix_common.py: the same constants, deadlines and result line.
// kafkajs and its codec packages come from tests/clients/node (package-lock.json there).
// Usage: node cell_kafkajs.js BOOTSTRAP FEATURE PREFIX | node cell_kafkajs.js BOOTSTRAP version x
'use strict'
const crypto = require('crypto')
const path = require('path')
const { createRequire } = require('module')

const nodeRequire = createRequire(path.join(__dirname, '../node/package.json'))
const {
  Kafka, logLevel, CompressionTypes, CompressionCodecs, ConfigResourceTypes, AssignerProtocol,
} = nodeRequire('kafkajs')

const RECORDS = 100
const RECORD_1MIB_BYTES = 1048000
const TOO_LARGE_BYTES = 1100000
const TIMESTAMP_MS = 1600000000123
const DEADLINE_MS = 30000
const SETTLE_MS = 2000 // how long a consumer keeps polling to show that nothing more arrives
const CELL_LIMIT_MS = 110000 // the runner kills a cell at 120 s: print a FAIL line before that
const CREATE_TIME = 0 // kafkajs's TimestampTypes.CREATE_TIME
const CONSUMER_OPTIONS = {
  sessionTimeout: 10000,
  rebalanceTimeout: 30000,
  heartbeatInterval: 500,
  maxWaitTimeInMs: 500, // heartbeats go out between fetches: keep an idle fetch short
}

// kafkajs ships GZIP only; the other codecs come from packages registered in CompressionCodecs.
// No kafkajs zstd codec package works on node 20 (@kafkajs/zstd 0.1.1's cppzst 2.0.6 compiles as
// C++14, node 20's headers need C++17; @sensejs/kafkajs-zstd-support 0.11.0's CommonJS build
// throws ReferenceError on require), so zstd is a small codec over @mongodb-js/zstd, which ships
// prebuilt binaries.
const CODECS = {
  none: { type: CompressionTypes.None },
  gzip: { type: CompressionTypes.GZIP },
  snappy: {
    type: CompressionTypes.Snappy,
    pkg: 'kafkajs-snappy',
    note: 'codec from kafkajs-snappy',
    codec: (snappy) => snappy,
  },
  lz4: {
    type: CompressionTypes.LZ4,
    pkg: '@2l/kafkajs-lz4',
    note: 'codec from @2l/kafkajs-lz4',
    codec: (LZ4) => new LZ4().codec,
  },
  zstd: {
    type: CompressionTypes.ZSTD,
    pkg: '@mongodb-js/zstd',
    note: 'codec over @mongodb-js/zstd (no kafkajs zstd codec package works on node 20)',
    codec: (zstd) => () => ({
      compress: (encoder) => zstd.compress(encoder.buffer),
      decompress: (buffer) => zstd.decompress(buffer),
    }),
  },
}

// The client has no way to do this feature (not a failure).
class Lacks extends Error {}

// A check of the feature did not hold.
class Failed extends Error {
  constructor(message) {
    super(message)
    this.name = 'Failed'
  }
}

function check(cond, what) {
  if (!cond) throw new Failed(what)
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))
const range = (n) => Array.from({ length: n }, (_, i) => i)
const text = (buf) => (buf === null ? null : buf.toString())
const sorted = (xs) => [...xs].sort()
const same = (a, b) => JSON.stringify(a) === JSON.stringify(b)
const seekBaseMs = () => (Math.floor(Date.now() / 1000) - 600) * 1000
const toStderr = () => ({ namespace, label, log }) => {
  process.stderr.write(`${new Date().toISOString()} ${label} [${namespace}] ${log.message}\n`)
}

// One cell's clients: every client it opens is disconnected by close().
class Cell {
  constructor(bootstrap, prefix) {
    this.prefix = prefix
    this.group = `${prefix}-g`
    this.kafka = new Kafka({
      clientId: prefix,
      brokers: [bootstrap],
      connectionTimeout: 10000,
      logLevel: logLevel.ERROR,
      logCreator: toStderr,
    })
    this.clients = []
    this.crash = null
  }

  track(client) {
    this.clients.push(client)
    return client
  }

  async admin() {
    if (!this.adminClient) {
      this.adminClient = this.track(this.kafka.admin())
      await this.adminClient.connect()
    }
    return this.adminClient
  }

  async producer() {
    if (!this.producerClient) {
      this.producerClient = this.track(this.kafka.producer({ allowAutoTopicCreation: false }))
      await this.producerClient.connect()
    }
    return this.producerClient
  }

  async createTopic(topic, numPartitions = 3) {
    const admin = await this.admin()
    const created = await admin.createTopics({ topics: [{ topic, numPartitions }] })
    check(created, `createTopics did not create ${topic}`)
  }

  // Sends with acks=all; returns kafkajs's per-partition results.
  async send(topic, messages, compression = CompressionTypes.None) {
    const producer = await this.producer()
    return producer.send({ topic, acks: -1, compression, messages })
  }

  // A consumer in the cell's group reading `topic` from the earliest offset; its state object
  // gathers the records it receives and its latest assignment.
  async consume(topic, { autoCommit = true, autoCommitInterval = null } = {}) {
    const consumer = this.track(this.kafka.consumer({ groupId: this.group, ...CONSUMER_OPTIONS }))
    const state = { consumer, records: [], assignment: [], assignor: null }
    consumer.on(consumer.events.GROUP_JOIN, ({ payload }) => {
      state.assignment = payload.memberAssignment[topic] || []
      state.assignor = payload.groupProtocol
    })
    consumer.on(consumer.events.CRASH, ({ payload }) => {
      if (!payload.restart) this.crash = payload.error
    })
    await consumer.connect()
    await consumer.subscribe({ topics: [topic], fromBeginning: true })
    await consumer.run({
      autoCommit,
      autoCommitInterval,
      eachMessage: async ({ partition, message }) => {
        state.records.push({ partition, ...message, offset: Number(message.offset) })
      },
    })
    return state
  }

  async closeClient(client) {
    this.clients = this.clients.filter((c) => c !== client)
    await client.disconnect()
  }

  async close() {
    const all = Promise.allSettled(this.clients.map((c) => c.disconnect()))
    await Promise.race([all, sleep(15000)])
  }

  // Polls fn until it returns a truthy value (returned), failing fast if a consumer crashed.
  // `what` names the condition: a string, or a function giving one at the timeout.
  async waitUntil(fn, what, timeoutMs = DEADLINE_MS) {
    const deadline = Date.now() + timeoutMs
    for (;;) {
      if (this.crash) throw new Failed(`consumer crashed: ${this.crash.message}`)
      const v = await fn()
      if (v) return v
      if (Date.now() > deadline) {
        throw new Failed(`timed out waiting for ${typeof what === 'function' ? what() : what}`)
      }
      await sleep(100)
    }
  }

  waitRecords(state, n) {
    return this.waitUntil(() => state.records.length >= n,
      () => `${n} records (got ${state.records.length})`)
  }

  // Waits for the records, keeps polling SETTLE_MS, then checks exactly those values arrived.
  async expectOnly(state, values) {
    await this.waitRecords(state, values.length)
    await sleep(SETTLE_MS)
    const got = state.records.map((r) => text(r.value))
    check(same(sorted(got), sorted(values)), `expected exactly ${values}, got ${got}`)
  }

  // The topic holds exactly n records (so no copy arrived after the n a consumer waited for).
  async checkHeld(topic, n) {
    const admin = await this.admin()
    const offsets = await admin.fetchTopicOffsets(topic)
    const held = offsets.reduce((sum, o) => sum + Number(o.high) - Number(o.low), 0)
    check(held === n, `topic holds ${held} records, expected ${n}`)
  }

  // Sum of the group's committed offsets on the topic (an uncommitted partition counts 0).
  async committedTotal(topic) {
    const admin = await this.admin()
    const [t] = await admin.fetchOffsets({ groupId: this.group, topics: [topic] })
    return t.partitions.reduce((sum, p) => sum + Math.max(Number(p.offset), 0), 0)
  }

  async partitionOffsets(topic, partition = 0) {
    const admin = await this.admin()
    const offsets = await admin.fetchTopicOffsets(topic)
    return offsets.find((o) => o.partition === partition)
  }
}

// kafkajs's seek (valid once run() has joined): the next fetch of partition 0 starts there, and
// records of a fetch already under way are dropped.
function seekPartition0(state, topic, offset) {
  state.consumer.seek({ topic, partition: 0, offset: String(offset) })
}

function textMessages(tag, n, extra = () => ({})) {
  return range(n).map((i) => ({ key: `k${i % 5}`, value: `${tag}-${i}`, ...extra(i) }))
}

function checkOffsetsIncrease(records) {
  const last = {}
  for (const r of records) {
    check(!(r.partition in last) || r.offset > last[r.partition],
      `partition ${r.partition}: offset ${r.offset} after ${last[r.partition]}`)
    last[r.partition] = r.offset
  }
}

function checkOffsets(records, expected, what) {
  const got = records.map((r) => r.offset)
  check(same(got, expected), `${what}: expected offsets ${expected}, got ${got}`)
}

function loadCodec(name) {
  const { type, pkg, codec } = CODECS[name]
  if (!pkg) return type
  let module
  try {
    module = nodeRequire(pkg)
  } catch (e) {
    const why = e.message.split('\n')[0]
    // The package is pinned in package-lock.json: failing to load it is a broken install.
    throw new Failed(`${pkg} (the ${name} codec, pinned in package-lock.json) did not load: ${why}`)
  }
  CompressionCodecs[type] = codec(module)
  return type
}

function codecFeature(name) {
  return async (cell) => {
    const compression = loadCodec(name)
    const topic = cell.prefix
    await cell.createTopic(topic)
    const messages = textMessages(name, RECORDS)
    await cell.send(topic, messages, compression)
    const c = await cell.consume(topic)
    await cell.waitRecords(c, RECORDS)
    const got = c.records.map((r) => text(r.value))
    check(same(sorted(got), sorted(messages.map((m) => m.value))), 'each value exactly once')
    checkOffsetsIncrease(c.records)
    await cell.checkHeld(topic, RECORDS)
    return CODECS[name].note
  }
}

async function headers(cell) {
  const topic = cell.prefix
  await cell.createTopic(topic)
  const sent = { trace: [Buffer.from('abc'), Buffer.from('again')], bin: Buffer.from([0, 255, 1]) }
  await cell.send(topic, range(3).map((i) => ({ key: 'k', value: `h-${i}`, headers: sent })))
  const c = await cell.consume(topic)
  await cell.waitRecords(c, 3)
  for (const r of c.records) {
    check(same(Object.keys(r.headers), ['trace', 'bin']), `header keys ${Object.keys(r.headers)}`)
    check(Array.isArray(r.headers.trace) && r.headers.trace.length === 2
      && r.headers.trace.every((v, i) => v.equals(sent.trace[i])), 'trace headers differ')
    check(Buffer.isBuffer(r.headers.bin) && r.headers.bin.equals(sent.bin), 'bin header differs')
  }
  await cell.checkHeld(topic, 3)
  return 'kafkajs headers are an object (a repeated key is an array under its first position), '
    + 'so the order sent is trace, trace, bin'
}

async function nullKey(cell) {
  const topic = cell.prefix
  await cell.createTopic(topic)
  const values = range(10).map((i) => `nk-${i}`)
  await cell.send(topic, values.map((value) => ({ key: null, value })))
  const c = await cell.consume(topic)
  await cell.waitRecords(c, 10)
  check(c.records.every((r) => r.key === null), 'a key is not null')
  check(same(sorted(c.records.map((r) => text(r.value))), sorted(values)), 'values differ')
  await cell.checkHeld(topic, 10)
}

async function nullValue(cell) {
  const topic = cell.prefix
  await cell.createTopic(topic)
  await cell.send(topic, [{ key: 'k', value: null }])
  const c = await cell.consume(topic)
  await cell.waitRecords(c, 1)
  const [r] = c.records
  check(text(r.key) === 'k', `key ${r.key}`)
  check(r.value === null, `value is ${JSON.stringify(r.value)}, not null`)
  await cell.checkHeld(topic, 1)
}

async function timestamp(cell) {
  const topic = cell.prefix
  await cell.createTopic(topic)
  await cell.send(topic, [{ key: 'k', value: 'ts', timestamp: String(TIMESTAMP_MS) }])
  const c = await cell.consume(topic)
  await cell.waitRecords(c, 1)
  const [r] = c.records
  check(r.timestamp === String(TIMESTAMP_MS), `timestamp ${r.timestamp}`)
  const { timestampType } = r.batchContext
  check(timestampType === CREATE_TIME, `timestamp type ${timestampType}, not CreateTime`)
  await cell.checkHeld(topic, 1)
}

async function record1mib(cell) {
  const topic = cell.prefix
  await cell.createTopic(topic)
  const value = crypto.randomBytes(RECORD_1MIB_BYTES)
  await cell.send(topic, [{ key: 'big', value }])
  const c = await cell.consume(topic)
  await cell.waitRecords(c, 1)
  check(c.records[0].value.equals(value), 'consumed bytes differ')
  await cell.checkHeld(topic, 1)
  return 'kafkajs has no client-side request or message size limit to raise'
}

// The KafkaJSProtocolError behind kafkajs's retry wrappers (each keeps it as `cause`).
function protocolError(e) {
  for (let err = e; err; err = err.cause) {
    if (err.name === 'KafkaJSProtocolError') return err
  }
  return null
}

async function tooLarge(cell) {
  const topic = cell.prefix
  await cell.createTopic(topic)
  let error = null
  try {
    await cell.send(topic, [{ key: 'big', value: crypto.randomBytes(TOO_LARGE_BYTES) }])
  } catch (e) {
    error = e
  }
  check(error, 'the too-large record was acknowledged')
  const cause = protocolError(error)
  check(cause && cause.type === 'MESSAGE_TOO_LARGE' && cause.code === 10,
    `expected MESSAGE_TOO_LARGE (10), got ${error.name}: ${error.message}`)
  await cell.send(topic, [{ key: 'small', value: 'small' }])
  await cell.checkHeld(topic, 1)
  const c = await cell.consume(topic)
  await cell.expectOnly(c, ['small'])
  return 'kafkajs has no client-side request or message size limit to raise'
}

function splitsAll(assignments, partitions) {
  const all = assignments.flat()
  return assignments.every((a) => a.length > 0)
    && new Set(all).size === all.length
    && same(sorted(all), range(partitions))
}

async function group(cell) {
  const topic = cell.prefix
  await cell.createTopic(topic)
  const members = [await cell.consume(topic), await cell.consume(topic)]
  await cell.waitUntil(() => splitsAll(members.map((m) => m.assignment), 3),
    'two non-empty disjoint assignments covering 3 partitions')
  const messages = range(60).map((i) => ({ key: `key-${i % 10}`, value: `group-${i}` }))
  await cell.send(topic, messages)
  const received = () => members.flatMap((m) => m.records)
  await cell.waitUntil(() => received().length >= 60, '60 records between the two consumers')
  const got = received().map((r) => text(r.value))
  check(same(sorted(got), sorted(messages.map((m) => m.value))), 'each record exactly once')
  await cell.checkHeld(topic, 60)
  return `assignor ${members[0].assignor}`
}

// Offsets to commit after a consumer's records: the next offset of each partition it read.
function nextOffsets(topic, records) {
  const next = {}
  for (const r of records) next[r.partition] = Math.max(next[r.partition] || 0, r.offset + 1)
  return Object.entries(next).map(([p, o]) => ({ topic, partition: Number(p), offset: String(o) }))
}

async function commitManual(cell) {
  const topic = cell.prefix
  await cell.createTopic(topic)
  await cell.send(topic, textMessages('first', 20))
  const first = await cell.consume(topic, { autoCommit: false })
  await cell.waitRecords(first, 20)
  await first.consumer.commitOffsets(nextOffsets(topic, first.records))
  await cell.closeClient(first.consumer)
  const more = textMessages('second', 5)
  await cell.send(topic, more)
  await cell.expectOnly(await cell.consume(topic), more.map((m) => m.value))
}

async function commitAuto(cell) {
  const topic = cell.prefix
  await cell.createTopic(topic)
  await cell.send(topic, textMessages('first', 20))
  const first = await cell.consume(topic, { autoCommit: true, autoCommitInterval: 500 })
  await cell.waitRecords(first, 20)
  await sleep(SETTLE_MS)
  // Committed by the periodic auto commit while the consumer runs, not only by its close.
  await cell.waitUntil(async () => (await cell.committedTotal(topic)) === 20,
    '20 offsets auto-committed before close')
  await cell.closeClient(first.consumer)
  const more = textMessages('second', 5)
  await cell.send(topic, more)
  await cell.expectOnly(await cell.consume(topic), more.map((m) => m.value))
}

async function produceToPartition0(cell, topic, n, timestampOf = null) {
  await cell.createTopic(topic)
  const extra = (i) => ({ partition: 0, ...(timestampOf && { timestamp: String(timestampOf(i)) }) })
  await cell.send(topic, textMessages('p0', n, extra))
}

async function seekBeginning(cell) {
  const topic = cell.prefix
  await produceToPartition0(cell, topic, 10)
  const c = await cell.consume(topic)
  await cell.waitRecords(c, 10)
  const { low } = await cell.partitionOffsets(topic)
  seekPartition0(c, topic, low)
  await cell.waitRecords(c, 20)
  checkOffsets(c.records.slice(10, 20), range(10), 'after the seek')
  return 'seek to the low watermark (admin.fetchTopicOffsets): kafkajs has no seekToBeginning'
}

async function seekOffset(cell) {
  const topic = cell.prefix
  await produceToPartition0(cell, topic, 10)
  const c = await cell.consume(topic)
  seekPartition0(c, topic, 6)
  await cell.waitRecords(c, 4)
  checkOffsets(c.records.slice(0, 4), [6, 7, 8, 9], 'after seeking to 6')
}

async function seekTimestamp(cell) {
  const topic = cell.prefix
  const base = seekBaseMs()
  await produceToPartition0(cell, topic, 10, (i) => base + i * 1000)
  const admin = await cell.admin()
  const offsets = await admin.fetchTopicOffsetsByTimestamp(topic, base + 4500)
  const { offset } = offsets.find((o) => o.partition === 0)
  check(offset === '5', `offset for T0+4500 is ${offset}, expected 5`)
  const c = await cell.consume(topic)
  seekPartition0(c, topic, offset)
  await cell.waitRecords(c, 5)
  checkOffsets(c.records.slice(0, 5), [5, 6, 7, 8, 9], 'after seeking to 5')
  return 'via admin.fetchTopicOffsetsByTimestamp + consumer.seek'
}

async function partitionCount(admin, topic) {
  const { topics } = await admin.fetchTopicMetadata({ topics: [topic] })
  return topics[0].partitions.length
}

async function adminTopics(cell) {
  const topic = cell.prefix
  await cell.createTopic(topic, 2)
  const admin = await cell.admin()
  const count = await partitionCount(admin, topic)
  check(count === 2, `metadata shows ${count} partitions`)
  await admin.deleteTopics({ topics: [topic] })
  await cell.waitUntil(async () => !(await admin.listTopics()).includes(topic),
    'metadata to drop the deleted topic', 10000)
}

async function adminPartitions(cell) {
  const topic = cell.prefix
  await cell.createTopic(topic, 1)
  const admin = await cell.admin()
  await admin.createPartitions({ topicPartitions: [{ topic, count: 5 }] })
  await cell.waitUntil(async () => (await partitionCount(admin, topic)) === 5,
    'metadata to show 5 partitions')
  const [result] = await cell.send(topic, [{ key: 'k', value: 'p4', partition: 4 }])
  check(result.partition === 4 && result.errorCode === 0,
    `produce result ${JSON.stringify(result)}`)
}

async function topicConfigs(cell, topic, names) {
  const admin = await cell.admin()
  const { resources } = await admin.describeConfigs({
    resources: [{ type: ConfigResourceTypes.TOPIC, name: topic, configNames: names }],
    includeSynonyms: false,
  })
  return Object.fromEntries(resources[0].configEntries.map((e) => [e.configName, e.configValue]))
}

async function adminDescribeConfigs(cell) {
  const topic = cell.prefix
  await cell.createTopic(topic)
  const configs = await topicConfigs(cell, topic, ['retention.ms', 'cleanup.policy'])
  check(configs['retention.ms'] === '604800000', `retention.ms ${configs['retention.ms']}`)
  check(configs['cleanup.policy'] === 'delete', `cleanup.policy ${configs['cleanup.policy']}`)
}

async function adminAlterConfigs(cell) {
  const topic = cell.prefix
  await cell.createTopic(topic)
  const admin = await cell.admin()
  await admin.alterConfigs({
    validateOnly: false,
    resources: [{
      type: ConfigResourceTypes.TOPIC,
      name: topic,
      configEntries: [{ name: 'retention.ms', value: '3600000' }],
    }],
  })
  const configs = await topicConfigs(cell, topic, ['retention.ms'])
  check(configs['retention.ms'] === '3600000', `retention.ms ${configs['retention.ms']}`)
  return 'via AlterConfigs: kafkajs has no IncrementalAlterConfigs'
}

async function adminListGroups(cell) {
  const topic = cell.prefix
  await cell.createTopic(topic)
  await cell.send(topic, [{ key: 'k', value: 'v' }])
  const c = await cell.consume(topic, { autoCommit: false })
  await cell.waitRecords(c, 1)
  await c.consumer.commitOffsets(nextOffsets(topic, c.records))
  const admin = await cell.admin()
  const listed = async () => (await admin.listGroups()).groups.some((g) => g.groupId === cell.group)
  await cell.waitUntil(listed, `list groups to include ${cell.group}`)
}

async function adminDescribeGroups(cell) {
  const topic = cell.prefix
  await cell.createTopic(topic)
  const c = await cell.consume(topic)
  await cell.waitUntil(() => c.assignment.length > 0, 'an assignment')
  const admin = await cell.admin()
  const g = await cell.waitUntil(async () => {
    const { groups: [desc] } = await admin.describeGroups([cell.group])
    return desc.state === 'Stable' && desc
  }, 'group state Stable')
  check(g.members.length === 1, `${g.members.length} members`)
  check(g.protocolType === 'consumer', `protocol type ${g.protocolType}`)
  const { assignment } = AssignerProtocol.MemberAssignment.decode(g.members[0].memberAssignment)
  check(same(Object.keys(assignment), [topic]) && same(sorted(assignment[topic]), [0, 1, 2]),
    `assignment ${JSON.stringify(assignment)}`)
  return `protocol ${g.protocol}`
}

async function adminListOffsets(cell) {
  const topic = cell.prefix
  const base = seekBaseMs()
  await produceToPartition0(cell, topic, 7, (i) => base + i * 1000)
  const { low, high } = await cell.partitionOffsets(topic)
  check(low === '0' && high === '7', `earliest ${low}, latest ${high}`)
  const admin = await cell.admin()
  const byTime = await admin.fetchTopicOffsetsByTimestamp(topic, base + 2500)
  const { offset } = byTime.find((o) => o.partition === 0)
  check(offset === '3', `offset for T0+2500 is ${offset}, expected 3`)
}

async function adminDeleteRecords(cell) {
  const topic = cell.prefix
  await produceToPartition0(cell, topic, 10)
  // Also loads the topic's metadata into the admin: deleteTopicRecords looks up partition
  // leaders in that cache before it loads it (KafkaJSBrokerNotFound on a fresh admin).
  const before = await cell.partitionOffsets(topic)
  check(before.low === '0' && before.high === '10', `offsets before ${before.low}..${before.high}`)
  const admin = await cell.admin()
  await admin.deleteTopicRecords({ topic, partitions: [{ partition: 0, offset: '4' }] })
  const { low } = await cell.partitionOffsets(topic)
  check(low === '4', `earliest offset ${low}`)
  const c = await cell.consume(topic)
  await cell.waitRecords(c, 6)
  checkOffsets(c.records.slice(0, 6), [4, 5, 6, 7, 8, 9], 'from the beginning')
}

const FEATURES = {
  ...Object.fromEntries(Object.keys(CODECS).map((name) => [`codec-${name}`, codecFeature(name)])),
  headers,
  'null-key': nullKey,
  'null-value': nullValue,
  timestamp,
  'record-1mib': record1mib,
  'too-large': tooLarge,
  group,
  'commit-manual': commitManual,
  'commit-auto': commitAuto,
  'seek-beginning': seekBeginning,
  'seek-offset': seekOffset,
  'seek-timestamp': seekTimestamp,
  'admin-topics': adminTopics,
  'admin-partitions': adminPartitions,
  'admin-describe-configs': adminDescribeConfigs,
  'admin-alter-configs': adminAlterConfigs,
  'admin-list-groups': adminListGroups,
  'admin-describe-groups': adminDescribeGroups,
  'admin-list-offsets': adminListOffsets,
  'admin-delete-records': adminDeleteRecords,
}

function finish(line, code) {
  process.stdout.write(`${line.replace(/\n/g, ' ')}\n`, () => process.exit(code))
}

async function runFeature(fn, cell) {
  try {
    const note = await fn(cell)
    return [note ? `PASS ${note}` : 'PASS', 0]
  } catch (e) {
    if (e instanceof Lacks) return [`LACKS ${e.message}`, 0]
    console.error(e)
    return [`FAIL ${e.name}: ${e.message}`, 1]
  }
}

async function main() {
  if (process.argv.length !== 5) {
    console.error('usage: node cell_kafkajs.js BOOTSTRAP FEATURE PREFIX')
    process.exit(2)
  }
  const [bootstrap, feature, prefix] = process.argv.slice(2)
  if (feature === 'version') {
    return finish(`VERSION kafkajs ${nodeRequire('kafkajs/package.json').version}`, 0)
  }
  const fn = FEATURES[feature]
  if (!fn) return finish(`FAIL no such feature ${feature}`, 1)
  setTimeout(() => finish(`FAIL ${feature} did not finish within ${CELL_LIMIT_MS / 1000} s`, 1),
    CELL_LIMIT_MS)
  const cell = new Cell(bootstrap, prefix)
  const [line, code] = await runFeature(fn, cell)
  await cell.close()
  return finish(line, code)
}

process.on('unhandledRejection', (e) => console.error('unhandled rejection:', e))
main().catch((e) => {
  console.error(e)
  finish(`FAIL ${e.name}: ${e.message}`, 1)
})
