//! A workload: what one benchmark run does to a broker (topics, partitions, message size,
//! producers, consumers, rate, producer settings, phases). Workloads are TOML files
//! (benches/loadgen/workloads/) so the standard cases are reviewed and versioned like code; this
//! module parses them, applies command-line overrides and validates everything before a single
//! connection is made, so a typo fails in milliseconds instead of after a warm-up.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::payload::HEADER_BYTES;

/// Bytes in a MiB: throughput is reported in MiB/s, the unit Kafka's perf tools and the
/// OpenMessaging Benchmark call "MB/s".
pub const MIB: f64 = 1024.0 * 1024.0;

/// The largest message the tool produces; librdkafka's `message.max.bytes` default.
pub const MESSAGE_BYTES_MAX: usize = 1_000_000;

/// The most producer or consumer threads a workload may start (the machine has two cores; this
/// bound only stops a typo from starting thousands of threads).
pub const CLIENTS_MAX: usize = 256;

/// librdkafka's upper bound for `linger.ms`.
pub const LINGER_MS_MAX: f64 = 900_000.0;

#[derive(Debug, thiserror::Error)]
pub enum WorkloadError {
    #[error("cannot read workload {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("invalid workload {path}: {source}")]
    Parse {
        path: String,
        source: Box<toml::de::Error>,
    },
    #[error("invalid rate {0:?}: expected \"max\", \"N msg/s\" or \"N MiB/s\"")]
    Rate(String),
    #[error("invalid workload: {0}")]
    Invalid(String),
}

/// Producer acknowledgement level (`acks`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Acks {
    #[serde(rename = "0")]
    None,
    #[serde(rename = "1")]
    Leader,
    #[serde(rename = "all")]
    All,
}

impl Acks {
    pub fn as_config(self) -> &'static str {
        match self {
            Acks::None => "0",
            Acks::Leader => "1",
            Acks::All => "all",
        }
    }
}

/// Producer batch compression (`compression.type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    None,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

impl Compression {
    pub fn as_config(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Snappy => "snappy",
            Compression::Lz4 => "lz4",
            Compression::Zstd => "zstd",
        }
    }
}

/// Target publish rate, as written: `"max"`, `"20480 msg/s"` or `"20 MiB/s"`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RateSpec {
    Max,
    MsgsPerS(f64),
    MibPerS(f64),
}

impl RateSpec {
    pub fn parse(text: &str) -> Result<RateSpec, WorkloadError> {
        let t = text.trim();
        if t.eq_ignore_ascii_case("max") {
            return Ok(RateSpec::Max);
        }
        let bad = || WorkloadError::Rate(text.to_string());
        let (number, unit) = t.split_once(char::is_whitespace).ok_or_else(bad)?;
        let value: f64 = number.parse().map_err(|_| bad())?;
        if !(value.is_finite() && value > 0.0) {
            return Err(bad());
        }
        match unit.trim() {
            "msg/s" | "msgs/s" => Ok(RateSpec::MsgsPerS(value)),
            "MiB/s" | "MB/s" => Ok(RateSpec::MibPerS(value)),
            _ => Err(bad()),
        }
    }
}

impl fmt::Display for RateSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RateSpec::Max => write!(f, "max"),
            RateSpec::MsgsPerS(r) => write!(f, "{r} msg/s"),
            RateSpec::MibPerS(r) => write!(f, "{r} MiB/s"),
        }
    }
}

/// The rate a run aims at, resolved against the message size.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Rate {
    /// As fast as the producers can enqueue; latency counts from the actual send.
    Max,
    /// A fixed total rate over all producers; latency counts from the intended send time.
    Fixed { msgs_per_s: f64 },
}

/// The workload file as written (every field optional but `name`), before validation.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct WorkloadFile {
    name: String,
    #[serde(default)]
    description: String,
    topic_prefix: Option<String>,
    #[serde(default = "one")]
    topics: usize,
    #[serde(default = "one")]
    partitions_per_topic: usize,
    #[serde(default = "one_i32")]
    replication_factor: i32,
    #[serde(default = "default_message_size")]
    message_size_bytes: usize,
    #[serde(default)]
    keys: bool,
    #[serde(default = "one")]
    producers_per_topic: usize,
    #[serde(default = "one")]
    consumers_per_topic: usize,
    #[serde(default = "one")]
    subscriptions_per_topic: usize,
    #[serde(default = "default_rate")]
    rate: String,
    #[serde(default = "default_acks")]
    acks: Acks,
    #[serde(default = "default_compression")]
    compression: Compression,
    #[serde(default = "default_linger")]
    linger_ms: f64,
    #[serde(default = "default_batch")]
    batch_size_bytes: usize,
    #[serde(default = "default_warmup")]
    warmup_s: u64,
    #[serde(default = "default_duration")]
    duration_s: u64,
    #[serde(default = "default_drain")]
    drain_timeout_s: u64,
    #[serde(default)]
    topic_config: BTreeMap<String, String>,
    #[serde(default)]
    producer_config: BTreeMap<String, String>,
    #[serde(default)]
    consumer_config: BTreeMap<String, String>,
}

