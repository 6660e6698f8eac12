//! The broker's settings as Kafka's config APIs show them: DescribeConfigs on a BROKER
//! resource lists [`list`], and AlterConfigs / IncrementalAlterConfigs on one are answered by
//! [`check_change`], which says why a setting cannot change while the broker runs and how to
//! set it instead. Both handlers name resources with [`broker_resource`].
//!
//! Each setting of `crate::config::Config` appears under Kafka's name where Kafka has one
//! (`num.partitions`, `log.dirs`, `max.connections`...) and under its config file key where it
//! is shardlog's own (`shards`, `read_cache_bytes`...). The topic configs' broker-wide
//! defaults appear under Kafka's broker names (`log.retention.ms` for `retention.ms`): they are
//! fixed, and a topic overrides them. A setting given at startup (flag, environment or file)
//! is STATIC_BROKER_CONFIG, any other DEFAULT_CONFIG. None is dynamic: shardlog reads its
//! settings once, at startup, and every shard keeps a copy.

use crate::config::Config;
use crate::kafka::errors::{self, ErrorCode};
use crate::metadata::configs::spec_of;

/// Kafka's config types (DescribeConfigs v3+).
pub mod kind {
    /// A boolean.
    pub const BOOLEAN: i8 = 1;
    /// A string.
    pub const STRING: i8 = 2;
    /// A 32-bit integer.
    pub const INT: i8 = 3;
    /// A 64-bit integer.
    pub const LONG: i8 = 5;
    /// A comma-separated list.
    pub const LIST: i8 = 7;
}

/// One broker setting as DescribeConfigs lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BrokerConfig {
    /// Kafka's name for it, or shardlog's config file key.
    pub name: &'static str,
    /// The value the broker runs with.
    pub value: String,
    /// The value it has when nothing sets it.
    pub default: String,
    /// Whether it was given at startup (STATIC_BROKER_CONFIG) rather than left at its
    /// default (DEFAULT_CONFIG).
    pub given: bool,
    /// Kafka's config type ([`kind`]).
    pub kind: i8,
    /// What it does.
    pub doc: &'static str,
    /// Whether its value is a secret, never sent (none is yet).
    pub sensitive: bool,
}

/// One row of the table below: how a setting is named, found and described.
struct Row {
    name: &'static str,
    /// The config file key that sets it (with its flag and environment variable); None when
    /// it cannot be set.
    key: Option<&'static str>,
    /// The topic config it is the broker-wide default of.
    topic: Option<&'static str>,
    kind: i8,
    doc: &'static str,
    value: fn(&Config) -> String,
}

const fn row(
    name: &'static str,
    key: Option<&'static str>,
    kind: i8,
    doc: &'static str,
    value: fn(&Config) -> String,
) -> Row {
    Row {
        name,
        key,
        topic: None,
        kind,
        doc,
        value,
    }
}

const fn topic_default(name: &'static str, topic: &'static str, kind: i8) -> Row {
    Row {
        name,
        key: None,
        topic: Some(topic),
        kind,
        doc: "The default of the topic config of the same meaning; fixed, a topic overrides it",
        value: no_value, // the topic config's default, from its spec (`Row::value`)
    }
}

fn no_value(_: &Config) -> String {
    String::new()
}

