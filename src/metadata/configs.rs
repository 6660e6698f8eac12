//! Topic configs: which Kafka topic configs we accept, their defaults, validation, and how they
//! become a storage `LogConfig`. The only place a config string is parsed.

use std::collections::BTreeMap;

use crate::storage::{LogConfig, TimestampType};

/// Why a topic config was refused (CreateTopics, AlterConfigs): INVALID_CONFIG on the wire.
/// (Broker settings have their own `crate::config::ConfigError`.)
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TopicConfigError {
    /// The name is not one of [`SPECS`]; carries it.
    #[error("unknown topic config {0}")]
    Unknown(String),
    /// The value does not parse, is below the config's minimum, or is not one of its values.
    #[error("invalid value {value:?} for {name}: {why}")]
    Invalid {
        /// The config's name.
        name: String,
        /// The value refused (trimmed).
        value: String,
        /// Why, e.g. "below the minimum".
        why: &'static str,
    },
}

/// How a config is described to DescribeConfigs.
#[derive(Clone, Copy, Debug)]
pub struct ConfigSpec {
    /// Kafka's name for the config, e.g. `retention.ms`.
    pub name: &'static str,
    /// The value a topic that does not set it has, as DescribeConfigs shows it.
    pub default: &'static str,
    kind: Kind,
}

#[derive(Clone, Copy, Debug)]
enum Kind {
    /// An integer ≥ the bound.
    Long(i64),
    OneOf(&'static [&'static str]),
}

const COMPRESSION: &[&str] = &["producer", "uncompressed", "gzip", "snappy", "lz4", "zstd"];

/// Every topic config we accept, with Kafka's name and our default (docs/compatibility.md).
pub const SPECS: &[ConfigSpec] = &[
    spec("cleanup.policy", "delete", Kind::OneOf(&["delete"])),
    spec("compression.type", "producer", Kind::OneOf(COMPRESSION)),
    spec("flush.messages", "9223372036854775807", Kind::Long(1)),
    spec("flush.ms", "1000", Kind::Long(0)),
    spec("index.interval.bytes", "4096", Kind::Long(0)),
    spec("max.message.bytes", "1048588", Kind::Long(0)),
    spec(
        "message.timestamp.type",
        "CreateTime",
        Kind::OneOf(&["CreateTime", "LogAppendTime"]),
    ),
    spec("min.insync.replicas", "1", Kind::Long(1)),
    spec("retention.bytes", "-1", Kind::Long(-1)),
    spec("retention.ms", "604800000", Kind::Long(-1)),
    spec("segment.bytes", "1073741824", Kind::Long(14)),
    spec("segment.ms", "604800000", Kind::Long(1)),
];

const fn spec(name: &'static str, default: &'static str, kind: Kind) -> ConfigSpec {
    ConfigSpec {
        name,
        default,
        kind,
    }
}

/// The spec of the config named `name`; None for a config we do not accept.
pub fn spec_of(name: &str) -> Option<&'static ConfigSpec> {
    SPECS.iter().find(|s| s.name == name)
}

/// The configs a topic set explicitly (others take their default).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TopicConfigs(pub BTreeMap<String, String>);

impl TopicConfigs {
    /// Validates and sets one config; `None` resets it to the default.
    pub fn set(&mut self, name: &str, value: Option<&str>) -> Result<(), TopicConfigError> {
        let spec = spec_of(name).ok_or_else(|| TopicConfigError::Unknown(name.to_string()))?;
        match value {
            None => {
                self.0.remove(name);
            }
            Some(v) => {
                let v = v.trim();
                check(spec, v)?;
                self.0.insert(name.to_string(), v.to_string());
            }
        }
        Ok(())
    }

    /// The effective value and whether it is the default.
    pub fn get(&self, spec: &ConfigSpec) -> (&str, bool) {
        match self.0.get(spec.name) {
            Some(v) => (v.as_str(), false),
            None => (spec.default, true),
        }
    }

    /// A numeric config; a stored value that does not parse (an older or hand-edited registry)
    /// falls back to the default rather than taking the broker down.
    fn long(&self, name: &str) -> i64 {
        let spec = spec_of(name).expect("known config");
        let default = || spec.default.parse().expect("defaults parse");
        self.get(spec)
            .0
            .trim()
            .parse()
            .unwrap_or_else(|_| default())
    }

    /// min.insync.replicas: the in-sync replicas an acks=all produce needs.
    pub fn min_insync_replicas(&self) -> i64 {
        self.long("min.insync.replicas")
    }

    /// compression.type: "producer" keeps what the producer sent.
    pub fn compression(&self) -> &str {
        self.get(spec_of("compression.type").expect("known")).0
    }

    /// The storage settings these configs give a partition's log; settings no topic config
    /// covers (`verify_reads`, say) are left at their defaults for the shard to fill in.
    pub fn log_config(&self) -> LogConfig {
        let ts = self
            .get(spec_of("message.timestamp.type").expect("known"))
            .0;
        LogConfig {
            segment_bytes_max: self.long("segment.bytes") as u64,
            segment_ms: self.long("segment.ms"),
            retention_ms: self.long("retention.ms"),
            retention_bytes: self.long("retention.bytes"),
            flush_messages: self.long("flush.messages") as u64,
            flush_ms: self.long("flush.ms") as u64,
            index_interval_bytes: self.long("index.interval.bytes").min(i64::from(u32::MAX)) as u32,
            message_bytes_max: self.long("max.message.bytes") as usize,
            timestamp_type: if ts == "LogAppendTime" {
                TimestampType::LogAppendTime
            } else {
                TimestampType::CreateTime
            },
            ..LogConfig::default()
        }
    }
}

fn check(spec: &ConfigSpec, v: &str) -> Result<(), TopicConfigError> {
    let bad = |why| TopicConfigError::Invalid {
        name: spec.name.to_string(),
        value: v.to_string(),
        why,
    };
    match spec.kind {
        Kind::Long(min) => {
            let n: i64 = v.trim().parse().map_err(|_| bad("not an integer"))?;
            if n < min {
                return Err(bad("below the minimum"));
            }
        }
        Kind::OneOf(options) => {
            if !options.contains(&v) {
                return Err(bad("not one of the allowed values"));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_validates_and_feeds_log_config() {
        let mut c = TopicConfigs::default();
        c.set("retention.ms", Some("1000")).unwrap();
        c.set("flush.messages", Some("1")).unwrap();
        c.set("message.timestamp.type", Some("LogAppendTime"))
            .unwrap();
        let l = c.log_config();
        assert_eq!(l.retention_ms, 1000);
        assert!(l.sync_every_batch());
        assert_eq!(l.timestamp_type, TimestampType::LogAppendTime);
        assert!(matches!(
            c.set("nope", Some("1")),
            Err(TopicConfigError::Unknown(_))
        ));
        assert!(c.set("retention.ms", Some("abc")).is_err());
        assert!(c.set("compression.type", Some("brotli")).is_err());
        c.set("retention.ms", Some(" 1000 ")).unwrap();
        assert_eq!(c.log_config().retention_ms, 1000, "stored trimmed");
        c.0.insert("segment.ms".into(), "garbage".into());
        assert_eq!(
            c.log_config().segment_ms,
            604_800_000,
            "unparsable falls back"
        );
        c.set("retention.ms", None).unwrap();
        assert_eq!(c.log_config().retention_ms, 604_800_000);
    }
}