fn one() -> usize {
    1
}
fn one_i32() -> i32 {
    1
}
fn default_message_size() -> usize {
    1024
}
fn default_rate() -> String {
    "max".into()
}
fn default_acks() -> Acks {
    Acks::Leader
}
fn default_compression() -> Compression {
    Compression::None
}
fn default_linger() -> f64 {
    1.0
}
fn default_batch() -> usize {
    1 << 20
}
fn default_warmup() -> u64 {
    10
}
fn default_duration() -> u64 {
    60
}
fn default_drain() -> u64 {
    30
}

/// A validated workload. Counts are at least 1, the message holds the payload header, and
/// `rate` is resolved to messages per second.
#[derive(Debug, Clone, Serialize)]
pub struct Workload {
    pub name: String,
    pub description: String,
    pub topic_prefix: String,
    pub topics: usize,
    pub partitions_per_topic: usize,
    pub replication_factor: i32,
    pub message_size_bytes: usize,
    pub keys: bool,
    pub producers_per_topic: usize,
    pub consumers_per_topic: usize,
    /// Independent readers of the whole topic (the OpenMessaging Benchmark's subscriptions):
    /// each has `consumers_per_topic` consumers splitting the partitions, and every message is
    /// read once per subscription (fan-out).
    pub subscriptions_per_topic: usize,
    pub rate: Rate,
    pub acks: Acks,
    pub compression: Compression,
    /// librdkafka's `linger.ms`, which takes fractions of a millisecond.
    pub linger_ms: f64,
    pub batch_size_bytes: usize,
    pub warmup_s: u64,
    pub duration_s: u64,
    pub drain_timeout_s: u64,
    pub topic_config: BTreeMap<String, String>,
    pub producer_config: BTreeMap<String, String>,
    pub consumer_config: BTreeMap<String, String>,
}

/// Command-line overrides of a workload file, for short trial runs.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub rate: Option<String>,
    pub warmup_s: Option<u64>,
    pub duration_s: Option<u64>,
    pub topic_prefix: Option<String>,
    pub linger_ms: Option<f64>,
}

