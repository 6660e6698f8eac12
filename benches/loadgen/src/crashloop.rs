//! `shardlog-bench crashloop`: the broker killed with SIGKILL over and over under an
//! idempotent acks=all producer (librdkafka), optionally with hostile connections beside it,
//! then every acknowledged record looked for. It reports the cycles, the records acknowledged,
//! lost and duplicated, the restart time (spawn to the first answered ApiVersions) p50 and max,
//! and the broker's peak RSS over all its lives (issue 17's crash-loop and hostile-load tool).
//! A bench command, not a CI test: it runs for as long as it is asked to.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::{ClientContext, Message, Offset, TopicPartitionList};

use crate::procstat;

/// What one crash loop is asked to do.
#[derive(clap::Args, Debug, Clone)]
pub struct CrashArgs {
    /// The broker binary
    #[arg(long, default_value = "target/release/shardlog")]
    pub broker_bin: PathBuf,
    /// The broker's data directory (created; reused across its lives)
    #[arg(long)]
    pub data_dir: PathBuf,
    #[arg(long, default_value_t = 19092)]
    pub port: u16,
    #[arg(long, default_value_t = 2)]
    pub shards: usize,
    /// Partitions of the topic written
    #[arg(long, default_value_t = 4)]
    pub partitions: u32,
    /// Kill -9 cycles
    #[arg(long, default_value_t = 20)]
    pub cycles: u32,
    /// Time each broker life runs before it is killed
    #[arg(long, default_value_t = 2000)]
    pub kill_every_ms: u64,
    /// Record value size
    #[arg(long, default_value_t = 1024)]
    pub value_bytes: usize,
    /// Also run hostile connections (random frames, unread pipelines, half-sent headers)
    #[arg(long)]
    pub hostile: bool,
    /// More broker flags, e.g. --broker-arg=--read-cache-bytes=33554432 (repeatable)
    #[arg(long = "broker-arg", value_name = "FLAG", allow_hyphen_values = true)]
    pub broker_args: Vec<String>,
}

/// The outcome, printed as JSON.
#[derive(serde::Serialize, Debug)]
pub struct CrashReport {
    pub cycles: u32,
    pub acknowledged: u64,
    pub delivery_failures: u64,
    pub read_back: u64,
    pub lost: u64,
    pub duplicated: u64,
    pub restart_ms_p50: f64,
    pub restart_ms_max: f64,
    pub peak_rss_mib: f64,
    pub hostile_connections: u64,
}

const TOPIC: &str = "crashloop";
const READY_WAIT: Duration = Duration::from_secs(60);

struct Acks {
    ids: Mutex<Vec<u64>>,
    failed: AtomicU64,
}

struct AckCtx(Arc<Acks>);

impl ClientContext for AckCtx {}

