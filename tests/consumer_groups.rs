//! Consumer groups end to end with real clients against the real broker (2 shards): kafkajs
//! members sharing partitions, failing over on LeaveGroup and on session timeout; the seed
//! article's consumer as written; confluent-kafka's cooperative-sticky assignor; kafka-python and
//! aiokafka committing and resuming; committed offsets across a clean restart and a kill -9.
//!
//! Every client program runs as a child process that is killed when its guard drops (and, through
//! PR_SET_PDEATHSIG, when the test thread dies); every wait has a deadline. The broker gets
//! test-sized group timings (GROUP_FLAGS). tests/setup-clients.sh installs the clients.

mod harness;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use harness::{clients_dir, run, stdout, Broker};
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::{ApiKey, CreateTopicsRequest, CreateTopicsResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use serde_json::Value;

const SHARDS: usize = 2;

/// Kafka's group.initial.rebalance.delay.ms (default 3000) and group.min.session.timeout.ms
/// (default 6000), made test-sized.
const GROUP_FLAGS: &[&str] = &[
    "--group-initial-rebalance-delay-ms",
    "200",
    "--group-min-session-timeout-ms",
    "1000",
];

/// session.timeout.ms of the kafkajs members (group-consumer.js; heartbeats every 500 ms).
const SESSION_TIMEOUT: Duration = Duration::from_millis(6000);

/// The tests that run several kafkajs members at once take turns: on two cores, two of them side
/// by side slow heartbeats and rebalances enough to blur the timings they assert.
static KAFKAJS_MEMBERS: Mutex<()> = Mutex::new(());

fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    KAFKAJS_MEMBERS.lock().unwrap_or_else(|e| e.into_inner())
}

fn start_broker(data: &Path, port: u16) -> Broker {
    Broker::start_on(data, SHARDS, port, GROUP_FLAGS)
}

// ---------------------------------------------------------------------------------------------
// Child processes

type Lines = Arc<Mutex<Vec<(Instant, String)>>>;

/// A client program running in the background. Its stdout and stderr lines are collected (with
/// the time each arrived) by reader threads. Dropping it kills it; a panicking test prints the
/// tail of its output.
struct Proc {
    name: String,
    child: Mutex<Child>,
    out: Lines,
    err: Lines,
}

fn collect(from: impl Read + Send + 'static) -> Lines {
    let lines: Lines = Arc::default();
    let sink = lines.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(from).lines() {
            let Ok(line) = line else { break };
            sink.lock().unwrap().push((Instant::now(), line));
        }
    });
    lines
}

impl Proc {
    fn spawn(name: &str, cmd: &mut Command) -> Proc {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        // SAFETY: prctl is async-signal-safe. The child dies with the test thread that started
        // it, so no client outlives a test, whatever way it ends.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("start {name} ({cmd:?}): {e}"));
        let out = collect(child.stdout.take().unwrap());
        let err = collect(child.stderr.take().unwrap());
        Proc {
            name: name.into(),
            child: Mutex::new(child),
            out,
            err,
        }
    }

    fn pid(&self) -> i32 {
        self.child.lock().unwrap().id() as i32
    }

    fn signal(&self, sig: i32) {
        // SAFETY: a plain kill(2) of our own child, which has not been reaped while we hold it.
        let r = unsafe { libc::kill(self.pid(), sig) };
        assert_eq!(r, 0, "signal {sig} to {}", self.name);
    }

    fn lines(&self) -> Vec<(Instant, String)> {
        self.out.lock().unwrap().clone()
    }

    /// The stdout lines that are JSON objects, with their arrival times.
    fn json(&self) -> Vec<(Instant, Value)> {
        self.lines()
            .into_iter()
            .filter_map(|(t, l)| {
                serde_json::from_str::<Value>(&l)
                    .ok()
                    .filter(Value::is_object)
                    .map(|v| (t, v))
            })
            .collect()
    }

    fn exited(&self) -> Option<ExitStatus> {
        self.child.lock().unwrap().try_wait().unwrap()
    }

    fn assert_running(&self) {
        if let Some(status) = self.exited() {
            panic!("{} exited early ({status})", self.name);
        }
    }

    fn wait_exit(&self, secs: u64) -> ExitStatus {
        wait_until(secs, &format!("{} to exit", self.name), || self.exited())
    }

    /// Waits until `check` accepts the stdout lines collected so far.
    fn wait_until<T>(
        &self,
        secs: u64,
        what: &str,
        mut check: impl FnMut(&[(Instant, String)]) -> Option<T>,
    ) -> T {
        wait_until(secs, &format!("{}: {what}", self.name), || {
            let found = check(&self.lines());
            if found.is_none() {
                self.assert_running();
            }
            found
        })
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let child = self.child.get_mut().unwrap();
        let _ = child.kill();
        let _ = child.wait();
        if std::thread::panicking() {
            for (stream, lines) in [("stdout", &self.out), ("stderr", &self.err)] {
                let lines = lines.lock().unwrap();
                eprintln!(
                    "--- {} {stream} (last 60 of {} lines) ---",
                    self.name,
                    lines.len()
                );
                for (_, l) in lines.iter().skip(lines.len().saturating_sub(60)) {
                    eprintln!("{l}");
                }
            }
        }
    }
}

