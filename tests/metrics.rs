//! The admin listener end to end: a real Prometheus server (Debian's `prometheus`, started here
//! on loopback with a one-second scrape of the broker) scrapes the broker while kcat produces
//! and a confluent-kafka group consumer commits; the test asks Prometheus's HTTP API for the
//! produced records and bytes, the group's lag (which must equal what `shardlog groups
//! describe` prints) and the Produce latency histogram. `promtool check metrics` checks the
//! exposition format, and the `/v1` JSON API and the readiness probe are read as an
//! orchestrator would. tests/setup-clients.sh installs prometheus, kcat and confluent-kafka.

mod harness;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use harness::{clients_dir, free_port, run, stdout, Broker};

/// GET `path` from `addr`: (status, body).
fn get(addr: &str, path: &str, accept: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: {accept}\r\nConnection: close\r\n\r\n"
    );
    s.write_all(req.as_bytes()).unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").expect("a head");
    let status = head.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap();
    (status, body.to_string())
}

/// Percent-encodes a PromQL query for a URL.
fn encode(q: &str) -> String {
    q.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A Prometheus server scraping `target` every second; killed on drop.
struct Prometheus {
    child: Child,
    addr: String,
}

impl Prometheus {
    fn start(dir: &Path, target: &str) -> Prometheus {
        let config = dir.join("prometheus.yml");
        let yml = format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  \
             - job_name: shardlog\n    static_configs:\n      - targets: ['{target}']\n"
        );
        std::fs::write(&config, yml).unwrap();
        let addr = format!("127.0.0.1:{}", free_port());
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("tsdb").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("prometheus.log")).unwrap())
            .spawn()
            .expect("prometheus (Debian's package; tests/setup-clients.sh installs it)");
        let p = Prometheus { child, addr };
        let deadline = Instant::now() + Duration::from_secs(60);
        while TcpStream::connect(&p.addr).is_err() || get(&p.addr, "/-/ready", "*/*").0 != 200 {
            assert!(Instant::now() < deadline, "prometheus did not get ready");
            std::thread::sleep(Duration::from_millis(200));
        }
        p
    }

    /// The value of an instant query that returns one series (None: no series yet).
    fn value(&self, query: &str) -> Option<f64> {
        let (status, body) = get(
            &self.addr,
            &format!("/api/v1/query?query={}", encode(query)),
            "*/*",
        );
        assert_eq!(status, 200, "{query}: {body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        let result = v["data"]["result"].as_array()?;
        let first = result.first()?;
        first["value"][1].as_str()?.parse().ok()
    }

    /// Waits until `query` returns `want` (a scrape after the workload has landed).
    fn wait_for(&self, query: &str, want: f64) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let got = self.value(query);
            if got == Some(want) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{query}: {got:?}, expected {want}"
            );
            std::thread::sleep(Duration::from_millis(500));
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn kcat_produce(broker: &str, topic: &str, n: usize) {
    let mut c = Command::new("kcat")
        .args(["-P", "-b", broker, "-t", topic, "-K", ":", "-X", "acks=all"])
        .stdin(Stdio::piped())
        .spawn()
        .expect("kcat");
    let mut input = String::new();
    for i in 0..n {
        input.push_str(&format!("key-{}:{}\n", i % 7, "v".repeat(100)));
    }
    c.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    assert!(c.wait().unwrap().success());
}

/// The LAG column of `shardlog groups describe GROUP`, summed over the group's partitions.
fn described_lag(broker: &Broker, group: &str) -> i64 {
    let out = stdout(&run(
        Command::new(env!("CARGO_BIN_EXE_shardlog")).args([
            "groups",
            "describe",
            group,
            "--bootstrap-server",
            &broker.addr(),
        ]),
        30,
    ));
    let mut lines = out.lines();
    let header: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    let col = header.iter().position(|h| *h == "LAG").expect(&out);
    let rows = lines.filter(|l| l.starts_with(group));
    rows.map(|l| {
        l.split_whitespace()
            .nth(col)
            .unwrap()
            .parse::<i64>()
            .expect(&out)
    })
    .sum()
}