/// Every setting (sorted by name in [`list`]).
#[rustfmt::skip]
const ROWS: &[Row] = &[
    row("admin_listen", Some("admin_listen"), kind::STRING,
        "The admin HTTP listener (Prometheus /metrics, the /v1 status API); empty when off",
        |c| c.admin_listen.map_or_else(String::new, |a| a.to_string())),
    row("advertised.listeners", Some("advertised_listener"), kind::STRING,
        "The address clients are told to connect to (Metadata, FindCoordinator)",
        |c| listener(&c.advertised_host, c.advertised_port)),
    row("auto.create.topics.enable", Some("auto_create_topics"), kind::BOOLEAN,
        "Create an unknown topic when a Metadata request names it",
        |c| c.auto_create_topics.to_string()),
    row("cluster_listen", Some("cluster_listen"), kind::STRING,
        "The cluster listener for traffic between brokers (shard i: port + i); empty for a single broker",
        |c| c.cluster.as_ref().map_or_else(String::new, |k| k.listen.to_string())),
    row("controller.quorum.voters", Some("voters"), kind::LIST,
        "The metadata log's voters, id@host:port of each one's cluster listener",
        |c| c.cluster.as_ref().map_or_else(String::new, |k| {
            k.voters.iter().map(|(id, a)| format!("{id}@{a}")).collect::<Vec<_>>().join(",")
        })),
    row("broker.id", Some("node_id"), kind::INT, "This broker's id (the same as node.id)",
        |c| c.node_id.to_string()),
    row("broker.session.timeout.ms", Some("broker_session_timeout_ms"), kind::LONG,
        "How long the metadata leader waits to hear from a broker before marking it dead",
        |c| c.cluster.as_ref().map_or(crate::config::BROKER_SESSION_TIMEOUT_MS_DEFAULT, |k| {
            k.broker_session_timeout_ms
        }).to_string()),
    topic_default("compression.type", "compression.type", kind::STRING),
    row("connections.max.idle.ms", Some("connection_idle_ms_max"), kind::LONG,
        "A connection with nothing in flight that sends nothing this long is closed",
        |c| c.connection_idle_ms_max.to_string()),
    row("auto.leader.rebalance.enable", Some("auto_leader_rebalance"), kind::BOOLEAN,
        "Leaders hand leadership back to preferred replicas in sync",
        |c| c.auto_leader_rebalance.to_string()),
    row("leader.imbalance.check.interval.seconds", Some("leader_imbalance_check_interval_ms"),
        kind::LONG, "How often leaders look whether to hand leadership back (s)",
        |c| (c.leader_imbalance_check_interval_ms / 1000).to_string()),
    row("default.replication.factor", Some("default_replication_factor"), kind::INT,
        "The replication factor of topics created without one (auto-created, or -1)",
        |c| c.default_replication_factor.to_string()),
    row("offsets.topic.replication.factor", Some("offsets_topic_replication_factor"),
        kind::INT, "In a cluster, the replicas of the consumer-group logs' topic (-1: the voters, at most 3)",
        |c| c.offsets_topic_replication_factor.map_or(-1, i32::from).to_string()),
    row("fetch.max.bytes", Some("fetch_bytes_max"), kind::INT,
        "The most bytes one Fetch response holds, whatever the request asks",
        |c| c.fetch_bytes_max.to_string()),
    row("fetch_wait_ms_max", None, kind::LONG, "The longest a Fetch may wait for data (ms)",
        |c| c.fetch_wait_ms_max.to_string()),
    row("group.initial.rebalance.delay.ms", Some("group_initial_rebalance_delay_ms"), kind::INT,
        "How long a new consumer group waits for more members before its first rebalance",
        |c| c.group.initial_rebalance_delay_ms.get().to_string()),
    row("group.max.session.timeout.ms", None, kind::INT,
        "The longest session timeout a consumer may ask for",
        |c| c.group.session_timeout_ms_max.to_string()),
    row("group.max.size", None, kind::INT, "The most members a consumer group may have",
        |c| c.group.members_max.to_string()),
    row("group.min.session.timeout.ms", Some("group_min_session_timeout_ms"), kind::INT,
        "The shortest session timeout a consumer may ask for",
        |c| c.group.session_timeout_ms_min.to_string()),
    row("group_log_compact_bytes_min", None, kind::LONG,
        "A group log is compacted once it grew this much since its last snapshot",
        |c| c.group.log_compact_bytes_min.to_string()),
    row("groups_max", None, kind::INT, "The most consumer groups one shard holds",
        |c| c.group.groups_max.to_string()),
    row("inflight_requests_max", None, kind::INT,
        "Requests one connection may have in flight before reading pauses",
        |c| c.inflight_requests_max.to_string()),
    topic_default("log.cleanup.policy", "cleanup.policy", kind::LIST),
    row("log.dir", Some("data_dir"), kind::STRING,
        "The directory of partition logs, group logs and the topic registry (as log.dirs)",
        |c| c.data_dir.display().to_string()),
    row("log.dirs", Some("data_dir"), kind::STRING,
        "The directory of partition logs, group logs and the topic registry: there is one",
        |c| c.data_dir.display().to_string()),
    topic_default("log.flush.interval.messages", "flush.messages", kind::LONG),
    topic_default("log.flush.interval.ms", "flush.ms", kind::LONG),
    topic_default("log.index.interval.bytes", "index.interval.bytes", kind::INT),
    topic_default("log.message.timestamp.type", "message.timestamp.type", kind::STRING),
    topic_default("log.retention.bytes", "retention.bytes", kind::LONG),
    row("log.retention.check.interval.ms", None, kind::LONG,
        "How often each shard applies retention",
        |c| c.retention_check_ms.to_string()),
    topic_default("log.retention.ms", "retention.ms", kind::LONG),
    topic_default("log.roll.ms", "segment.ms", kind::LONG),
    topic_default("log.segment.bytes", "segment.bytes", kind::INT),
    row("max.connections", Some("connections_max"), kind::INT,
        "The most client connections open at once, all shards together",
        |c| c.connections_max.to_string()),
    row("max.connections.per.ip", Some("connections_per_ip_max"), kind::INT,
        "The most connections open at once from one client address",
        |c| c.connections_per_ip_max.to_string()),
    row("mesh_channel_capacity", None, kind::INT,
        "Messages a cross-shard channel holds before senders wait",
        |c| c.mesh_channel_capacity.to_string()),
    topic_default("message.max.bytes", "max.message.bytes", kind::INT),
    topic_default("min.insync.replicas", "min.insync.replicas", kind::INT),
    row("node.id", Some("node_id"), kind::INT, "This broker's id",
        |c| c.node_id.to_string()),
    row("num.partitions", Some("num_partitions"), kind::INT,
        "The partitions of a topic created without a count",
        |c| c.num_partitions.to_string()),
    row("offset.metadata.max.bytes", None, kind::INT,
        "The longest metadata string a committed offset may carry",
        |c| c.group.offset_metadata_bytes_max.to_string()),
    row("offsets.retention.check.interval.ms", None, kind::LONG,
        "How often expired committed offsets are looked for",
        |c| c.group.offsets_retention_check_ms.get().to_string()),
    row("offsets.retention.minutes", Some("offsets_retention_minutes"), kind::INT,
        "How long the committed offsets of an empty group are kept",
        |c| (c.group.offsets_retention_ms.get() / 60_000).to_string()),
    row("pin", Some("pin"), kind::BOOLEAN, "Whether shard i is pinned to core i",
        |c| c.pin.to_string()),
    row("producer.id.expiration.ms", Some("producer_id_expiration_ms"), kind::LONG,
        "How long a partition remembers an idle idempotent producer",
        |c| c.producer_id_expiration_ms.to_string()),
    row("queued.max.request.bytes", Some("inflight_bytes_max"), kind::LONG,
        "Each shard's budget for request and response bytes in flight",
        |c| c.inflight_bytes_max.to_string()),
    row("read_cache_bytes", Some("read_cache_bytes"), kind::LONG,
        "Memory each shard may use to keep batches read from disk",
        |c| c.read_cache_bytes_max.to_string()),
    row("segment_files_open_max", Some("segment_files_open_max"), kind::INT,
        "Sealed segment files each shard keeps open at once",
        |c| c.segment_files_open_max.to_string()),
    row("shards", Some("shards"), kind::INT, "Shards: one executor thread each",
        |c| c.shards.to_string()),
    row("socket.request.max.bytes", Some("request_bytes_max"), kind::INT,
        "The largest request frame accepted",
        |c| c.request_bytes_max.to_string()),
    row("listeners", Some("listen"), kind::STRING, "The address every shard accepts clients on",
        |c| listener(&c.listen.ip().to_string(), i32::from(c.listen.port()))),
    row("verify_reads", Some("verify_reads"), kind::BOOLEAN,
        "Check the CRC32C of every batch read from disk, not only when it is appended",
        |c| c.verify_reads.to_string()),
];

