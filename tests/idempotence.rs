//! Idempotent producers with real clients (kafka-python 3 with its defaults, confluent-kafka
//! with enable.idempotence=true) against the real broker: through a proxy that drops their
//! connections at random moments, and across a kill -9 of the broker. Every record must be in
//! the log exactly once, in order per partition.

mod harness;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use harness::{clients_dir, run, stdout, Broker};
use rand::{Rng, SeedableRng};

/// Youngest connection the proxy may cut.
const CONNECTION_MS_MIN: u64 = 500;

/// A TCP proxy in front of the broker that cuts a random live connection every 0.1-0.4 s
/// (until `calm`).
struct Chaos {
    port: u16,
    stop: Arc<AtomicBool>,
    calm: Arc<AtomicBool>,
    cuts: Arc<AtomicUsize>,
}

impl Chaos {
    fn start(upstream: u16, seed: u64) -> Chaos {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let cuts = Arc::new(AtomicUsize::new(0));
        let calm = Arc::new(AtomicBool::new(false));
        let live: Arc<Mutex<Vec<(Instant, TcpStream, TcpStream)>>> = Arc::default();
        let (s, l) = (stop.clone(), live.clone());
        thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((client, _)) => Self::forward(client, upstream, &l),
                    Err(_) => thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        let (s, l, c, q) = (stop.clone(), live.clone(), cuts.clone(), calm.clone());
        thread::spawn(move || {
            let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
            while !s.load(Ordering::Relaxed) {
                thread::sleep(Duration::from_millis(rng.gen_range(100..400)));
                if q.load(Ordering::Relaxed) {
                    continue;
                }
                let mut conns = l.lock().unwrap();
                // Connections get at least CONNECTION_MS_MIN to do some work: cutting every
                // connection at birth only tests reconnect loops.
                let old: Vec<usize> = (0..conns.len())
                    .filter(|&i| conns[i].0.elapsed() >= Duration::from_millis(CONNECTION_MS_MIN))
                    .collect();
                if !old.is_empty() {
                    let victim = old[rng.gen_range(0..old.len())];
                    let (_, a, b) = conns.swap_remove(victim);
                    let _ = a.shutdown(Shutdown::Both);
                    let _ = b.shutdown(Shutdown::Both);
                    c.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
        Chaos {
            port,
            stop,
            calm,
            cuts,
        }
    }

    fn forward(
        client: TcpStream,
        upstream: u16,
        live: &Mutex<Vec<(Instant, TcpStream, TcpStream)>>,
    ) {
        let _ = client.set_nonblocking(false);
        let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) else {
            return; // broker down (restarting): the client sees a closed connection
        };
        let pump = |mut from: TcpStream, mut to: TcpStream| {
            thread::spawn(move || {
                let _ = std::io::copy(&mut from, &mut to);
                let _ = from.shutdown(Shutdown::Both);
                let _ = to.shutdown(Shutdown::Both);
            });
        };
        pump(client.try_clone().unwrap(), server.try_clone().unwrap());
        pump(server.try_clone().unwrap(), client.try_clone().unwrap());
        live.lock().unwrap().push((Instant::now(), client, server));
    }
}

impl Drop for Chaos {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// A running idempotent_produce.py and the number of deliveries it has confirmed so far.
struct Producer {
    child: Child,
    acked: Arc<AtomicUsize>,
    last: Arc<Mutex<String>>,
}

fn start_producer(client: &str, bootstrap: &str, topic: &str, n: usize) -> Producer {
    let mut child = Command::new("timeout")
        .arg("300")
        .arg("python3")
        .arg(clients_dir().join("python").join("idempotent_produce.py"))
        .args([client, bootstrap, topic, &n.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start idempotent_produce.py");
    let acked = Arc::new(AtomicUsize::new(0));
    let last = Arc::new(Mutex::new(String::new()));
    let (a, l) = (acked.clone(), last.clone());
    let out = child.stdout.take().unwrap();
    thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) {
                a.store(v["acked"].as_u64().unwrap_or(0) as usize, Ordering::Relaxed);
            }
            *l.lock().unwrap() = line;
        }
    });
    Producer { child, acked, last }
}

impl Producer {
    fn finish(mut self, n: usize) {
        let status = self.child.wait().unwrap();
        let last = self.last.lock().unwrap().clone();
        assert!(status.success(), "producer failed: {last}");
        assert_eq!(self.acked.load(Ordering::Relaxed), n, "{last}");
    }
}

impl Drop for Producer {
    fn drop(&mut self) {
        let _ = self.child.kill();
    }
}

/// Every value 0..n exactly once, increasing within each partition.
fn assert_exactly_once_in_order(broker: &Broker, topic: &str, n: usize) {
    let out = stdout(&run(
        Command::new("kcat")
            .args(["-b", &broker.addr(), "-C", "-t", topic, "-e", "-q"])
            .args(["-f", "%p %s\\n"]),
        120,
    ));
    let mut per_partition: BTreeMap<i32, Vec<usize>> = BTreeMap::new();
    for line in out.lines() {
        let (p, v) = line.split_once(' ').expect("partition and value");
        per_partition
            .entry(p.parse().unwrap())
            .or_default()
            .push(v.parse().unwrap());
    }
    let mut seen = vec![0u32; n];
    for (p, values) in &per_partition {
        for w in values.windows(2) {
            assert!(w[0] < w[1], "partition {p}: {} then {}", w[0], w[1]);
        }
        for &v in values {
            seen[v] += 1;
        }
    }
    let missing = seen.iter().filter(|&&c| c == 0).count();
    let doubled = seen.iter().filter(|&&c| c > 1).count();
    assert_eq!(
        (missing, doubled),
        (0, 0),
        "records missing / written more than once"
    );
}

fn create_topic(broker: &Broker, topic: &str) {
    let out = run(
        Command::new(env!("CARGO_BIN_EXE_shardlog")).args([
            "topics",
            "create",
            topic,
            "--partitions",
            "2",
            "--bootstrap-server",
            &broker.addr(),
        ]),
        30,
    );
    assert!(out.status.success());
}

fn through_dropped_connections(client: &str, seed: u64) {
    const N: usize = 100_000;
    let dir = tempfile::tempdir().unwrap();
    let port = harness::free_port();
    let chaos_port;
    let chaos = {
        let c = Chaos::start(port, seed);
        chaos_port = c.port;
        c
    };
    let advertised = format!("127.0.0.1:{chaos_port}");
    let broker = Broker::start_on(
        &dir.path().join("data"),
        2,
        port,
        &["--advertised-listener", &advertised],
    );
    create_topic(&broker, "idem");
    let started = Instant::now();
    start_producer(client, &advertised, "idem", N).finish(N);
    let cuts = chaos.cuts.load(Ordering::Relaxed);
    let retries = broker
        .log()
        .matches("retried batch answered with its original offsets")
        .count();
    eprintln!(
        "{client}: {N} records in {:?}, {cuts} connections cut, {retries} retried batches \
         answered with their original offsets",
        started.elapsed()
    );
    assert!(cuts > 0, "the proxy cut connections");
    chaos.calm.store(true, Ordering::Relaxed); // the reader goes through it too (advertised)
    assert_exactly_once_in_order(&broker, "idem", N);
}

#[test]
fn kafka_python_idempotent_producer_survives_dropped_connections() {
    through_dropped_connections("kafka-python", 1);
}

#[test]
fn confluent_idempotent_producer_survives_dropped_connections() {
    through_dropped_connections("confluent", 2);
}

#[test]
fn idempotent_producers_continue_across_a_broker_kill_9() {
    const N: usize = 30_000;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let port = harness::free_port();
    let broker = Broker::start_on(&data, 2, port, &[]);
    create_topic(&broker, "idem-kp");
    create_topic(&broker, "idem-ck");
    let addr = broker.addr();
    let kp = start_producer("kafka-python", &addr, "idem-kp", N);
    let ck = start_producer("confluent", &addr, "idem-ck", N);
    let deadline = Instant::now() + Duration::from_secs(120);
    while kp.acked.load(Ordering::Relaxed) < N / 3 || ck.acked.load(Ordering::Relaxed) < N / 3 {
        assert!(Instant::now() < deadline, "producers did not get going");
        thread::sleep(Duration::from_millis(20));
    }
    broker.kill();
    thread::sleep(Duration::from_millis(500));
    let broker = Broker::start_on(&data, 2, port, &[]);
    kp.finish(N);
    ck.finish(N);
    assert_exactly_once_in_order(&broker, "idem-kp", N);
    assert_exactly_once_in_order(&broker, "idem-ck", N);
}
