//! Broker settings: one typed struct with documented defaults, read from (lowest to highest
//! precedence) built-in defaults, a TOML file (`--config`), environment variables
//! (`SHARDLOG_*`) and command-line flags. `main.rs` parses it once; every shard gets a copy.
//! Limits are named with their unit last (`request_bytes_max`, `fetch_wait_ms_max`).

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use clap::Args;
use serde::Deserialize;

use crate::group::GroupConfig;
use crate::types::DurationMs;

/// The broker's command-line flags (the whole command line, with the admin subcommands, is
/// `crate::cli::Cli`). Every flag can also come from the environment or the TOML file.
#[derive(Args, Debug, Clone, Default)]
pub struct Flags {
    /// Address to accept Kafka clients on [default: 127.0.0.1:9092]
    #[arg(long, env = "SHARDLOG_LISTEN", value_name = "HOST:PORT")]
    pub listen: Option<SocketAddr>,
    /// Address clients are told to connect to (Metadata) [default: the listen address]
    #[arg(long, env = "SHARDLOG_ADVERTISED_LISTENER", value_name = "HOST:PORT")]
    pub advertised_listener: Option<String>,
    /// Directory for partition logs and metadata; created if missing [default: ./shardlog-data]
    #[arg(long, env = "SHARDLOG_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Number of shards (one executor thread each) [default: available cores]
    #[arg(long, env = "SHARDLOG_SHARDS", value_name = "N")]
    pub shards: Option<usize>,
    /// Pin shard i to core i (off automatically when shards exceed cores) [default: true]
    #[arg(long, env = "SHARDLOG_PIN", value_name = "BOOL")]
    pub pin: Option<bool>,
    /// TOML file with any of these settings (snake_case keys)
    #[arg(long, env = "SHARDLOG_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Partitions of an auto-created topic (num.partitions) [default: 1]
    #[arg(long, env = "SHARDLOG_NUM_PARTITIONS", value_name = "N")]
    pub num_partitions: Option<i32>,
    /// Replicas of a topic created without a replication factor (auto-created, or -1): in a
    /// cluster up to the live brokers (default.replication.factor) [default: 1]
    #[arg(long, env = "SHARDLOG_DEFAULT_REPLICATION_FACTOR", value_name = "N")]
    pub default_replication_factor: Option<i16>,
    /// In a cluster: replicas of each consumer-group log, the partitions of the internal
    /// topic __consumer_offsets created at the first FindCoordinator; groups are unavailable
    /// while fewer brokers are alive (offsets.topic.replication.factor) [default: the
    /// number of voters, at most 3]
    #[arg(
        long,
        env = "SHARDLOG_OFFSETS_TOPIC_REPLICATION_FACTOR",
        value_name = "N"
    )]
    pub offsets_topic_replication_factor: Option<i16>,
    /// Hand each replicated partition's leadership back to its preferred replica once that one
    /// is in sync again (auto.leader.rebalance.enable) [default: true]
    #[arg(long, env = "SHARDLOG_AUTO_LEADER_REBALANCE", value_name = "BOOL")]
    pub auto_leader_rebalance: Option<bool>,
    /// How often leaders look whether to hand leadership back, ms
    /// (leader.imbalance.check.interval.seconds) [default: 300000]
    #[arg(
        long,
        env = "SHARDLOG_LEADER_IMBALANCE_CHECK_INTERVAL_MS",
        value_name = "MS"
    )]
    pub leader_imbalance_check_interval_ms: Option<u64>,
    /// Create unknown topics when a Metadata request names them (auto.create.topics.enable) [default: true]
    #[arg(long, env = "SHARDLOG_AUTO_CREATE_TOPICS", value_name = "BOOL")]
    pub auto_create_topics: Option<bool>,
    /// Largest request frame accepted, bytes (socket.request.max.bytes) [default: 104857600]
    #[arg(long, env = "SHARDLOG_REQUEST_BYTES_MAX", value_name = "BYTES")]
    pub request_bytes_max: Option<usize>,
    /// This broker's node id [default: 1]
    #[arg(long, env = "SHARDLOG_NODE_ID", value_name = "ID")]
    pub node_id: Option<i32>,
    /// How long a new consumer group waits for more members before its first rebalance
    /// (group.initial.rebalance.delay.ms) [default: 3000]
    #[arg(
        long,
        env = "SHARDLOG_GROUP_INITIAL_REBALANCE_DELAY_MS",
        value_name = "MS"
    )]
    pub group_initial_rebalance_delay_ms: Option<i64>,
    /// Smallest session timeout a consumer may ask for (group.min.session.timeout.ms) [default: 6000]
    #[arg(long, env = "SHARDLOG_GROUP_MIN_SESSION_TIMEOUT_MS", value_name = "MS")]
    pub group_min_session_timeout_ms: Option<i32>,
    /// How long committed offsets of an empty group are kept (offsets.retention.minutes) [default: 10080]
    #[arg(long, env = "SHARDLOG_OFFSETS_RETENTION_MINUTES", value_name = "MIN")]
    pub offsets_retention_minutes: Option<i64>,
    /// How long a partition remembers an idle idempotent producer (producer.id.expiration.ms) [default: 86400000]
    #[arg(long, env = "SHARDLOG_PRODUCER_ID_EXPIRATION_MS", value_name = "MS")]
    pub producer_id_expiration_ms: Option<i64>,
    /// Memory each shard may use to keep batches read from disk, read ahead, or just pushed
    /// out of a partition's 16 MiB tail cache, bytes [default: 1/8 of memory / shards, at most 1 GiB]
    #[arg(long, env = "SHARDLOG_READ_CACHE_BYTES", value_name = "BYTES")]
    pub read_cache_bytes: Option<usize>,
    /// Check the CRC32C of every batch read from disk, not only when it is appended [default: false]
    #[arg(long, env = "SHARDLOG_VERIFY_READS", value_name = "BOOL")]
    pub verify_reads: Option<bool>,
    /// Most bytes one Fetch response holds, whatever the request asks (fetch.max.bytes)
    /// [default: 57671680]
    #[arg(long, env = "SHARDLOG_FETCH_BYTES_MAX", value_name = "BYTES")]
    pub fetch_bytes_max: Option<usize>,
    /// Most client connections open at once, all shards together (max.connections); more are
    /// closed as they are accepted [default: 10000]
    #[arg(long, env = "SHARDLOG_CONNECTIONS_MAX", value_name = "N")]
    pub connections_max: Option<usize>,
    /// Most connections open at once from one client address (max.connections.per.ip)
    /// [default: 10000]
    #[arg(long, env = "SHARDLOG_CONNECTIONS_PER_IP_MAX", value_name = "N")]
    pub connections_per_ip_max: Option<usize>,
    /// A connection with no request in flight that sends nothing (or leaves a request frame
    /// unfinished) this long is closed (connections.max.idle.ms) [default: 600000]
    #[arg(long, env = "SHARDLOG_CONNECTION_IDLE_MS_MAX", value_name = "MS")]
    pub connection_idle_ms_max: Option<u64>,
    /// Each shard's budget for request and response bytes in flight (queued.max.request.bytes):
    /// connections on a shard pause reading while it is spent [default: 67108864]
    #[arg(long, env = "SHARDLOG_INFLIGHT_BYTES_MAX", value_name = "BYTES")]
    pub inflight_bytes_max: Option<usize>,
    /// Sealed segment files each shard keeps open at once; more are opened as reads need them
    /// and the least recently used closed [default: 1000]
    #[arg(long, env = "SHARDLOG_SEGMENT_FILES_OPEN_MAX", value_name = "N")]
    pub segment_files_open_max: Option<usize>,
    /// Admin HTTP listener: Prometheus `/metrics` and the `/v1/...` status API, or `off`
    /// (port 0: any free port, logged) [default: 127.0.0.1:9644]
    #[arg(long, env = "SHARDLOG_ADMIN_LISTEN", value_name = "HOST:PORT|off")]
    pub admin_listen: Option<String>,
    /// Cluster listener for traffic between brokers: shard i listens on this port + i, so
    /// leave room between brokers' ports (with --voters; none for a single broker)
    #[arg(long, env = "SHARDLOG_CLUSTER_LISTEN", value_name = "HOST:PORT")]
    pub cluster_listen: Option<SocketAddr>,
    /// The metadata log's voters, ID@HOST:PORT of each one's cluster listener (with
    /// --cluster-listen): they replicate the cluster's metadata (brokers, topics and where
    /// each partition lives); a broker whose --node-id is not among them joins the cluster
    /// without voting
    #[arg(long, env = "SHARDLOG_VOTERS", value_name = "ID@HOST:PORT,...")]
    pub voters: Option<String>,
    /// A broker the metadata leader has not heard from for this long is marked dead and its
    /// partitions have no leader until it returns (broker.session.timeout.ms) [default: 9000]
    #[arg(long, env = "SHARDLOG_BROKER_SESSION_TIMEOUT_MS", value_name = "MS")]
    pub broker_session_timeout_ms: Option<u64>,
}

