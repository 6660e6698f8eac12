//! `shardlog topics list|describe|create|delete|alter-config`: the `kafka-topics` (and
//! `kafka-configs --alter`) subset an operator needs day to day, over Metadata,
//! DescribeConfigs, CreateTopics, DeleteTopics and IncrementalAlterConfigs. Output follows
//! `kafka-topics` (`Created topic X.`, tab-separated `Topic: X<TAB>PartitionCount: N` lines) so
//! scripts written for Kafka keep working.

use clap::{ArgGroup, Subcommand};
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::delete_topics_request::DeleteTopicState;
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::describe_configs_response::DescribeConfigsResult;
use kafka_protocol::messages::incremental_alter_configs_request::{
    AlterConfigsResource, AlterableConfig,
};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::metadata_response::MetadataResponseTopic;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;

use super::table;
use super::{check, eprint_line, kafka_error, print, CliError, Conn};
use crate::client::Client;

/// Version ranges we can encode; the highest the broker also serves is used.
const METADATA: (i16, i16) = (1, 12);
const DESCRIBE_CONFIGS: (i16, i16) = (1, 4);
const CREATE_TOPICS: (i16, i16) = (2, 7);
const DELETE_TOPICS: (i16, i16) = (1, 6);
const INCREMENTAL_ALTER_CONFIGS: (i16, i16) = (0, 1);
/// IncrementalAlterConfigs operations.
const OP_SET: i8 = 0;
const OP_DELETE: i8 = 1;
/// DeleteTopics names topics in `topics[]` from this version on (`topic_names` before).
const DELETE_TOPICS_BY_STATE: i16 = 6;
const RESOURCE_TOPIC: i8 = 2;
/// DescribeConfigs config_source DEFAULT_CONFIG.
const SOURCE_DEFAULT: i8 = 5;
const ADMIN_TIMEOUT_MS: i32 = 30_000;
const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;

/// What `shardlog topics` does.
#[derive(Subcommand, Debug, Clone)]
pub enum Action {
    /// Print topic names, one per line (internal topics are skipped)
    List,
    /// Describe topics (all non-internal ones when none is named)
    Describe {
        /// Topics to describe
        #[arg(value_name = "TOPIC")]
        topics: Vec<String>,
    },
    /// Create a topic
    Create {
        /// Name of the topic to create
        #[arg(value_name = "TOPIC")]
        topic: String,
        /// Number of partitions [default: the broker's num.partitions]
        #[arg(long, value_name = "N")]
        partitions: Option<i32>,
        /// Replication factor (a single broker only takes 1) [default: the broker's]
        #[arg(long, value_name = "N")]
        replication_factor: Option<i16>,
        /// A topic config, e.g. --config retention.ms=60000 (repeatable)
        #[arg(long = "config", value_name = "KEY=VALUE", value_parser = parse_config)]
        configs: Vec<(String, String)>,
    },
    /// Delete topics
    Delete {
        /// Topics to delete
        #[arg(value_name = "TOPIC", required = true)]
        topics: Vec<String>,
    },
    /// Set or remove a topic's configs (IncrementalAlterConfigs); prints each named config's
    /// value before and after: TOPIC CONFIG OLD-VALUE NEW-VALUE SOURCE
    #[command(group(
        ArgGroup::new("changes").required(true).multiple(true).args(["add", "delete"])
    ))]
    AlterConfig {
        /// The topic to change
        #[arg(long, value_name = "TOPIC")]
        topic: String,
        /// Configs to set: --add-config retention.ms=60000,cleanup.policy=compact (repeatable)
        #[arg(
            long = "add-config",
            value_name = "KEY=VALUE[,KEY=VALUE]",
            value_delimiter = ',',
            value_parser = parse_config
        )]
        add: Vec<(String, String)>,
        /// Configs to remove, back to the broker's default: --delete-config retention.ms
        #[arg(
            long = "delete-config",
            value_name = "KEY[,KEY]",
            value_delimiter = ','
        )]
        delete: Vec<String>,
    },
}

/// Runs one `topics` action against the broker `conn` names; an action on several topics
/// reports each failed topic on stderr and fails with [`CliError::Partial`] at the end.
pub fn run(conn: &Conn, action: Action) -> Result<(), CliError> {
    let mut c = conn.connect()?;
    match action {
        Action::List => list(&mut c),
        Action::Describe { topics } => describe(&mut c, &topics),
        Action::Create {
            topic,
            partitions,
            replication_factor,
            configs,
        } => create(&mut c, &topic, partitions, replication_factor, &configs),
        Action::Delete { topics } => delete(&mut c, &topics),
        Action::AlterConfig { topic, add, delete } => alter_config(&mut c, &topic, &add, &delete),
    }
}

