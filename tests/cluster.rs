//! Three brokers started as a cluster (`--node-id`, `--cluster-listen`, `--voters`) on
//! loopback elect one metadata leader among their voters; after kill -9 of the leader the
//! other two elect a new one (the time is measured and printed); the killed broker,
//! restarted on its data directory, rejoins and follows the same leader. Each broker
//! registers itself in the metadata log, so every broker lists all three. What each broker
//! sees is read from its admin API (`/v1/cluster`). Issue 20, in progress: the metadata log
//! runs; topics and clients are still served per broker.

mod harness;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use harness::Broker;
use serde_json::Value;

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
    ];
    n.broker = Some(Broker::start_on(&n.dir, 1, n.kafka, &extra));
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

#[test]
fn three_voters_elect_a_metadata_leader_and_elect_again_when_it_is_killed() {
    let tmp = tempfile::tempdir().unwrap();
    let ports: Vec<u16> = (0..3).map(|_| harness::free_port()).collect();
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
    start(&mut nodes[li], ports[li], &voters);
    let all: Vec<&Node> = nodes.iter().collect();
    assert_eq!(
        agreed_leader(&all, None, Duration::from_secs(30)),
        new_leader
    );
    let back = view(nodes[li].admin).unwrap();
    assert!(
        back.1 >= term_after,
        "the restarted voter is in the current term: {back:?}"
    );
    assert!(Path::new(&nodes[li].dir)
        .join("__cluster/metadata/raft.log")
        .exists());
}