/// The same settings as they may appear in the TOML file.
#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    listen: Option<SocketAddr>,
    advertised_listener: Option<String>,
    data_dir: Option<PathBuf>,
    shards: Option<usize>,
    pin: Option<bool>,
    num_partitions: Option<i32>,
    default_replication_factor: Option<i16>,
    offsets_topic_replication_factor: Option<i16>,
    auto_leader_rebalance: Option<bool>,
    leader_imbalance_check_interval_ms: Option<u64>,
    auto_create_topics: Option<bool>,
    request_bytes_max: Option<usize>,
    node_id: Option<i32>,
    group_initial_rebalance_delay_ms: Option<i64>,
    group_min_session_timeout_ms: Option<i32>,
    offsets_retention_minutes: Option<i64>,
    producer_id_expiration_ms: Option<i64>,
    read_cache_bytes: Option<usize>,
    verify_reads: Option<bool>,
    fetch_bytes_max: Option<usize>,
    connections_max: Option<usize>,
    connections_per_ip_max: Option<usize>,
    connection_idle_ms_max: Option<u64>,
    inflight_bytes_max: Option<usize>,
    segment_files_open_max: Option<usize>,
    admin_listen: Option<String>,
    cluster_listen: Option<SocketAddr>,
    voters: Option<String>,
    broker_session_timeout_ms: Option<u64>,
}

