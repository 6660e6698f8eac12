//! End-to-end smoke test of the load generator against the real broker: starts the `shardlog`
//! binary the root package builds (run `cargo build` at the repository root first, or set
//! SHARDLOG_BIN) on a free loopback port with a temporary data directory, runs a 3-second
//! low-rate workload through `shardlog-bench run`, then `report` and a one-round `compare`,
//! and checks that every file is written and every produced message was consumed. It asserts
//! nothing about speed.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

const BENCH: &str = env!("CARGO_BIN_EXE_shardlog-bench");
/// Longest one bench command may take before the test gives up on it.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(180);

/// The broker binary: SHARDLOG_BIN, else beside this package's binary (same target dir and
/// profile), else under CARGO_TARGET_DIR or the workspace's target/, debug before release.
fn broker_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("SHARDLOG_BIN") {
        return PathBuf::from(p);
    }
    let mut candidates = vec![Path::new(BENCH).with_file_name("shardlog")];
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let targets = [
        std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from),
        Some(workspace.join("target")),
    ];
    for t in targets.into_iter().flatten() {
        candidates.push(t.join("debug/shardlog"));
        candidates.push(t.join("release/shardlog"));
    }
    candidates.into_iter().find(|p| p.is_file()).expect(
        "shardlog binary not found: run `cargo build` at the repository root or set SHARDLOG_BIN",
    )
}

fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

struct Broker {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl Broker {
    fn start(dir: &Path) -> Broker {
        let port = free_port();
        let log = dir.join("broker.log");
        let child = Command::new(broker_binary())
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(["--data-dir", dir.join("data").to_str().unwrap()])
            .args(["--shards", "2"])
            .env("SHARDLOG_ADMIN_LISTEN", "127.0.0.1:0")
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("start shardlog");
        let b = Broker { child, port, log };
        b.wait_ready();
        b
    }