/// Polls `check` every 50 ms until it returns Some, or panics after `secs`.
fn wait_until<T>(secs: u64, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {secs} s waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

// ---------------------------------------------------------------------------------------------
// Topics and records

fn create_topic(broker: &Broker, topic: &str, partitions: i32) {
    let req = CreateTopicsRequest::default()
        .with_timeout_ms(10_000)
        .with_topics(vec![CreatableTopic::default()
            .with_name(TopicName(StrBytes::from_string(topic.into())))
            .with_num_partitions(partitions)
            .with_replication_factor(1)]);
    let resp: CreateTopicsResponse = broker.client().call(ApiKey::CreateTopics, 7, &req);
    assert_eq!(resp.topics[0].error_code, 0, "create topic {topic}");
}

/// What the test produced, by (partition, offset). Topics start empty and only the test's kcat
/// writes to them, one partition at a time, so offsets are known in advance.
#[derive(Default)]
struct Produced {
    records: BTreeMap<(i32, i64), String>,
    next: BTreeMap<i32, i64>,
}

impl Produced {
    /// `n` records with key `k{partition}` and value `{tag}-p{partition}-o{offset}` to one
    /// partition, with kcat (acks=all).
    fn send(&mut self, broker: &Broker, topic: &str, partition: i32, tag: &str, n: i64) {
        let start = *self.next.entry(partition).or_default();
        let mut input = String::new();
        for o in start..start + n {
            let value = format!("{tag}-p{partition}-o{o}");
            input.push_str(&format!("k{partition}:{value}\n"));
            self.records.insert((partition, o), value);
        }
        self.next.insert(partition, start + n);
        let mut kcat = Command::new("timeout")
            .args(["30", "kcat", "-b", &broker.addr(), "-P", "-t", topic])
            .args(["-p", &partition.to_string(), "-K:", "-X", "acks=all"])
            .stdin(Stdio::piped())
            .spawn()
            .expect("start kcat");
        kcat.stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
        let status = kcat.wait().unwrap();
        assert!(status.success(), "kcat produced to {topic}/{partition}");
    }

    /// Every produced record was processed exactly once, and what was processed is what was
    /// produced at that offset.
    fn assert_each_once(&self, processed: impl IntoIterator<Item = (i32, i64, String)>) {
        let mut count: BTreeMap<(i32, i64), usize> = BTreeMap::new();
        for (p, o, v) in processed {
            assert_eq!(
                self.records.get(&(p, o)),
                Some(&v),
                "record at {p}/{o} is the one produced there"
            );
            *count.entry((p, o)).or_default() += 1;
        }
        let missing: Vec<_> = self
            .records
            .keys()
            .filter(|k| !count.contains_key(k))
            .collect();
        let twice: Vec<_> = count.iter().filter(|(_, n)| **n > 1).collect();
        assert!(
            missing.is_empty() && twice.is_empty(),
            "each record once: never processed {missing:?}; processed more than once \
             ((partition, offset), times) {twice:?}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// kafkajs members (tests/clients/node/group-consumer.js)

struct JsConsumer(Proc);

#[derive(Clone, Debug)]
struct Rec {
    p: i32,
    o: i64,
    v: String,
    at: Instant,
}

fn js_consumer(broker: &Broker, group: &str, topic: &str, name: &str) -> JsConsumer {
    let mut cmd = harness::node("group-consumer.js", &broker.addr());
    cmd.args([group, topic, &SESSION_TIMEOUT.as_millis().to_string()]);
    JsConsumer(Proc::spawn(name, &mut cmd))
}

fn partitions_of(v: &Value) -> Vec<i32> {
    v.as_array()
        .expect("partition list")
        .iter()
        .map(|p| p.as_i64().unwrap() as i32)
        .collect()
}

impl JsConsumer {
    fn events(&self, kind: &str) -> Vec<(Instant, Value)> {
        self.0
            .json()
            .into_iter()
            .filter(|(_, v)| v["event"] == kind)
            .collect()
    }

    /// Each assignment received (GROUP_JOIN), in order.
    fn joins(&self) -> Vec<(Instant, Vec<i32>)> {
        self.events("join")
            .into_iter()
            .map(|(t, v)| (t, partitions_of(&v["partitions"])))
            .collect()
    }

    fn records(&self) -> Vec<Rec> {
        self.0
            .json()
            .into_iter()
            .filter(|(_, v)| v.get("event").is_none())
            .map(|(at, v)| Rec {
                p: v["p"].as_i64().unwrap() as i32,
                o: v["o"].as_i64().unwrap(),
                v: v["v"].as_str().unwrap().to_string(),
                at,
            })
            .collect()
    }

    /// Highest offset committed per partition (the next offset to read).
    fn committed(&self) -> BTreeMap<i32, i64> {
        let mut c = BTreeMap::new();
        for (_, v) in self.events("commit") {
            let (p, o) = (v["p"].as_i64().unwrap() as i32, v["o"].as_i64().unwrap());
            let e = c.entry(p).or_insert(o);
            *e = (*e).max(o);
        }
        c
    }
}

/// True when the lists are non-empty, disjoint and together are partitions 0..n.
fn is_partitioning(assignments: &[Vec<i32>], n: i32) -> bool {
    let mut all = BTreeSet::new();
    assignments.iter().all(|a| !a.is_empty())
        && assignments.iter().flatten().all(|p| all.insert(*p))
        && all == (0..n).collect()
}

/// Waits until each consumer has received an assignment (JoinGroup + SyncGroup) after `since`,
/// their latest assignments split partitions 0..n between them, and no new assignment arrived
/// for a second. Returns the assignments, in the consumers' order.
fn wait_stable_assignment(
    consumers: &[&JsConsumer],
    since: Instant,
    n: i32,
    secs: u64,
) -> Vec<Vec<i32>> {
    let mut candidate: Option<(Vec<Vec<i32>>, usize, Instant)> = None;
    let what = format!(
        "{} consumers to split {n} partitions between them",
        consumers.len()
    );
    wait_until(secs, &what, || {
        for c in consumers {
            c.0.assert_running();
        }
        let joins: Vec<_> = consumers.iter().map(|c| c.joins()).collect();
        let count: usize = joins.iter().map(Vec::len).sum();
        let latest: Option<Vec<Vec<i32>>> = joins
            .iter()
            .map(|j| {
                j.last()
                    .filter(|(t, _)| *t >= since)
                    .map(|(_, a)| a.clone())
            })
            .collect();
        match latest.filter(|l| is_partitioning(l, n)) {
            Some(l) => match &candidate {
                Some((c, k, t)) if *c == l && *k == count => {
                    (t.elapsed() >= Duration::from_secs(1)).then_some(l)
                }
                _ => {
                    candidate = Some((l, count, Instant::now()));
                    None
                }
            },
            None => {
                candidate = None;
                None
            }
        }
    })
}

fn all_records(consumers: &[&JsConsumer]) -> Vec<Rec> {
    consumers.iter().flat_map(|c| c.records()).collect()
}

/// Waits until every produced record has been processed by one of `consumers`, while the `live`
/// ones keep running.
fn wait_processed(
    consumers: &[&JsConsumer],
    live: &[&JsConsumer],
    produced: &Produced,
    secs: u64,
    what: &str,
) {
    wait_until(secs, what, || {
        for c in live {
            c.0.assert_running();
        }
        let seen: BTreeSet<(i32, i64)> =
            all_records(consumers).iter().map(|r| (r.p, r.o)).collect();
        produced
            .records
            .keys()
            .all(|k| seen.contains(k))
            .then_some(())
    })
}

/// Waits until the group's commits reached the end of every partition.
fn wait_committed(consumers: &[&JsConsumer], produced: &Produced, secs: u64) {
    wait_until(secs, "commits past every processed record", || {
        let mut committed: BTreeMap<i32, i64> = BTreeMap::new();
        for c in consumers {
            for (p, o) in c.committed() {
                let e = committed.entry(p).or_insert(o);
                *e = (*e).max(o);
            }
        }
        (committed == produced.next).then_some(())
    })
}

fn as_triples(records: &[Rec]) -> Vec<(i32, i64, String)> {
    records.iter().map(|r| (r.p, r.o, r.v.clone())).collect()
}

// ---------------------------------------------------------------------------------------------
// Python clients that take N records in a group and commit (tests/clients/python/group_*.py)

fn python(script: &str) -> Command {
    let mut c = Command::new("python3");
    c.arg(clients_dir().join("python").join(script));
    c
}

/// One run of a group_take_*.py script: the records it took and the first offset it saw in
/// each partition.
#[derive(Debug)]
struct Take {
    taken: Vec<(i32, i64, String)>,
    first: BTreeMap<i32, i64>,
}

fn take(script: &str, broker: &Broker, topic: &str, group: &str, n: usize, mode: &str) -> Take {
    let mut cmd = python(script);
    cmd.args([&broker.addr(), topic, group, &n.to_string()]);
    if !mode.is_empty() {
        cmd.arg(mode);
    }
    let out = stdout(&run(&mut cmd, 60));
    let line = out.lines().last().unwrap_or_default();
    let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{script}: {e}: {out}"));
    let taken: Vec<_> = v["taken"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r[0].as_i64().unwrap() as i32,
                r[1].as_i64().unwrap(),
                r[2].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(taken.len(), n, "{script} took {n} records");
    let first = v["first"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(p, o)| (p.parse().unwrap(), o.as_i64().unwrap()))
        .collect();
    Take { taken, first }
}

/// The group's committed offsets for every partition (None: nothing committed), read with
/// kafka-python (FindCoordinator + OffsetFetch).
fn committed(broker: &Broker, topic: &str, group: &str) -> BTreeMap<i32, Option<i64>> {
    let out = stdout(&run(
        python("group_committed.py").args([&broker.addr(), topic, group]),
        60,
    ));
    let v: Value = serde_json::from_str(out.lines().last().unwrap_or_default())
        .unwrap_or_else(|e| panic!("group_committed.py: {e}: {out}"));
    v.as_object()
        .unwrap()
        .iter()
        .map(|(p, o)| (p.parse().unwrap(), o.as_i64()))
        .collect()
}

/// The commits are exactly past the last record the runs so far took from each partition.
/// (A partition nothing was taken from may show no commit or a commit of 0.)
fn assert_committed_after(committed: &BTreeMap<i32, Option<i64>>, runs: &[&Take]) {
    let mut last: BTreeMap<i32, i64> = BTreeMap::new();
    for (p, o, _) in runs.iter().flat_map(|r| &r.taken) {
        let e = last.entry(*p).or_insert(*o);
        *e = (*e).max(*o);
    }
    for (p, c) in committed {
        match last.get(p) {
            Some(o) => assert_eq!(*c, Some(o + 1), "partition {p} committed past offset {o}"),
            None => assert!(matches!(c, None | Some(0)), "partition {p}: {c:?}"),
        }
    }
}

/// The next member of the group started each partition exactly at the committed offset.
fn assert_resumed_at(committed: &BTreeMap<i32, Option<i64>>, next: &Take) {
    for (p, first) in &next.first {
        let c = committed.get(p).copied().flatten().unwrap_or(0);
        assert_eq!(
            *first, c,
            "partition {p}: resumed at the committed offset {c}"
        );
    }
}

fn all_taken(runs: &[&Take]) -> Vec<(i32, i64, String)> {
    runs.iter().flat_map(|r| r.taken.clone()).collect()
}

/// Three kafkajs members of `group` share the new 3-partition `topic`, one partition each.
/// Once their assignment is stable, `per_partition` records go to every partition and are
/// processed and committed. Returns the members, their assignment and what was produced.
fn three_js_members(
    broker: &Broker,
    topic: &str,
    group: &str,
    per_partition: i64,
) -> (Vec<JsConsumer>, Vec<Vec<i32>>, Produced) {
    create_topic(broker, topic, 3);
    let started = Instant::now();
    let consumers: Vec<JsConsumer> = (0..3)
        .map(|i| js_consumer(broker, group, topic, &format!("kafkajs-{i}")))
        .collect();
    let all: Vec<&JsConsumer> = consumers.iter().collect();
    let assigned = wait_stable_assignment(&all, started, 3, 45);
    assert!(
        assigned.iter().all(|a| a.len() == 1),
        "one partition each: {assigned:?}"
    );
    let mut produced = Produced::default();
    for p in 0..3 {
        produced.send(broker, topic, p, "before", per_partition);
    }
    let what = format!("the first {} records processed", 3 * per_partition);
    wait_processed(&all, &all, &produced, 30, &what);
    wait_committed(&all, &produced, 15);
    (consumers, assigned, produced)
}

// ---------------------------------------------------------------------------------------------
// 1. kafkajs: three members share three partitions; one leaves; nothing is processed twice.

#[test]
fn kafkajs_members_share_partitions_and_take_over_after_leave_group() {
    let _turn = one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let broker = start_broker(&dir.path().join("data"), harness::free_port());
    let topic = "orders";
    let (consumers, assigned, mut produced) = three_js_members(&broker, topic, "order-workers", 20);
    let all: Vec<&JsConsumer> = consumers.iter().collect();
    for (c, a) in consumers.iter().zip(&assigned) {
        let foreign: Vec<_> = c.records().into_iter().filter(|r| r.p != a[0]).collect();
        assert!(
            foreign.is_empty(),
            "{} owns {a:?} and processed only that: {foreign:?}",
            c.0.name
        );
    }

    // SIGTERM: consumer.disconnect() sends LeaveGroup; the other two rebalance at once.
    let (leaver, rest) = consumers.split_first().unwrap();
    let moved = assigned[0][0];
    let left_at = Instant::now();
    leaver.0.signal(libc::SIGTERM);
    let status = leaver.0.wait_exit(20);
    assert!(status.success(), "kafkajs-0 disconnected cleanly: {status}");
    assert!(!leaver.events("stopped").is_empty(), "kafkajs-0 left");
    let rest: Vec<&JsConsumer> = rest.iter().collect();
    let reassigned = wait_stable_assignment(&rest, left_at, 3, 30);
    assert!(
        reassigned.iter().any(|a| a.contains(&moved)),
        "partition {moved} moved to a remaining member: {reassigned:?}"
    );
    // LeaveGroup, not the session timeout, started that rebalance.
    let rebalanced = rest
        .iter()
        .map(|c| c.joins().last().unwrap().0)
        .max()
        .unwrap()
        - left_at;
    assert!(
        rebalanced < SESSION_TIMEOUT - Duration::from_secs(1),
        "the others had the leaver's partition {rebalanced:?} after the SIGTERM; a LeaveGroup \
         should not wait for the session timeout ({SESSION_TIMEOUT:?})"
    );

    for p in 0..3 {
        produced.send(&broker, topic, p, "after", 10);
    }
    wait_processed(
        &all,
        &rest,
        &produced,
        30,
        "the 30 records sent after the leave",
    );
    let records = all_records(&all);
    assert!(
        leaver.records().iter().all(|r| r.at < left_at),
        "the member that left processed nothing afterwards"
    );
    let new_owner = rest
        .iter()
        .zip(&reassigned)
        .find(|(_, a)| a.contains(&moved))
        .unwrap()
        .0;
    let resumed: Vec<i64> = new_owner
        .records()
        .iter()
        .filter(|r| r.p == moved)
        .map(|r| r.o)
        .collect();
    assert_eq!(
        resumed,
        (20..30).collect::<Vec<_>>(),
        "the new owner of partition {moved} started at the leaver's commit"
    );
    produced.assert_each_once(as_triples(&records));
}

// ---------------------------------------------------------------------------------------------
// 2. kafkajs: a member that stops heart-beating is removed after session.timeout.ms.

#[test]
fn kafkajs_member_that_stops_heartbeating_is_removed_after_the_session_timeout() {
    let _turn = one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let broker = start_broker(&dir.path().join("data"), harness::free_port());
    let topic = "payments";
    let (consumers, assigned, mut produced) =
        three_js_members(&broker, topic, "payment-workers", 10);
    let all: Vec<&JsConsumer> = consumers.iter().collect();

    // SIGSTOP: the process keeps its connections but sends nothing, heartbeats included.
    let (frozen, rest) = consumers.split_first().unwrap();
    let px = assigned[0][0];
    let frozen_records = frozen.records().len();
    let stopped_at = Instant::now();
    frozen.0.signal(libc::SIGSTOP);
    produced.send(&broker, topic, px, "while-stopped", 10);
    let rest: Vec<&JsConsumer> = rest.iter().collect();
    let taken_over = wait_until(
        SESSION_TIMEOUT.as_secs() + 30,
        &format!("another member to process partition {px}'s new records"),
        || {
            for c in &rest {
                c.0.assert_running();
            }
            all_records(&rest)
                .into_iter()
                .filter(|r| r.p == px)
                .map(|r| r.at)
                .min()
        },
    );
    let waited = taken_over - stopped_at;
    assert!(
        waited >= SESSION_TIMEOUT - Duration::from_millis(2000),
        "the stopped member kept partition {px} until its session timed out \
         ({SESSION_TIMEOUT:?}); taken over after {waited:?}"
    );
    let reassigned = wait_stable_assignment(&rest, stopped_at, 3, 20);
    assert!(reassigned.iter().any(|a| a.contains(&px)), "{reassigned:?}");
    wait_processed(
        &all,
        &rest,
        &produced,
        20,
        "the records sent while the member was stopped",
    );
    let px_offsets: Vec<i64> = all_records(&rest)
        .iter()
        .filter(|r| r.p == px)
        .map(|r| r.o)
        .collect();
    assert_eq!(
        px_offsets,
        (10..20).collect::<Vec<_>>(),
        "partition {px} resumed at the stopped member's last commit"
    );

    // The two survivors keep serving every partition.
    for p in 0..3 {
        produced.send(&broker, topic, p, "after", 5);
    }
    wait_processed(
        &all,
        &rest,
        &produced,
        20,
        "the records sent after the takeover",
    );
    assert_eq!(
        frozen.records().len(),
        frozen_records,
        "stopped means stopped"
    );
    assert!(frozen.0.exited().is_none(), "still there, stopped");
    frozen.0.signal(libc::SIGKILL);
    frozen.0.wait_exit(10);
    produced.assert_each_once(as_triples(&all_records(&all)));
}

// ---------------------------------------------------------------------------------------------
// 3. Seed 002's consumer, as written, reads what the seed producer sent.

#[test]
fn kafkajs_seed_consumer_receives_the_seed_producers_events() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start_broker(&dir.path().join("data"), harness::free_port());
    let seed = |file: &str| harness::node(&format!("seeds/{file}"), &broker.addr());
    assert!(stdout(&run(&mut seed("kafka-topic.js"), 60)).contains("Topic created!"));
    assert!(stdout(&run(&mut seed("kafka-producer.js"), 60)).contains("Message sent!"));
    run(
        harness::node("keyed-producer.js", &broker.addr()).args(["user-events", "30"]),
        60,
    );

    // groupId 'notification-service', fromBeginning: true, kafkajs defaults otherwise.
    let consumer = Proc::spawn("seed kafka-consumer.js", &mut seed("kafka-consumer.js"));
    let received = |lines: &[(Instant, String)]| -> Vec<String> {
        lines
            .iter()
            .filter(|(_, l)| l.starts_with("Received event:"))
            .map(|(_, l)| l.clone())
            .collect()
    };
    let events = consumer.wait_until(60, "31 events received", |lines| {
        let r = received(lines);
        (r.len() >= 31).then_some(r)
    });
    let signup = "Received event: { event: 'signup', userId: 'user-1' }";
    assert_eq!(
        events.iter().filter(|l| *l == signup).count(),
        1,
        "{events:#?}"
    );
    for k in 0..10 {
        for s in 1..=3 {
            let line = format!("Received event: {{ key: 'user-{k}', seq: {s} }}");
            assert!(events.contains(&line), "{line} in {events:#?}");
        }
    }

    // "run it again – you'll see a new event appear" in the running consumer.
    assert!(stdout(&run(&mut seed("kafka-producer.js"), 60)).contains("Message sent!"));
    let events = consumer.wait_until(30, "the new event received", |lines| {
        let r = received(lines);
        (r.len() >= 32).then_some(r)
    });
    assert_eq!(events.iter().filter(|l| *l == signup).count(), 2);
    std::thread::sleep(Duration::from_millis(1000));
    assert_eq!(received(&consumer.lines()).len(), 32, "each event once");
    consumer.signal(libc::SIGKILL);
    consumer.wait_exit(10);
}

/// Seed 000's producer (no key, no topic created beforehand) and its `billing-service`
/// consumer (kafkajs defaults: a new group starts at the log end), both as written.
#[test]
fn kafkajs_seed_000_billing_consumer_processes_an_unkeyed_order() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start_broker(&dir.path().join("data"), harness::free_port());
    let seed = |file: &str| harness::node(&format!("seeds/{file}"), &broker.addr());
    let consumer = Proc::spawn(
        "seed billing-consumer.mjs",
        &mut seed("billing-consumer.mjs"),
    );
    consumer.wait_until(60, "the consumer joined", |lines| {
        lines
            .iter()
            .any(|(_, l)| l.contains("Consumer has joined the group"))
            .then_some(())
    });
    // A new group starts at the end of the log, which it looks up just after joining: an order
    // sent in that moment is (rightly) not seen, so send until one is processed.
    let processed = |lines: &[(Instant, String)]| -> usize {
        let order = "Processing order: 123";
        lines.iter().filter(|(_, l)| l == order).count()
    };
    let mut sent = 0;
    while processed(&consumer.lines()) == 0 {
        assert!(sent < 5, "no order processed after {sent} sent");
        run(&mut seed("orders-producer.mjs"), 60);
        sent += 1;
        let deadline = Instant::now() + Duration::from_secs(5);
        while processed(&consumer.lines()) == 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        processed(&consumer.lines()) <= sent,
        "each order at most once"
    );
    consumer.signal(libc::SIGKILL);
    consumer.wait_exit(10);
}

// ---------------------------------------------------------------------------------------------
// 4. confluent-kafka cooperative-sticky: a second member takes partitions over incrementally.

#[test]
fn confluent_cooperative_sticky_revokes_only_the_partitions_that_move() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start_broker(&dir.path().join("data"), harness::free_port());
    let (topic, group) = ("inventory", "inventory-service");
    create_topic(&broker, topic, 4);
    let mut produced = Produced::default();
    for p in 0..4 {
        produced.send(&broker, topic, p, "stock", 10);
    }
    let out = stdout(&run(
        python("cooperative.py").args([&broker.addr(), topic, group, "40"]),
        90,
    ));
    let s: Value = serde_json::from_str(out.lines().last().unwrap_or_default())
        .unwrap_or_else(|e| panic!("cooperative.py: {e}: {out}"));
    let ctx = serde_json::to_string_pretty(&s).unwrap();
    assert_eq!(s["errors"], serde_json::json!([]), "{ctx}");
    assert_eq!(
        s["done"], true,
        "the group settled with every record consumed: {ctx}"
    );
    assert_eq!(
        partitions_of(&s["a_owned_alone"]),
        vec![0, 1, 2, 3],
        "{ctx}"
    );

    // The events after B was created (by count: A's own assignment may share B's millisecond).
    let before_b = s["events_before_b"].as_u64().unwrap() as usize;
    let after: Vec<(String, String, Vec<i32>, f64)> = s["events"]
        .as_array()
        .unwrap()
        .iter()
        .skip(before_b)
        .map(|e| {
            (
                e["c"].as_str().unwrap().to_string(),
                e["ev"].as_str().unwrap().to_string(),
                partitions_of(&e["parts"]),
                e["t"].as_f64().unwrap(),
            )
        })
        .collect();
    let of = |c: &str, ev: &str| -> Vec<(Vec<i32>, f64)> {
        after
            .iter()
            .filter(|(cc, e, parts, _)| cc == c && e == ev && !parts.is_empty())
            .map(|(_, _, parts, t)| (parts.clone(), *t))
            .collect()
    };
    let a_revoked = of("A", "revoke");
    assert!(!a_revoked.is_empty(), "A gave partitions up: {ctx}");
    assert!(
        a_revoked.iter().all(|(parts, _)| parts.len() < 4),
        "never all four in one revoke: {ctx}"
    );
    assert!(
        of("A", "lost").is_empty() && of("B", "lost").is_empty(),
        "{ctx}"
    );
    assert!(of("A", "assign").is_empty(), "A got nothing new: {ctx}");
    assert!(of("B", "revoke").is_empty(), "{ctx}");
    let revoked: BTreeSet<i32> = a_revoked.iter().flat_map(|(p, _)| p.clone()).collect();
    let b_assigned = of("B", "assign");
    let first_revoke = a_revoked.iter().map(|(_, t)| *t).fold(f64::MAX, f64::min);
    for (parts, t) in &b_assigned {
        assert!(
            parts.iter().all(|p| revoked.contains(p)) && *t >= first_revoke,
            "B only gets partitions A revoked first: {ctx}"
        );
    }

    let a = partitions_of(&s["owned"]["A"]);
    let b = partitions_of(&s["owned"]["B"]);
    assert!(
        is_partitioning(&[a.clone(), b.clone()], 4),
        "A and B own all four, disjoint: {ctx}"
    );
    assert_eq!(s["assignment"]["A"], serde_json::json!(a), "{ctx}");
    assert_eq!(s["assignment"]["B"], serde_json::json!(b), "{ctx}");
    let kept: BTreeSet<i32> = (0..4).filter(|p| !revoked.contains(p)).collect();
    assert_eq!(
        a.iter().copied().collect::<BTreeSet<_>>(),
        kept,
        "A kept the rest: {ctx}"
    );
    assert_eq!(s["distinct"], 40, "{ctx}");
}

// ---------------------------------------------------------------------------------------------
// 5. kafka-python and aiokafka: commit (manual and auto), close, resume at the commit.

#[test]
fn kafka_python_resumes_at_the_committed_offset_after_manual_and_auto_commit() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start_broker(&dir.path().join("data"), harness::free_port());
    let topic = "ledger";
    create_topic(&broker, topic, 3);
    let mut produced = Produced::default();
    for p in 0..3 {
        produced.send(&broker, topic, p, "entry", 20);
    }
    let script = "group_take_kafka_python.py";
    for (group, mode) in [("ledger-manual", "manual"), ("ledger-auto", "auto")] {
        assert!(
            committed(&broker, topic, group)
                .values()
                .all(Option::is_none),
            "{group} starts without commits"
        );
        let first = take(script, &broker, topic, group, 25, mode);
        assert!(
            first.first.values().all(|o| *o == 0),
            "{mode}: a new group starts at the earliest offset: {first:?}"
        );
        let c1 = committed(&broker, topic, group);
        assert_committed_after(&c1, &[&first]);
        let second = take(script, &broker, topic, group, 35, mode);
        assert_resumed_at(&c1, &second);
        produced.assert_each_once(all_taken(&[&first, &second]));
        let c2 = committed(&broker, topic, group);
        assert!(
            (0..3).all(|p| c2[&p] == Some(20)),
            "{mode}: committed to the end: {c2:?}"
        );
    }
}

#[test]
fn aiokafka_resumes_at_the_committed_offset_and_kafka_python_continues_from_it() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start_broker(&dir.path().join("data"), harness::free_port());
    let (topic, group) = ("audit", "audit-service");
    create_topic(&broker, topic, 3);
    let mut produced = Produced::default();
    for p in 0..3 {
        produced.send(&broker, topic, p, "event", 15);
    }
    let aio = "group_take_aiokafka.py";
    let first = take(aio, &broker, topic, group, 15, "manual");
    let c1 = committed(&broker, topic, group);
    assert_committed_after(&c1, &[&first]);
    let second = take(aio, &broker, topic, group, 15, "auto");
    assert_resumed_at(&c1, &second);
    let c2 = committed(&broker, topic, group);
    assert_committed_after(&c2, &[&first, &second]);
    // Another client library in the same group continues from aiokafka's commits.
    let third = take(
        "group_take_kafka_python.py",
        &broker,
        topic,
        group,
        15,
        "manual",
    );
    assert_resumed_at(&c2, &third);
    produced.assert_each_once(all_taken(&[&first, &second, &third]));
    let c3 = committed(&broker, topic, group);
    assert!((0..3).all(|p| c3[&p] == Some(15)), "{c3:?}");
}