/// Resolved settings: every default applied and every value checked, built once by
/// [`Config::from_flags`] and shared read-only by the shards.
#[derive(Debug, Clone)]
pub struct Config {
    /// The address every shard's listener binds (SO_REUSEPORT).
    pub listen: SocketAddr,
    /// The host Metadata, FindCoordinator and DescribeCluster tell clients to connect to.
    pub advertised_host: String,
    /// The port that goes with `advertised_host`.
    pub advertised_port: i32,
    /// Where partition logs, group logs and the topic registry live; `main` makes it absolute
    /// before the shards start.
    pub data_dir: PathBuf,
    /// Number of shards, one executor thread each, 1..=1024.
    pub shards: usize,
    /// Whether shard i is pinned to core i; false whenever there are more shards than cores.
    pub pin: bool,
    /// Partitions of a topic created without a count (auto-created, or CreateTopics with -1);
    /// at least 1.
    pub num_partitions: i32,
    /// Replicas of a topic created without a replication factor; at least 1.
    pub default_replication_factor: i16,
    /// In a cluster, replicas of the group logs' topic (None: the voters, at most 3).
    pub offsets_topic_replication_factor: Option<i16>,
    /// Whether leaders hand leadership back to preferred replicas in sync.
    pub auto_leader_rebalance: bool,
    /// How often they look, ms (at least 100).
    pub leader_imbalance_check_interval_ms: u64,
    /// Whether Metadata creates the unknown topics it names (when the request allows it).
    pub auto_create_topics: bool,
    /// Largest request frame a connection accepts, in bytes; a larger one closes it.
    pub request_bytes_max: usize,
    /// This broker's id in Metadata, FindCoordinator and DescribeCluster (also the controller's).
    pub node_id: i32,
    /// Requests one connection may have in flight before reading pauses (pipelining bound).
    pub inflight_requests_max: usize,
    /// Messages a cross-shard channel holds before senders wait.
    pub mesh_channel_capacity: usize,
    /// Upper bound on a Fetch's max_wait_ms.
    pub fetch_wait_ms_max: u64,
    /// Upper bound on a Fetch's max_bytes (fetch.max.bytes): what one response holds and what
    /// each owner shard reads for it.
    pub fetch_bytes_max: usize,
    /// Client connections open at once, all shards together (at least 1).
    pub connections_max: usize,
    /// Client connections open at once from one client address (at least 1).
    pub connections_per_ip_max: usize,
    /// Idle connections (nothing in flight, no complete frame) are closed after this long.
    pub connection_idle_ms_max: u64,
    /// Each shard's budget for bytes in flight (`crate::budget`), at least 1 MiB.
    pub inflight_bytes_max: usize,
    /// How often each shard applies retention.
    pub retention_check_ms: u64,
    /// Consumer-group coordinator settings.
    pub group: GroupConfig,
    /// producer.id.expiration.ms: idle idempotent producers are forgotten after this.
    pub producer_id_expiration_ms: i64,
    /// Each shard's read cache budget (`storage::readcache`).
    pub read_cache_bytes_max: usize,
    /// Check the CRC of batches read from disk (`LogConfig::verify_reads`).
    pub verify_reads: bool,
    /// Sealed segment files each shard keeps open (`storage::files`).
    pub segment_files_open_max: usize,
    /// Where the admin HTTP server (`crate::admin`) listens, on shard 0; None: it does not.
    pub admin_listen: Option<SocketAddr>,
    /// The cluster settings; None for a single broker.
    pub cluster: Option<ClusterConfig>,
    /// The settings given at startup (by flag, environment or the `--config` file), by their
    /// config file key (`num_partitions`); the rest took their defaults. DescribeConfigs tells
    /// the two apart (STATIC_BROKER_CONFIG or DEFAULT_CONFIG).
    pub given: BTreeSet<&'static str>,
}