    /// Ready when a few connections in a row get an ApiVersions v0 answer.
    fn wait_ready(&self) {
        use std::io::{Read, Write};
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut streak = 0;
        while streak < 5 {
            assert!(
                Instant::now() < deadline,
                "broker not ready: {}",
                self.log()
            );
            let ok = TcpStream::connect(("127.0.0.1", self.port)).is_ok_and(|mut s| {
                let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
                let req = [0, 0, 0, 10, 0, 18, 0, 0, 0, 0, 0, 1, 0xff, 0xff];
                let mut head = [0u8; 8];
                s.write_all(&req).is_ok() && s.read_exact(&mut head).is_ok()
            });
            streak = if ok { streak + 1 } else { 0 };
            if !ok {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }

    fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs the bench binary with `args`, bounded in time; returns its stdout.
fn bench(args: &[&str], broker: &Broker) -> String {
    let mut child = Command::new(BENCH)
        .args(args)
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start shardlog-bench");
    let deadline = Instant::now() + COMMAND_TIMEOUT;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("shardlog-bench {args:?} timed out");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "shardlog-bench {args:?} failed\nstdout:\n{stdout}\nstderr:\n{}\nbroker log:\n{}",
        String::from_utf8_lossy(&out.stderr),
        broker.log()
    );
    stdout
}

const WORKLOAD: &str = r#"
name = "smoke"
topics = 2
partitions_per_topic = 3
message_size_bytes = 200
keys = true
producers_per_topic = 1
consumers_per_topic = 2
subscriptions_per_topic = 2
rate = "200 msg/s"
acks = "all"
compression = "lz4"
warmup_s = 1
duration_s = 2
drain_timeout_s = 30

[topic_config]
"flush.messages" = "1"
"#;

fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    serde_json::from_str(&text).unwrap()
}

fn u(v: &Value, path: &str) -> u64 {
    v.pointer(path)
        .and_then(Value::as_u64)
        .unwrap_or_else(|| panic!("{path} missing in {v}"))
}

/// Subscriptions in `WORKLOAD`: each reads every message.
const SUBSCRIPTIONS: u64 = 2;

/// Every acknowledged message consumed exactly once per subscription, and latency recorded.
fn check_summary(s: &Value) {
    let sent = u(s, "/totals/sent");
    assert!(sent > 0, "nothing sent: {s}");
    assert_eq!(u(s, "/totals/acked"), sent, "{s}");
    assert_eq!(u(s, "/totals/consumed_unique"), sent * SUBSCRIPTIONS, "{s}");
    assert_eq!(u(s, "/totals/consumed"), sent * SUBSCRIPTIONS, "{s}");
    assert_eq!(u(s, "/totals/missing"), 0, "{s}");
    assert_eq!(u(s, "/totals/duplicates"), 0, "{s}");
    assert_eq!(u(s, "/totals/delivery_errors"), 0, "{s}");
    assert!(u(s, "/publish_latency/count") > 0, "{s}");
    assert!(u(s, "/e2e_latency/count") > 0, "{s}");
}

#[test]
fn run_report_and_compare_against_the_real_broker() {
    let tmp = tempfile::tempdir().unwrap();
    let broker = Broker::start(tmp.path());
    let workload = tmp.path().join("smoke.toml");
    std::fs::write(&workload, WORKLOAD).unwrap();
    let out = tmp.path().join("run");
    check_run(&broker, &workload, &out);
    check_report(&broker, &out, &tmp.path().join("report.html"));
    check_compare(&broker, &workload, &tmp.path().join("compare"));
}

/// `run` writes a complete summary, both `.hgrm` files and a report with two charts.
fn check_run(broker: &Broker, workload: &Path, out: &Path) {
    let pid = broker.child.id().to_string();
    let stdout = bench(
        &[
            "run",
            "--bootstrap",
            &broker.addr(),
            "--workload",
            workload.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--label",
            "smoke",
            "--broker-pid",
            &pid,
        ],
        broker,
    );
    assert!(stdout.contains("p99.99"), "{stdout}");
    let summary = read_json(&out.join("summary.json"));
    check_summary(&summary);
    assert_eq!(summary["label"], "smoke");
    assert!(summary["broker"]["rss_peak_mib"].as_f64().unwrap() > 0.0);
    for hgrm in ["publish.hgrm", "e2e.hgrm"] {
        let text = std::fs::read_to_string(out.join(hgrm)).unwrap();
        assert!(text.starts_with("       Value     Percentile TotalCount 1/(1-Percentile)"));
        assert!(text.contains("#[Max     ="), "{text}");
    }
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert_eq!(html.matches("<svg").count(), 2);
}

/// `report` draws a run's summary and its `.hgrm` files as two series on each chart.
fn check_report(broker: &Broker, run: &Path, report: &Path) {
    let inputs = [
        run.join("summary.json"),
        run.join("publish.hgrm"),
        run.join("e2e.hgrm"),
    ];
    let mut args = vec!["report", "--out", report.to_str().unwrap()];
    args.extend(inputs.iter().map(|p| p.to_str().unwrap()));
    bench(&args, broker);
    let html = std::fs::read_to_string(report).unwrap();
    assert_eq!(html.matches("<polyline").count(), 4, "2 series x 2 charts");
}

/// `compare` with the broker on both sides: every round complete, ratios written.
fn check_compare(broker: &Broker, workload: &Path, out: &Path) {
    let addr = broker.addr();
    let stdout = bench(
        &[
            "compare",
            "--a",
            &addr,
            "--b",
            &addr,
            "--rounds",
            "1",
            "--workload",
            workload.to_str().unwrap(),
            "--warmup-s",
            "0",
            "--duration-s",
            "1",
            "--quiet",
            "--out",
            out.to_str().unwrap(),
        ],
        broker,
    );
    assert!(stdout.contains("B/A"), "{stdout}");
    for side in ["round-1-A", "round-1-B", "combined-A", "combined-B"] {
        check_summary(&read_json(&out.join(side).join("summary.json")));
    }
    let c = read_json(&out.join("compare.json"));
    assert_eq!(c["ratios"].as_array().unwrap().len(), 9);
    assert_eq!(c["rounds"].as_array().unwrap().len(), 1);
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(html.contains("<pre>"));
}

/// `crashloop` kills and restarts the broker under an idempotent producer and hostile
/// connections, and finds every acknowledged record exactly once (it exits non-zero otherwise).
#[test]
fn crashloop_loses_and_duplicates_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let port = free_port().to_string();
    let broker = broker_binary();
    let out = Command::new(BENCH)
        .args([
            "crashloop",
            "--cycles",
            "3",
            "--kill-every-ms",
            "700",
            "--hostile",
        ])
        .args(["--port", &port, "--partitions", "2"])
        .args(["--broker-bin", broker.to_str().unwrap()])
        .args(["--data-dir", tmp.path().join("data").to_str().unwrap()])
        .env("RUST_LOG", "warn")
        .stderr(Stdio::null())
        .output()
        .expect("run shardlog-bench crashloop");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "crashloop failed: {stdout}");
    let report: Value = serde_json::from_str(&stdout).expect("a JSON report");
    assert_eq!(report["cycles"], 3);
    assert_eq!(report["lost"], 0);
    assert_eq!(report["duplicated"], 0);
    assert!(report["acknowledged"].as_u64().unwrap() > 0, "{stdout}");
}