#[test]
fn prometheus_scrapes_traffic_lag_and_latency_during_a_real_client_workload() {
    let dir = tempfile::tempdir().unwrap();
    let admin = format!("127.0.0.1:{}", free_port());
    let extra = ["--admin-listen", &admin, "--num-partitions", "2"];
    let broker = Broker::start_on(&dir.path().join("data"), 2, free_port(), &extra);
    let prom = Prometheus::start(dir.path(), &admin);
    let (topic, group) = ("metered", "metered-readers");
    kcat_produce(&broker.addr(), topic, 200);
    let take = Command::new("python3")
        .arg(clients_dir().join("python").join("group_take_confluent.py"))
        .args([&broker.addr(), topic, group, "50"])
        .output()
        .unwrap();
    assert!(
        take.status.success(),
        "{}",
        String::from_utf8_lossy(&take.stderr)
    );
    kcat_produce(&broker.addr(), topic, 30);

    prom.wait_for("up{job=\"shardlog\"}", 1.0);
    let records = format!("sum(shardlog_partition_records_in_total{{topic=\"{topic}\"}})");
    prom.wait_for(&records, 230.0);
    let bytes = prom.value(&format!(
        "sum(shardlog_partition_bytes_in_total{{topic=\"{topic}\"}})"
    ));
    let size = prom.value(&format!(
        "sum(shardlog_partition_size_bytes{{topic=\"{topic}\"}})"
    ));
    let bytes = bytes.expect("produced bytes");
    assert!(
        bytes >= 230.0 * 100.0,
        "{bytes} bytes for 230 records of 100 bytes"
    );
    assert_eq!(Some(bytes), size, "all produced bytes are in the log");

    // Lag counts the partitions with a commit (the group took all 50 from one partition
    // or both): between 1 and 230 - 50.
    let lag = described_lag(&broker, group);
    assert!((1..=180).contains(&lag), "lag {lag}");
    prom.wait_for(
        &format!("sum(shardlog_group_lag{{group=\"{group}\"}})"),
        lag as f64,
    );

    let count = "shardlog_request_duration_seconds_count{api=\"Produce\"}";
    let produced = prom.value(count).expect("Produce latency histogram");
    assert!(produced >= 2.0, "{produced} Produce requests");
    let inf = "shardlog_request_duration_seconds_bucket{api=\"Produce\",le=\"+Inf\"}";
    assert_eq!(prom.value(inf), Some(produced));
    let p99 = "histogram_quantile(0.99, shardlog_request_duration_seconds_bucket{api=\"Produce\"})";
    assert!(prom.value(p99).is_some_and(|s| s > 0.0 && s < 30.0));
    let fetched = format!("sum(shardlog_partition_records_out_total{{topic=\"{topic}\"}})");
    assert!(prom.value(&fetched).is_some_and(|n| n >= 50.0));
    dashboard_queries_run(&prom);
}

/// Every query of the Grafana dashboard (docs/grafana/shardlog.json), its variables filled in,
/// is valid PromQL to this Prometheus and finds series.
fn dashboard_queries_run(prom: &Prometheus) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/grafana/shardlog.json");
    let dash: serde_json::Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    let panels = dash["panels"].as_array().unwrap();
    let exprs = panels
        .iter()
        .flat_map(|p| p["targets"].as_array().into_iter().flatten());
    let mut checked = 0;
    for t in exprs {
        let expr = t["expr"].as_str().unwrap();
        let q = expr
            .replace("$__rate_interval", "1m")
            .replace("$job", ".*")
            .replace("$topic", ".*")
            .replace("$group", ".*");
        let (status, body) = get(
            &prom.addr,
            &format!("/api/v1/query?query={}", encode(&q)),
            "*/*",
        );
        assert_eq!(status, 200, "{expr}: {body}");
        checked += 1;
    }
    assert!(checked >= 20, "{checked} dashboard queries");
}