/// Why the settings could not be resolved; the broker does not start.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The `--config` file could not be read; carries its path.
    #[error("reading config file {0}: {1}")]
    Read(PathBuf, std::io::Error),
    /// The `--config` file is not valid TOML or has an unknown key; carries its path.
    #[error("parsing config file {0}: {1}")]
    Parse(PathBuf, toml::de::Error),
    /// A value is out of range or malformed (shards, num_partitions, the advertised
    /// listener, the group settings); says which.
    #[error("invalid setting: {0}")]
    Invalid(String),
}

impl Config {
    /// Resolves the settings: each flag (or its environment variable) wins over the `--config`
    /// file, which wins over the default; values are checked and some raised to a minimum.
    pub fn from_flags(cli: Flags) -> Result<Config, ConfigError> {
        let file = match &cli.config {
            Some(p) => read_file(p)?,
            None => FileConfig::default(),
        };
        let group = group_config(&cli, &file)?;
        let given = given(&cli, &file);
        let listen = cli
            .listen
            .or(file.listen)
            .unwrap_or_else(|| "127.0.0.1:9092".parse().expect("literal"));
        let advertised = cli.advertised_listener.or(file.advertised_listener);
        let (advertised_host, advertised_port) = match advertised {
            Some(a) => split_host_port(&a)?,
            None => (listen.ip().to_string(), i32::from(listen.port())),
        };
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let shards = cli.shards.or(file.shards).unwrap_or(cores);
        if shards == 0 || shards > 1024 {
            return Err(ConfigError::Invalid(format!(
                "shards must be 1..=1024, not {shards}"
            )));
        }
        let num_partitions = cli.num_partitions.or(file.num_partitions).unwrap_or(1);
        if num_partitions < 1 {
            return Err(ConfigError::Invalid("num_partitions must be ≥ 1".into()));
        }
        let default_replication_factor = cli
            .default_replication_factor
            .or(file.default_replication_factor)
            .unwrap_or(1);
        if default_replication_factor < 1 {
            return Err(ConfigError::Invalid(
                "default_replication_factor must be ≥ 1".into(),
            ));
        }
        let offsets_topic_replication_factor = cli
            .offsets_topic_replication_factor
            .or(file.offsets_topic_replication_factor);
        if offsets_topic_replication_factor.is_some_and(|n| n < 1) {
            return Err(ConfigError::Invalid(
                "offsets_topic_replication_factor must be ≥ 1".into(),
            ));
        }
        Ok(Config {
            listen,
            advertised_host,
            advertised_port,
            data_dir: cli
                .data_dir
                .or(file.data_dir)
                .unwrap_or_else(|| PathBuf::from("shardlog-data")),
            shards,
            pin: cli.pin.or(file.pin).unwrap_or(true) && shards <= cores,
            num_partitions,
            default_replication_factor,
            offsets_topic_replication_factor,
            auto_leader_rebalance: cli
                .auto_leader_rebalance
                .or(file.auto_leader_rebalance)
                .unwrap_or(true),
            leader_imbalance_check_interval_ms: cli
                .leader_imbalance_check_interval_ms
                .or(file.leader_imbalance_check_interval_ms)
                .unwrap_or(300_000)
                .max(100),
            auto_create_topics: cli
                .auto_create_topics
                .or(file.auto_create_topics)
                .unwrap_or(true),
            request_bytes_max: cli
                .request_bytes_max
                .or(file.request_bytes_max)
                .unwrap_or(100 << 20),
            node_id: cli.node_id.or(file.node_id).unwrap_or(1),
            inflight_requests_max: 64,
            mesh_channel_capacity: 1024,
            fetch_wait_ms_max: 30_000,
            fetch_bytes_max: cli
                .fetch_bytes_max
                .or(file.fetch_bytes_max)
                .unwrap_or(55 << 20)
                .max(1),
            connections_max: cli
                .connections_max
                .or(file.connections_max)
                .unwrap_or(10_000)
                .max(1),
            connections_per_ip_max: cli
                .connections_per_ip_max
                .or(file.connections_per_ip_max)
                .unwrap_or(10_000)
                .max(1),
            connection_idle_ms_max: cli
                .connection_idle_ms_max
                .or(file.connection_idle_ms_max)
                .unwrap_or(600_000)
                .max(1),
            inflight_bytes_max: cli
                .inflight_bytes_max
                .or(file.inflight_bytes_max)
                .unwrap_or(64 << 20)
                .max(1 << 20),
            retention_check_ms: 1_000,
            group,
            producer_id_expiration_ms: cli
                .producer_id_expiration_ms
                .or(file.producer_id_expiration_ms)
                .unwrap_or(86_400_000)
                .max(1),
            read_cache_bytes_max: cli
                .read_cache_bytes
                .or(file.read_cache_bytes)
                .unwrap_or_else(|| default_read_cache_bytes(shards)),
            verify_reads: cli.verify_reads.or(file.verify_reads).unwrap_or(false),
            segment_files_open_max: cli
                .segment_files_open_max
                .or(file.segment_files_open_max)
                .unwrap_or(crate::storage::files::OPEN_FILES_MAX_DEFAULT)
                .max(1),
            admin_listen: parse_admin_listen(cli.admin_listen.or(file.admin_listen))?,
            cluster: cluster_config(
                cli.node_id.or(file.node_id).unwrap_or(1),
                cli.cluster_listen.or(file.cluster_listen),
                cli.voters.or(file.voters),
            )?
            .map(|c| ClusterConfig {
                broker_session_timeout_ms: cli
                    .broker_session_timeout_ms
                    .or(file.broker_session_timeout_ms)
                    .unwrap_or(BROKER_SESSION_TIMEOUT_MS_DEFAULT)
                    .max(100),
                ..c
            }),
            given,
        })
    }

