//! Three brokers started as a cluster (`--node-id`, `--cluster-listen`, `--voters`) on
//! loopback elect one metadata leader among their voters; after kill -9 of the leader the
//! other two elect a new one (the time is measured and printed); the killed broker,
//! restarted on its data directory, rejoins and follows the same leader. Each broker
//! registers itself in the metadata log, so every broker lists all three. What each broker
//! sees is read from its admin API (`/v1/cluster`). Real clients (kafkajs with seed 002's
//! code, kafka-python, confluent-kafka) create topics through any broker and produce to and
//! consume from partitions spread over all three, in consumer groups coordinated by
//! different brokers.

mod harness;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use harness::{run, stdout, Broker};
use kafka_protocol::messages::{
    ApiKey, FindCoordinatorRequest, FindCoordinatorResponse, GroupId, MetadataRequest,
    MetadataResponse, OffsetFetchRequest, OffsetFetchResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use serde_json::Value;
use shardlog::storage::batch::build_test_batch;
use shardlog::types::TimestampMs;

/// The body of GET `path` on the admin listener at `admin`.
fn get(admin: u16, path: &str) -> Option<String> {
    let mut s = TcpStream::connect(("127.0.0.1", admin)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    Some(text.split("\r\n\r\n").nth(1)?.to_string())
}

/// The brokers registered in the metadata log as a node sees them: (node id, Kafka port).
fn registered(admin: u16) -> Vec<(u64, u64)> {
    let v: Value =
        serde_json::from_str(&get(admin, "/v1/cluster").unwrap_or_default()).unwrap_or(Value::Null);
    let brokers = v["brokers"].as_array().cloned().unwrap_or_default();
    let b = brokers.iter();
    b.filter_map(|b| Some((b["node_id"].as_u64()?, b["port"].as_u64()?)))
        .collect()
}

/// One node's view: (metadata leader, term, applied).
fn view(admin: u16) -> Option<(Option<u64>, u64, u64)> {
    let v: Value = serde_json::from_str(&get(admin, "/v1/cluster")?).ok()?;
    assert_eq!(v["mode"], "cluster", "{v}");
    Some((
        v["metadata_leader"].as_u64(),
        v["metadata_term"].as_u64()?,
        v["metadata_applied"].as_u64()?,
    ))
}

struct Node {
    id: u64,
    dir: PathBuf,
    kafka: u16,
    admin: u16,
    shards: usize,
    broker: Option<Broker>,
}

fn start(n: &mut Node, cluster: u16, voters: &str) {
    let (id, cluster, admin) = (
        n.id.to_string(),
        format!("127.0.0.1:{cluster}"),
        format!("127.0.0.1:{}", n.admin),
    );
    let extra = [
        "--node-id",
        &id,
        "--cluster-listen",
        &cluster,
        "--voters",
        voters,
        "--admin-listen",
        &admin,
        "--broker-session-timeout-ms",
        "3000",
        "--leader-imbalance-check-interval-ms",
        "1000",
    ];
    n.broker = Some(Broker::start_on(&n.dir, n.shards, n.kafka, &extra));
}

/// Starts `n` again on its data directory and ports after it was killed or stopped. A
/// client's dial of the dead broker's port may have been given that very port as its source
/// (TCP simultaneous open to itself) and hold it for a moment: a start that finds its port
/// taken is tried again, up to three times.
fn restart(n: &mut Node, cluster: u16, voters: &str) {
    for attempt in 1.. {
        let started = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            start(n, cluster, voters);
        }));
        match started {
            Ok(()) => return,
            Err(e) => {
                let why = e.downcast_ref::<String>().map_or("", |s| s.as_str());
                if attempt == 3 || !why.contains("address in use") {
                    std::panic::resume_unwind(e);
                }
                eprintln!("broker {}'s port was taken; starting it again", n.id);
                std::thread::sleep(Duration::from_secs(1));
            }
        }
    }
}