fn parse_config(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.to_string())),
        _ => Err(format!("expected KEY=VALUE, got {s:?}")),
    }
}

fn str_bytes(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

fn topic_name(s: &str) -> TopicName {
    TopicName(str_bytes(s))
}

/// Metadata for `topics` (None: every topic), never auto-creating one.
pub fn metadata(c: &mut Client, topics: Option<&[String]>) -> Result<MetadataResponse, CliError> {
    let version = c.version(ApiKey::Metadata, METADATA.0, METADATA.1)?;
    Ok(c.call(
        ApiKey::Metadata,
        version,
        &metadata_request(topics, version),
    )?)
}

/// Metadata for `topics` (None: all); from v4, which can say so, without auto-creation.
fn metadata_request(topics: Option<&[String]>, version: i16) -> MetadataRequest {
    let req = MetadataRequest::default().with_topics(topics.map(|names| {
        names
            .iter()
            .map(|n| MetadataRequestTopic::default().with_name(Some(topic_name(n))))
            .collect()
    }));
    if version >= 4 {
        req.with_allow_auto_topic_creation(false)
    } else {
        req
    }
}

fn list(c: &mut Client) -> Result<(), CliError> {
    let meta = metadata(c, None)?;
    print(&list_lines(&meta))
}

/// `topics list`: the non-internal topic names, sorted, one per line.
pub fn list_lines(meta: &MetadataResponse) -> String {
    let mut names: Vec<&str> = meta
        .topics
        .iter()
        .filter(|t| t.error_code == 0 && !t.is_internal)
        .filter_map(|t| t.name.as_ref().map(|n| n.0.as_str()))
        .collect();
    names.sort_unstable();
    names.iter().map(|n| format!("{n}\n")).collect()
}

fn describe(c: &mut Client, named: &[String]) -> Result<(), CliError> {
    let meta = metadata(c, (!named.is_empty()).then_some(named))?;
    let mut failed = 0;
    let mut topics: Vec<&MetadataResponseTopic> = Vec::new();
    for t in &meta.topics {
        let name = t.name.as_ref().map_or("", |n| n.0.as_str());
        if t.error_code == UNKNOWN_TOPIC_OR_PARTITION {
            eprint_line(&format!("Error: Topic '{name}' does not exist."));
            failed += 1;
        } else if t.error_code != 0 {
            eprint_line(&format!(
                "Error: topic '{name}': {}",
                kafka_error(t.error_code, None)
            ));
            failed += 1;
        } else if !named.is_empty() || !t.is_internal {
            topics.push(t);
        }
    }
    topics.sort_by(|a, b| a.name.cmp(&b.name));
    let names: Vec<String> = topics
        .iter()
        .filter_map(|t| t.name.as_ref().map(|n| n.0.to_string()))
        .collect();
    let configs = if names.is_empty() {
        Vec::new()
    } else {
        describe_configs(c, &names)?
    };
    let mut out = String::new();
    for t in topics {
        let name = t.name.as_ref().map_or("", |n| n.0.as_str());
        let result = configs.iter().find(|r| r.resource_name.as_str() == name);
        if let Some(r) = result.filter(|r| r.error_code != 0) {
            let msg = kafka_error(r.error_code, r.error_message.as_deref());
            eprint_line(&format!("Error: configs of topic '{name}': {msg}"));
            failed += 1;
            continue;
        }
        let overrides = result.map(non_default_configs).unwrap_or_default();
        out.push_str(&describe_lines(t, &overrides));
    }
    print(&out)?;
    if failed > 0 {
        return Err(CliError::Partial(failed));
    }
    Ok(())
}

/// DescribeConfigs of one topic: its configs, or the error (an unknown topic in Kafka's words).
fn topic_configs(c: &mut Client, topic: &str) -> Result<DescribeConfigsResult, CliError> {
    let result = describe_configs(c, &[topic.to_string()])?
        .into_iter()
        .find(|r| r.resource_name.as_str() == topic)
        .ok_or_else(|| CliError::Broker {
            what: format!("describing the configs of topic '{topic}'"),
            code: -1,
            message: Some("the response does not name the topic".into()),
        })?;
    if result.error_code == UNKNOWN_TOPIC_OR_PARTITION {
        return Err(CliError::Invalid(format!(
            "Topic '{topic}' does not exist."
        )));
    }
    check(
        || format!("describing the configs of topic '{topic}'"),
        result.error_code,
        result.error_message.as_deref(),
    )?;
    Ok(result)
}

fn alter_config(
    c: &mut Client,
    topic: &str,
    add: &[(String, String)],
    delete: &[String],
) -> Result<(), CliError> {
    let before = topic_configs(c, topic)?;
    let version = c.version(
        ApiKey::IncrementalAlterConfigs,
        INCREMENTAL_ALTER_CONFIGS.0,
        INCREMENTAL_ALTER_CONFIGS.1,
    )?;
    let req = alter_configs_request(topic, add, delete);
    let resp: IncrementalAlterConfigsResponse =
        c.call(ApiKey::IncrementalAlterConfigs, version, &req)?;
    let what = || format!("altering the configs of topic '{topic}'");
    let result = resp.responses.first().ok_or_else(|| CliError::Broker {
        what: what(),
        code: -1,
        message: Some("the response names no topic".into()),
    })?;
    check(what, result.error_code, result.error_message.as_deref())?;
    let after = topic_configs(c, topic)?;
    let keys: Vec<String> = add
        .iter()
        .map(|(k, _)| k.clone())
        .chain(delete.iter().cloned())
        .collect();
    let mut out = config_changes(topic, &before, &after, &keys);
    out.push_str(&format!("Completed updating config for topic {topic}.\n"));
    print(&out)
}

/// SET for each of `add`, DELETE for each of `delete`, on one topic.
fn alter_configs_request(
    topic: &str,
    add: &[(String, String)],
    delete: &[String],
) -> IncrementalAlterConfigsRequest {
    let sets = add.iter().map(|(k, v)| {
        AlterableConfig::default()
            .with_name(str_bytes(k))
            .with_config_operation(OP_SET)
            .with_value(Some(str_bytes(v)))
    });
    let deletes = delete.iter().map(|k| {
        AlterableConfig::default()
            .with_name(str_bytes(k))
            .with_config_operation(OP_DELETE)
            .with_value(None)
    });
    IncrementalAlterConfigsRequest::default().with_resources(vec![AlterConfigsResource::default()
        .with_resource_type(RESOURCE_TOPIC)
        .with_resource_name(str_bytes(topic))
        .with_configs(sets.chain(deletes).collect())])
}

/// Where a config's value comes from, as DescribeConfigs' config_source says.
pub fn source_name(source: i8) -> &'static str {
    match source {
        1 => "topic",
        2 => "broker",
        3 => "broker-default",
        4 => "broker-static",
        5 => "default",
        6 => "broker-logger",
        _ => "-",
    }
}