    /// The settings a broker started with nothing set has (on this machine: the shard count
    /// and the read cache follow its cores and memory).
    pub fn defaults() -> Config {
        Config::from_flags(Flags::default()).expect("the defaults are valid")
    }
}

/// The config file keys of the settings the flags (or environment) or the file give: the
/// fields of [`Flags`] and of the file have the keys' names.
fn given(cli: &Flags, file: &FileConfig) -> BTreeSet<&'static str> {
    macro_rules! given {
        ($($key:ident),* $(,)?) => {
            [$((stringify!($key), cli.$key.is_some() || file.$key.is_some())),*]
        };
    }
    let keys = given!(
        listen,
        advertised_listener,
        data_dir,
        shards,
        pin,
        num_partitions,
        default_replication_factor,
        offsets_topic_replication_factor,
        auto_leader_rebalance,
        leader_imbalance_check_interval_ms,
        auto_create_topics,
        request_bytes_max,
        node_id,
        group_initial_rebalance_delay_ms,
        group_min_session_timeout_ms,
        offsets_retention_minutes,
        producer_id_expiration_ms,
        read_cache_bytes,
        verify_reads,
        fetch_bytes_max,
        connections_max,
        connections_per_ip_max,
        connection_idle_ms_max,
        inflight_bytes_max,
        segment_files_open_max,
        admin_listen,
        cluster_listen,
        voters,
        broker_session_timeout_ms,
    );
    keys.into_iter().filter(|k| k.1).map(|k| k.0).collect()
}

