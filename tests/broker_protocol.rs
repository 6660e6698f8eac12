//! The real broker binary driven by our own Kafka client: multi-shard produce/fetch ordering,
//! admin APIs, restarts (clean and kill -9), and bad input (error codes or a closed connection,
//! never a crash).

mod harness;

use bytes::Bytes;
use harness::Broker;
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use shardlog::storage::batch::{self, build_test_batch};
use shardlog::types::TimestampMs;

fn name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.to_string()))
}

fn create_topic(
    c: &mut harness::client::Client,
    topic: &str,
    partitions: i32,
    configs: &[(&str, &str)],
) -> i16 {
    let req = CreateTopicsRequest::default().with_topics(vec![CreatableTopic::default()
        .with_name(name(topic))
        .with_num_partitions(partitions)
        .with_replication_factor(1)
        .with_configs(
            configs
                .iter()
                .map(|(k, v)| {
                    CreatableTopicConfig::default()
                        .with_name(StrBytes::from_string(k.to_string()))
                        .with_value(Some(StrBytes::from_string(v.to_string())))
                })
                .collect(),
        )]);
    let resp: CreateTopicsResponse = c.call(ApiKey::CreateTopics, 7, &req);
    resp.topics[0].error_code
}

/// Produces one batch of `n` records to each listed partition; returns base offsets.
fn produce(
    c: &mut harness::client::Client,
    topic: &str,
    parts: &[i32],
    n: i32,
    acks: i16,
) -> Vec<(i16, i64)> {
    let data = parts
        .iter()
        .map(|&p| {
            PartitionProduceData::default()
                .with_index(p)
                .with_records(Some(Bytes::from(build_test_batch(
                    n,
                    64,
                    TimestampMs::now(),
                ))))
        })
        .collect();
    let req = ProduceRequest::default()
        .with_acks(acks)
        .with_timeout_ms(5000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(name(topic))
            .with_partition_data(data)]);
    let resp: ProduceResponse = c.call(ApiKey::Produce, 9, &req);
    resp.responses[0]
        .partition_responses
        .iter()
        .map(|p| (p.error_code, p.base_offset))
        .collect()
}

/// Fetches everything from `offset` in one partition; returns (error, hw, batch base offsets).
fn fetch_all(
    c: &mut harness::client::Client,
    topic: &str,
    part: i32,
    offset: i64,
) -> (i16, i64, Vec<i64>) {
    let mut bases = Vec::new();
    let mut at = offset;
    loop {
        let p = c.fetch_one(topic, part, at);
        if p.error_code != 0 {
            return (p.error_code, p.high_watermark, bases);
        }
        let mut records = p.records.clone().unwrap_or_default();
        if records.is_empty() {
            return (0, p.high_watermark, bases);
        }
        while !records.is_empty() {
            let size = batch::declared_size(&records).unwrap();
            let b = records.split_to(size);
            let h = batch::validate(&b, false).expect("fetched batches are valid");
            bases.push(h.base_offset.get());
            at = h.next_offset().get();
        }
    }
}

#[test]
fn sixteen_partitions_on_four_shards_keep_order() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(&dir.path().join("data"), 4);
    let mut c = broker.client();
    assert_eq!(create_topic(&mut c, "sixteen", 16, &[]), 0);
    let parts: Vec<i32> = (0..16).collect();
    for round in 0..10 {
        for (i, (err, base)) in produce(&mut c, "sixteen", &parts, 5, -1)
            .into_iter()
            .enumerate()
        {
            assert_eq!(err, 0, "partition {i}");
            assert_eq!(base, round * 5, "offsets are per partition and dense");
        }
    }
    for p in 0..16 {
        let (err, hw, bases) = fetch_all(&mut c, "sixteen", p, 0);
        assert_eq!((err, hw), (0, 50));
        assert_eq!(
            bases,
            (0..10).map(|r| r * 5).collect::<Vec<_>>(),
            "partition {p} in order"
        );
    }
    // A clean stop logs each shard's request latency: the one connection's shard saw the ten
    // produce requests and the fetches (two per partition: the records, then none).
    let (data, _) = broker.stop();
    let log = std::fs::read_to_string(data.with_extension("log")).unwrap();
    let line = |api: &str| {
        log.lines()
            .find(|l| l.contains("request latency") && l.contains(&format!("api=\"{api}\"")))
            .unwrap_or_else(|| panic!("no {api} latency in the log:\n{log}"))
            .to_string()
    };
    assert!(line("Produce").contains("count=10 "), "{}", line("Produce"));
    assert!(line("Fetch").contains("count=32 "), "{}", line("Fetch"));
    assert!(line("Produce").contains("total_us=p50 "));
}