/// The alter-config table: each of `keys` (once, in order) with its value before and after,
/// and where the new value comes from. Sensitive values print as `-`.
pub fn config_changes(
    topic: &str,
    before: &DescribeConfigsResult,
    after: &DescribeConfigsResult,
    keys: &[String],
) -> String {
    let find = |r: &DescribeConfigsResult, k: &str| {
        r.configs.iter().find(|c| c.name.as_str() == k).map(|c| {
            let value = if c.is_sensitive {
                None
            } else {
                c.value.clone()
            };
            (
                value.map(|v| v.to_string()).unwrap_or_default(),
                c.config_source,
            )
        })
    };
    let mut seen: Vec<&str> = Vec::new();
    let mut rows = Vec::new();
    for k in keys {
        if seen.contains(&k.as_str()) {
            continue;
        }
        seen.push(k);
        let old = find(before, k).map(|(v, _)| v).unwrap_or_default();
        let (new, source) = find(after, k).unwrap_or_default();
        let source = if source == 0 {
            "-"
        } else {
            source_name(source)
        };
        rows.push(vec![
            topic.to_string(),
            k.clone(),
            old,
            new,
            source.to_string(),
        ]);
    }
    table::render(
        &["TOPIC", "CONFIG", "OLD-VALUE", "NEW-VALUE", "SOURCE"],
        &rows,
    )
}