/// A cluster member's settings (`--cluster-listen`, `--voters`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterConfig {
    /// Where shard 0's cluster listener binds (shard i: port + i).
    pub listen: SocketAddr,
    /// The metadata log's voters: node id → cluster listener (shard 0's).
    pub voters: std::collections::BTreeMap<u64, SocketAddr>,
    /// How long the metadata leader waits to hear from a broker before marking it dead.
    pub broker_session_timeout_ms: u64,
}

/// Kafka's broker.session.timeout.ms default.
pub const BROKER_SESSION_TIMEOUT_MS_DEFAULT: u64 = 9000;

/// The cluster settings: both flags or neither. A broker not among the voters joins as a
/// member that receives the metadata log without voting.
fn cluster_config(
    node_id: i32,
    listen: Option<SocketAddr>,
    voters: Option<String>,
) -> Result<Option<ClusterConfig>, ConfigError> {
    let (listen, voters) = match (listen, voters) {
        (None, None) => return Ok(None),
        (Some(l), Some(v)) => (l, v),
        _ => {
            return Err(ConfigError::Invalid(
                "--cluster-listen and --voters go together".into(),
            ))
        }
    };
    let mut out = std::collections::BTreeMap::new();
    for v in voters.split(',').map(str::trim).filter(|v| !v.is_empty()) {
        let bad = || ConfigError::Invalid(format!("voter {v:?} is not ID@HOST:PORT"));
        let (id, addr) = v.split_once('@').ok_or_else(bad)?;
        let id: u64 = id.parse().map_err(|_| bad())?;
        let addr: SocketAddr = addr.parse().map_err(|_| bad())?;
        if id == 0 || out.insert(id, addr).is_some() {
            return Err(ConfigError::Invalid(format!(
                "voter id {id} is 0 or repeated"
            )));
        }
    }
    if node_id <= 0 {
        return Err(ConfigError::Invalid(format!(
            "--node-id {node_id}: a cluster member's id is positive"
        )));
    }
    let voter = u64::try_from(node_id).is_ok_and(|me| out.contains_key(&me));
    if !voter && listen.ip().is_unspecified() {
        return Err(ConfigError::Invalid(format!(
            "--cluster-listen {listen}: a broker that is not a voter registers this address \
             for the others to reach it; give a specific one"
        )));
    }
    Ok(Some(ClusterConfig {
        listen,
        voters: out,
        broker_session_timeout_ms: BROKER_SESSION_TIMEOUT_MS_DEFAULT,
    }))
}

