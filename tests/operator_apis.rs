//! Kafka's operator APIs (issue 19) against the real broker binary: what kafka-configs,
//! kafka-log-dirs, kafka-features, kafka-topics and the admin UIs ask, through our own client
//! and through real ones (confluent-kafka's and kafka-python's admin clients,
//! tests/clients/python/operator_admin.py): DescribeConfigs and the alter APIs on BROKER
//! resources, DescribeTopicPartitions, ApiVersions' features, ListOffsets' max timestamp
//! inside a batch, DescribeLogDirs, DescribeClientQuotas, ListPartitionReassignments and
//! DescribeProducers.

mod harness;

use std::process::Command;

use bytes::{Bytes, BytesMut};
use harness::{clients_dir, run, stdout, Broker};
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use serde_json::Value;
use shardlog::storage::batch::{self, build_test_batch};
use shardlog::types::TimestampMs;

fn name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.to_string()))
}

fn text(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

fn create_topic(c: &mut harness::client::Client, topic: &str, partitions: i32) {
    let req = CreateTopicsRequest::default().with_topics(vec![CreatableTopic::default()
        .with_name(name(topic))
        .with_num_partitions(partitions)
        .with_replication_factor(1)]);
    let resp: CreateTopicsResponse = c.call(ApiKey::CreateTopics, 7, &req);
    assert_eq!(resp.topics[0].error_code, 0, "create {topic}");
}

/// Produces `records` (one batch) to partition `part`; returns the base offset.
fn produce(c: &mut harness::client::Client, topic: &str, part: i32, records: Bytes) -> i64 {
    let (error, base) = c.produce_one(topic, part, records);
    assert_eq!(error, 0, "produce to {topic}-{part}");
    base
}

/// One batch of records with these timestamps, in `codec`.
fn batch_at(timestamps: &[i64], codec: Compression) -> Bytes {
    let records: Vec<Record> = timestamps
        .iter()
        .enumerate()
        .map(|(i, &timestamp)| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: 0,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            sequence: i as i32 - 1,
            timestamp,
            key: None,
            value: Some(Bytes::from(format!("record {i} ").repeat(30))),
            headers: Default::default(),
        })
        .collect();
    let mut out = BytesMut::new();
    let opts = RecordEncodeOptions {
        version: 2,
        compression: codec,
    };
    RecordBatchEncoder::encode(&mut out, records.iter(), &opts).unwrap();
    out.freeze()
}

/// ListOffsets v7 for partition 0 at `ts`: (error, offset, timestamp).
fn list_offset(c: &mut harness::client::Client, topic: &str, ts: i64) -> (i16, i64, i64) {
    use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
    let req = ListOffsetsRequest::default().with_topics(vec![ListOffsetsTopic::default()
        .with_name(name(topic))
        .with_partitions(vec![ListOffsetsPartition::default()
            .with_partition_index(0)
            .with_timestamp(ts)])]);
    let resp: ListOffsetsResponse = c.call(ApiKey::ListOffsets, 7, &req);
    let p = &resp.topics[0].partitions[0];
    (p.error_code, p.offset, p.timestamp)
}

/// ListOffsets' max timestamp (-3) answers the record holding it, inside a compressed batch
/// with records before and after it, not the batch's base offset; a timestamp lookup lands on
/// the exact record of a compressed batch too.
#[test]
fn list_offsets_max_timestamp_is_the_record_inside_its_batch() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(&dir.path().join("data"), 2);
    let mut c = broker.client();
    create_topic(&mut c, "maxts", 1);
    assert_eq!(list_offset(&mut c, "maxts", -3), (0, -1, -1), "empty: none");
    let t = TimestampMs::now().get() - 60_000;
    let first = batch_at(&[t, t + 1, t + 2], Compression::None);
    assert_eq!(produce(&mut c, "maxts", 0, first), 0);
    for codec in [Compression::Lz4, Compression::Zstd, Compression::None] {
        let base = list_offset(&mut c, "maxts", -1).1;
        let peak = t + 50_000 + base; // each batch's peak above the last one's
        let b = batch_at(&[t + 10, peak, t + 20, t + 30], codec);
        assert_eq!(produce(&mut c, "maxts", 0, b), base);
        let tail = batch_at(&[t + 40], Compression::None);
        produce(&mut c, "maxts", 0, tail);
        assert_eq!(
            list_offset(&mut c, "maxts", -3),
            (0, base + 1, peak),
            "{codec:?}: the second record of the batch at {base}"
        );
        assert_eq!(
            list_offset(&mut c, "maxts", t + 11),
            (0, 4, t + 50_000 + 3),
            "{codec:?}: the first record at or after t+11, in the lz4 batch at 3"
        );
    }
}