impl Workload {
    pub fn load(path: &Path, overrides: &Overrides) -> Result<Workload, WorkloadError> {
        let text = std::fs::read_to_string(path).map_err(|source| WorkloadError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Workload::parse(&text, overrides).map_err(|e| match e {
            WorkloadError::Parse { source, .. } => WorkloadError::Parse {
                path: path.display().to_string(),
                source,
            },
            other => other,
        })
    }

    pub fn parse(text: &str, overrides: &Overrides) -> Result<Workload, WorkloadError> {
        let mut file: WorkloadFile = toml::from_str(text).map_err(|e| WorkloadError::Parse {
            path: "<text>".into(),
            source: Box::new(e),
        })?;
        if let Some(rate) = &overrides.rate {
            file.rate = rate.clone();
        }
        file.warmup_s = overrides.warmup_s.unwrap_or(file.warmup_s);
        file.duration_s = overrides.duration_s.unwrap_or(file.duration_s);
        file.linger_ms = overrides.linger_ms.unwrap_or(file.linger_ms);
        if let Some(prefix) = &overrides.topic_prefix {
            file.topic_prefix = Some(prefix.clone());
        }
        validate(file)
    }

    /// Topic names, `<prefix>-<i>`.
    pub fn topic_names(&self) -> Vec<String> {
        (0..self.topics)
            .map(|i| format!("{}-{i}", self.topic_prefix))
            .collect()
    }

    pub fn producers(&self) -> usize {
        self.topics * self.producers_per_topic
    }

    pub fn consumers(&self) -> usize {
        self.topics * self.subscriptions_per_topic * self.consumers_per_topic
    }

    /// Messages the producers aim to send in warm-up plus measurement, if the rate is fixed.
    pub fn planned_msgs(&self) -> Option<u64> {
        match self.rate {
            Rate::Max => None,
            Rate::Fixed { msgs_per_s } => {
                Some((msgs_per_s * (self.warmup_s + self.duration_s) as f64).ceil() as u64)
            }
        }
    }
}

fn invalid(why: impl Into<String>) -> WorkloadError {
    WorkloadError::Invalid(why.into())
}

fn validate(f: WorkloadFile) -> Result<Workload, WorkloadError> {
    check_counts(&f)?;
    if f.message_size_bytes < HEADER_BYTES || f.message_size_bytes > MESSAGE_BYTES_MAX {
        return Err(invalid(format!(
            "message_size_bytes must be in {HEADER_BYTES}..={MESSAGE_BYTES_MAX} (the payload \
             carries a {HEADER_BYTES}-byte header with the send timestamp), got {}",
            f.message_size_bytes
        )));
    }
    if f.duration_s == 0 {
        return Err(invalid("duration_s must be at least 1"));
    }
    if !(0.0..=LINGER_MS_MAX).contains(&f.linger_ms) {
        return Err(invalid(format!("linger_ms must be 0-{LINGER_MS_MAX}")));
    }
    if f.batch_size_bytes == 0 {
        return Err(invalid("batch_size_bytes must be at least 1"));
    }
    let rate = match RateSpec::parse(&f.rate)? {
        RateSpec::Max => Rate::Max,
        RateSpec::MsgsPerS(r) => Rate::Fixed { msgs_per_s: r },
        RateSpec::MibPerS(r) => Rate::Fixed {
            msgs_per_s: r * MIB / f.message_size_bytes as f64,
        },
    };
    let topic_prefix = f
        .topic_prefix
        .unwrap_or_else(|| format!("bench-{}", f.name));
    check_topic_name(&topic_prefix)?;
    Ok(Workload {
        name: f.name,
        description: f.description,
        topic_prefix,
        topics: f.topics,
        partitions_per_topic: f.partitions_per_topic,
        replication_factor: f.replication_factor,
        message_size_bytes: f.message_size_bytes,
        keys: f.keys,
        producers_per_topic: f.producers_per_topic,
        consumers_per_topic: f.consumers_per_topic,
        subscriptions_per_topic: f.subscriptions_per_topic,
        rate,
        acks: f.acks,
        compression: f.compression,
        linger_ms: f.linger_ms,
        batch_size_bytes: f.batch_size_bytes,
        warmup_s: f.warmup_s,
        duration_s: f.duration_s,
        drain_timeout_s: f.drain_timeout_s,
        topic_config: f.topic_config,
        producer_config: f.producer_config,
        consumer_config: f.consumer_config,
    })
}

fn check_counts(f: &WorkloadFile) -> Result<(), WorkloadError> {
    let counts = [
        ("topics", f.topics),
        ("partitions_per_topic", f.partitions_per_topic),
        ("producers_per_topic", f.producers_per_topic),
        ("consumers_per_topic", f.consumers_per_topic),
        ("subscriptions_per_topic", f.subscriptions_per_topic),
    ];
    for (name, n) in counts {
        if n == 0 {
            return Err(invalid(format!("{name} must be at least 1")));
        }
    }
    if f.partitions_per_topic > i32::MAX as usize {
        return Err(invalid("partitions_per_topic is too large"));
    }
    if f.replication_factor < 1 {
        return Err(invalid("replication_factor must be at least 1"));
    }
    let readers = f
        .subscriptions_per_topic
        .saturating_mul(f.consumers_per_topic);
    let clients = f
        .topics
        .saturating_mul(f.producers_per_topic.saturating_add(readers));
    if clients > CLIENTS_MAX {
        return Err(invalid(format!(
            "{clients} producer and consumer threads; at most {CLIENTS_MAX}"
        )));
    }
    Ok(())
}

/// Kafka's topic name rule (legal characters; the index suffix keeps it under 249).
fn check_topic_name(prefix: &str) -> Result<(), WorkloadError> {
    let legal = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    if prefix.is_empty() || prefix.len() > 200 || !prefix.chars().all(legal) {
        return Err(invalid(format!(
            "topic prefix {prefix:?} must be 1-200 characters of [a-zA-Z0-9._-]"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Workload, WorkloadError> {
        Workload::parse(text, &Overrides::default())
    }

    #[test]
    fn defaults_fill_a_minimal_file() {
        let w = parse("name = \"x\"").unwrap();
        assert_eq!(w.topic_prefix, "bench-x");
        assert_eq!((w.topics, w.partitions_per_topic), (1, 1));
        assert_eq!(w.message_size_bytes, 1024);
        assert_eq!(w.rate, Rate::Max);
        assert_eq!(w.acks, Acks::Leader);
        assert_eq!(w.compression, Compression::None);
        assert_eq!((w.warmup_s, w.duration_s), (10, 60));
        assert_eq!(w.topic_names(), vec!["bench-x-0".to_string()]);
    }

    #[test]
    fn rates_parse_and_resolve_against_message_size() {
        assert_eq!(RateSpec::parse("max").unwrap(), RateSpec::Max);
        assert_eq!(
            RateSpec::parse("1500 msg/s").unwrap(),
            RateSpec::MsgsPerS(1500.0)
        );
        assert_eq!(
            RateSpec::parse("20 MiB/s").unwrap(),
            RateSpec::MibPerS(20.0)
        );
        for bad in [
            "",
            "fast",
            "10",
            "-5 msg/s",
            "0 msg/s",
            "10 GB/s",
            "NaN msg/s",
        ] {
            assert!(RateSpec::parse(bad).is_err(), "{bad:?} accepted");
        }
        let w = parse("name = \"x\"\nrate = \"20 MiB/s\"\nmessage_size_bytes = 1024").unwrap();
        assert_eq!(
            w.rate,
            Rate::Fixed {
                msgs_per_s: 20480.0
            }
        );
        assert_eq!(w.planned_msgs(), Some(20480 * 70));
    }

    #[test]
    fn full_file_with_configs() {
        let w = parse(
            r#"
            name = "fsync"
            topics = 2
            partitions_per_topic = 16
            producers_per_topic = 2
            consumers_per_topic = 3
            subscriptions_per_topic = 2
            acks = "all"
            compression = "zstd"
            keys = true
            [topic_config]
            "flush.messages" = "1"
            [producer_config]
            "enable.idempotence" = "false"
            "#,
        )
        .unwrap();
        assert_eq!(w.acks, Acks::All);
        assert_eq!(w.compression.as_config(), "zstd");
        assert_eq!((w.producers(), w.consumers()), (4, 12));
        assert_eq!(w.topic_config["flush.messages"], "1");
        assert_eq!(w.producer_config.len(), 1);
        assert_eq!(w.topic_names(), vec!["bench-fsync-0", "bench-fsync-1"]);
    }

    #[test]
    fn shipped_workloads_parse() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("workloads");
        let mut n = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "toml") {
                Workload::load(&path, &Overrides::default())
                    .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                n += 1;
            }
        }
        assert!(n >= 5, "only {n} workloads in {}", dir.display());
    }

    #[test]
    fn overrides_win() {
        let o = Overrides {
            rate: Some("100 msg/s".into()),
            warmup_s: Some(0),
            duration_s: Some(3),
            topic_prefix: Some("smoke".into()),
            linger_ms: Some(0.5),
        };
        let w = Workload::parse("name = \"x\"\nrate = \"max\"", &o).unwrap();
        assert_eq!(w.linger_ms, 0.5);
        assert_eq!(w.rate, Rate::Fixed { msgs_per_s: 100.0 });
        assert_eq!((w.warmup_s, w.duration_s), (0, 3));
        assert_eq!(w.topic_prefix, "smoke");
    }

    #[test]
    fn invalid_workloads_are_refused() {
        let cases = [
            "name = \"x\"\npartitions_per_topic = 0",
            "name = \"x\"\nmessage_size_bytes = 8",
            "name = \"x\"\nmessage_size_bytes = 2000000",
            "name = \"x\"\nduration_s = 0",
            "name = \"x\"\nlinger_ms = -1",
            "name = \"x\"\nlinger_ms = 1e9",
            "name = \"x\"\nlinger_ms = nan",
            "name = \"x\"\nacks = \"2\"",
            "name = \"x\"\ncompression = \"brotli\"",
            "name = \"x\"\nrate = \"lots\"",
            "name = \"x\"\nproducers_per_topic = 300",
            "name = \"x\"\nsubscriptions_per_topic = 0",
            "name = \"x\"\nsubscriptions_per_topic = 200\nconsumers_per_topic = 2",
            "name = \"x y\"",
            "name = \"x\"\nunknown_field = 1",
            "topics = 1",
        ];
        for text in cases {
            assert!(parse(text).is_err(), "accepted: {text}");
        }
    }
}