/// A listener as Kafka writes it: `PLAINTEXT://host:port`, an IPv6 host in brackets.
fn listener(host: &str, port: i32) -> String {
    if host.contains(':') {
        format!("PLAINTEXT://[{host}]:{port}")
    } else {
        format!("PLAINTEXT://{host}:{port}")
    }
}

impl Row {
    fn value(&self, c: &Config) -> String {
        match self.topic.and_then(spec_of) {
            Some(spec) => spec.default.to_string(),
            None => (self.value)(c),
        }
    }
}

/// What a broker given nothing runs with ([`Config::defaults`]), worked out once: it reads the
/// machine's cores and memory.
fn defaults() -> &'static Config {
    static DEFAULTS: std::sync::OnceLock<Config> = std::sync::OnceLock::new();
    DEFAULTS.get_or_init(Config::defaults)
}

/// Every setting of a broker running with `c`, by name, each with its default (its value,
/// when it was not given).
pub fn list(c: &Config) -> Vec<BrokerConfig> {
    let defaults = defaults();
    let mut out: Vec<BrokerConfig> = ROWS
        .iter()
        .map(|r| {
            let given = r.key.is_some_and(|k| c.given.contains(k));
            let value = r.value(c);
            // A setting left alone is at its default, including one whose default follows
            // another setting (advertised.listeners follows listeners, pin the shard count).
            let default = if given {
                r.value(defaults)
            } else {
                value.clone()
            };
            BrokerConfig {
                name: r.name,
                value,
                default,
                given,
                kind: r.kind,
                doc: r.doc,
                sensitive: false,
            }
        })
        .collect();
    out.sort_unstable_by_key(|e| e.name);
    out
}