/// The admin listener: HOST:PORT, or `off` for none; 127.0.0.1:9644 (Redpanda's admin port)
/// when unset.
fn parse_admin_listen(value: Option<String>) -> Result<Option<SocketAddr>, ConfigError> {
    match value.as_deref().map(str::trim) {
        None => Ok(Some(SocketAddr::from(([127, 0, 0, 1], 9644)))),
        Some("off") | Some("none") | Some("") => Ok(None),
        Some(a) => a.parse().map(Some).map_err(|_| {
            ConfigError::Invalid(format!("admin listener {a:?} is not HOST:PORT or off"))
        }),
    }
}

/// An eighth of the machine's memory shared by the shards, at most 1 GiB each (64 MiB when
/// the memory size cannot be read).
fn default_read_cache_bytes(shards: usize) -> usize {
    // SAFETY: sysconf has no preconditions; it returns -1 for an unknown name.
    let (pages, page) = unsafe {
        (
            libc::sysconf(libc::_SC_PHYS_PAGES),
            libc::sysconf(libc::_SC_PAGESIZE),
        )
    };
    if pages <= 0 || page <= 0 {
        return 64 << 20;
    }
    let memory = (pages as u64).saturating_mul(page as u64);
    ((memory / 8 / shards as u64).min(1 << 30)) as usize
}

fn group_config(cli: &Flags, file: &FileConfig) -> Result<GroupConfig, ConfigError> {
    let mut g = GroupConfig::default();
    if let Some(d) = cli
        .group_initial_rebalance_delay_ms
        .or(file.group_initial_rebalance_delay_ms)
    {
        g.initial_rebalance_delay_ms = DurationMs(d.max(0));
    }
    if let Some(t) = cli
        .group_min_session_timeout_ms
        .or(file.group_min_session_timeout_ms)
    {
        if t < 1 || t > g.session_timeout_ms_max {
            return Err(ConfigError::Invalid(format!(
                "group_min_session_timeout_ms must be 1..={}, not {t}",
                g.session_timeout_ms_max
            )));
        }
        g.session_timeout_ms_min = t;
    }
    if let Some(m) = cli
        .offsets_retention_minutes
        .or(file.offsets_retention_minutes)
    {
        if m < 1 {
            return Err(ConfigError::Invalid(
                "offsets_retention_minutes must be ≥ 1".into(),
            ));
        }
        g.offsets_retention_ms = DurationMs(m.saturating_mul(60_000));
    }
    Ok(g)
}

fn read_file(path: &Path) -> Result<FileConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read(path.into(), e))?;
    toml::from_str(&text).map_err(|e| ConfigError::Parse(path.into(), e))
}

