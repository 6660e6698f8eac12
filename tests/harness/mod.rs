//! End-to-end test harness: starts the real `shardlog` binary on a free loopback port with a
//! temporary data directory, stops it cleanly (SIGTERM) or kills it (SIGKILL), and gives tests
//! a small Kafka client of our own (`client.rs`) plus helpers to run real client programs.
#![allow(dead_code)]

pub mod client;

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub struct Broker {
    child: Option<Child>,
    pub port: u16,
    pub dir: PathBuf,
    pub shards: usize,
    /// Where the broker's stderr (its log) goes: `dir` with extension `log` unless given.
    log_path: PathBuf,
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A base port whose `count` ports from it are free now, for a cluster listener (shard i
/// listens on base + i). Drawn below the kernel's ephemeral range (32768 up on Linux), where
/// `free_port` and clients' source ports never land, so a port next to a base is not another
/// test's Kafka port or a connection's source port.
pub fn free_port_block(count: u16) -> u16 {
    use std::sync::atomic::{AtomicU16, Ordering};
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let seed = (std::process::id() as u16).wrapping_mul(97) % 6000;
    loop {
        let step = NEXT.fetch_add(count.max(1) + 1, Ordering::Relaxed);
        let base = 20_000 + (seed + step) % 12_000;
        let free = (0..count.max(1)).all(|i| TcpListener::bind(("127.0.0.1", base + i)).is_ok());
        if free {
            return base;
        }
    }
}

impl Broker {
    /// A broker with `shards` shards on a fresh port, data in `dir`.
    pub fn start(dir: &Path, shards: usize) -> Broker {
        Broker::start_on(dir, shards, free_port(), &[])
    }

    pub fn start_on(dir: &Path, shards: usize, port: u16, extra: &[&str]) -> Broker {
        Broker::start_logging(dir, shards, port, extra, "shardlog=debug")
    }

    /// As `start_on`, with the broker's log filter (RUST_LOG) given.
    pub fn start_logging(
        dir: &Path,
        shards: usize,
        port: u16,
        extra: &[&str],
        filter: &str,
    ) -> Broker {
        let mut cmd = broker_command(
            dir.to_str().unwrap(),
            shards,
            port,
            filter,
            &dir.with_extension("log"),
        );
        Broker::launch(cmd.args(extra), port, dir, shards)
    }

    /// A broker started in the working directory `cwd` with a relative `--data-dir`.
    pub fn start_in(cwd: &Path, relative_dir: &str, shards: usize, port: u16) -> Broker {
        let dir = cwd.join(relative_dir);
        let log = dir.with_extension("log");
        let mut cmd = broker_command(relative_dir, shards, port, "shardlog=debug", &log);
        Broker::launch(cmd.current_dir(cwd), port, &dir, shards)
    }

    fn launch(cmd: &mut Command, port: u16, dir: &Path, shards: usize) -> Broker {
        let b = Broker::spawn(cmd, port, dir, shards);
        b.wait_ready();
        b
    }

    /// As `start_on`, with the log written to `log` (for a data directory on a disk that
    /// fills up, where the log could not be written).
    pub fn start_logging_to(dir: &Path, shards: usize, port: u16, log: &Path) -> Broker {
        let data = dir.to_str().unwrap();
        let mut cmd = broker_command(data, shards, port, "shardlog=debug", log);
        let mut b = Broker::spawn(&mut cmd, port, dir, shards);
        b.log_path = log.to_path_buf();
        b.wait_ready();
        b
    }

    /// As `start_on`, but returns at once, ready or not (`wait_ready` waits).
    pub fn start_unready(dir: &Path, shards: usize, port: u16) -> Broker {
        let log = dir.with_extension("log");
        let mut cmd = broker_command(dir.to_str().unwrap(), shards, port, "shardlog=debug", &log);
        Broker::spawn(&mut cmd, port, dir, shards)
    }

    fn spawn(cmd: &mut Command, port: u16, dir: &Path, shards: usize) -> Broker {
        let child = cmd.spawn().expect("start shardlog");
        Broker {
            child: Some(child),
            port,
            dir: dir.to_path_buf(),
            shards,
            log_path: dir.with_extension("log"),
        }
    }

    /// Ready when several fresh connections in a row get an ApiVersions answer (the broker
    /// binds only once a killed predecessor's sockets are gone, `net::wait_for_port`; the
    /// streak stays as a check of that).
    pub fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut streak = 0;
        while Instant::now() < deadline {
            if self.answers_api_versions() {
                streak += 1;
                if streak == 12 {
                    return;
                }
            } else {
                streak = 0;
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        panic!("broker did not start; log: {}", self.log());
    }

    fn answers_api_versions(&self) -> bool {
        use std::io::{Read, Write};
        let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
        // ApiVersions v0: key 18, version 0, correlation id 1, null client id.
        let req = [0, 0, 0, 10, 0, 18, 0, 0, 0, 0, 0, 1, 0xff, 0xff];
        let mut head = [0u8; 8];
        s.write_all(&req).is_ok() && s.read_exact(&mut head).is_ok() && head[4..8] == [0, 0, 0, 1]
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// SIGTERM and wait: the clean shutdown path.
    pub fn stop(mut self) -> (PathBuf, u16) {
        let mut child = self.child.take().unwrap();
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let status =
            wait_timeout(&mut child, Duration::from_secs(30)).expect("broker stops on SIGTERM");
        assert!(status.success(), "clean exit; log: {}", self.log());
        (self.dir.clone(), self.port)
    }

    /// SIGKILL: a crash.
    pub fn kill(mut self) -> (PathBuf, u16) {
        let mut child = self.child.take().unwrap();
        let _ = child.kill();
        let _ = child.wait();
        (self.dir.clone(), self.port)
    }

    /// The broker process's resident memory now, bytes (VmRSS).
    pub fn rss_bytes(&self) -> u64 {
        self.status_bytes("VmRSS:")
    }

    /// The most resident memory the broker process has had so far, bytes (VmHWM).
    pub fn peak_rss_bytes(&self) -> u64 {
        self.status_bytes("VmHWM:")
    }

    fn status_bytes(&self, field: &str) -> u64 {
        let pid = self.child.as_ref().expect("running").id();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map_or(0, |kb| kb * 1024)
    }

    /// How many files under `dir` whose name ends in `suffix` the broker holds open now.
    pub fn open_files(&self, dir: &Path, suffix: &str) -> usize {
        let pid = self.child.as_ref().expect("running").id();
        let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).expect("fd table");
        fds.flatten()
            .filter_map(|fd| std::fs::read_link(fd.path()).ok())
            .filter(|p| p.starts_with(dir) && p.to_string_lossy().ends_with(suffix))
            .count()
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.as_mut().map(|c| c.try_wait()), Some(Ok(None)))
    }

    pub fn client(&self) -> client::Client {
        client::Client::connect(self.port)
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let log = self.log();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            eprintln!("--- broker log tail ({}) ---", self.dir.display());
            for l in tail.into_iter().rev() {
                eprintln!("{l}");
            }
        }
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn wait_timeout(child: &mut Child, d: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + d;
    while Instant::now() < deadline {
        if let Ok(Some(s)) = child.try_wait() {
            return Some(s);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    None
}

fn broker_command(data_dir: &str, shards: usize, port: u16, filter: &str, log: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_shardlog"));
    cmd.args(["--listen", &format!("127.0.0.1:{port}")])
        .args(["--data-dir", data_dir])
        .args(["--shards", &shards.to_string()])
        // Any free port, so brokers of tests running at once never share 9644; a test that
        // scrapes passes --admin-listen (flags win over the environment).
        .env("SHARDLOG_ADMIN_LISTEN", "127.0.0.1:0")
        .env("RUST_LOG", filter)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap());
    cmd
}

/// Runs a client program with a time limit; panics with its output if it fails.
pub fn run(cmd: &mut Command, limit_secs: u64) -> Output {
    let program = format!("{cmd:?}");
    let out = Command::new("timeout")
        .arg(limit_secs.to_string())
        .arg(cmd.get_program())
        .args(cmd.get_args())
        .envs(cmd.get_envs().filter_map(|(k, v)| v.map(|v| (k, v))))
        .current_dir(cmd.get_current_dir().unwrap_or(Path::new(".")))
        .output()
        .expect("run client program");
    if !out.status.success() {
        panic!(
            "{program} failed ({}):\nstdout:\n{}\nstderr:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    out
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// tests/clients, where the real-client programs live.
pub fn clients_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients")
}

/// `node tests/clients/node/<script>` with the broker address in `BROKER` (how the seed code
/// is pointed at a broker), run from that directory so that it finds node_modules.
pub fn node(script: &str, broker: &str) -> Command {
    let dir = clients_dir().join("node");
    let mut c = Command::new("node");
    c.arg(dir.join(script))
        .env("BROKER", broker)
        .current_dir(dir);
    c
}