#[test]
fn acknowledged_records_survive_clean_restart_and_kill9() {
    let dir = tempfile::tempdir().unwrap();
    let _keep = dir.path().to_path_buf();
    let data = dir.path().join("data");
    let broker = Broker::start(&data, 2);
    let mut c = broker.client();
    assert_eq!(
        create_topic(&mut c, "durable", 3, &[("retention.ms", "86400000")]),
        0
    );
    for _ in 0..5 {
        assert!(produce(&mut c, "durable", &[0, 1, 2], 10, 1)
            .iter()
            .all(|r| r.0 == 0));
    }
    drop(c);
    let (_, port) = broker.stop();
    let broker = Broker::start_on(&data, 3, port, &[]);
    let mut c = broker.client();
    for _ in 0..5 {
        assert!(produce(&mut c, "durable", &[0, 1, 2], 10, -1)
            .iter()
            .all(|r| r.0 == 0));
    }
    drop(c);
    broker.kill();
    let broker = Broker::start_on(&data, 2, port, &[]);
    let mut c = broker.client();
    for p in 0..3 {
        let (err, hw, bases) = fetch_all(&mut c, "durable", p, 0);
        assert_eq!((err, hw, bases.len()), (0, 100, 10), "partition {p}");
    }
    let req = DescribeConfigsRequest::default().with_resources(vec![
        kafka_protocol::messages::describe_configs_request::DescribeConfigsResource::default()
            .with_resource_type(2)
            .with_resource_name(StrBytes::from_static_str("durable"))
            .with_configuration_keys(Some(vec![StrBytes::from_static_str("retention.ms")])),
    ]);
    let resp: DescribeConfigsResponse = c.call(ApiKey::DescribeConfigs, 4, &req);
    let cfg = &resp.results[0].configs[0];
    assert_eq!(
        cfg.value.as_deref(),
        Some("86400000"),
        "topic configs survive restarts"
    );
}