/// Waits until every node in `nodes` reports the same leader (not `not`); returns it.
fn agreed_leader(nodes: &[&Node], not: Option<u64>, limit: Duration) -> u64 {
    let deadline = Instant::now() + limit;
    loop {
        let views: Vec<_> = nodes.iter().map(|n| view(n.admin)).collect();
        let first = views[0].and_then(|v| v.0);
        let same = views.iter().all(|v| v.map(|v| v.0) == Some(first));
        if let Some(leader) = first.filter(|l| same && Some(*l) != not) {
            return leader;
        }
        assert!(Instant::now() < deadline, "no agreed leader: {views:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Three brokers of `shards` shards each, started as one cluster.
struct Cluster {
    _tmp: tempfile::TempDir,
    ports: Vec<u16>,
    voters: String,
    nodes: Vec<Node>,
}

impl Cluster {
    /// Starts three voters, waits for a leader and for all three registrations. The ports are
    /// picked free and bound by the brokers a moment later: should another connection on the
    /// machine take one as its source port meanwhile, a broker cannot listen, and the whole
    /// cluster is started again on fresh ports (at most three times; any other failure fails).
    fn start(shards: usize) -> (Cluster, u64) {
        for attempt in 1.. {
            let started = std::panic::catch_unwind(|| Cluster::try_start(shards));
            match started {
                Ok(c) => return c,
                Err(e) => {
                    let why = e
                        .downcast_ref::<String>()
                        .map_or("", |s| s.as_str())
                        .to_string();
                    if attempt == 3 || !why.contains("Address already in use") {
                        std::panic::resume_unwind(e);
                    }
                    eprintln!("a port was taken before its broker bound it; starting again");
                }
            }
        }
        unreachable!("the loop returns or panics")
    }

    fn try_start(shards: usize) -> (Cluster, u64) {
        let tmp = tempfile::tempdir().unwrap();
        let ports: Vec<u16> = (0..3)
            .map(|_| harness::free_port_block(shards as u16))
            .collect();
        let voters = (1..=3)
            .map(|i| format!("{i}@127.0.0.1:{}", ports[i - 1]))
            .collect::<Vec<_>>()
            .join(",");
        let mut nodes: Vec<Node> = (1..=3)
            .map(|id| Node {
                id,
                dir: tmp.path().join(format!("n{id}")),
                kafka: harness::free_port(),
                admin: harness::free_port(),
                shards,
                broker: None,
            })
            .collect();
        for (i, n) in nodes.iter_mut().enumerate() {
            start(n, ports[i], &voters);
        }
        let all: Vec<&Node> = nodes.iter().collect();
        let leader = agreed_leader(&all, None, Duration::from_secs(30));
        assert!((1..=3).contains(&leader));
        // Every broker registers itself (followers' proposals go to the leader) and every
        // broker's metadata image lists all three with their Kafka listeners.
        let want: Vec<(u64, u64)> = nodes.iter().map(|n| (n.id, u64::from(n.kafka))).collect();
        let deadline = Instant::now() + Duration::from_secs(30);
        while !nodes.iter().all(|n| registered(n.admin) == want) {
            assert!(
                Instant::now() < deadline,
                "registrations: {:?}",
                registered(nodes[0].admin)
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let c = Cluster {
            _tmp: tmp,
            ports,
            voters,
            nodes,
        };
        (c, leader)
    }

    /// The Kafka address of node `id`.
    fn addr(&self, id: u64) -> String {
        format!("127.0.0.1:{}", self.nodes[id as usize - 1].kafka)
    }

    /// All three Kafka addresses, comma-separated (a bootstrap list).
    fn bootstrap(&self) -> String {
        (1..=3).map(|i| self.addr(i)).collect::<Vec<_>>().join(",")
    }
}

#[test]
fn three_voters_elect_a_metadata_leader_and_elect_again_when_it_is_killed() {
    let (cluster, leader) = Cluster::start(1);
    let Cluster {
        _tmp,
        ports,
        voters,
        mut nodes,
    } = cluster;
    let metrics = get(nodes[0].admin, "/metrics").unwrap();
    let has = |line: &str| metrics.lines().any(|l| l == line);
    assert!(
        has(&format!("shardlog_cluster_metadata_leader_id {leader}")),
        "{metrics}"
    );
    assert!(has(r#"shardlog_cluster_brokers{state="alive"} 3"#));

    // kill -9 of the leader: the other two elect a new leader.
    let li = (leader - 1) as usize;
    let killed_at = Instant::now();
    let _ = nodes[li].broker.take().unwrap().kill();
    let rest: Vec<&Node> = nodes.iter().filter(|n| n.id != leader).collect();
    let new_leader = agreed_leader(&rest, Some(leader), Duration::from_secs(30));
    let took = killed_at.elapsed();
    println!(
        "new metadata leader {new_leader} {:.0} ms after kill -9 of {leader}",
        took.as_secs_f64() * 1e3
    );
    let term_after = view(rest[0].admin).unwrap().1;

    // The killed broker comes back on its data directory and follows the new leader.
    restart(&mut nodes[li], ports[li], &voters);
    let all: Vec<&Node> = nodes.iter().collect();
    agreed_leader(&all, None, Duration::from_secs(30));
    let back = view(nodes[li].admin).unwrap();
    assert!(
        back.1 >= term_after,
        "the restarted voter is in the current term: {back:?}"
    );
    assert!(Path::new(&nodes[li].dir)
        .join("__cluster/metadata/raft.log")
        .exists());
}

/// Metadata for all topics from the broker at `port`: (broker ids, controller, each
/// partition's (index, leader) of `topic`).
fn metadata(port: u16, topic: &str) -> (Vec<i32>, i32, Vec<(i32, i32)>) {
    let resp = metadata_all(port);
    let brokers = resp.brokers.iter().map(|b| b.node_id.0).collect();
    let t = resp
        .topics
        .iter()
        .find(|t| t.name.as_ref().map(|n| n.0.as_str()) == Some(topic));
    (
        brokers,
        resp.controller_id.0,
        t.map(leaders).unwrap_or_default(),
    )
}

/// Metadata for every topic from the broker at `port`.
fn metadata_all(port: u16) -> MetadataResponse {
    let mut c = harness::client::Client::connect(port);
    let req = MetadataRequest::default().with_topics(None);
    c.call(ApiKey::Metadata, 12, &req)
}

/// A topic's (partition, leader) pairs, by partition.
fn leaders(
    t: &kafka_protocol::messages::metadata_response::MetadataResponseTopic,
) -> Vec<(i32, i32)> {
    let mut parts: Vec<(i32, i32)> = t
        .partitions
        .iter()
        .map(|p| (p.partition_index, p.leader_id.0))
        .collect();
    parts.sort_unstable();
    parts
}

/// The broker FindCoordinator names for `group`, asked at `port`: COORDINATOR_NOT_AVAILABLE
/// (15) is retried for up to 30 s, while the group logs' topic is created and its leaders
/// elected.
fn coordinator(port: u16, group: &str) -> i32 {
    let mut c = harness::client::Client::connect(port);
    let req = FindCoordinatorRequest::default().with_key(StrBytes::from_string(group.into()));
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let resp: FindCoordinatorResponse = c.call(ApiKey::FindCoordinator, 3, &req);
        if resp.error_code == 15 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
            continue;
        }
        assert_eq!(resp.error_code, 0, "{group}");
        return resp.node_id.0;
    }
}

fn python(script: &str) -> std::process::Command {
    let mut c = std::process::Command::new("python3");
    c.arg(harness::clients_dir().join("python").join(script));
    c
}

#[test]
fn real_clients_use_topics_spread_over_three_brokers() {
    let (c, _) = Cluster::start(2);
    // Seed 002's admin code, given the three brokers, creates user-events with 3 partitions
    // (kafkajs sends CreateTopics to the controller Metadata names); every broker then lists
    // the three brokers and the partitions led by all three.
    let seed = |file: &str, addr: &str| harness::node(&format!("seeds/{file}"), addr);
    let created = run(&mut seed("kafka-topic.js", &c.bootstrap()), 60);
    assert!(stdout(&created).contains("Topic created!"));
    let deadline = Instant::now() + Duration::from_secs(10);
    let leaders = loop {
        let seen: Vec<_> = (1..=3)
            .map(|i| metadata(c.nodes[i - 1].kafka, "user-events"))
            .collect();
        if seen.iter().all(|m| m == &seen[0] && m.2.len() == 3) {
            let (brokers, controller, parts) = seen[0].clone();
            assert_eq!(brokers, [1, 2, 3]);
            assert!((1..=3).contains(&controller));
            break parts.into_iter().map(|p| p.1).collect::<Vec<i32>>();
        }
        assert!(Instant::now() < deadline, "{seen:?}");
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut spread = leaders.clone();
    spread.sort_unstable();
    assert_eq!(spread, [1, 2, 3], "one partition per broker: {leaders:?}");

    // DescribeTopicPartitions (Kafka 3.8's kafka-topics) agrees with Metadata.
    {
        use kafka_protocol::messages::describe_topic_partitions_request::TopicRequest;
        use kafka_protocol::messages::{
            DescribeTopicPartitionsRequest as Req, DescribeTopicPartitionsResponse as Resp,
        };
        let mut client = harness::client::Client::connect(c.nodes[0].kafka);
        let topic =
            TopicRequest::default().with_name(TopicName(StrBytes::from_static_str("user-events")));
        let req = Req::default()
            .with_topics(vec![topic])
            .with_response_partition_limit(100);
        let resp: Resp = client.call(ApiKey::DescribeTopicPartitions, 0, &req);
        let got: Vec<i32> = resp.topics[0]
            .partitions
            .iter()
            .map(|p| p.leader_id.0)
            .collect();
        assert_eq!(got, leaders);
    }

    // A partition asked of a broker that does not serve it: NOT_LEADER_OR_FOLLOWER (6).
    let elsewhere = (leaders[0] % 3 + 1) as u64;
    let batch = build_test_batch(1, 10, TimestampMs(0));
    let mut client = harness::client::Client::connect(c.nodes[elsewhere as usize - 1].kafka);
    assert_eq!(
        client.produce_one("user-events", 0, batch.into()).0,
        6,
        "partition 0 is on broker {}",
        leaders[0]
    );

    // Seed 002's producer, then 300 keyed events, with the three brokers as the bootstrap
    // list; kafka-python reads all 301 back from the three brokers.
    let sent = run(&mut seed("kafka-producer.js", &c.bootstrap()), 60);
    assert!(stdout(&sent).contains("Message sent!"));
    let mut keyed = harness::node("keyed-producer.js", &c.bootstrap());
    run(keyed.args(["user-events", "300"]), 60);
    let read = run(
        python("read_all.py").args([&c.bootstrap(), "user-events"]),
        60,
    );
    let mut per_partition = [0usize; 3];
    for line in stdout(&read).lines() {
        let v: Value = serde_json::from_str(line).unwrap();
        per_partition[v[0].as_u64().unwrap() as usize] += 1;
    }
    assert_eq!(
        per_partition.iter().sum::<usize>(),
        301,
        "{per_partition:?}"
    );
    // The seed's keys user-0..9 hash to two of the three partitions (Kafka's murmur2).
    let used = per_partition.iter().filter(|&&n| n > 0).count();
    assert!(used >= 2, "keys spread over brokers: {per_partition:?}");

    // Seed 002's consumer (group notification-service, from the beginning) receives all 301.
    let received = seed_consumer_lines(seed("kafka-consumer.js", &c.bootstrap()), 301);
    assert_eq!(received, 301, "seed consumer");

    // Two groups coordinated by different brokers: confluent-kafka and kafka-python each take
    // every record in their group and commit; the committed offsets are read back.
    let groups = two_groups_on_different_brokers(&c);
    let take = |script: &str, group: &str, extra: &[&str]| {
        let mut cmd = python(script);
        cmd.args([&c.bootstrap(), "user-events", group, "301"])
            .args(extra);
        let out = run(&mut cmd, 120);
        let v: Value = serde_json::from_str(stdout(&out).lines().last().unwrap()).unwrap();
        v["taken"].as_array().unwrap().len()
    };
    assert_eq!(take("group_take_confluent.py", &groups[0], &[]), 301);
    assert_eq!(
        take("group_take_kafka_python.py", &groups[1], &["manual"]),
        301
    );
    for g in &groups {
        // The group's commits are on its coordinator: one offset per partition, past every
        // record; any other broker answers NOT_COORDINATOR (16).
        let at = coordinator(c.nodes[0].kafka, g);
        let (code, offsets) = committed(c.nodes[at as usize - 1].kafka, g);
        assert_eq!(code, 0);
        let past: i64 = offsets.iter().map(|&o| o.max(0)).sum();
        assert_eq!(past, 301, "{g}: {offsets:?}");
        let other = at as usize % 3;
        assert_eq!(committed(c.nodes[other].kafka, g).0, 16);
    }

    // confluent-kafka creates a topic through broker 1 and kafka-python one through broker 3;
    // each then produces (acks=all) to all six partitions, spread over the three brokers.
    for (client, broker, topic) in [
        ("confluent", 1, "ck-events"),
        ("kafka-python", 3, "kp-events"),
    ] {
        let mut cmd = python("cluster_create_produce.py");
        cmd.args([client, &c.addr(broker), topic, "6", "600"]);
        let v: Value = serde_json::from_str(&stdout(&run(&mut cmd, 120))).unwrap();
        let acked = v["acked"].as_object().unwrap();
        assert_eq!(acked.len(), 6, "{client}: {v}");
        assert!(acked.values().all(|n| n == 100), "{client}: {v}");
        let leaders: std::collections::BTreeSet<i32> = metadata(c.nodes[1].kafka, topic)
            .2
            .into_iter()
            .map(|p| p.1)
            .collect();
        assert_eq!(
            leaders.into_iter().collect::<Vec<_>>(),
            [1, 2, 3],
            "{topic}"
        );
    }

    // `shardlog groups describe` through broker 1 finds each group's coordinator and each
    // partition's log end offset on its leader: nothing left to consume.
    for g in &groups {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_shardlog"))
            .args(["groups", "describe", g, "--bootstrap-server"])
            .arg(c.addr(1))
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        let rows: Vec<Vec<&str>> = text
            .lines()
            .filter(|l| l.contains("user-events"))
            .map(|l| l.split_whitespace().collect())
            .collect();
        assert!(!rows.is_empty(), "{text}");
        for r in &rows {
            assert_eq!((r[3] == r[4], r[5]), (true, "0"), "{g}: {text}");
        }
    }

    // `shardlog topics describe` through broker 1 shows the spread.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_shardlog"))
        .args(["topics", "describe", "user-events", "--bootstrap-server"])
        .arg(c.addr(1))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    for (p, l) in leaders.iter().enumerate() {
        let want = format!("Partition: {p}\tLeader: {l}\tReplicas: {l}\tIsr: {l}");
        assert!(text.contains(&want), "{want:?} in {text}");
    }
}

/// OffsetFetch of `group`'s offsets of user-events partitions 0-2 at `port`: (error, offsets).
fn committed(port: u16, group: &str) -> (i16, Vec<i64>) {
    committed_of(port, group, "user-events", 3)
}

/// Runs a seed consumer (it never stops by itself) until it has printed `want` "Received
/// event:" lines or a minute has passed; returns how many it printed.
fn seed_consumer_lines(mut cmd: std::process::Command, want: usize) -> usize {
    use std::io::BufRead;
    let mut child = cmd
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start the seed consumer");
    let out = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
            if line.starts_with("Received event:") && tx.send(()).is_err() {
                return;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut seen = 0;
    while seen < want {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(()) => seen += 1,
            Err(_) => break,
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    seen
}

/// Two group names whose coordinators (as every broker answers) are different brokers.
fn two_groups_on_different_brokers(c: &Cluster) -> Vec<String> {
    let mut found: Vec<(String, i32)> = Vec::new();
    for i in 0.. {
        let g = format!("cluster-group-{i}");
        let at: Vec<i32> = (0..3).map(|n| coordinator(c.nodes[n].kafka, &g)).collect();
        assert!(at.iter().all(|&b| b == at[0]), "{g}: {at:?}");
        if found.iter().all(|(_, b)| *b != at[0]) {
            found.push((g, at[0]));
        }
        if found.len() == 2 {
            break;
        }
    }
    found.into_iter().map(|(g, _)| g).collect()
}

/// CreateTopics of one topic of `partitions` partitions at `c`: the topic's error code.
fn create_topic(c: &mut harness::client::Client, name: &str, partitions: i32) -> i16 {
    use kafka_protocol::messages::create_topics_request::CreatableTopic;
    use kafka_protocol::messages::{CreateTopicsRequest, CreateTopicsResponse};
    let t = CreatableTopic::default()
        .with_name(TopicName(StrBytes::from_string(name.into())))
        .with_num_partitions(partitions)
        .with_replication_factor(-1);
    let req = CreateTopicsRequest::default()
        .with_topics(vec![t])
        .with_timeout_ms(10_000);
    let resp: CreateTopicsResponse = c.call(ApiKey::CreateTopics, 5, &req);
    resp.topics[0].error_code
}

/// Creates topics loop-0..loop-`n` (2 partitions each) one after another at `port`,
/// retrying retriable errors (NOT_CONTROLLER 41, REQUEST_TIMED_OUT 7); a retry that finds the
/// topic (TOPIC_ALREADY_EXISTS 36) means the earlier try committed. Returns the names
/// acknowledged, those found created on a retry, and the retries.
fn create_loop(port: u16, n: usize, done: &std::sync::atomic::AtomicUsize) -> Loop {
    let mut client = harness::client::Client::connect(port);
    let (mut acked, mut exists, mut retried) = (Vec::new(), Vec::new(), 0);
    for i in 0..n {
        let name = format!("loop-{i}");
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut tries = 0;
        loop {
            tries += 1;
            match create_topic(&mut client, &name, 2) {
                0 => break acked.push(name.clone()),
                36 if tries > 1 => break exists.push(name.clone()),
                41 | 7 => retried += 1,
                code => panic!("{name}: error {code}"),
            }
            assert!(Instant::now() < deadline, "{name} never created");
            std::thread::sleep(Duration::from_millis(20));
        }
        done.store(i + 1, std::sync::atomic::Ordering::Relaxed);
    }
    (acked, exists, retried)
}

/// What `create_loop` saw: (acknowledged, found created on a retry, retries).
type Loop = (Vec<String>, Vec<String>, usize);

/// Every topic Metadata lists at `port`: name → (partitions, leaders).
fn all_topics(port: u16) -> std::collections::BTreeMap<String, Vec<i32>> {
    let resp = metadata_all(port);
    let topics = resp.topics.iter().map(|t| {
        let name = t.name.as_ref().unwrap().0.to_string();
        (name, leaders(t).into_iter().map(|p| p.1).collect())
    });
    topics.collect()
}

#[test]
fn create_topics_keeps_working_across_a_kill_of_the_metadata_leader() {
    let (mut c, leader) = Cluster::start(1);
    let survivor = (leader % 3 + 1) as usize; // a broker that is not the leader
                                              // The loop runs in its own thread, through a broker that stays up; the leader is killed
                                              // while it runs, with requests in flight.
    let done = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let port = c.nodes[survivor - 1].kafka;
    let looping = {
        let done = done.clone();
        std::thread::spawn(move || create_loop(port, 60, &done))
    };
    while done.load(std::sync::atomic::Ordering::Relaxed) < 10 {
        assert!(!looping.is_finished(), "the loop ended early");
        std::thread::sleep(Duration::from_millis(5));
    }
    let killed_at = Instant::now();
    let _ = c.nodes[leader as usize - 1].broker.take().unwrap().kill();
    let rest: Vec<&Node> = c.nodes.iter().filter(|n| n.id != leader).collect();
    let new = agreed_leader(&rest, Some(leader), Duration::from_secs(30));
    let took = killed_at.elapsed();
    let (acked, exists, retried) = looping.join().unwrap();
    println!(
        "new metadata leader {new} {:.0} ms after kill -9 of {leader}; {} topics \
         acknowledged, {} found created after a retriable error ({retried} retries)",
        took.as_secs_f64() * 1e3,
        acked.len(),
        exists.len()
    );
    // Every acknowledged topic exists, whole, on both live brokers; the killed broker's
    // partitions have no leader once it is marked dead.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let seen = all_topics(c.nodes[survivor - 1].kafka);
        let whole = acked
            .iter()
            .chain(&exists)
            .all(|t| seen.get(t).is_some_and(|l| l.len() == 2));
        let dead_marked = seen.values().flatten().all(|&l| l != leader as i32);
        if whole && dead_marked {
            assert!(seen.values().all(|l| l.len() == 2), "none half-created");
            assert!(seen.keys().all(|t| t.starts_with("loop-")));
            assert!(
                seen.values().flatten().any(|&l| l == -1),
                "some lost their leader"
            );
            break;
        }
        assert!(Instant::now() < deadline, "{seen:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
    // The survivor's metrics count the same leaders and leaderless partitions.
    let seen = all_topics(c.nodes[survivor - 1].kafka);
    let count = |l: i32| seen.values().flatten().filter(|&&x| x == l).count();
    let mut want = vec![format!("shardlog_cluster_offline_partitions {}", count(-1))];
    for b in (1..=3).filter(|&b| b != leader as i32) {
        want.push(format!(
            r#"shardlog_cluster_leader_partitions{{broker="{b}"}} {}"#,
            count(b)
        ));
    }
    want.push("shardlog_cluster_under_replicated_partitions 0".into());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let metrics = get(c.nodes[survivor - 1].admin, "/metrics").unwrap_or_default();
        if want.iter().all(|w| metrics.lines().any(|l| l == w)) {
            break;
        }
        assert!(Instant::now() < deadline, "{want:?} in {metrics}");
        std::thread::sleep(Duration::from_millis(100));
    }
    // `shardlog cluster status` counts the same (Metadata lists internal topics too: the
    // leaderless count covers the loop's topics at least).
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_shardlog"))
        .args(["cluster", "status", "--bootstrap-server"])
        .arg(c.addr(survivor as u64))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().find(|l| l.starts_with("Partitions:")).unwrap();
    let fields: Vec<&str> = line.split_whitespace().collect();
    let offline: usize = fields[3].parse().unwrap();
    assert!(offline >= count(-1) && fields[5] == "0", "{text}");
    let dead = text.lines().find(|l| l.starts_with(&format!("{leader} ")));
    assert!(dead.is_some_and(|l| l.contains("down")), "{text}");
    // The killed broker comes back, catches up, and leads its partitions again.
    let li = leader as usize - 1;
    let port = c.ports[li];
    let voters = c.voters.clone();
    restart(&mut c.nodes[li], port, &voters);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let back = all_topics(c.nodes[li].kafka);
        let other = all_topics(c.nodes[survivor - 1].kafka);
        if back == other && back.values().flatten().all(|&l| l > 0) && back.len() == 60 {
            break;
        }
        assert!(Instant::now() < deadline, "{back:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_broker_that_is_not_a_voter_joins_and_serves_partitions() {
    let (c, _) = Cluster::start(1);
    // Broker 4 is not among the voters: it registers through them, is added to the metadata
    // log as a learner, and gets the whole image.
    let mut fourth = Node {
        id: 4,
        dir: c._tmp.path().join("n4"),
        kafka: harness::free_port(),
        admin: harness::free_port(),
        shards: 2,
        broker: None,
    };
    start(&mut fourth, harness::free_port_block(2), &c.voters);
    let ports: Vec<u16> = c.nodes.iter().chain([&fourth]).map(|n| n.kafka).collect();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !ports.iter().all(|&p| metadata(p, "").0 == [1, 2, 3, 4]) {
        let seen: Vec<_> = ports.iter().map(|&p| metadata(p, "").0).collect();
        assert!(Instant::now() < deadline, "brokers seen: {seen:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
    // A topic created through broker 4 is spread over all four brokers; every broker agrees.
    let mut client = harness::client::Client::connect(fourth.kafka);
    assert_eq!(create_topic(&mut client, "wide", 8), 0);
    let deadline = Instant::now() + Duration::from_secs(10);
    let leaders = loop {
        let seen: Vec<_> = ports.iter().map(|&p| metadata(p, "wide")).collect();
        if seen.iter().all(|m| m == &seen[0] && m.2.len() == 8) {
            break seen[0].2.iter().map(|p| p.1).collect::<Vec<i32>>();
        }
        assert!(Instant::now() < deadline, "{seen:?}");
        std::thread::sleep(Duration::from_millis(50));
    };
    let on_four: Vec<i32> = (0..8).filter(|&p| leaders[p as usize] == 4).collect();
    assert_eq!(on_four.len(), 2, "{leaders:?}");
    // Broker 4 serves its partitions: a record produced there is fetched back.
    let batch = build_test_batch(3, 10, TimestampMs(0));
    let (code, base) = client.produce_one("wide", on_four[0], batch.into());
    assert_eq!((code, base), (0, 0));
    let got = client.fetch_one("wide", on_four[0], 0);
    assert_eq!((got.error_code, got.high_watermark), (0, 3));
    // and answers NOT_LEADER_OR_FOLLOWER for one it does not serve.
    let other = (0..8).find(|&p| leaders[p as usize] != 4).unwrap();
    let batch = build_test_batch(1, 10, TimestampMs(0));
    assert_eq!(client.produce_one("wide", other, batch.into()).0, 6);

    // Restarted on its data directory, it is a member again and serves its records.
    let _ = fourth.broker.take().unwrap().stop();
    let cluster_port = harness::free_port_block(2);
    restart(&mut fourth, cluster_port, &c.voters);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let mut client = harness::client::Client::connect(fourth.kafka);
        let got = client.fetch_one("wide", on_four[0], 0);
        if (got.error_code, got.high_watermark) == (0, 3) {
            break;
        }
        assert!(Instant::now() < deadline, "{got:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Creates `name` with `partitions` partitions of `rf` replicas at `port`.
fn create_replicated(port: u16, name: &str, partitions: i32, rf: i16) -> i16 {
    create_with(port, name, partitions, rf, &[])
}

/// Creates `name` with `partitions` partitions of `rf` replicas and `configs` at `port`.
fn create_with(port: u16, name: &str, partitions: i32, rf: i16, configs: &[(&str, &str)]) -> i16 {
    use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
    use kafka_protocol::messages::{CreateTopicsRequest, CreateTopicsResponse};
    let mut c = harness::client::Client::connect(port);
    let configs = configs
        .iter()
        .map(|(k, v)| {
            CreatableTopicConfig::default()
                .with_name(StrBytes::from_string(k.to_string()))
                .with_value(Some(StrBytes::from_string(v.to_string())))
        })
        .collect();
    let t = CreatableTopic::default()
        .with_name(TopicName(StrBytes::from_string(name.into())))
        .with_num_partitions(partitions)
        .with_replication_factor(rf)
        .with_configs(configs);
    let req = CreateTopicsRequest::default()
        .with_topics(vec![t])
        .with_timeout_ms(10_000);
    let resp: CreateTopicsResponse = c.call(ApiKey::CreateTopics, 5, &req);
    resp.topics[0].error_code
}

/// Metadata's entry for `topic` from the broker at `port`, if it lists it.
fn topic_of(
    port: u16,
    topic: &str,
) -> Option<kafka_protocol::messages::metadata_response::MetadataResponseTopic> {
    let resp = metadata_all(port);
    resp.topics
        .into_iter()
        .find(|t| t.name.as_ref().map(|n| n.0.as_str()) == Some(topic))
}

/// Each partition of `topic` as the broker at `port` reports it: (leader, epoch, replicas).
fn replica_view(port: u16, topic: &str) -> Vec<(i32, i32, Vec<i32>)> {
    let Some(t) = topic_of(port, topic) else {
        return Vec::new();
    };
    let mut parts: Vec<_> = t.partitions.iter().collect();
    parts.sort_by_key(|p| p.partition_index);
    parts
        .iter()
        .map(|p| {
            let mut r: Vec<i32> = p.replica_nodes.iter().map(|b| b.0).collect();
            r.sort_unstable();
            (p.leader_id.0, p.leader_epoch, r)
        })
        .collect()
}

/// Waits until every broker at `ports` reports each partition of `topic` led by an elected
/// leader (epoch > 0) that is not `not`, all agreeing; returns the leaders and epochs.
fn elected(ports: &[u16], topic: &str, not: Option<i32>) -> Vec<(i32, i32)> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let seen: Vec<_> = ports.iter().map(|&p| replica_view(p, topic)).collect();
        let agreed = seen.iter().all(|v| v == &seen[0]) && !seen[0].is_empty();
        let ok = seen[0]
            .iter()
            .all(|(l, e, _)| *l >= 0 && *e > 0 && Some(*l) != not);
        if agreed && ok {
            return seen[0].iter().map(|(l, e, _)| (*l, *e)).collect();
        }
        assert!(Instant::now() < deadline, "{seen:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The JSON lines `read_all.py` prints for `topic` from `bootstrap`: the values read.
fn read_values(bootstrap: &str, topic: &str) -> Vec<String> {
    let mut cmd = python("read_all.py");
    cmd.args([bootstrap, topic]);
    let out = run(&mut cmd, 120);
    stdout(&out)
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).expect("a JSON line");
            v[3].as_str().expect("a value").to_string()
        })
        .collect()
}

/// Issue 21: a topic of three replicas on three brokers. Each partition's replicas elect a
/// leader, which Metadata names with its epoch; confluent-kafka's idempotent producer
/// (acks=all) writes through the leaders; the leader of partition 0 is killed, the other two
/// elect a new one, the producer goes on through them, and kafka-python reads back every
/// acknowledged record exactly once. The killed broker, restarted, catches up. Along the
/// way: a damaged batch is refused by a leader, produce to a follower is refused, and a
/// topic with min.insync.replicas=3 refuses acks=all with NOT_ENOUGH_REPLICAS once a replica
/// is dead.
#[test]
fn replicated_partitions_fail_over_without_losing_acknowledged_records() {
    let (mut c, _) = Cluster::start(2);
    let all: Vec<u16> = c.nodes.iter().map(|n| n.kafka).collect();
    assert_eq!(create_replicated(all[0], "kept", 3, 3), 0);
    assert_eq!(
        create_replicated(all[0], "too-many", 1, 4),
        38,
        "INVALID_REPLICATION_FACTOR"
    );
    let leaders = elected(&all, "kept", None);
    for (_, _, replicas) in replica_view(all[1], "kept") {
        assert_eq!(replicas, vec![1, 2, 3]);
    }
    // A damaged batch is refused by the leader before it reaches the replicas (CORRUPT_MESSAGE),
    // a follower refuses produce (NOT_LEADER_OR_FOLLOWER), and the leader goes on.
    assert_eq!(create_replicated(all[0], "probe", 1, 3), 0);
    let probe = elected(&all, "probe", None)[0].0;
    let leader_port = all[probe as usize - 1];
    let follower_port = all[probe as usize % 3];
    let mut bad = bytes::BytesMut::from(&build_test_batch(2, 10, TimestampMs(0))[..]);
    let last = bad.len() - 1;
    bad[last] ^= 0xff;
    let mut client = harness::client::Client::connect(leader_port);
    assert_eq!(client.produce_one("probe", 0, bad.freeze()).0, 2);
    let good = || build_test_batch(2, 10, TimestampMs(0)).into();
    let mut other = harness::client::Client::connect(follower_port);
    assert_eq!(other.produce_one("probe", 0, good()).0, 6);
    assert_eq!(
        client.produce_one("probe", 0, good()),
        (0, 1),
        "after the leader's no-op"
    );
    // min.insync.replicas 3 of 3: acks=all is served while all three are up.
    let strict = [("min.insync.replicas", "3")];
    assert_eq!(create_with(all[0], "strict", 1, 3, &strict), 0);
    let strict_leader = elected(&all, "strict", None)[0].0;
    let mut strict_client = harness::client::Client::connect(all[strict_leader as usize - 1]);
    assert_eq!(strict_client.produce_one("strict", 0, good()).0, 0);
    let produce = |bootstrap: &str, first: usize, n: usize| {
        let mut cmd = python("replicated_produce.py");
        cmd.args([bootstrap, "kept", &first.to_string(), &n.to_string()]);
        let out = run(&mut cmd, 150);
        assert!(
            stdout(&out).contains(&format!("\"acked\": {n}")),
            "{}",
            stdout(&out)
        );
    };
    produce(&c.bootstrap(), 0, 3000);

    let victim = leaders[0].0;
    let killed = c.nodes[victim as usize - 1].broker.take().unwrap().kill();
    let live: Vec<u16> = (1..=3)
        .filter(|&i| i != victim)
        .map(|i| c.nodes[i as usize - 1].kafka)
        .collect();
    let after = elected(&live, "kept", Some(victim));
    assert!(
        after[0].1 > leaders[0].1,
        "a new epoch: {leaders:?} → {after:?}"
    );
    // Clients are told of live brokers only, once the killed one's session has expired.
    let deadline = Instant::now() + Duration::from_secs(20);
    while live.iter().any(|&p| metadata(p, "").0.contains(&victim)) {
        assert!(Instant::now() < deadline, "broker {victim} still listed");
        std::thread::sleep(Duration::from_millis(100));
    }
    let survivors = live
        .iter()
        .map(|p| format!("127.0.0.1:{p}"))
        .collect::<Vec<_>>()
        .join(",");
    // With one of three replicas gone, acks=all to the min.insync.replicas=3 topic is refused
    // NOT_ENOUGH_REPLICAS (19) once its leader counts the dead one out of sync.
    let leader_now = elected(&live, "strict", Some(victim))[0].0;
    let port = c.nodes[leader_now as usize - 1].kafka;
    let mut strict_client = harness::client::Client::connect(port);
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let code = strict_client.produce_one("strict", 0, good()).0;
        if code == 19 {
            break;
        }
        assert!(Instant::now() < deadline, "acks=all still answered {code}");
        std::thread::sleep(Duration::from_millis(200));
    }
    produce(&survivors, 3000, 3000);

    let mut values = read_values(&survivors, "kept");
    values.sort();
    let mut want: Vec<String> = (0..6000).map(|i| format!("v{i}")).collect();
    want.sort();
    assert_eq!(values.len(), 6000, "every acknowledged record once");
    assert_eq!(values, want);

    // The killed broker comes back on its data directory and catches up: its replicas
    // serve the same end offsets as the leaders'.
    drop(killed);
    let (ports, voters) = (c.ports.clone(), c.voters.clone());
    let node = &mut c.nodes[victim as usize - 1];
    restart(node, ports[victim as usize - 1], &voters);
    let back = node.kafka;
    let ends = |port: u16| -> Vec<i64> {
        let mut client = harness::client::Client::connect(port);
        (0..3)
            .map(|p| client.fetch_one("kept", p, 0).high_watermark)
            .collect()
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (theirs, mine) = (ends(live[0]), ends(back));
        if theirs == mine && theirs.iter().sum::<i64>() >= 6000 {
            break;
        }
        assert!(Instant::now() < deadline, "{theirs:?} against {mine:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
    // The leaders count it in sync again and say so: every broker's Metadata shows all three
    // in each partition's ISR.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let seen: Vec<Vec<Vec<i32>>> = all.iter().map(|&p| isr_view(p, "kept")).collect();
        if seen.iter().flatten().all(|isr| isr == &[1, 2, 3]) && seen[0].len() == 3 {
            break;
        }
        assert!(Instant::now() < deadline, "ISRs: {seen:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
    // Leadership goes back to each partition's preferred replica (the first one listed),
    // the returned broker's included: leaders are spread as at creation.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let seen: Vec<Vec<(i32, i32)>> = all.iter().map(|&p| preferred_view(p, "kept")).collect();
        let balanced = seen
            .iter()
            .flatten()
            .all(|(leader, preferred)| leader == preferred);
        if balanced && seen[0].len() == 3 {
            let leaders: Vec<i32> = seen[0].iter().map(|(l, _)| *l).collect();
            assert!(
                leaders.contains(&victim),
                "the returned broker leads again: {leaders:?}"
            );
            break;
        }
        assert!(Instant::now() < deadline, "(leader, preferred): {seen:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
    // Each partition's leader exports three replicas in sync; the followers export 0.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let text: String = c
            .nodes
            .iter()
            .filter_map(|n| get(n.admin, "/metrics"))
            .collect();
        let counted = |v: &str| {
            text.lines()
                .filter(|l| l.starts_with("shardlog_partition_in_sync_replicas{topic=\"kept\""))
                .filter(|l| l.ends_with(&format!(" {v}")))
                .count()
        };
        if (counted("3"), counted("0")) == (3, 6) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "in-sync gauges: {}",
            counted("3")
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Each partition's (leader, preferred replica) as the broker at `port` reports them.
fn preferred_view(port: u16, topic: &str) -> Vec<(i32, i32)> {
    let Some(t) = topic_of(port, topic) else {
        return Vec::new();
    };
    t.partitions
        .iter()
        .map(|p| (p.leader_id.0, p.replica_nodes.first().map_or(-1, |b| b.0)))
        .collect()
}

/// Each partition's in-sync replicas (sorted) as the broker at `port` reports them.
fn isr_view(port: u16, topic: &str) -> Vec<Vec<i32>> {
    let Some(t) = topic_of(port, topic) else {
        return Vec::new();
    };
    t.partitions
        .iter()
        .map(|p| {
            let mut isr: Vec<i32> = p.isr_nodes.iter().map(|b| b.0).collect();
            isr.sort_unstable();
            isr
        })
        .collect()
}

/// OffsetFetch of `group`'s offsets of partitions 0..`n` of `topic` at `port`:
/// (error, offsets).
fn committed_of(port: u16, group: &str, topic: &str, n: i32) -> (i16, Vec<i64>) {
    use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
    let mut c = harness::client::Client::connect(port);
    let t = OffsetFetchRequestTopic::default()
        .with_name(TopicName(StrBytes::from_string(topic.into())))
        .with_partition_indexes((0..n).collect());
    let req = OffsetFetchRequest::default()
        .with_group_id(GroupId(StrBytes::from_string(group.into())))
        .with_topics(Some(vec![t]));
    let resp: OffsetFetchResponse = c.call(ApiKey::OffsetFetch, 5, &req);
    let offsets = resp.topics.iter().flat_map(|t| t.partitions.iter());
    (
        resp.error_code,
        offsets.map(|p| p.committed_offset).collect(),
    )
}

/// What a group take script (`group_take_*.py`) printed: the values taken, and for each of
/// the first `n` partitions the offset past the last record taken from it (-1: none).
fn taken_values(out: &std::process::Output, n: usize) -> (Vec<String>, Vec<i64>) {
    let v: Value = serde_json::from_str(stdout(out).trim()).expect("one JSON line");
    let mut past = vec![-1; n];
    let mut values = Vec::new();
    for r in v["taken"].as_array().expect("taken") {
        let (p, o) = (r[0].as_u64().unwrap() as usize, r[1].as_i64().unwrap());
        past[p] = past[p].max(o + 1);
        values.push(r[2].as_str().expect("a value").to_string());
    }
    (values, past)
}

/// Issue 21, groups: a group's log is a replicated partition of __consumer_offsets and its
/// coordinator the log's leader. confluent-kafka's consumer takes half of a topic in group
/// "billing" and commits; the coordinator is killed (-9); FindCoordinator names a survivor
/// (the time it took is printed), which serves the acknowledged commit, and kafka-python's
/// consumer in the same group takes exactly the other half from there. The old coordinator
/// answers NOT_COORDINATOR once it is back.
#[test]
fn consumer_groups_keep_their_commits_when_their_coordinator_dies() {
    let (mut c, _) = Cluster::start(2);
    let all: Vec<u16> = c.nodes.iter().map(|n| n.kafka).collect();
    assert_eq!(create_replicated(all[0], "orders", 3, 3), 0);
    elected(&all, "orders", None);
    let mut cmd = python("replicated_produce.py");
    cmd.args([&c.bootstrap(), "orders", "0", "300"]);
    assert!(stdout(&run(&mut cmd, 120)).contains("\"acked\": 300"));

    let mut cmd = python("group_take_confluent.py");
    cmd.args([&c.bootstrap(), "orders", "billing", "150"]);
    let (first, past) = taken_values(&run(&mut cmd, 90), 3);
    assert_eq!(first.len(), 150);
    let at = coordinator(all[0], "billing");
    let (code, before) = committed_of(all[at as usize - 1], "billing", "orders", 3);
    assert_eq!(
        (code, &before),
        (0, &past),
        "committed past the records taken"
    );
    let other = all[at as usize % 3];
    assert_eq!(
        committed_of(other, "billing", "orders", 3).0,
        16,
        "NOT_COORDINATOR"
    );

    let killed = c.nodes[at as usize - 1].broker.take().unwrap().kill();
    let t0 = Instant::now();
    let deadline = t0 + Duration::from_secs(30);
    let moved = loop {
        let mut client = harness::client::Client::connect(other);
        let req = FindCoordinatorRequest::default().with_key(StrBytes::from_static_str("billing"));
        let resp: FindCoordinatorResponse = client.call(ApiKey::FindCoordinator, 3, &req);
        if resp.error_code == 0 && resp.node_id.0 != at {
            break resp.node_id.0;
        }
        assert!(Instant::now() < deadline, "no new coordinator: {resp:?}");
        std::thread::sleep(Duration::from_millis(20));
    };
    eprintln!(
        "group coordinator moved from broker {at} to {moved} in {} ms",
        t0.elapsed().as_millis()
    );
    let port = all[moved as usize - 1];
    let deadline = Instant::now() + Duration::from_secs(10);
    let after = loop {
        let (code, offsets) = committed_of(port, "billing", "orders", 3);
        if code == 0 {
            break offsets;
        }
        assert!(Instant::now() < deadline, "OffsetFetch answered {code}");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(
        after, before,
        "every acknowledged commit on the new coordinator"
    );
    // kafka-python gives up on a FindCoordinator it sends to a listed broker that refuses the
    // connection: start it once the survivors list only live brokers (the killed one's
    // session expired), as the replicated-partitions test does.
    let deadline = Instant::now() + Duration::from_secs(20);
    while [other, port]
        .iter()
        .any(|&p| metadata(p, "").0.contains(&at))
    {
        assert!(Instant::now() < deadline, "broker {at} still listed");
        std::thread::sleep(Duration::from_millis(100));
    }

    let survivors: Vec<String> = (1..=3u64)
        .filter(|&i| i != at as u64)
        .map(|i| c.addr(i))
        .collect();
    let mut cmd = python("group_take_kafka_python.py");
    cmd.args([&survivors.join(","), "orders", "billing", "150", "manual"]);
    let second = taken_values(&run(&mut cmd, 120), 3).0;
    let mut every: Vec<String> = first.into_iter().chain(second).collect();
    every.sort();
    let mut want: Vec<String> = (0..300).map(|i| format!("v{i}")).collect();
    want.sort();
    assert_eq!(
        every, want,
        "the second consumer goes on where the first committed"
    );

    // The old coordinator, back, follows the new leader: NOT_COORDINATOR for the group.
    drop(killed);
    let (ports, voters) = (c.ports.clone(), c.voters.clone());
    let node = &mut c.nodes[at as usize - 1];
    restart(node, ports[at as usize - 1], &voters);
    let back = node.kafka;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (code, _) = committed_of(back, "billing", "orders", 3);
        let now_at = coordinator(back, "billing");
        if code == 16 || (now_at == at && code == 0) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the returning broker answered {code}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    // Controlled shutdown: a broker stopped with SIGTERM hands every leadership it holds to an
    // in-sync follower before it exits, so once it is gone the others already name other
    // leaders for the topic's partitions and another coordinator for the group. The broker
    // stopped is the one that took over from the killed one (it leads group logs and
    // partitions); the third one, which never stopped, is asked.
    let stopping = moved;
    c.nodes[stopping as usize - 1].broker.take().unwrap().stop();
    let log = std::fs::read_to_string(c.nodes[stopping as usize - 1].dir.with_extension("log"))
        .unwrap_or_default();
    assert!(
        log.contains("handing leadership off before stopping"),
        "{log}"
    );
    assert!(!log.contains("stopping while still leading"), "{log}");
    let survivor = all[(1..=3).find(|&b| b != at && b != moved).unwrap() as usize - 1];
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let leaders = metadata(survivor, "orders").2;
        let mut client = harness::client::Client::connect(survivor);
        let req = FindCoordinatorRequest::default().with_key(StrBytes::from_static_str("billing"));
        let found: FindCoordinatorResponse = client.call(ApiKey::FindCoordinator, 3, &req);
        let moved_off = leaders.iter().all(|&(_, l)| l >= 0 && l != stopping)
            && found.error_code == 0
            && found.node_id.0 != stopping;
        if moved_off {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "broker {stopping} stopped still leading: {leaders:?}, {found:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}