#[test]
fn the_exposition_passes_promtool_and_the_status_api_answers() {
    let dir = tempfile::tempdir().unwrap();
    let admin = format!("127.0.0.1:{}", free_port());
    let broker = Broker::start_on(
        &dir.path().join("data"),
        2,
        free_port(),
        &["--admin-listen", &admin],
    );
    kcat_produce(&broker.addr(), "checked", 20);
    // A topic of 300 partitions: each shard's snapshot walks its ~150 in several turns.
    run(
        Command::new(env!("CARGO_BIN_EXE_shardlog")).args([
            "topics",
            "create",
            "wide",
            "--partitions",
            "300",
            "--bootstrap-server",
            &broker.addr(),
        ]),
        30,
    );
    // Prometheus itself asks for (and parsed, in the test above) OpenMetrics; promtool checks
    // the classic text format, whose lint also wants every counter named `_total`.
    let (_, open) = get(
        &admin,
        "/metrics",
        "application/openmetrics-text; version=1.0.0",
    );
    assert!(open.ends_with("# EOF\n") && open.contains("# TYPE shardlog_requests counter\n"));
    {
        let (status, text) = get(&admin, "/metrics", "text/plain");
        assert_eq!(status, 200);
        let mut promtool = Command::new("promtool")
            .args(["check", "metrics"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("promtool (Debian's prometheus package)");
        promtool
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
        let out = promtool.wait_with_output().unwrap();
        let said = String::from_utf8_lossy(&out.stdout).to_string()
            + &String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() && said.trim().is_empty(),
            "promtool: {said}"
        );
        assert!(!text.contains("# EOF"));
        // Every metric the dashboard plots exists.
        let dash = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/grafana/shardlog.json"),
        )
        .unwrap();
        for name in dash.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
            if name.starts_with("shardlog_") || name.starts_with("process_") {
                let family = format!("# TYPE {name} ");
                let sample = format!("\n{name}");
                let found = text.contains(&family) || text.contains(&sample);
                assert!(found, "{name} is not exported");
            }
        }
    }
    assert_eq!(get(&admin, "/v1/status/live", "*/*").0, 200);
    let (status, ready) = get(&admin, "/v1/status/ready", "*/*");
    assert_eq!(status, 200, "{ready}");
    let brokers: serde_json::Value =
        serde_json::from_str(&get(&admin, "/v1/brokers", "*/*").1).unwrap();
    assert_eq!(
        brokers[0]["port"].as_i64(),
        broker.addr().rsplit(':').next().unwrap().parse().ok()
    );
    let topics: serde_json::Value =
        serde_json::from_str(&get(&admin, "/v1/topics", "*/*").1).unwrap();
    let checked = topics
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "checked")
        .unwrap();
    assert_eq!(checked["partitions"][0]["high_watermark"], 20);
    let wide = topics
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "wide");
    let listed = wide.unwrap()["partitions"].as_array().unwrap();
    let indexes: Vec<i64> = listed
        .iter()
        .map(|p| p["partition"].as_i64().unwrap())
        .collect();
    assert_eq!(indexes, (0..300).collect::<Vec<i64>>());
    let groups: serde_json::Value =
        serde_json::from_str(&get(&admin, "/v1/groups", "*/*").1).unwrap();
    assert!(groups.is_array());
    assert_eq!(get(&admin, "/nowhere", "*/*").0, 404);
    let mut raw = TcpStream::connect(&admin).unwrap();
    raw.write_all(b"NONSENSE\r\n\r\n").unwrap();
    let mut answer = String::new();
    raw.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    let second = std::net::TcpListener::bind(&admin);
    assert!(
        second.is_err(),
        "the admin port is not shared (no SO_REUSEPORT)"
    );
}