// ---------------------------------------------------------------------------------------------
// 6. Committed offsets survive a broker restart: clean stop, and kill -9.

fn committed_offsets_survive_restart(crash: bool) {
    let dir = tempfile::tempdir().unwrap();
    let broker = start_broker(&dir.path().join("data"), harness::free_port());
    let (topic, group) = ("billing", "billing-service");
    create_topic(&broker, topic, 3);
    let mut produced = Produced::default();
    for p in 0..3 {
        produced.send(&broker, topic, p, "invoice", 20);
    }
    let script = "group_take_confluent.py";
    let first = take(script, &broker, topic, group, 25, "");
    let before = committed(&broker, topic, group);
    assert_committed_after(&before, &[&first]);

    let (data, port) = if crash { broker.kill() } else { broker.stop() };
    let broker = start_broker(&data, port);
    assert_eq!(
        committed(&broker, topic, group),
        before,
        "committed offsets after the restart"
    );
    let second = take(script, &broker, topic, group, 35, "");
    assert_resumed_at(&before, &second);
    produced.assert_each_once(all_taken(&[&first, &second]));
    let after = committed(&broker, topic, group);
    assert!((0..3).all(|p| after[&p] == Some(20)), "{after:?}");
}

#[test]
fn committed_offsets_survive_a_clean_broker_restart() {
    committed_offsets_survive_restart(false);
}