/// Which broker resource a request names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BrokerResource {
    /// This broker ("1" for node 1).
    This,
    /// The cluster-wide dynamic defaults (""): shardlog has none.
    ClusterDefault,
}

/// The broker resource `name` names for a broker with `node_id`, or the INVALID_REQUEST message
/// Kafka gives: a name that is not a number, or another broker's id. `logger`: a
/// BROKER_LOGGER resource, which must name the broker.
pub fn broker_resource(name: &str, node_id: i32, logger: bool) -> Result<BrokerResource, String> {
    if name.is_empty() {
        return match logger {
            true => Err("Broker id must not be empty".into()),
            false => Ok(BrokerResource::ClusterDefault),
        };
    }
    match name.parse::<i32>() {
        Err(_) => Err(format!("Broker id must be an integer, but it is: {name}")),
        Ok(id) if id == node_id => Ok(BrokerResource::This),
        Ok(_) if logger => Err(format!(
            "Unexpected broker id, expected {node_id} but received {name}"
        )),
        Ok(_) => Err(format!(
            "Unexpected broker id, expected {node_id} or empty string, but received {name}"
        )),
    }
}

/// One change an alter request asks of a broker setting.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change<'a> {
    /// SET (or APPEND, SUBTRACT, AlterConfigs with a value): give it a value.
    Set(&'a str),
    /// DELETE (or AlterConfigs' null value): back to the value it started with.
    Delete(&'a str),
}

/// Answers AlterConfigs or IncrementalAlterConfigs on a BROKER resource (or, with `logger`, a
/// BROKER_LOGGER one) named `name`, for a broker with `node_id`. No setting is dynamic, so
/// the request succeeds only if it changes nothing: no config named, or only DELETEs of known
/// settings (nothing was set while running, so there is nothing to delete). Otherwise the
/// whole resource gets INVALID_CONFIG, with a message naming each setting and how to set it
/// instead; a bad resource name gets INVALID_REQUEST, as in Kafka. The same answer with or
/// without validate_only.
pub fn check_change(
    name: &str,
    node_id: i32,
    logger: bool,
    changes: &[Change<'_>],
) -> Result<(), (ErrorCode, String)> {
    broker_resource(name, node_id, logger).map_err(|m| (errors::INVALID_REQUEST, m))?;
    if logger && !changes.is_empty() {
        let names: Vec<&str> = changes
            .iter()
            .map(|c| match c {
                Change::Set(n) | Change::Delete(n) => *n,
            })
            .collect();
        let message = format!(
            "Loggers cannot be set: {}. shardlog logs through one filter, RUST_LOG, read at \
             startup; it has no named loggers",
            names.join(", ")
        );
        return Err((errors::INVALID_CONFIG, message));
    }
    let refused: Vec<(&str, String)> = changes
        .iter()
        .filter_map(|c| match *c {
            Change::Delete(n) if is_known(n) => None,
            Change::Set(n) | Change::Delete(n) => Some((n, refusal(n))),
        })
        .collect();
    if refused.is_empty() {
        return Ok(());
    }
    let names: Vec<&str> = refused.iter().map(|r| r.0).collect();
    let why: Vec<&str> = refused.iter().map(|r| r.1.as_str()).collect();
    let message = format!(
        "Cannot update these configs dynamically: {}. {}",
        names.join(", "),
        why.join("; ")
    );
    Err((errors::INVALID_CONFIG, message))
}

/// Whether `name` is one of the settings [`list`] shows.
pub fn is_known(name: &str) -> bool {
    ROWS.iter().any(|r| r.name == name)
}

/// The broker setting whose value is the default of the topic config `topic` (`retention.ms`:
/// `log.retention.ms`), the name a topic config's DEFAULT_CONFIG synonym has.
pub fn default_of(topic: &str) -> Option<&'static str> {
    ROWS.iter().find(|r| r.topic == Some(topic)).map(|r| r.name)
}

/// Why `name` cannot be set while the broker runs, and how it can be set instead.
pub fn refusal(name: &str) -> String {
    let Some(r) = ROWS.iter().find(|r| r.name == name) else {
        return format!("{name} is not a broker config shardlog knows");
    };
    match (r.key, r.topic) {
        (Some(key), _) => {
            let flag = key.replace('_', "-");
            let env = key.to_uppercase();
            format!(
                "{name} is read at startup only: set it with --{flag} (or SHARDLOG_{env}, or \
                 `{key}` in the --config file) and restart"
            )
        }
        (None, Some(topic)) => format!(
            "{name} is fixed at {}: set the topic config {topic} on each topic instead",
            r.value(defaults())
        ),
        (None, None) => format!("{name} is fixed in shardlog"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Flags;

    #[test]
    fn every_setting_is_listed_once_with_its_value_default_and_source() {
        let names: Vec<&str> = ROWS.iter().map(|r| r.name).collect();
        let mut unique = names.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), names.len(), "a name twice");
        let c = Config::from_flags(Flags {
            num_partitions: Some(6),
            node_id: Some(3),
            cluster_listen: Some("127.0.0.1:19392".parse().unwrap()),
            voters: Some("3@127.0.0.1:19392,4@127.0.0.1:19492".into()),
            ..Flags::default()
        })
        .unwrap();
        let all = list(&c);
        let get = |n: &str| all.iter().find(|e| e.name == n).unwrap().clone();
        let np = get("num.partitions");
        assert_eq!(
            (np.value.as_str(), np.default.as_str(), np.given),
            ("6", "1", true)
        );
        assert!(get("node.id").given && get("broker.id").given);
        assert_eq!(get("broker.id").value, "3");
        let r = get("log.retention.ms");
        assert_eq!((r.value.as_str(), r.given), ("604800000", false));
        assert_eq!(get("offsets.retention.minutes").value, "10080");
        assert_eq!(get("listeners").value, "PLAINTEXT://127.0.0.1:9092");
        assert_eq!(get("default.replication.factor").value, "1");
        let voters = get("controller.quorum.voters");
        assert_eq!(voters.value, "3@127.0.0.1:19392,4@127.0.0.1:19492");
        assert_eq!(voters.default, "", "no voters: a single broker");
        assert!(all.windows(2).all(|w| w[0].name < w[1].name), "by name");
        for r in ROWS {
            assert!(!r.value(&c).is_empty(), "{} has a value", r.name);
            assert!(r.topic.is_none_or(|t| spec_of(t).is_some()), "{}", r.name);
        }
    }

    #[test]
    fn broker_resources_are_named_as_kafka_names_them() {
        assert_eq!(broker_resource("1", 1, false), Ok(BrokerResource::This));
        assert_eq!(
            broker_resource("", 1, false),
            Ok(BrokerResource::ClusterDefault)
        );
        assert_eq!(broker_resource("1", 1, true), Ok(BrokerResource::This));
        assert!(broker_resource("", 1, true).is_err());
        let e = broker_resource("2", 1, false).unwrap_err();
        assert_eq!(
            e,
            "Unexpected broker id, expected 1 or empty string, but received 2"
        );
        let e = broker_resource("x", 1, false).unwrap_err();
        assert_eq!(e, "Broker id must be an integer, but it is: x");
    }

    #[test]
    fn only_changes_that_change_nothing_succeed() {
        assert_eq!(check_change("1", 1, false, &[]), Ok(()));
        assert_eq!(
            check_change("", 1, false, &[Change::Delete("log.dirs")]),
            Ok(())
        );
        let (code, m) = check_change("1", 1, false, &[Change::Set("num.partitions")]).unwrap_err();
        assert_eq!(code, errors::INVALID_CONFIG);
        assert!(
            m.starts_with("Cannot update these configs dynamically: num.partitions."),
            "{m}"
        );
        let (code, m) = check_change("1", 1, false, &[Change::Delete("nope")]).unwrap_err();
        assert_eq!(code, errors::INVALID_CONFIG);
        assert!(m.contains("nope is not a broker config"), "{m}");
        let (code, _) = check_change("2", 1, false, &[]).unwrap_err();
        assert_eq!(code, errors::INVALID_REQUEST);
        assert_eq!(check_change("1", 1, true, &[]), Ok(()));
        let (code, m) = check_change("1", 1, true, &[Change::Set("kafka")]).unwrap_err();
        assert_eq!(code, errors::INVALID_CONFIG);
        assert!(m.contains("RUST_LOG"), "{m}");
    }

    #[test]
    fn refusals_say_how_to_set_the_setting_instead() {
        let m = refusal("num.partitions");
        assert!(
            m.contains("--num-partitions") && m.contains("SHARDLOG_NUM_PARTITIONS"),
            "{m}"
        );
        let m = refusal("log.retention.ms");
        assert!(m.contains("retention.ms on each topic"), "{m}");
        assert!(refusal("no.such").contains("not a broker config"));
        assert!(is_known("log.dirs") && !is_known("no.such"));
        assert_eq!(default_of("retention.ms"), Some("log.retention.ms"));
        assert_eq!(default_of("max.message.bytes"), Some("message.max.bytes"));
    }
}