fn describe_configs(
    c: &mut Client,
    names: &[String],
) -> Result<Vec<DescribeConfigsResult>, CliError> {
    let version = c.version(
        ApiKey::DescribeConfigs,
        DESCRIBE_CONFIGS.0,
        DESCRIBE_CONFIGS.1,
    )?;
    let req = describe_configs_request(names);
    let resp: DescribeConfigsResponse = c.call(ApiKey::DescribeConfigs, version, &req)?;
    Ok(resp.results)
}

/// Every config of each named topic.
fn describe_configs_request(names: &[String]) -> DescribeConfigsRequest {
    DescribeConfigsRequest::default().with_resources(
        names
            .iter()
            .map(|n| {
                DescribeConfigsResource::default()
                    .with_resource_type(RESOURCE_TOPIC)
                    .with_resource_name(str_bytes(n))
                    .with_configuration_keys(None)
            })
            .collect(),
    )
}

/// The configs set on the topic (not the broker's defaults), as `(name, value)`.
pub fn non_default_configs(result: &DescribeConfigsResult) -> Vec<(String, String)> {
    result
        .configs
        .iter()
        .filter(|c| c.config_source != SOURCE_DEFAULT && !c.is_sensitive)
        .filter_map(|c| Some((c.name.to_string(), c.value.as_ref()?.to_string())))
        .collect()
}

/// `kafka-topics --describe` lines for one topic: a summary line, then one line per partition.
pub fn describe_lines(t: &MetadataResponseTopic, configs: &[(String, String)]) -> String {
    let name = t.name.as_ref().map_or("", |n| n.0.as_str());
    let mut parts: Vec<_> = t.partitions.iter().collect();
    parts.sort_by_key(|p| p.partition_index);
    let rf = parts.first().map_or(0, |p| p.replica_nodes.len());
    let configs: Vec<String> = configs.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let mut out = format!(
        "Topic: {name}\tTopicId: {}\tPartitionCount: {}\tReplicationFactor: {rf}\tConfigs: {}\n",
        kafka_uuid(t.topic_id.as_bytes()),
        parts.len(),
        configs.join(",")
    );
    for p in parts {
        let leader = if p.leader_id.0 < 0 {
            "none".to_string()
        } else {
            p.leader_id.0.to_string()
        };
        out.push_str(&format!(
            "\tTopic: {name}\tPartition: {}\tLeader: {leader}\tReplicas: {}\tIsr: {}\n",
            p.partition_index,
            join_ids(&p.replica_nodes),
            join_ids(&p.isr_nodes)
        ));
    }
    out
}