#[test]
fn admin_apis_work_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(&dir.path().join("data"), 2);
    let mut c = broker.client();
    assert_eq!(
        create_topic(&mut c, "adm", 2, &[("compression.type", "brotli")]),
        40,
        "INVALID_CONFIG"
    );
    assert_eq!(create_topic(&mut c, "adm", 2, &[]), 0);
    assert_eq!(
        create_topic(&mut c, "adm", 2, &[]),
        36,
        "TOPIC_ALREADY_EXISTS"
    );
    assert_eq!(
        create_topic(&mut c, "bad/name", 1, &[]),
        17,
        "INVALID_TOPIC_EXCEPTION"
    );
    // grow to 4 partitions; the new ones take writes
    let req = CreatePartitionsRequest::default().with_topics(vec![
        kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic::default()
            .with_name(name("adm"))
            .with_count(4),
    ]);
    let resp: CreatePartitionsResponse = c.call(ApiKey::CreatePartitions, 3, &req);
    assert_eq!(resp.results[0].error_code, 0);
    assert!(produce(&mut c, "adm", &[0, 1, 2, 3], 3, -1)
        .iter()
        .all(|r| r.0 == 0));
    assert_eq!(
        produce(&mut c, "adm", &[4], 1, -1)[0].0,
        3,
        "UNKNOWN_TOPIC_OR_PARTITION"
    );
    // a refused partition between two good ones: each answer stays with its partition
    let mixed = produce(&mut c, "adm", &[1, 9, 2], 1, -1);
    let codes: Vec<i16> = mixed.iter().map(|r| r.0).collect();
    assert_eq!(codes, vec![0, 3, 0], "{mixed:?}");
    assert_eq!((mixed[0].1, mixed[2].1), (3, 3), "{mixed:?}");
    // delete records, then list offsets sees the new start
    produce(&mut c, "adm", &[0], 3, -1);
    let req = DeleteRecordsRequest::default().with_topics(vec![
        kafka_protocol::messages::delete_records_request::DeleteRecordsTopic::default()
            .with_name(name("adm"))
            .with_partitions(vec![
                kafka_protocol::messages::delete_records_request::DeleteRecordsPartition::default()
                    .with_partition_index(0)
                    .with_offset(4),
            ]),
    ]);
    let resp: DeleteRecordsResponse = c.call(ApiKey::DeleteRecords, 2, &req);
    assert_eq!(resp.topics[0].partitions[0].low_watermark, 4);
    let list = |c: &mut harness::client::Client, ts: i64| -> (i16, i64) {
        let req = ListOffsetsRequest::default().with_topics(vec![
            kafka_protocol::messages::list_offsets_request::ListOffsetsTopic::default()
                .with_name(name("adm"))
                .with_partitions(vec![
                    kafka_protocol::messages::list_offsets_request::ListOffsetsPartition::default()
                        .with_partition_index(0)
                        .with_timestamp(ts),
                ]),
        ]);
        let resp: ListOffsetsResponse = c.call(ApiKey::ListOffsets, 5, &req);
        let p = &resp.topics[0].partitions[0];
        (p.error_code, p.offset)
    };
    assert_eq!(list(&mut c, -2), (0, 4));
    assert_eq!(list(&mut c, -1), (0, 6));
    assert_eq!(
        fetch_all(&mut c, "adm", 0, 0).0,
        1,
        "OFFSET_OUT_OF_RANGE below the start"
    );
    // incremental alter, then describe
    let req = IncrementalAlterConfigsRequest::default().with_resources(vec![
        kafka_protocol::messages::incremental_alter_configs_request::AlterConfigsResource::default(
        )
        .with_resource_type(2)
        .with_resource_name(StrBytes::from_static_str("adm"))
        .with_configs(vec![
            kafka_protocol::messages::incremental_alter_configs_request::AlterableConfig::default()
                .with_name(StrBytes::from_static_str("retention.bytes"))
                .with_config_operation(0)
                .with_value(Some(StrBytes::from_static_str("123456"))),
        ]),
    ]);
    let resp: IncrementalAlterConfigsResponse = c.call(ApiKey::IncrementalAlterConfigs, 1, &req);
    assert_eq!(resp.responses[0].error_code, 0);
    // delete the topic: it is gone from metadata and its directories are removed
    let req = DeleteTopicsRequest::default().with_topic_names(vec![name("adm")]);
    let resp: DeleteTopicsResponse = c.call(ApiKey::DeleteTopics, 5, &req);
    assert_eq!(resp.responses[0].error_code, 0);
    let req = MetadataRequest::default()
        .with_topics(Some(vec![
            kafka_protocol::messages::metadata_request::MetadataRequestTopic::default()
                .with_name(Some(name("adm"))),
        ]))
        .with_allow_auto_topic_creation(false);
    let resp: MetadataResponse = c.call(ApiKey::Metadata, 9, &req);
    assert_eq!(resp.topics[0].error_code, 3);
    assert!(!broker.dir.join("adm-0").exists());
}