impl ProducerContext for AckCtx {
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, id: usize) {
        match result {
            Ok(_) => self
                .0
                .ids
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(id as u64),
            Err(_) => {
                self.0.failed.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

pub fn run(args: &CrashArgs) -> anyhow::Result<CrashReport> {
    std::fs::create_dir_all(&args.data_dir)?;
    let bootstrap = format!("127.0.0.1:{}", args.port);
    let (mut broker, first) = start(args)?;
    tracing::info!(ms = first.as_millis() as u64, "broker up");
    let acks = Arc::new(Acks {
        ids: Mutex::new(Vec::new()),
        failed: AtomicU64::new(0),
    });
    let stop = Arc::new(AtomicBool::new(false));
    let producer = spawn_producer(&bootstrap, args.value_bytes, acks.clone(), stop.clone())?;
    let hostile_count = Arc::new(AtomicU64::new(0));
    let hostile = args.hostile.then(|| {
        let (stop, count, port) = (stop.clone(), hostile_count.clone(), args.port);
        std::thread::spawn(move || hostile_loop(port, &stop, &count))
    });
    let mut restarts = Vec::new();
    let mut peak_kib = 0u64;
    for cycle in 0..args.cycles {
        std::thread::sleep(Duration::from_millis(args.kill_every_ms));
        peak_kib = peak_kib.max(hwm_kib(&broker));
        let _ = broker.kill();
        let _ = broker.wait();
        let (b, took) = start(args)?;
        broker = b;
        restarts.push(took.as_secs_f64() * 1000.0);
        tracing::info!(
            cycle,
            restart_ms = took.as_millis() as u64,
            acked = acks.ids.lock().map(|v| v.len()).unwrap_or(0),
            "killed and restarted"
        );
    }
    stop.store(true, Ordering::Relaxed);
    if let Some(h) = hostile {
        let _ = h.join();
    }
    let _ = producer.join();
    let seen = read_back(&bootstrap, args.partitions)?;
    peak_kib = peak_kib.max(hwm_kib(&broker));
    let _ = broker.kill();
    let _ = broker.wait();
    let acked = acks.ids.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let lost = acked.iter().filter(|id| !seen.contains_key(id)).count() as u64;
    let duplicated = seen.values().map(|&n| u64::from(n - 1)).sum();
    restarts.sort_by(f64::total_cmp);
    Ok(CrashReport {
        cycles: args.cycles,
        acknowledged: acked.len() as u64,
        delivery_failures: acks.failed.load(Ordering::Relaxed),
        read_back: seen.values().map(|&n| u64::from(n)).sum(),
        lost,
        duplicated,
        restart_ms_p50: restarts.get(restarts.len() / 2).copied().unwrap_or(0.0),
        restart_ms_max: restarts.last().copied().unwrap_or(0.0),
        peak_rss_mib: peak_kib as f64 / 1024.0,
        hostile_connections: hostile_count.load(Ordering::Relaxed),
    })
}

/// Starts the broker and waits until it answers; returns it and how long that took.
fn start(args: &CrashArgs) -> anyhow::Result<(Child, Duration)> {
    let t0 = Instant::now();
    let child = Command::new(&args.broker_bin)
        .arg("--listen")
        .arg(format!("127.0.0.1:{}", args.port))
        .arg("--data-dir")
        .arg(&args.data_dir)
        .arg("--shards")
        .arg(args.shards.to_string())
        .arg("--num-partitions")
        .arg(args.partitions.to_string())
        .args(&args.broker_args)
        .env("SHARDLOG_ADMIN_LISTEN", "127.0.0.1:0")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    while t0.elapsed() < READY_WAIT {
        if answers(args.port) {
            return Ok((child, t0.elapsed()));
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    anyhow::bail!("the broker did not answer within {READY_WAIT:?}")
}

/// ApiVersions v0 (key 18, correlation id 1, null client id): answered with correlation id 1.
const API_VERSIONS_V0: [u8; 14] = [0, 0, 0, 10, 0, 18, 0, 0, 0, 0, 0, 1, 0xff, 0xff];

fn answers(port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    let mut head = [0u8; 8];
    s.write_all(&API_VERSIONS_V0).is_ok()
        && s.read_exact(&mut head).is_ok()
        && head[4..] == [0, 0, 0, 1]
}

fn hwm_kib(child: &Child) -> u64 {
    let status =
        std::fs::read_to_string(format!("/proc/{}/status", child.id())).unwrap_or_default();
    procstat::parse_status_kib(&status, "VmHWM").unwrap_or(0)
}

/// The producer thread: records numbered from 0 (the number in the value's first 8 bytes and
/// passed as the delivery opaque) until `stop`, then a flush.
fn spawn_producer(
    bootstrap: &str,
    value_bytes: usize,
    acks: Arc<Acks>,
    stop: Arc<AtomicBool>,
) -> anyhow::Result<std::thread::JoinHandle<()>> {
    let producer: ThreadedProducer<AckCtx> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "5")
        .set("message.timeout.ms", "600000")
        .set("reconnect.backoff.ms", "20")
        .set("reconnect.backoff.max.ms", "200")
        .set("retry.backoff.ms", "50")
        .create_with_context(AckCtx(acks))?;
    Ok(std::thread::spawn(move || {
        let mut value = vec![0u8; value_bytes.max(8)];
        let mut id = 0u64;
        while !stop.load(Ordering::Relaxed) {
            value[..8].copy_from_slice(&id.to_be_bytes());
            let key = id.to_be_bytes();
            let record = BaseRecord::with_opaque_to(TOPIC, id as usize)
                .payload(&value[..])
                .key(&key[..]);
            match producer.send(record) {
                Ok(()) => id += 1,
                Err(_) => std::thread::sleep(Duration::from_millis(1)), // queue full
            }
        }
        let _ = producer.flush(Duration::from_secs(300));
    }))
}

/// Every record of the topic, counted by number.
fn read_back(bootstrap: &str, partitions: u32) -> anyhow::Result<HashMap<u64, u32>> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "crashloop-check")
        .set("enable.auto.commit", "false")
        .create()?;
    let mut seen = HashMap::new();
    for p in 0..partitions as i32 {
        let (_, high) = consumer.fetch_watermarks(TOPIC, p, Duration::from_secs(30))?;
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(TOPIC, p, Offset::Beginning)?;
        consumer.assign(&tpl)?;
        let mut next = 0i64;
        let deadline = Instant::now() + Duration::from_secs(300);
        while next < high && Instant::now() < deadline {
            let Some(m) = consumer.poll(Duration::from_millis(500)) else {
                continue;
            };
            let m = m?;
            next = m.offset() + 1;
            if let Some(v) = m.payload().filter(|v| v.len() >= 8) {
                let id = u64::from_be_bytes(v[..8].try_into().expect("8 bytes"));
                *seen.entry(id).or_insert(0u32) += 1;
            }
        }
        anyhow::ensure!(next >= high, "partition {p} read to {next} of {high}");
    }
    Ok(seen)
}

/// Hostile connections until `stop`: random frames, pipelines whose responses are never read,
/// and half-sent size prefixes, each on its own connection (errors ignored: the broker dies
/// and comes back under them).
fn hostile_loop(port: u16, stop: &AtomicBool, count: &AtomicU64) {
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let mut held = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
            std::thread::sleep(Duration::from_millis(20));
            continue;
        };
        count.fetch_add(1, Ordering::Relaxed);
        let _ = s.set_write_timeout(Some(Duration::from_millis(200)));
        match next() % 3 {
            0 => {
                let len = 8 + (next() % 4096) as usize;
                let mut frame = (len as u32).to_be_bytes().to_vec();
                frame.extend((0..len).map(|_| next() as u8));
                let _ = s.write_all(&frame);
            }
            1 => {
                for _ in 0..64 {
                    let _ = s.write_all(&API_VERSIONS_V0);
                }
                held.push(s);
            }
            _ => {
                let _ = s.write_all(&[0, 0]);
                held.push(s);
            }
        }
        if held.len() > 200 {
            held.drain(..100);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}