/// DescribeTopicPartitions pages through every topic, DescribeLogDirs shows produced
/// partitions' sizes, DescribeProducers the idempotent producer, and quotas and reassignments
/// are empty: all through our own client.
#[test]
fn topic_partitions_log_dirs_producers_quotas_and_reassignments() {
    use kafka_protocol::messages::describe_topic_partitions_request::{Cursor, TopicRequest};
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(&dir.path().join("data"), 2);
    let mut c = broker.client();
    create_topic(&mut c, "dtp-a", 3);
    create_topic(&mut c, "dtp-b", 2);
    // Pages of 2 partitions over all topics: a0 a1 | a2 b0 | b1.
    let mut cursor = None;
    let mut pages = Vec::new();
    for _ in 0..10 {
        let req = DescribeTopicPartitionsRequest::default()
            .with_response_partition_limit(2)
            .with_cursor(cursor.take());
        let resp: DescribeTopicPartitionsResponse =
            c.call(ApiKey::DescribeTopicPartitions, 0, &req);
        let page: Vec<(String, i32)> = resp
            .topics
            .iter()
            .flat_map(|t| {
                let n = t.name.as_ref().unwrap().0.to_string();
                t.partitions
                    .iter()
                    .map(move |p| (n.clone(), p.partition_index))
            })
            .collect();
        pages.push(page);
        let Some(next) = resp.next_cursor else { break };
        cursor = Some(
            Cursor::default()
                .with_topic_name(next.topic_name)
                .with_partition_index(next.partition_index),
        );
    }
    let p = |t: &str, i| (t.to_string(), i);
    assert_eq!(
        pages,
        [
            vec![p("dtp-a", 0), p("dtp-a", 1)],
            vec![p("dtp-a", 2), p("dtp-b", 0)],
            vec![p("dtp-b", 1)],
        ]
    );
    let req = DescribeTopicPartitionsRequest::default()
        .with_topics(vec![
            TopicRequest::default().with_name(name("dtp-b")),
            TopicRequest::default().with_name(name("nope")),
        ])
        .with_response_partition_limit(2000);
    let resp: DescribeTopicPartitionsResponse = c.call(ApiKey::DescribeTopicPartitions, 0, &req);
    let b = &resp.topics[0];
    assert_eq!((b.error_code, b.partitions.len()), (0, 2));
    let part = &b.partitions[1];
    assert_eq!((part.leader_id.0, part.leader_epoch), (1, 0));
    assert_eq!(part.replica_nodes, vec![BrokerId(1)]);
    assert_eq!(part.isr_nodes, vec![BrokerId(1)]);
    assert_eq!(part.eligible_leader_replicas, Some(vec![]));
    assert_eq!(resp.topics[1].error_code, 3, "UNKNOWN_TOPIC_OR_PARTITION");

    // DescribeLogDirs: the data dir, with produced partitions' sizes.
    let records = Bytes::from(build_test_batch(10, 100, TimestampMs::now()));
    produce(&mut c, "dtp-a", 1, records.clone());
    produce(&mut c, "dtp-b", 0, records);
    let req = DescribeLogDirsRequest::default().with_topics(None);
    let resp: DescribeLogDirsResponse = c.call(ApiKey::DescribeLogDirs, 4, &req);
    assert_eq!((resp.error_code, resp.results.len()), (0, 1));
    let d = &resp.results[0];
    assert_eq!(d.log_dir.as_str(), broker.dir.to_str().unwrap());
    assert!(d.total_bytes > 0 && d.usable_bytes > 0 && d.usable_bytes <= d.total_bytes);
    let sizes: Vec<(String, i32, bool)> = d
        .topics
        .iter()
        .flat_map(|t| {
            let n = t.name.0.to_string();
            t.partitions
                .iter()
                .map(move |p| (n.clone(), p.partition_index, p.partition_size > 0))
        })
        .collect();
    let s = |t: &str, i, big| (t.to_string(), i, big);
    assert_eq!(
        sizes,
        [
            s("dtp-a", 0, false),
            s("dtp-a", 1, true),
            s("dtp-a", 2, false),
            s("dtp-b", 0, true),
            s("dtp-b", 1, false),
        ]
    );
    assert!(d.topics[0].partitions[1].partition_size >= 1000);
    assert!(d.topics.iter().all(|t| t
        .partitions
        .iter()
        .all(|p| p.offset_lag == 0 && !p.is_future_key)));

    // DescribeProducers: the idempotent producer of dtp-b-1, none on dtp-a-0.
    let init: InitProducerIdResponse = c.call(
        ApiKey::InitProducerId,
        4,
        &InitProducerIdRequest::default()
            .with_transaction_timeout_ms(60_000)
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1),
    );
    let mut b = build_test_batch(3, 16, TimestampMs::now());
    batch::set_producer(&mut b, init.producer_id.0, init.producer_epoch, 0);
    produce(&mut c, "dtp-b", 1, Bytes::from(b));
    use kafka_protocol::messages::describe_producers_request::TopicRequest as ProducersTopic;
    let req = DescribeProducersRequest::default().with_topics(vec![
        ProducersTopic::default()
            .with_name(name("dtp-b"))
            .with_partition_indexes(vec![1, 0, 9]),
        ProducersTopic::default()
            .with_name(name("nope"))
            .with_partition_indexes(vec![0]),
    ]);
    let resp: DescribeProducersResponse = c.call(ApiKey::DescribeProducers, 0, &req);
    let parts = &resp.topics[0].partitions;
    assert_eq!((parts[0].partition_index, parts[0].error_code), (1, 0));
    let got = &parts[0].active_producers;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].producer_id, init.producer_id);
    assert_eq!(got[0].producer_epoch, i32::from(init.producer_epoch));
    assert_eq!(got[0].last_sequence, 2);
    assert!(got[0].last_timestamp > 0);
    assert_eq!(
        (got[0].coordinator_epoch, got[0].current_txn_start_offset),
        (-1, -1)
    );
    assert!(parts[1].active_producers.is_empty() && parts[1].error_code == 0);
    assert_eq!(
        parts[2].error_code, 3,
        "partition 9: UNKNOWN_TOPIC_OR_PARTITION"
    );
    assert_eq!(resp.topics[1].partitions[0].error_code, 3);

    // No quotas, no reassignments.
    let resp: DescribeClientQuotasResponse = c.call(
        ApiKey::DescribeClientQuotas,
        1,
        &DescribeClientQuotasRequest::default(),
    );
    assert_eq!((resp.error_code, resp.entries), (0, Some(vec![])));
    let resp: ListPartitionReassignmentsResponse = c.call(
        ApiKey::ListPartitionReassignments,
        0,
        &ListPartitionReassignmentsRequest::default().with_timeout_ms(1000),
    );
    assert_eq!(resp.error_code, 0);
    assert!(resp.topics.is_empty());
}