#[test]
fn committed_offsets_survive_a_broker_kill_9() {
    committed_offsets_survive_restart(true);
}

// ---------------------------------------------------------------------------------------------
// 7. Seed 003's event chain: order.created → payment-service → payment.completed, and a
//    notification-service subscribed to both; two groups, fromBeginning: false (latest).

#[test]
fn kafkajs_seed_event_chain_runs_through_two_groups() {
    let _turn = one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let broker = start_broker(&dir.path().join("data"), harness::free_port());
    let seed = |file: &str| harness::node(&format!("seeds/{file}"), &broker.addr());
    // The topics do not exist yet: the consumers' subscriptions create them (Metadata).
    let payments = Proc::spawn("seed payment-consumer.js", &mut seed("payment-consumer.js"));
    let notifications = Proc::spawn(
        "seed notification-consumer.js",
        &mut seed("notification-consumer.js"),
    );
    let count = |p: &Proc, text: &str| p.lines().iter().filter(|(_, l)| l == text).count();
    let processing = "Processing payment for order: ORD-1001";
    let processed = "Payment of ₹1999 processed for order ORD-1001";
    let confirmation = "Sending order confirmation email for ORD-1001";
    let receipt = "Sending payment receipt for ORD-1001";
    let publish = || {
        let out = stdout(&run(&mut seed("order-producer.js"), 60));
        assert!(out.contains("Order event published: ORD-1001"), "{out}");
    };

    // fromBeginning: false starts a new group at the end of the log once it has its partitions,
    // so orders published before that are not seen: publish until the chain has run once.
    let mut published = 0;
    wait_until(60, "an order to go through the whole chain", || {
        payments.assert_running();
        notifications.assert_running();
        publish();
        published += 1;
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            if count(&notifications, receipt) > 0 && count(&notifications, confirmation) > 0 {
                return Some(());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        None
    });
    // Let stragglers land (an idle kafkajs fetch waits up to 5 s: maxWaitTimeInMs), then each
    // further order goes through every step exactly once.
    let now = || {
        [
            count(&payments, processing),
            count(&payments, processed),
            count(&notifications, confirmation),
            count(&notifications, receipt),
        ]
    };
    let mut before = now();
    wait_until(30, "the chain to go quiet", || {
        std::thread::sleep(Duration::from_secs(6));
        let later = now();
        let quiet = later == before;
        before = later;
        quiet.then_some(())
    });
    assert!(
        before.iter().all(|n| *n <= published),
        "nothing seen twice: {before:?} after {published} orders"
    );
    for round in 1..=2 {
        publish();
        let want = before.map(|n| n + round);
        wait_until(
            30,
            &format!("order {round} after the first through the chain"),
            || now().iter().zip(&want).all(|(n, w)| n >= w).then_some(()),
        );
        std::thread::sleep(Duration::from_millis(1000));
        assert_eq!(now(), want, "each step once per order");
    }
}

// ---------------------------------------------------------------------------------------------
// Lag reporting

/// `shardlog groups describe` while a live member is behind: per partition the committed offset,
/// the log end offset, their difference as LAG, and the member that owns the partition.
#[test]
fn groups_describe_shows_the_lag_of_a_member_that_is_behind() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start_broker(&dir.path().join("data"), harness::free_port());
    create_topic(&broker, "lagging", 2);
    let mut produced = Produced::default();
    produced.send(&broker, "lagging", 0, "lag", 30);
    produced.send(&broker, "lagging", 1, "lag", 20);
    let member = Proc::spawn(
        "group_hold_confluent.py",
        python("group_hold_confluent.py").args([&broker.addr(), "lagging", "laggards", "12"]),
    );
    let report = wait_until(60, "the member to take 12 records and commit", || {
        member.json().into_iter().map(|(_, v)| v).next()
    });
    let committed: BTreeMap<i32, i64> = report["committed"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(p, o)| (p.parse().unwrap(), o.as_i64().unwrap()))
        .filter(|(_, o)| *o >= 0) // librdkafka's OFFSET_INVALID (-1001): nothing committed
        .collect();
    assert_eq!(committed.values().sum::<i64>(), 12, "{report}");
    let out = stdout(&run(
        Command::new(env!("CARGO_BIN_EXE_shardlog")).args([
            "groups",
            "describe",
            "laggards",
            "--bootstrap-server",
            &broker.addr(),
        ]),
        30,
    ));
    let rows: Vec<Vec<&str>> = out
        .lines()
        .filter(|l| l.starts_with("laggards"))
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(rows.len(), 2, "one row per partition:\n{out}");
    let mut total_lag = 0;
    for (row, (end, p)) in rows.iter().zip([(30, 0), (20, 1)]) {
        let current = committed.get(&p).copied().unwrap_or(-1);
        let (shown_current, lag) = if current < 0 {
            ("-".to_string(), "-".to_string())
        } else {
            total_lag += end - current;
            (current.to_string(), (end - current).to_string())
        };
        assert_eq!(
            row[1..6],
            [
                "lagging",
                &p.to_string(),
                &shown_current,
                &end.to_string(),
                &lag
            ],
            "{out}"
        );
        assert_ne!(
            row[6], "-",
            "partition {p} is owned by the live member:\n{out}"
        );
        assert_eq!(row[8], "ck-hold", "{out}");
    }
    let uncommitted: i64 = [(0, 30), (1, 20)]
        .iter()
        .filter(|(p, _)| !committed.contains_key(p))
        .map(|(_, end)| end)
        .sum();
    assert_eq!(total_lag + uncommitted, 50 - 12, "{out}");
}