#[test]
fn bad_input_gets_error_codes_or_a_closed_connection() {
    let dir = tempfile::tempdir().unwrap();
    let mut broker = Broker::start(&dir.path().join("data"), 2);
    // ApiVersions at an unknown version: a v0 answer with UNSUPPORTED_VERSION and our table.
    let mut c = broker.client();
    let corr = c.send(ApiKey::ApiVersions, 3, &ApiVersionsRequest::default());
    let _ = corr;
    let _: ApiVersionsResponse = c.recv(ApiKey::ApiVersions, 3, 1);
    // header v2 (ApiVersions v3+): key, version, correlation id, null client id, no tags
    let mut raw = vec![0, 0, 0, 0, 0, 18, 0, 99, 0, 0, 0, 7, 0xff, 0xff, 0];
    raw[3] = (raw.len() - 4) as u8;
    c.send_raw(&raw);
    let mut frame = c.read_frame().expect("answered");
    let resp = <ApiVersionsResponse as kafka_protocol::protocol::Decodable>::decode(
        &mut frame.split_off(4),
        0,
    )
    .unwrap();
    assert_eq!(resp.error_code, 35);
    assert!(resp
        .api_keys
        .iter()
        .any(|k| k.api_key == 0 && k.min_version == 0));
    // A Metadata body claiming i32::MAX topics: closed, nothing allocated.
    let mut c = broker.client();
    c.send_raw(&[
        0, 0, 0, 14, 0, 3, 0, 4, 0, 0, 0, 1, 0xff, 0xff, 0x7f, 0xff, 0xff, 0xff,
    ]);
    assert!(c.is_closed());
    // Unknown API key, oversize frame, negative size, truncated header: all closed.
    for bad in [
        vec![0, 0, 0, 8, 0x7f, 0x7f, 0, 0, 0, 0, 0, 1],
        vec![0x7f, 0xff, 0xff, 0xff],
        vec![0xff, 0xff, 0xff, 0xf0],
        vec![0, 0, 0, 3, 0, 3, 0],
    ] {
        let mut c = broker.client();
        c.send_raw(&bad);
        if bad.len() > 8 || bad[0] != 0 {
            assert!(c.is_closed(), "{bad:?}");
        }
    }
    // A corrupt batch gets CORRUPT_MESSAGE; the broker keeps serving.
    let mut c = broker.client();
    assert_eq!(create_topic(&mut c, "t", 1, &[]), 0);
    let mut b = build_test_batch(2, 10, TimestampMs::now());
    let last = b.len() - 1;
    b[last] ^= 0xff;
    let req = ProduceRequest::default()
        .with_acks(-1)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(name("t"))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(0)
                .with_records(Some(Bytes::from(b)))])]);
    let resp: ProduceResponse = c.call(ApiKey::Produce, 9, &req);
    assert_eq!(resp.responses[0].partition_responses[0].error_code, 2);
    assert_eq!(produce(&mut c, "t", &[0], 1, -1)[0], (0, 0));
    assert!(broker.is_running());
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(&dir.path().join("data"), 2);
    let mut c = broker.client();
    assert_eq!(create_topic(&mut c, "pipe", 4, &[]), 0);
    let mut corrs = Vec::new();
    for i in 0..40 {
        let req = ProduceRequest::default()
            .with_acks(-1)
            .with_topic_data(vec![TopicProduceData::default()
                .with_name(name("pipe"))
                .with_partition_data(vec![PartitionProduceData::default()
                    .with_index(i % 4)
                    .with_records(Some(Bytes::from(build_test_batch(
                        1,
                        10,
                        TimestampMs::now(),
                    ))))])]);
        corrs.push(c.send(ApiKey::Produce, 9, &req));
    }
    for (i, corr) in corrs.into_iter().enumerate() {
        let resp: ProduceResponse = c.recv(ApiKey::Produce, 9, corr);
        let p = &resp.responses[0].partition_responses[0];
        assert_eq!((p.error_code, p.base_offset), (0, (i / 4) as i64));
    }
}

#[test]
fn topic_compression_type_recompresses_batches() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(&dir.path().join("data"), 2);
    let mut c = broker.client();
    assert_eq!(
        create_topic(&mut c, "zt", 1, &[("compression.type", "zstd")]),
        0
    );
    assert_eq!(produce(&mut c, "zt", &[0], 7, -1)[0], (0, 0));
    let req = FetchRequest::default()
        .with_max_bytes(1 << 20)
        .with_topics(vec![FetchTopic::default()
            .with_topic(name("zt"))
            .with_partitions(vec![FetchPartition::default()
                .with_partition(0)
                .with_partition_max_bytes(1 << 20)])]);
    let resp: FetchResponse = c.call(ApiKey::Fetch, 11, &req);
    let records = resp.responses[0].partitions[0].records.clone().unwrap();
    let h = batch::validate(&records, false).unwrap();
    assert_eq!(
        (h.compression(), h.record_count, h.base_offset.get()),
        (4, 7, 0),
        "stored as zstd"
    );
}