/// DescribeConfigs on the broker lists its settings with values and sources (given at
/// startup: STATIC_BROKER_CONFIG), synonyms and documentation; another broker id is
/// INVALID_REQUEST; altering a broker setting is INVALID_CONFIG with a message saying how to
/// set it, validate_only or not. ApiVersions v3 carries metadata.version.
#[test]
fn broker_configs_are_described_and_alterations_explained() {
    use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
    use kafka_protocol::messages::incremental_alter_configs_request::{
        AlterConfigsResource, AlterableConfig,
    };
    let dir = tempfile::tempdir().unwrap();
    let port = harness::free_port();
    let broker = Broker::start_on(
        &dir.path().join("data"),
        2,
        port,
        &["--num-partitions", "4"],
    );
    let mut c = broker.client();
    let describe = |c: &mut harness::client::Client, name: &str, kind: i8| {
        let req = DescribeConfigsRequest::default()
            .with_resources(vec![DescribeConfigsResource::default()
                .with_resource_type(kind)
                .with_resource_name(text(name))
                .with_configuration_keys(None)])
            .with_include_synonyms(true)
            .with_include_documentation(true);
        let mut resp: DescribeConfigsResponse = c.call(ApiKey::DescribeConfigs, 4, &req);
        resp.results.remove(0)
    };
    let r = describe(&mut c, "1", 4);
    assert_eq!(r.error_code, 0);
    let get = |n: &str| r.configs.iter().find(|e| e.name.as_str() == n).unwrap();
    let np = get("num.partitions");
    assert_eq!((np.value.as_deref(), np.config_source), (Some("4"), 4));
    assert_eq!(np.synonyms.len(), 2);
    assert_eq!(np.config_type, 3, "INT");
    assert!(np.documentation.as_deref().is_some_and(|d| !d.is_empty()));
    let dirs = get("log.dirs");
    assert_eq!(dirs.value.as_deref(), broker.dir.to_str());
    assert_eq!(dirs.config_source, 4, "--data-dir was given");
    let retention = get("log.retention.ms");
    assert_eq!(
        (retention.value.as_deref(), retention.config_source),
        (Some("604800000"), 5)
    );
    assert!(r.configs.iter().all(|e| e.read_only && !e.is_sensitive));
    assert!(r.configs.len() >= 40, "{} settings", r.configs.len());
    assert!(
        describe(&mut c, "", 4).configs.is_empty(),
        "no dynamic defaults"
    );
    let other = describe(&mut c, "2", 4);
    assert_eq!(other.error_code, 42, "INVALID_REQUEST");
    assert!(other.error_message.is_some());
    assert_eq!(
        describe(&mut c, "1", 8).error_code,
        0,
        "BROKER_LOGGER: none"
    );

    for validate_only in [true, false] {
        let req = IncrementalAlterConfigsRequest::default()
            .with_resources(vec![AlterConfigsResource::default()
                .with_resource_type(4)
                .with_resource_name(text("1"))
                .with_configs(vec![AlterableConfig::default()
                    .with_name(text("num.partitions"))
                    .with_config_operation(0)
                    .with_value(Some(text("8")))])])
            .with_validate_only(validate_only);
        let resp: IncrementalAlterConfigsResponse =
            c.call(ApiKey::IncrementalAlterConfigs, 1, &req);
        let r = &resp.responses[0];
        assert_eq!(r.error_code, 40, "INVALID_CONFIG");
        let m = r.error_message.as_deref().unwrap_or_default();
        assert!(
            m.contains("num.partitions") && m.contains("--num-partitions"),
            "{m}"
        );
    }
    assert_eq!(get_value(&mut c, "num.partitions"), "4", "unchanged");

    let resp: ApiVersionsResponse = c.call(ApiKey::ApiVersions, 3, &ApiVersionsRequest::default());
    let f = &resp.finalized_features[0];
    assert_eq!(
        (f.name.as_str(), f.max_version_level),
        ("metadata.version", 20)
    );
    assert_eq!(resp.supported_features[0].max_version, 20);
}