/// The eager assignors (range, roundrobin, sticky) run in the client; the broker chooses the
/// protocol and hands the leader's plan out. Two kafka-python members split 4 partitions.
#[test]
fn kafka_python_eager_assignors_split_partitions() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start_broker(&dir.path().join("data"), harness::free_port());
    create_topic(&broker, "assigned", 4);
    for assignor in ["range", "roundrobin", "sticky"] {
        let group = format!("assign-{assignor}");
        let out = stdout(&run(
            python("group_assignors.py").args([&broker.addr(), "assigned", &group, assignor]),
            90,
        ));
        let v: Value = serde_json::from_str(out.lines().last().unwrap_or_default())
            .unwrap_or_else(|e| panic!("{assignor}: {e}: {out}"));
        let (a, b) = (partitions_of(&v["a"]), partitions_of(&v["b"]));
        assert_eq!((a.len(), b.len()), (2, 2), "{assignor}: {out}");
        assert_eq!(
            v["protocol"], assignor,
            "the broker chose the members' protocol: {out}"
        );
        let listed = stdout(&run(
            Command::new(env!("CARGO_BIN_EXE_shardlog")).args([
                "groups",
                "list",
                "--state",
                "--bootstrap-server",
                &broker.addr(),
            ]),
            30,
        ));
        assert!(listed.contains(&group), "{listed}");
    }
}