#[test]
fn long_poll_fetch_wakes_when_data_arrives() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(&dir.path().join("data"), 4);
    let mut c = broker.client();
    assert_eq!(create_topic(&mut c, "lp", 4, &[]), 0);
    let mut consumer = broker.client();
    let req = FetchRequest::default()
        .with_max_wait_ms(20_000)
        .with_min_bytes(1)
        .with_max_bytes(1 << 20)
        .with_topics(vec![FetchTopic::default()
            .with_topic(name("lp"))
            .with_partitions(
                (0..4)
                    .map(|p| {
                        FetchPartition::default()
                            .with_partition(p)
                            .with_partition_max_bytes(1 << 20)
                    })
                    .collect(),
            )]);
    let started = std::time::Instant::now();
    let corr = consumer.send(ApiKey::Fetch, 11, &req);
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_eq!(produce(&mut c, "lp", &[3], 2, -1)[0], (0, 0));
    let resp: FetchResponse = consumer.recv(ApiKey::Fetch, 11, corr);
    let waited = started.elapsed();
    let got: Vec<usize> = resp.responses[0]
        .partitions
        .iter()
        .map(|p| p.records.as_ref().map_or(0, |r| r.len()))
        .collect();
    assert!(got[3] > 0 && got[..3].iter().all(|&n| n == 0), "{got:?}");
    // The wake, not the 20 s timeout, ended the wait (generous bound: this is not a speed test).
    assert!(
        waited < std::time::Duration::from_secs(10),
        "woke after {waited:?}"
    );
}

fn gid(s: &str) -> GroupId {
    GroupId(StrBytes::from_string(s.to_string()))
}

/// Commits `offset` for partitions 0 and 1 of `topic` as a standalone (simple) consumer.
fn simple_commit(c: &mut harness::client::Client, group: &str, topic: &str, offset: i64) {
    use kafka_protocol::messages::offset_commit_request::*;
    let req = OffsetCommitRequest::default()
        .with_group_id(gid(group))
        .with_generation_id_or_member_epoch(-1)
        .with_topics(vec![OffsetCommitRequestTopic::default()
            .with_name(name(topic))
            .with_partitions(
                (0..2)
                    .map(|p| {
                        OffsetCommitRequestPartition::default()
                            .with_partition_index(p)
                            .with_committed_offset(offset)
                    })
                    .collect(),
            )]);
    let resp: OffsetCommitResponse = c.call(ApiKey::OffsetCommit, 8, &req);
    let codes: Vec<i16> = resp.topics[0]
        .partitions
        .iter()
        .map(|p| p.error_code)
        .collect();
    assert_eq!(codes, [0, 0], "commit {group}");
}

/// (group, [(partition, committed offset)], group error).
type GroupOffsets = (String, Vec<(i32, i64)>, i16);

/// The committed offsets of each group, by OffsetFetch v8.
fn fetch_groups(c: &mut harness::client::Client, groups: &[&str]) -> Vec<GroupOffsets> {
    use kafka_protocol::messages::offset_fetch_request::*;
    let req = OffsetFetchRequest::default().with_groups(
        groups
            .iter()
            .map(|g| {
                OffsetFetchRequestGroup::default()
                    .with_group_id(gid(g))
                    .with_topics(None)
            })
            .collect(),
    );
    let resp: OffsetFetchResponse = c.call(ApiKey::OffsetFetch, 8, &req);
    resp.groups
        .into_iter()
        .map(|g| {
            let parts = g
                .topics
                .iter()
                .flat_map(|t| {
                    t.partitions
                        .iter()
                        .map(|p| (p.partition_index, p.committed_offset))
                })
                .collect();
            (g.group_id.0.to_string(), parts, g.error_code)
        })
        .collect()
}