fn split_host_port(s: &str) -> Result<(String, i32), ConfigError> {
    let (host, port) = s.rsplit_once(':').ok_or_else(|| {
        ConfigError::Invalid(format!("advertised listener {s:?} is not HOST:PORT"))
    })?;
    let port: u16 = port
        .parse()
        .map_err(|_| ConfigError::Invalid(format!("bad port in {s:?}")))?;
    Ok((host.trim_matches(['[', ']']).to_string(), i32::from(port)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    /// The flags alone, as `crate::cli::Cli` flattens them.
    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        flags: Flags,
    }

    #[test]
    fn defaults_and_overrides() {
        let c = Config::from_flags(Flags::default()).unwrap();
        assert_eq!(c.listen.to_string(), "127.0.0.1:9092");
        assert_eq!(
            (c.advertised_host.as_str(), c.advertised_port),
            ("127.0.0.1", 9092)
        );
        let cli = Cli::parse_from([
            "shardlog",
            "--listen",
            "127.0.0.1:19092",
            "--shards",
            "4",
            "--advertised-listener",
            "localhost:29092",
        ]);
        let c = Config::from_flags(cli.flags).unwrap();
        assert_eq!(c.shards, 4);
        assert_eq!(c.advertised_port, 29092);
        let admin = |v: &str| {
            let cli = Cli::parse_from(["shardlog", "--admin-listen", v]);
            Config::from_flags(cli.flags).map(|c| c.admin_listen)
        };
        assert_eq!(admin("off").unwrap(), None);
        assert_eq!(
            admin("0.0.0.0:9645").unwrap(),
            Some("0.0.0.0:9645".parse().unwrap())
        );
        assert!(admin("nowhere").is_err());
        let default = Config::from_flags(Flags::default()).unwrap().admin_listen;
        assert_eq!(default, Some("127.0.0.1:9644".parse().unwrap()));
        assert!(Config::from_flags(Flags {
            shards: Some(0),
            ..Flags::default()
        })
        .is_err());
    }

    #[test]
    fn cluster_flags_go_together_and_name_this_node() {
        let cluster = |node_id: i32, listen: Option<&str>, voters: Option<&str>| {
            cluster_config(
                node_id,
                listen.map(|l| l.parse().unwrap()),
                voters.map(String::from),
            )
        };
        let voters = "1@127.0.0.1:19192, 2@127.0.0.1:19292,3@127.0.0.1:19392";
        let c = cluster(2, Some("127.0.0.1:19292"), Some(voters))
            .unwrap()
            .unwrap();
        assert_eq!(c.voters.keys().copied().collect::<Vec<_>>(), [1, 2, 3]);
        assert_eq!(c.voters[&3], "127.0.0.1:19392".parse().unwrap());
        assert!(cluster(1, None, None).unwrap().is_none());
        assert!(
            cluster(1, Some("127.0.0.1:1"), None).is_err(),
            "both or neither"
        );
        assert!(
            cluster(4, Some("127.0.0.1:1"), Some(voters)).is_ok(),
            "a member that does not vote"
        );
        assert!(cluster(0, Some("127.0.0.1:1"), Some(voters)).is_err());
        assert!(
            cluster(4, Some("0.0.0.0:1"), Some(voters)).is_err(),
            "others cannot reach a non-voter at 0.0.0.0"
        );
        assert!(cluster(2, Some("0.0.0.0:19292"), Some(voters)).is_ok());
        assert!(
            cluster(1, Some("127.0.0.1:1"), Some("1@x:1")).is_err(),
            "not an address"
        );
        assert!(cluster(1, Some("127.0.0.1:1"), Some("1@127.0.0.1:1,1@127.0.0.1:2")).is_err());
        assert!(
            cluster(0, Some("127.0.0.1:1"), Some("0@127.0.0.1:1")).is_err(),
            "id 0"
        );
    }

    #[test]
    fn toml_file_is_read_and_flags_win() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.toml");
        std::fs::write(&p, "shards = 3\nnum_partitions = 5\n").unwrap();
        let cli = Flags {
            config: Some(p.clone()),
            num_partitions: Some(2),
            ..Flags::default()
        };
        let c = Config::from_flags(cli).unwrap();
        assert_eq!((c.shards, c.num_partitions), (3, 2));
        let given: Vec<&str> = c.given.iter().copied().collect();
        assert_eq!(
            given,
            ["num_partitions", "shards"],
            "from the flags and the file"
        );
        assert!(Config::defaults().given.is_empty());
        assert_eq!(Config::defaults().default_replication_factor, 1);
        std::fs::write(&p, "default_replication_factor = 3\n").unwrap();
        let c = Config::from_flags(Flags {
            config: Some(p.clone()),
            ..Flags::default()
        });
        assert_eq!(c.unwrap().default_replication_factor, 3);
        let zero = Flags {
            default_replication_factor: Some(0),
            ..Flags::default()
        };
        assert!(Config::from_flags(zero).is_err());
        std::fs::write(&p, "bogus = 1\n").unwrap();
        assert!(Config::from_flags(Flags {
            config: Some(p),
            ..Flags::default()
        })
        .is_err());
    }
}