fn get_value(c: &mut harness::client::Client, key: &str) -> String {
    use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
    let req =
        DescribeConfigsRequest::default().with_resources(vec![DescribeConfigsResource::default()
            .with_resource_type(4)
            .with_resource_name(text("1"))
            .with_configuration_keys(Some(vec![text(key)]))]);
    let resp: DescribeConfigsResponse = c.call(ApiKey::DescribeConfigs, 4, &req);
    assert_eq!(resp.results[0].configs.len(), 1);
    resp.results[0].configs[0]
        .value
        .as_deref()
        .unwrap()
        .to_string()
}

fn admin(broker: &Broker, args: &[&str]) -> Value {
    let mut cmd = Command::new("python3");
    cmd.arg(clients_dir().join("python").join("operator_admin.py"))
        .arg(broker.addr())
        .args(args);
    let out = run(&mut cmd, 90);
    let text = stdout(&out);
    let last = text.lines().last().unwrap_or_default();
    serde_json::from_str(last).unwrap_or_else(|e| panic!("{args:?}: {e}: {text}"))
}

/// The real admin clients: confluent-kafka and kafka-python describe the broker's configs
/// (values and sources), confluent-kafka's IncrementalAlterConfigs gets the explanation,
/// kafka-python's DescribeLogDirs shows produced partitions' sizes, confluent-kafka's
/// ListOffsets MAX_TIMESTAMP finds the record inside the batch its producer sent,
/// kafka-python's describe_features, describe_topic_partitions, describe_producers and
/// list_partition_reassignments get their answers.
#[test]
fn real_admin_clients_use_the_operator_apis() {
    let dir = tempfile::tempdir().unwrap();
    let port = harness::free_port();
    let broker = Broker::start_on(
        &dir.path().join("data"),
        2,
        port,
        &["--num-partitions", "2"],
    );
    for client in ["configs-confluent", "configs-kafka-python"] {
        let got = admin(&broker, &[client, "1"]);
        let np = &got["num.partitions"];
        assert_eq!(np["value"], "2", "{client}: {np}");
        assert_eq!(
            np["config_source"].as_str().or(np["source"].as_str()),
            Some("STATIC_BROKER_CONFIG"),
            "{client}"
        );
        let r = &got["log.retention.ms"];
        assert_eq!(r["value"], "604800000", "{client}");
        assert_eq!(
            r["config_source"].as_str().or(r["source"].as_str()),
            Some("DEFAULT_CONFIG"),
            "{client}"
        );
        assert!(got.as_object().unwrap().len() >= 40, "{client}: {got}");
    }
    let got = admin(&broker, &["alter-confluent", "1", "num.partitions", "8"]);
    let error = got["error"].as_str().unwrap_or_default();
    assert!(error.contains("--num-partitions"), "{got}");

    // One lz4 batch of four records from a real producer; the max timestamp is the third.
    let t = TimestampMs::now().get() - 10_000;
    let stamps = format!("{},{},{},{}", t, t + 100, t + 900, t + 300);
    let got = admin(&broker, &["produce-batch", "ops", &stamps]);
    assert_eq!(got["offsets"], serde_json::json!([0, 1, 2, 3]), "{got}");
    let got = admin(&broker, &["max-timestamp", "ops"]);
    assert_eq!(
        (got["offset"].as_i64(), got["timestamp"].as_i64()),
        (Some(2), Some(t + 900)),
        "{got}"
    );

    let got = admin(&broker, &["log-dirs"]);
    let dirs = &got["brokers"][0]["log_dirs"][0];
    assert_eq!(dirs["log_dir"], broker.dir.to_str().unwrap(), "{got}");
    let topics = dirs["topics"].as_array().unwrap();
    let ops = topics
        .iter()
        .find(|t| t["name"] == "ops")
        .expect("topic ops");
    let p0 = ops["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["partition_index"] == 0);
    assert!(p0.unwrap()["partition_size"].as_i64().unwrap() > 0, "{got}");
    assert!(dirs["total_bytes"].as_i64().unwrap() > 0, "{got}");

    let got = admin(&broker, &["features"]);
    assert_eq!(
        got["metadata.version"]["finalized"],
        serde_json::json!([20, 20]),
        "{got}"
    );

    let got = admin(&broker, &["topic-partitions", "1", "ops"]);
    let pages = got["pages"].as_array().unwrap();
    assert_eq!(pages.len(), 2, "one partition a page: {got}");
    assert_eq!(pages[1][0]["partitions"][0]["partition_index"], 1, "{got}");
    assert_eq!(pages[0][0]["partitions"][0]["leader_id"], 1, "{got}");

    admin(&broker, &["idempotent", "ops", "5"]);
    let got = admin(&broker, &["producers", "ops"]);
    let producers = got["producers"].as_array().unwrap();
    assert_eq!(producers.len(), 1, "{got}");
    assert_eq!(producers[0]["last_sequence"], 4, "{got}");
    assert_eq!(producers[0]["coordinator_epoch"], -1, "{got}");

    let got = admin(&broker, &["reassignments"]);
    assert_eq!(got["reassignments"], serde_json::json!({}), "{got}");
}