#[test]
fn group_admin_apis_work_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(&dir.path().join("data"), 3);
    let mut c = broker.client();
    assert_eq!(create_topic(&mut c, "gt", 2, &[]), 0);
    // Batched FindCoordinator (v4): every key answers with this broker.
    let req = FindCoordinatorRequest::default()
        .with_key_type(0)
        .with_coordinator_keys(vec![
            StrBytes::from_static_str("a"),
            StrBytes::from_static_str("b"),
        ]);
    let resp: FindCoordinatorResponse = c.call(ApiKey::FindCoordinator, 4, &req);
    assert_eq!(resp.coordinators.len(), 2);
    for co in &resp.coordinators {
        assert_eq!(
            (co.error_code, co.node_id.0, co.port),
            (0, 1, broker.port as i32)
        );
    }
    // Offsets of several groups (on different shards) in one OffsetFetch v8.
    let groups = ["ga", "gb", "gc", "gd"];
    for (i, g) in groups.iter().enumerate() {
        simple_commit(&mut c, g, "gt", 10 * (i as i64 + 1));
    }
    let fetched = fetch_groups(&mut c, &["ga", "gd", "none"]);
    assert_eq!(fetched[0], ("ga".into(), vec![(0, 10), (1, 10)], 0));
    assert_eq!(fetched[1], ("gd".into(), vec![(0, 40), (1, 40)], 0));
    assert_eq!(fetched[2], ("none".into(), vec![], 0));
    // OffsetDelete on an empty group deletes; an unknown topic is refused per partition.
    let req = OffsetDeleteRequest::default()
        .with_group_id(gid("ga"))
        .with_topics(vec![
            offset_delete_request::OffsetDeleteRequestTopic::default()
                .with_name(name("gt"))
                .with_partitions(vec![
                    offset_delete_request::OffsetDeleteRequestPartition::default()
                        .with_partition_index(1),
                ]),
            offset_delete_request::OffsetDeleteRequestTopic::default()
                .with_name(name("nosuch"))
                .with_partitions(vec![
                    offset_delete_request::OffsetDeleteRequestPartition::default()
                        .with_partition_index(0),
                ]),
        ]);
    let resp: OffsetDeleteResponse = c.call(ApiKey::OffsetDelete, 0, &req);
    assert_eq!(resp.error_code, 0);
    let codes: Vec<(String, i16)> = resp
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions
                .iter()
                .map(|p| (t.name.0.to_string(), p.error_code))
        })
        .collect();
    assert_eq!(codes, [("gt".to_string(), 0), ("nosuch".to_string(), 3)]);
    assert_eq!(fetch_groups(&mut c, &["ga"])[0].1, [(0, 10)]);
    // DeleteGroups: empty groups go; unknown ones are GROUP_ID_NOT_FOUND (69).
    let req =
        DeleteGroupsRequest::default().with_groups_names(vec![gid("ga"), gid("nosuch"), gid("ga")]);
    let resp: DeleteGroupsResponse = c.call(ApiKey::DeleteGroups, 2, &req);
    let codes: Vec<(String, i16)> = resp
        .results
        .iter()
        .map(|r| (r.group_id.0.to_string(), r.error_code))
        .collect();
    assert_eq!(codes, [("ga".to_string(), 0), ("nosuch".to_string(), 69)]);
    // ListGroups sees every shard's groups; DescribeGroups an absent one as Dead.
    let resp: ListGroupsResponse = c.call(ApiKey::ListGroups, 4, &ListGroupsRequest::default());
    let mut listed: Vec<String> = resp
        .groups
        .iter()
        .map(|g| g.group_id.0.to_string())
        .collect();
    listed.sort();
    assert_eq!(listed, ["gb", "gc", "gd"]);
    assert!(resp
        .groups
        .iter()
        .all(|g| g.group_state.as_str() == "Empty"));
    let req = DescribeGroupsRequest::default().with_groups(vec![gid("ga")]);
    let resp: DescribeGroupsResponse = c.call(ApiKey::DescribeGroups, 5, &req);
    assert_eq!(
        (
            resp.groups[0].error_code,
            resp.groups[0].group_state.as_str()
        ),
        (0, "Dead")
    );
    // Deleting a topic drops the offsets committed for it, on every shard.
    let req = DeleteTopicsRequest::default().with_topic_names(vec![name("gt")]);
    let _: DeleteTopicsResponse = c.call(ApiKey::DeleteTopics, 4, &req);
    for (_, parts, _) in fetch_groups(&mut c, &["gb", "gc", "gd"]) {
        assert!(parts.is_empty(), "offsets of a deleted topic are gone");
    }
}