fn join_ids(ids: &[BrokerId]) -> String {
    ids.iter()
        .map(|b| b.0.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

/// A topic id as Kafka prints it (`Uuid.toString()`): URL-safe base64 without padding.
pub fn kafka_uuid(bytes: &[u8; 16]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::with_capacity(22);
    for chunk in bytes.chunks(3) {
        let mut n = [0u8; 3];
        n[..chunk.len()].copy_from_slice(chunk);
        let v = u32::from(n[0]) << 16 | u32::from(n[1]) << 8 | u32::from(n[2]);
        for i in 0..=chunk.len() {
            out.push(ALPHABET[(v >> (18 - 6 * i) & 63) as usize] as char);
        }
    }
    out
}

fn create(
    c: &mut Client,
    topic: &str,
    partitions: Option<i32>,
    replication_factor: Option<i16>,
    configs: &[(String, String)],
) -> Result<(), CliError> {
    let version = c.version(ApiKey::CreateTopics, CREATE_TOPICS.0, CREATE_TOPICS.1)?;
    let req = create_topics_request(topic, partitions, replication_factor, configs);
    let resp: CreateTopicsResponse = c.call(ApiKey::CreateTopics, version, &req)?;
    let result = resp.topics.first().ok_or_else(|| CliError::Broker {
        what: format!("creating topic '{topic}'"),
        code: -1,
        message: Some("the response names no topic".into()),
    })?;
    check(
        || format!("creating topic '{topic}'"),
        result.error_code,
        result.error_message.as_deref(),
    )?;
    print(&format!("Created topic {topic}.\n"))
}

/// One topic; a missing partition count or replication factor is -1, the broker's default.
fn create_topics_request(
    topic: &str,
    partitions: Option<i32>,
    replication_factor: Option<i16>,
    configs: &[(String, String)],
) -> CreateTopicsRequest {
    CreateTopicsRequest::default()
        .with_timeout_ms(ADMIN_TIMEOUT_MS)
        .with_topics(vec![CreatableTopic::default()
            .with_name(topic_name(topic))
            .with_num_partitions(partitions.unwrap_or(-1))
            .with_replication_factor(replication_factor.unwrap_or(-1))
            .with_configs(
                configs
                    .iter()
                    .map(|(k, v)| {
                        CreatableTopicConfig::default()
                            .with_name(str_bytes(k))
                            .with_value(Some(str_bytes(v)))
                    })
                    .collect(),
            )])
}

fn delete(c: &mut Client, topics: &[String]) -> Result<(), CliError> {
    let version = c.version(ApiKey::DeleteTopics, DELETE_TOPICS.0, DELETE_TOPICS.1)?;
    let req = delete_topics_request(topics, version);
    let resp: DeleteTopicsResponse = c.call(ApiKey::DeleteTopics, version, &req)?;
    let mut failed = 0;
    for r in &resp.responses {
        let name = r.name.as_ref().map_or("", |n| n.0.as_str());
        if r.error_code == 0 {
            print(&format!("Deleted topic {name}.\n"))?;
        } else {
            let msg = kafka_error(r.error_code, r.error_message.as_deref());
            eprint_line(&format!("Error: deleting topic '{name}': {msg}"));
            failed += 1;
        }
    }
    if failed > 0 {
        return Err(CliError::Partial(failed));
    }
    Ok(())
}

/// The named topics, in the field `version` has for them.
fn delete_topics_request(topics: &[String], version: i16) -> DeleteTopicsRequest {
    let req = DeleteTopicsRequest::default().with_timeout_ms(ADMIN_TIMEOUT_MS);
    if version >= DELETE_TOPICS_BY_STATE {
        req.with_topics(
            topics
                .iter()
                .map(|t| DeleteTopicState::default().with_name(Some(topic_name(t))))
                .collect(),
        )
    } else {
        req.with_topic_names(topics.iter().map(|t| topic_name(t)).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::describe_configs_response::DescribeConfigsResourceResult;
    use kafka_protocol::messages::metadata_response::MetadataResponsePartition;

    fn topic(name: &str, internal: bool, partitions: i32) -> MetadataResponseTopic {
        MetadataResponseTopic::default()
            .with_name(Some(topic_name(name)))
            .with_is_internal(internal)
            .with_topic_id(uuid::Uuid::from_bytes([0xab; 16]))
            .with_partitions(
                (0..partitions)
                    .rev()
                    .map(|i| {
                        MetadataResponsePartition::default()
                            .with_partition_index(i)
                            .with_leader_id(BrokerId(1))
                            .with_replica_nodes(vec![BrokerId(1)])
                            .with_isr_nodes(vec![BrokerId(1)])
                    })
                    .collect(),
            )
    }

    #[test]
    fn list_skips_internal_and_failed_topics_and_sorts() {
        let meta = MetadataResponse::default().with_topics(vec![
            topic("zeta", false, 1),
            topic("__consumer_offsets", true, 1),
            topic("alpha", false, 1),
            topic("broken", false, 0).with_error_code(3),
        ]);
        assert_eq!(list_lines(&meta), "alpha\nzeta\n");
    }

    #[test]
    fn describe_matches_kafka_topics() {
        let t = topic("orders", false, 2);
        let configs = vec![("retention.ms".to_string(), "60000".to_string())];
        assert_eq!(
            describe_lines(&t, &configs),
            "Topic: orders\tTopicId: q6urq6urq6urq6urq6urqw\tPartitionCount: 2\t\
             ReplicationFactor: 1\tConfigs: retention.ms=60000\n\
             \tTopic: orders\tPartition: 0\tLeader: 1\tReplicas: 1\tIsr: 1\n\
             \tTopic: orders\tPartition: 1\tLeader: 1\tReplicas: 1\tIsr: 1\n"
        );
        let leaderless = topic("t", false, 1);
        let mut leaderless = leaderless.clone();
        leaderless.partitions[0].leader_id = BrokerId(-1);
        assert!(describe_lines(&leaderless, &[]).contains("Leader: none\t"));
        assert!(describe_lines(&leaderless, &[]).contains("\tConfigs: \n"));
    }

    #[test]
    fn topic_ids_print_like_kafka() {
        // Kafka's Uuid.toString() of 0x0000…0001 (most, least significant bits 0 and 1).
        let mut one = [0u8; 16];
        one[15] = 1;
        assert_eq!(kafka_uuid(&one), "AAAAAAAAAAAAAAAAAAAAAQ");
        assert_eq!(kafka_uuid(&[0xff; 16]), "_____________________w");
        assert_eq!(kafka_uuid(&[0; 16]).len(), 22);
    }

    #[test]
    fn only_topic_overrides_are_shown() {
        let entry = |name: &str, value: &str, source: i8| {
            DescribeConfigsResourceResult::default()
                .with_name(str_bytes(name))
                .with_value(Some(str_bytes(value)))
                .with_config_source(source)
        };
        let r = DescribeConfigsResult::default().with_configs(vec![
            entry("cleanup.policy", "delete", SOURCE_DEFAULT),
            entry("retention.ms", "60000", 1),
            entry("compression.type", "zstd", 1),
        ]);
        assert_eq!(
            non_default_configs(&r),
            [
                ("retention.ms".to_string(), "60000".to_string()),
                ("compression.type".to_string(), "zstd".to_string())
            ]
        );
    }

    /// Each request encodes at every version we may pick (fields a version lacks stay default).
    #[test]
    fn requests_encode_at_every_version_in_our_ranges() {
        use bytes::BytesMut;
        use kafka_protocol::protocol::Encodable;
        let names = ["a".to_string(), "b".to_string()];
        let configs = [("retention.ms".to_string(), "1".to_string())];
        for v in METADATA.0..=METADATA.1 {
            for topics in [None, Some(&names[..])] {
                let req = metadata_request(topics, v);
                req.encode(&mut BytesMut::new(), v)
                    .unwrap_or_else(|e| panic!("Metadata v{v}: {e}"));
            }
        }
        for v in DESCRIBE_CONFIGS.0..=DESCRIBE_CONFIGS.1 {
            describe_configs_request(&names)
                .encode(&mut BytesMut::new(), v)
                .unwrap();
        }
        for v in CREATE_TOPICS.0..=CREATE_TOPICS.1 {
            create_topics_request("a", Some(3), Some(1), &configs)
                .encode(&mut BytesMut::new(), v)
                .unwrap();
        }
        for v in INCREMENTAL_ALTER_CONFIGS.0..=INCREMENTAL_ALTER_CONFIGS.1 {
            alter_configs_request("a", &configs, &names)
                .encode(&mut BytesMut::new(), v)
                .unwrap_or_else(|e| panic!("IncrementalAlterConfigs v{v}: {e}"));
        }
        for v in DELETE_TOPICS.0..=DELETE_TOPICS.1 {
            delete_topics_request(&names, v)
                .encode(&mut BytesMut::new(), v)
                .unwrap_or_else(|e| panic!("DeleteTopics v{v}: {e}"));
        }
    }

    #[test]
    fn alter_config_shows_before_and_after() {
        let entry = |name: &str, value: &str, source: i8| {
            DescribeConfigsResourceResult::default()
                .with_name(str_bytes(name))
                .with_value(Some(str_bytes(value)))
                .with_config_source(source)
        };
        let before = DescribeConfigsResult::default().with_configs(vec![
            entry("retention.ms", "604800000", SOURCE_DEFAULT),
            entry("cleanup.policy", "compact", 1),
        ]);
        let after = DescribeConfigsResult::default().with_configs(vec![
            entry("retention.ms", "60000", 1),
            entry("cleanup.policy", "delete", SOURCE_DEFAULT),
        ]);
        let keys = [
            "retention.ms".to_string(),
            "cleanup.policy".to_string(),
            "retention.ms".to_string(),
        ];
        assert_eq!(
            config_changes("t", &before, &after, &keys),
            "TOPIC  CONFIG          OLD-VALUE  NEW-VALUE  SOURCE\n\
             t      retention.ms    604800000  60000      topic\n\
             t      cleanup.policy  compact    delete     default\n"
        );
        let unknown = config_changes("t", &before, &after, &["x.y".to_string()]);
        assert_eq!(
            unknown.lines().nth(1),
            Some("t      x.y     -          -          -")
        );
    }

    #[test]
    fn config_flags_parse() {
        assert_eq!(
            parse_config("retention.ms=1=2").unwrap(),
            ("retention.ms".to_string(), "1=2".to_string())
        );
        assert_eq!(
            parse_config("cleanup.policy=").unwrap(),
            ("cleanup.policy".to_string(), String::new())
        );
        assert!(parse_config("novalue").is_err());
        assert!(parse_config("=x").is_err());
    }
}