/// InitProducerId v4: (producer id, epoch), from scratch or bumping `current`.
fn init_producer(c: &mut harness::client::Client, current: Option<(i64, i16)>) -> (i64, i16) {
    let (id, epoch) = current.unwrap_or((-1, -1));
    let req = InitProducerIdRequest::default()
        .with_transaction_timeout_ms(60_000)
        .with_producer_id(ProducerId(id))
        .with_producer_epoch(epoch);
    let resp: InitProducerIdResponse = c.call(ApiKey::InitProducerId, 4, &req);
    assert_eq!(resp.error_code, 0);
    (resp.producer_id.0, resp.producer_epoch)
}

/// Produces one idempotent batch of `n` records to partition 0; returns (error, base offset).
fn produce_idempotent(
    c: &mut harness::client::Client,
    topic: &str,
    p: (i64, i16),
    seq: i32,
    n: i32,
) -> (i16, i64) {
    let mut b = build_test_batch(n, 16, TimestampMs::now());
    batch::set_producer(&mut b, p.0, p.1, seq);
    c.produce_one(topic, 0, Bytes::from(b))
}

#[test]
fn idempotent_produce_answers_retries_gaps_and_stale_epochs() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let port = harness::free_port();
    let broker = Broker::start_on(&data, 2, port, &[]);
    let mut c = broker.client();
    assert_eq!(create_topic(&mut c, "idem", 1, &[]), 0);
    let first = init_producer(&mut c, None);
    let second = init_producer(&mut c, None);
    assert_ne!(first.0, second.0, "fresh producer ids");
    assert_eq!(first.1, 0);
    let p = init_producer(&mut c, Some(first));
    assert_eq!(p, (first.0, 1), "KIP-360 epoch bump");
    const OUT_OF_ORDER: i16 = 45;
    const INVALID_EPOCH: i16 = 47;
    let cases = [
        ((p, 0, 3), (0, 0)),                         // appended at 0..2
        ((p, 0, 3), (0, 0)),                         // the same batch again: its offsets
        ((p, 5, 1), (OUT_OF_ORDER, -1)),             // a gap (3 expected)
        (((p.0, 0), 3, 1), (INVALID_EPOCH, -1)),     // the fenced epoch
        (((second.0, 0), 4, 1), (OUT_OF_ORDER, -1)), // unknown to the partition, seq ≠ 0
        ((p, 3, 2), (0, 3)),                         // appended at 3..4
    ];
    for (i, ((producer, seq, n), want)) in cases.into_iter().enumerate() {
        assert_eq!(
            produce_idempotent(&mut c, "idem", producer, seq, n),
            want,
            "case {i}"
        );
    }
    // The state is rebuilt from the log after a crash: the retry is still recognised.
    drop(c);
    broker.kill();
    let broker = Broker::start_on(&data, 2, port, &[]);
    let mut c = broker.client();
    assert_eq!(produce_idempotent(&mut c, "idem", p, 3, 2), (0, 3));
    assert_eq!(produce_idempotent(&mut c, "idem", p, 5, 1), (0, 5));
    // And from the snapshot written at a clean stop.
    drop(c);
    broker.stop();
    let broker = Broker::start_on(&data, 2, port, &[]);
    let mut c = broker.client();
    assert_eq!(produce_idempotent(&mut c, "idem", p, 5, 1), (0, 5));
    assert_eq!(produce_idempotent(&mut c, "idem", p, 6, 1), (0, 6));
    let after = init_producer(&mut c, None);
    assert!(after.0 > second.0, "ids are not reused after restarts");
}

/// Issue 21's epoch surface on one broker (whose partitions are in leader epoch 0):
/// OffsetForLeaderEpoch answers by Kafka's rules, Fetch and ListOffsets check the client's
/// current leader epoch, Fetch v12+ tells a fetcher whose last epoch is unknown here that its
/// log diverged, ListOffsets carries the epoch, and the stored batches carry it too.
#[test]
fn leader_epochs_are_answered_checked_and_stamped() {
    use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
    use kafka_protocol::messages::offset_for_leader_epoch_request::{
        OffsetForLeaderPartition, OffsetForLeaderTopic,
    };
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(&dir.path().join("data"), 2);
    let mut c = broker.client();
    assert_eq!(create_topic(&mut c, "ep", 2, &[]), 0);
    assert_eq!(produce(&mut c, "ep", &[1], 5, -1)[0], (0, 0));
    let epochs = |c: &mut harness::client::Client, current: i32, asked: i32| {
        let req = OffsetForLeaderEpochRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_topics(vec![OffsetForLeaderTopic::default()
                .with_topic(name("ep"))
                .with_partitions(vec![OffsetForLeaderPartition::default()
                    .with_partition(1)
                    .with_current_leader_epoch(current)
                    .with_leader_epoch(asked)])]);
        let resp: OffsetForLeaderEpochResponse = c.call(ApiKey::OffsetForLeaderEpoch, 4, &req);
        let p = &resp.topics[0].partitions[0];
        (p.error_code, p.leader_epoch, p.end_offset)
    };
    assert_eq!(
        epochs(&mut c, 0, 0),
        (0, 0, 5),
        "epoch 0 ends at the log end"
    );
    assert_eq!(
        epochs(&mut c, -1, 3),
        (0, -1, -1),
        "an epoch newer than all"
    );
    assert_eq!(epochs(&mut c, 1, 0).0, 75, "UNKNOWN_LEADER_EPOCH");

    let fetch = |c: &mut harness::client::Client, current: i32, last: i32, offset: i64| {
        let req = FetchRequest::default()
            .with_max_wait_ms(0)
            .with_max_bytes(1 << 20)
            .with_topics(vec![FetchTopic::default()
                .with_topic(name("ep"))
                .with_partitions(vec![FetchPartition::default()
                    .with_partition(1)
                    .with_fetch_offset(offset)
                    .with_current_leader_epoch(current)
                    .with_last_fetched_epoch(last)
                    .with_partition_max_bytes(1 << 20)])]);
        let resp: FetchResponse = c.call(ApiKey::Fetch, 12, &req);
        resp.responses[0].partitions[0].clone()
    };
    let p = fetch(&mut c, 0, -1, 0);
    assert_eq!(p.error_code, 0);
    let records = p.records.unwrap();
    let h = batch::parse_header(&records[..batch::declared_size(&records).unwrap()]).unwrap();
    assert_eq!(h.leader_epoch, 0, "the stored batch carries its epoch");
    assert_eq!(
        fetch(&mut c, 1, -1, 0).error_code,
        75,
        "UNKNOWN_LEADER_EPOCH"
    );
    let p = fetch(&mut c, 0, 0, 5);
    assert_eq!(
        (p.error_code, p.diverging_epoch.epoch),
        (0, -1),
        "epoch 0 reaches 5"
    );
    let p = fetch(&mut c, 0, 2, 5);
    let d = &p.diverging_epoch;
    assert_eq!(
        (p.error_code, d.epoch, d.end_offset),
        (0, -1, -1),
        "epoch 2 is unknown"
    );
    assert!(p.records.is_none_or(|r| r.is_empty()));

    let req = ListOffsetsRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_topics(vec![ListOffsetsTopic::default()
            .with_name(name("ep"))
            .with_partitions(vec![ListOffsetsPartition::default()
                .with_partition_index(1)
                .with_current_leader_epoch(0)
                .with_timestamp(-1)])]);
    let resp: ListOffsetsResponse = c.call(ApiKey::ListOffsets, 7, &req);
    let p = &resp.topics[0].partitions[0];
    assert_eq!((p.error_code, p.offset, p.leader_epoch), (0, 5, 0));
    // Versions without the epoch field are answered without it (librdkafka 2.0 asks v1).
    let resp: ListOffsetsResponse = c.call(ApiKey::ListOffsets, 1, &req);
    let p = &resp.topics[0].partitions[0];
    assert_eq!((p.error_code, p.offset, p.leader_epoch), (0, 5, -1));
}
