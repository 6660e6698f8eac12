//! The admin subcommands (`shardlog topics ...`, `shardlog groups ...`) run as the real binary
//! against a real broker: their output, exit codes and error lines.

mod harness;

use std::process::Command;

use bytes::{BufMut, Bytes, BytesMut};
use harness::Broker;
use kafka_protocol::messages::consumer_protocol_assignment::TopicPartition;
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Encodable, StrBytes};
use shardlog::storage::batch::build_test_batch;
use shardlog::types::TimestampMs;

struct Run {
    code: i32,
    out: String,
    err: String,
}

/// Runs `shardlog ARGS --bootstrap-server ADDR`.
fn cli(broker: &Broker, args: &[&str]) -> Run {
    cli_at(&broker.addr(), args)
}

fn cli_at(addr: &str, args: &[&str]) -> Run {
    let out = Command::new(env!("CARGO_BIN_EXE_shardlog"))
        .args(args)
        .args(["--bootstrap-server", addr, "--timeout-ms", "20000"])
        .env_remove("SHARDLOG_BOOTSTRAP")
        .output()
        .expect("run shardlog");
    Run {
        code: out.status.code().unwrap_or(-1),
        out: String::from_utf8_lossy(&out.stdout).into_owned(),
        err: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Runs and expects success.
fn ok(broker: &Broker, args: &[&str]) -> String {
    let r = cli(broker, args);
    assert_eq!(r.code, 0, "{args:?}: stdout {:?} stderr {:?}", r.out, r.err);
    r.out
}

/// Runs and expects failure; returns stderr.
fn fails(broker: &Broker, args: &[&str]) -> String {
    let r = cli(broker, args);
    assert_eq!(r.code, 1, "{args:?}: stdout {:?} stderr {:?}", r.out, r.err);
    r.err
}

fn start(dir: &tempfile::TempDir) -> Broker {
    Broker::start(&dir.path().join("data"), 2)
}

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

#[test]
fn topics_create_list_describe_delete() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start(&dir);
    assert_eq!(ok(&broker, &["topics", "list"]), "");
    let created = ok(
        &broker,
        &[
            "topics",
            "create",
            "orders",
            "--partitions",
            "3",
            "--replication-factor",
            "1",
            "--config",
            "retention.ms=60000",
        ],
    );
    assert_eq!(created, "Created topic orders.\n");
    assert_eq!(
        ok(&broker, &["topics", "create", "audit"]),
        "Created topic audit.\n"
    );
    let err = fails(&broker, &["topics", "create", "orders"]);
    assert!(
        err.starts_with("Error: creating topic 'orders': TOPIC_ALREADY_EXISTS"),
        "{err}"
    );
    let err = fails(
        &broker,
        &["topics", "create", "bad", "--config", "no.such=1"],
    );
    assert!(err.contains("INVALID_CONFIG"), "{err}");
    let err = fails(
        &broker,
        &["topics", "create", "rf3", "--replication-factor", "3"],
    );
    assert!(err.contains("INVALID_REPLICATION_FACTOR"), "{err}");
    assert_eq!(ok(&broker, &["topics", "list"]), "audit\norders\n");

    let described = ok(&broker, &["topics", "describe", "orders"]);
    let lines: Vec<&str> = described.lines().collect();
    assert_eq!(lines.len(), 4, "{described}");
    let head: Vec<&str> = lines[0].split('\t').collect();
    assert_eq!(head[0], "Topic: orders");
    assert!(head[1].starts_with("TopicId: ") && head[1].len() == "TopicId: ".len() + 22);
    assert_eq!(
        head[2..],
        [
            "PartitionCount: 3",
            "ReplicationFactor: 1",
            "Configs: retention.ms=60000"
        ]
    );
    for (i, line) in lines[1..].iter().enumerate() {
        assert_eq!(
            *line,
            format!("\tTopic: orders\tPartition: {i}\tLeader: 1\tReplicas: 1\tIsr: 1")
        );
    }
    let all = ok(&broker, &["topics", "describe"]);
    let heads: Vec<&str> = all.lines().filter(|l| l.starts_with("Topic:")).collect();
    assert_eq!(heads.len(), 2, "{all}");
    assert!(heads[0].starts_with("Topic: audit\t") && heads[0].ends_with("\tConfigs: "));
    assert!(heads[1].starts_with("Topic: orders\t"));

    // An unknown topic is an error, and describing it does not auto-create it.
    let err = fails(&broker, &["topics", "describe", "nosuch"]);
    assert_eq!(err, "Error: Topic 'nosuch' does not exist.\n");
    assert_eq!(ok(&broker, &["topics", "list"]), "audit\norders\n");

    assert_eq!(
        ok(&broker, &["topics", "delete", "orders"]),
        "Deleted topic orders.\n"
    );
    let err = fails(&broker, &["topics", "delete", "orders"]);
    assert!(err.contains("UNKNOWN_TOPIC_OR_PARTITION"), "{err}");
    assert_eq!(ok(&broker, &["topics", "list"]), "audit\n");
}

/// `--data-dir ./data` (relative, with a `./`) serves consumer groups like an absolute path.
#[test]
fn a_relative_data_dir_works() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start_in(dir.path(), "./data", 2, harness::free_port());
    ok(
        &broker,
        &["topics", "create", "rel-topic", "--partitions", "1"],
    );
    commit(
        &mut broker.client(),
        "rel-group",
        ("", -1),
        "rel-topic",
        &[(0, 0)],
    );
    assert!(ok(&broker, &["groups", "list"]).contains("rel-group"));
    assert!(dir.path().join("data/__cluster").is_dir());
}

#[test]
fn bootstrap_comes_from_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start(&dir);
    ok(&broker, &["topics", "create", "t"]);
    let out = Command::new(env!("CARGO_BIN_EXE_shardlog"))
        .args(["topics", "list"])
        .env("SHARDLOG_BOOTSTRAP", broker.addr())
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout), "t\n");
}

#[test]
fn an_unreachable_broker_is_a_clean_error() {
    let addr = format!("127.0.0.1:{}", harness::free_port());
    let r = cli_at(&addr, &["topics", "list"]);
    assert_eq!(r.code, 1);
    assert!(r.err.starts_with("Error: cannot connect to"), "{}", r.err);
    assert_eq!(r.out, "");
}

#[test]
fn broker_flags_do_not_mix_with_subcommands() {
    let out = Command::new(env!("CARGO_BIN_EXE_shardlog"))
        .args(["--shards", "2", "topics", "list"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

/// Produces `n` records to `topic`/`partition`.
fn produce(c: &mut harness::client::Client, topic: &str, partition: i32, n: i32) {
    produce_batch(
        c,
        topic,
        partition,
        build_test_batch(n, 16, TimestampMs::now()),
    );
}

/// Produces one batch to `topic`/`partition` with acks=all and checks it was taken.
fn produce_batch(c: &mut harness::client::Client, topic: &str, partition: i32, batch: Vec<u8>) {
    let (error, _) = c.produce_one(topic, partition, Bytes::from(batch));
    assert_eq!(error, 0);
}

/// A consumer-protocol message: its i16 version, then its fields at version 0.
fn versioned<M: Encodable>(m: &M) -> Bytes {
    let mut buf = BytesMut::new();
    buf.put_i16(0);
    m.encode(&mut buf, 0).unwrap();
    buf.freeze()
}

/// A group member as the broker knows it: (member id, generation). A simple consumer, which
/// commits without joining, is ("", -1).
type Membership<'a> = (&'a str, i32);

/// Commits offsets of `topic` for `group`.
fn commit(
    c: &mut harness::client::Client,
    group: &str,
    (member, generation): Membership,
    topic: &str,
    offsets: &[(i32, i64)],
) {
    let req = OffsetCommitRequest::default()
        .with_group_id(GroupId(s(group)))
        .with_generation_id_or_member_epoch(generation)
        .with_member_id(s(member))
        .with_topics(vec![OffsetCommitRequestTopic::default()
            .with_name(TopicName(s(topic)))
            .with_partitions(
                offsets
                    .iter()
                    .map(|&(p, o)| {
                        OffsetCommitRequestPartition::default()
                            .with_partition_index(p)
                            .with_committed_offset(o)
                    })
                    .collect(),
            )]);
    let resp: OffsetCommitResponse = c.call(ApiKey::OffsetCommit, 7, &req);
    assert!(resp.topics[0].partitions.iter().all(|p| p.error_code == 0));
}

/// Joins `group` as its only member and takes `parts` of `topic`; returns the member id and
/// generation. The session (30 s) outlives the test, so no heartbeats are needed.
fn join_alone(
    c: &mut harness::client::Client,
    group: &str,
    topic: &str,
    parts: &[i32],
) -> (String, i32) {
    let subscription =
        versioned(&ConsumerProtocolSubscription::default().with_topics(vec![s(topic)]));
    let join = |member: &str| {
        JoinGroupRequest::default()
            .with_group_id(GroupId(s(group)))
            .with_session_timeout_ms(30_000)
            .with_rebalance_timeout_ms(30_000)
            .with_member_id(s(member))
            .with_protocol_type(s("consumer"))
            .with_protocols(vec![JoinGroupRequestProtocol::default()
                .with_name(s("range"))
                .with_metadata(subscription.clone())])
    };
    let first: JoinGroupResponse = c.call(ApiKey::JoinGroup, 5, &join(""));
    assert_eq!(first.error_code, 79, "MEMBER_ID_REQUIRED");
    let member = first.member_id.to_string();
    let joined: JoinGroupResponse = c.call(ApiKey::JoinGroup, 5, &join(&member));
    assert_eq!(joined.error_code, 0);
    assert_eq!(joined.leader.as_str(), member, "alone, so the leader");
    let assignment = versioned(
        &ConsumerProtocolAssignment::default().with_assigned_partitions(vec![
            TopicPartition::default()
                .with_topic(TopicName(s(topic)))
                .with_partitions(parts.to_vec()),
        ]),
    );
    let sync = SyncGroupRequest::default()
        .with_group_id(GroupId(s(group)))
        .with_generation_id(joined.generation_id)
        .with_member_id(s(&member))
        .with_assignments(vec![SyncGroupRequestAssignment::default()
            .with_member_id(s(&member))
            .with_assignment(assignment)]);
    let synced: SyncGroupResponse = c.call(ApiKey::SyncGroup, 3, &sync);
    assert_eq!(synced.error_code, 0);
    (member, joined.generation_id)
}

/// The describe table's data rows, split into fields.
fn rows(table: &str) -> Vec<Vec<String>> {
    let mut lines = table.lines();
    let header: Vec<&str> = lines.next().expect("header").split_whitespace().collect();
    assert_eq!(header, shardlog::cli::groups::HEADER);
    lines
        .map(|l| l.split_whitespace().map(str::to_string).collect())
        .collect()
}

// needs the group coordinator (issue 4): FindCoordinator, DescribeGroups, ListGroups,
// OffsetFetch, OffsetCommit, JoinGroup and SyncGroup are being written on main; until that
// merge this test fails (the broker does not serve those APIs yet).
#[test]
fn groups_list_and_describe() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start(&dir);
    assert_eq!(ok(&broker, &["groups", "list"]), "");
    let err = fails(&broker, &["groups", "describe", "nosuch"]);
    assert_eq!(err, "Error: Consumer group 'nosuch' does not exist.\n");

    ok(
        &broker,
        &["topics", "create", "orders", "--partitions", "2"],
    );
    let mut c = broker.client();
    produce(&mut c, "orders", 0, 5);
    produce(&mut c, "orders", 1, 3);

    // A group with committed offsets and no members.
    commit(&mut c, "audit", ("", -1), "orders", &[(0, 2)]);
    assert_eq!(ok(&broker, &["groups", "list"]), "audit\n");
    let r = cli(&broker, &["groups", "describe", "audit"]);
    assert_eq!(r.code, 0, "{}", r.err);
    assert_eq!(r.err, "Consumer group 'audit' has no active members.\n");
    assert_eq!(
        rows(&r.out),
        [["audit", "orders", "0", "2", "5", "3", "-", "-", "-"]]
    );

    // A live member owning both partitions, one of them committed.
    let (member, generation) = join_alone(&mut c, "live", "orders", &[0, 1]);
    commit(&mut c, "live", (&member, generation), "orders", &[(1, 1)]);
    let r = cli(&broker, &["groups", "describe", "live"]);
    assert_eq!(r.code, 0, "{}", r.err);
    assert_eq!(r.err, "");
    let got = rows(&r.out);
    assert_eq!(got.len(), 2, "{}", r.out);
    assert_eq!(got[0][1..6], ["orders", "0", "-", "5", "-"]);
    assert_eq!(got[1][1..6], ["orders", "1", "1", "3", "2"]);
    for row in &got {
        assert_eq!(row[6], member);
        assert_eq!(row[8], "shardlog-tests");
    }
    let listed = ok(&broker, &["groups", "list", "--state"]);
    assert_eq!(
        listed
            .lines()
            .map(|l| l.split_whitespace().collect::<Vec<_>>())
            .collect::<Vec<_>>(),
        [
            vec!["GROUP", "STATE"],
            vec!["audit", "Empty"],
            vec!["live", "Stable"]
        ]
    );
    assert_eq!(
        ok(&broker, &["groups", "list", "--state", "stable"])
            .lines()
            .count(),
        2
    );

    // Several groups: the good ones print, the missing one fails the command.
    let r = cli(&broker, &["groups", "describe", "audit", "nosuch", "live"]);
    assert_eq!(r.code, 1);
    assert!(r
        .err
        .contains("Error: Consumer group 'nosuch' does not exist."));
    assert_eq!(r.out.lines().filter(|l| l.starts_with("GROUP")).count(), 2);
}

/// Produces `n` records stamped `timestamp` to `topic`/`partition`.
fn produce_at(c: &mut harness::client::Client, topic: &str, partition: i32, n: i32, ts: i64) {
    produce_batch(
        c,
        topic,
        partition,
        build_test_batch(n, 16, TimestampMs(ts)),
    );
}

/// The reset table's rows as (partition, new offset, current offset), checking the header.
fn reset_rows(out: &str) -> Vec<(String, String, String)> {
    let mut lines = out.lines();
    let header: Vec<&str> = lines.next().expect("header").split_whitespace().collect();
    assert_eq!(header, shardlog::cli::reset::HEADER);
    lines
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f[2].to_string(), f[3].to_string(), f[4].to_string())
        })
        .collect()
}

fn triples(rows: &[(&str, &str, &str)]) -> Vec<(String, String, String)> {
    rows.iter()
        .map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string()))
        .collect()
}

/// The committed offsets `groups describe` shows, by partition.
fn committed(broker: &Broker, group: &str) -> Vec<(String, String)> {
    let r = cli(broker, &["groups", "describe", group]);
    assert_eq!(r.code, 0, "{}", r.err);
    rows(&r.out)
        .into_iter()
        .map(|row| (row[2].clone(), row[3].clone()))
        .collect()
}

fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
    v.iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

#[test]
fn groups_reset_offsets() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start(&dir);
    ok(
        &broker,
        &["topics", "create", "orders", "--partitions", "2"],
    );
    let mut c = broker.client();
    produce(&mut c, "orders", 0, 5);
    produce(&mut c, "orders", 1, 3);
    commit(&mut c, "app", ("", -1), "orders", &[(0, 2), (1, 1)]);
    let reset = |extra: &[&str]| {
        let mut args = vec!["groups", "reset-offsets", "--group", "app"];
        args.extend_from_slice(extra);
        cli(&broker, &args)
    };

    // A dry run (the default) prints the plan and changes nothing.
    let r = reset(&["--topic", "orders", "--to-earliest"]);
    assert_eq!(r.code, 0, "{}", r.err);
    assert_eq!(
        reset_rows(&r.out),
        triples(&[("0", "0", "2"), ("1", "0", "1")])
    );
    assert_eq!(
        r.out
            .lines()
            .nth(1)
            .unwrap()
            .split_whitespace()
            .collect::<Vec<_>>(),
        ["app", "orders", "0", "0", "2"]
    );
    assert!(r.err.contains("Dry run"), "{}", r.err);
    let r = reset(&["--all-topics", "--to-latest", "--dry-run"]);
    assert_eq!(
        reset_rows(&r.out),
        triples(&[("0", "5", "2"), ("1", "3", "1")])
    );
    assert_eq!(committed(&broker, "app"), pairs(&[("0", "2"), ("1", "1")]));

    // --execute commits.
    let r = reset(&["--topic", "orders", "--to-latest", "--execute"]);
    assert_eq!(r.code, 0, "{}", r.err);
    assert_eq!(r.err, "");
    assert_eq!(
        reset_rows(&r.out),
        triples(&[("0", "5", "2"), ("1", "3", "1")])
    );
    assert_eq!(committed(&broker, "app"), pairs(&[("0", "5"), ("1", "3")]));

    // Shifts and offsets are clamped to [log start, log end].
    let r = reset(&["--topic", "orders:0", "--shift-by", "-2", "--execute"]);
    assert_eq!(reset_rows(&r.out), triples(&[("0", "3", "5")]));
    let r = reset(&["--topic", "orders:0", "--shift-by", "-10", "--execute"]);
    assert_eq!(reset_rows(&r.out), triples(&[("0", "0", "3")]));
    let r = reset(&["--topic", "orders:0,1", "--shift-by", "100"]);
    assert_eq!(
        reset_rows(&r.out),
        triples(&[("0", "5", "0"), ("1", "3", "3")])
    );
    let r = reset(&["--topic", "orders:1", "--to-offset", "9", "--execute"]);
    assert_eq!(reset_rows(&r.out), triples(&[("1", "3", "3")]));
    let r = reset(&["--topic", "orders:1", "--to-offset", "1", "--execute"]);
    assert_eq!(reset_rows(&r.out), triples(&[("1", "1", "3")]));
    assert_eq!(committed(&broker, "app"), pairs(&[("0", "0"), ("1", "1")]));

    // What cannot be done is an error, with nothing committed.
    let err = fails(
        &broker,
        &[
            "groups",
            "reset-offsets",
            "--group",
            "app",
            "--topic",
            "nosuch",
            "--to-earliest",
        ],
    );
    assert_eq!(err, "Error: Topic 'nosuch' does not exist.\n");
    let err = fails(
        &broker,
        &[
            "groups",
            "reset-offsets",
            "--group",
            "app",
            "--topic",
            "orders:7",
            "--to-earliest",
        ],
    );
    assert_eq!(err, "Error: Partition orders-7 does not exist.\n");
    let err = fails(
        &broker,
        &[
            "groups",
            "reset-offsets",
            "--group",
            "fresh",
            "--topic",
            "orders",
            "--shift-by",
            "1",
        ],
    );
    assert!(err.contains("no committed offset"), "{err}");
    // A group that does not exist yet can be given offsets (as Kafka's tool allows).
    let r = cli(
        &broker,
        &[
            "groups",
            "reset-offsets",
            "--group",
            "fresh",
            "--topic",
            "orders",
            "--to-latest",
            "--execute",
        ],
    );
    assert_eq!(r.code, 0, "{}", r.err);
    assert_eq!(
        committed(&broker, "fresh"),
        pairs(&[("0", "5"), ("1", "3")])
    );
    // No scope or no target: a usage error (exit 2).
    let r = cli(
        &broker,
        &["groups", "reset-offsets", "--group", "app", "--to-earliest"],
    );
    assert_eq!(r.code, 2, "{}", r.err);
    let r = cli(
        &broker,
        &["groups", "reset-offsets", "--group", "app", "--all-topics"],
    );
    assert_eq!(r.code, 2, "{}", r.err);
}

#[test]
fn reset_offsets_refuses_an_active_group() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start(&dir);
    ok(
        &broker,
        &["topics", "create", "orders", "--partitions", "2"],
    );
    let mut c = broker.client();
    produce(&mut c, "orders", 0, 4);
    let (member, generation) = join_alone(&mut c, "live", "orders", &[0, 1]);
    commit(&mut c, "live", (&member, generation), "orders", &[(0, 1)]);
    for mode in ["--dry-run", "--execute"] {
        let err = fails(
            &broker,
            &[
                "groups",
                "reset-offsets",
                "--group",
                "live",
                "--topic",
                "orders",
                "--to-earliest",
                mode,
            ],
        );
        assert_eq!(
            err,
            "Error: Assignments can only be reset if the group 'live' is inactive, but the \
             current state is Stable.\n"
        );
    }
    let r = cli(&broker, &["groups", "describe", "live"]);
    assert_eq!(rows(&r.out)[0][3], "1", "unchanged");
}

#[test]
fn reset_offsets_to_a_datetime() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start(&dir);
    ok(
        &broker,
        &["topics", "create", "events", "--partitions", "1"],
    );
    let mut c = broker.client();
    // Stamped in the future, so that retention never removes them during the test.
    produce_at(&mut c, "events", 0, 3, 1_798_761_600_000); // 2027-01-01T00:00:00Z
    produce_at(&mut c, "events", 0, 2, 1_811_808_000_000); // 2027-06-01T00:00:00Z
    commit(&mut c, "g", ("", -1), "events", &[(0, 4)]);
    let at = |when: &str| {
        let r = cli(
            &broker,
            &[
                "groups",
                "reset-offsets",
                "--group",
                "g",
                "--topic",
                "events",
                "--to-datetime",
                when,
            ],
        );
        assert_eq!(r.code, 0, "{when}: {}", r.err);
        reset_rows(&r.out)[0].1.clone()
    };
    assert_eq!(at("2026-12-31T00:00:00Z"), "0");
    assert_eq!(at("2027-01-01T00:00:00.001Z"), "3");
    assert_eq!(at("2027-06-01T02:00:00+02:00"), "3");
    assert_eq!(
        at("2027-06-01T00:00:00.001Z"),
        "5",
        "past every record: the log end"
    );
    let r = cli(
        &broker,
        &[
            "groups",
            "reset-offsets",
            "--group",
            "g",
            "--topic",
            "events",
            "--to-datetime",
            "2027-13-01T00:00:00",
        ],
    );
    assert_eq!(r.code, 2, "a malformed time is a usage error: {}", r.err);
    assert!(r.err.contains("YYYY-MM-DDTHH:MM:SS"), "{}", r.err);
}

#[test]
fn groups_delete() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start(&dir);
    ok(
        &broker,
        &["topics", "create", "orders", "--partitions", "1"],
    );
    let mut c = broker.client();
    commit(&mut c, "old", ("", -1), "orders", &[(0, 0)]);
    commit(&mut c, "older", ("", -1), "orders", &[(0, 0)]);
    join_alone(&mut c, "live", "orders", &[0]);
    assert_eq!(
        ok(&broker, &["groups", "delete", "--group", "old"]),
        "Deleted group old.\n"
    );
    let r = cli(
        &broker,
        &[
            "groups", "delete", "--group", "live", "--group", "nosuch", "--group", "older",
        ],
    );
    assert_eq!(r.code, 1);
    assert_eq!(r.out, "Deleted group older.\n");
    assert_eq!(
        r.err,
        "Error: deleting group 'live': NON_EMPTY_GROUP: the group has active members; stop its \
         consumers first\nError: Consumer group 'nosuch' does not exist.\n"
    );
    assert_eq!(ok(&broker, &["groups", "list"]), "live\n");
}

#[test]
fn topics_alter_config() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start(&dir);
    ok(&broker, &["topics", "create", "t"]);
    let out = ok(
        &broker,
        &[
            "topics",
            "alter-config",
            "--topic",
            "t",
            "--add-config",
            "retention.ms=60000,compression.type=zstd",
        ],
    );
    let lines: Vec<Vec<&str>> = out
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        lines,
        [
            vec!["TOPIC", "CONFIG", "OLD-VALUE", "NEW-VALUE", "SOURCE"],
            vec!["t", "retention.ms", "604800000", "60000", "topic"],
            vec!["t", "compression.type", "producer", "zstd", "topic"],
            vec!["Completed", "updating", "config", "for", "topic", "t."],
        ]
    );
    let described = ok(&broker, &["topics", "describe", "t"]);
    let configs = described
        .lines()
        .next()
        .unwrap()
        .split('\t')
        .next_back()
        .unwrap();
    let mut set: Vec<&str> = configs.trim_start_matches("Configs: ").split(',').collect();
    set.sort_unstable();
    assert_eq!(set, ["compression.type=zstd", "retention.ms=60000"]);

    let out = ok(
        &broker,
        &[
            "topics",
            "alter-config",
            "--topic",
            "t",
            "--delete-config",
            "compression.type",
        ],
    );
    assert_eq!(
        out.lines()
            .nth(1)
            .unwrap()
            .split_whitespace()
            .collect::<Vec<_>>(),
        ["t", "compression.type", "zstd", "producer", "default"]
    );
    let described = ok(&broker, &["topics", "describe", "t"]);
    assert!(described
        .lines()
        .next()
        .unwrap()
        .ends_with("\tConfigs: retention.ms=60000"));

    let err = fails(
        &broker,
        &[
            "topics",
            "alter-config",
            "--topic",
            "t",
            "--add-config",
            "no.such=1",
        ],
    );
    assert!(
        err.starts_with("Error: altering the configs of topic 't': INVALID_CONFIG"),
        "{err}"
    );
    // The broker's message comes through.
    let err = fails(
        &broker,
        &[
            "topics",
            "alter-config",
            "--topic",
            "t",
            "--add-config",
            "cleanup.policy=compact",
        ],
    );
    assert_eq!(
        err,
        "Error: altering the configs of topic 't': INVALID_CONFIG: invalid value \"compact\" \
         for cleanup.policy: not one of the allowed values\n"
    );
    let err = fails(
        &broker,
        &[
            "topics",
            "alter-config",
            "--topic",
            "nosuch",
            "--add-config",
            "retention.ms=1",
        ],
    );
    assert_eq!(err, "Error: Topic 'nosuch' does not exist.\n");
    let r = cli(&broker, &["topics", "alter-config", "--topic", "t"]);
    assert_eq!(r.code, 2, "nothing to change is a usage error");
}

#[test]
fn cluster_info() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start(&dir);
    let out = ok(&broker, &["cluster", "info"]);
    let lines: Vec<&str> = out.lines().collect();
    let id = lines[0]
        .strip_prefix("Cluster ID: ")
        .expect("cluster id line");
    assert_eq!(id.len(), 32, "{out}");
    assert_eq!(lines[1], "Controller: 1");
    assert_eq!(lines[2], "");
    assert_eq!(
        lines[3].split_whitespace().collect::<Vec<_>>(),
        ["BROKER", "HOST", "PORT", "RACK"]
    );
    let port = broker.port.to_string();
    assert_eq!(
        lines[4].split_whitespace().collect::<Vec<_>>(),
        ["1", "127.0.0.1", port.as_str(), "-"]
    );
    assert_eq!(lines[5], "");
    assert_eq!(
        lines[6].split_whitespace().collect::<Vec<_>>(),
        ["API", "KEY", "MIN", "MAX"]
    );
    assert!(lines
        .iter()
        .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["Produce", "0", "0", "11"]));
    assert!(lines.iter().any(|l| l.starts_with("DescribeCluster ")));
}

/// Runs `shardlog tune ARGS` (no broker needed).
fn tune(args: &[&str]) -> Run {
    let out = Command::new(env!("CARGO_BIN_EXE_shardlog"))
        .arg("tune")
        .args(args)
        .output()
        .expect("run shardlog tune");
    Run {
        code: out.status.code().unwrap_or(-1),
        out: String::from_utf8_lossy(&out.stdout).into_owned(),
        err: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

const TUNE_CHECKS: [&str; 18] = [
    "kernel",
    "io_uring_disabled",
    "io_uring_setup",
    "memlock",
    "nofile",
    "data_dir_fs",
    "o_direct",
    "scheduler",
    "nr_requests",
    "write_cache",
    "rotational",
    "cpu_governor",
    "transparent_hugepages",
    "swappiness",
    "irq_affinity",
    "aio_max_nr",
    "clocksource",
    "numa",
];

/// The status each check line reports, by check name.
fn tune_statuses(out: &str) -> std::collections::BTreeMap<String, String> {
    out.lines()
        .filter(|l| !l.starts_with(' '))
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() > 2 && f[2] == "found:").then(|| (f[1].to_string(), f[0].to_string()))
        })
        .collect()
}

#[test]
fn tune_check_runs_here_and_reports_every_setting() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    let r = tune(&["--check", "--data-dir", data.to_str().unwrap()]);
    assert_eq!(r.code, 0, "{}{}", r.out, r.err);
    println!("{}", r.out);
    let statuses = tune_statuses(&r.out);
    let names: Vec<&str> = statuses.keys().map(String::as_str).collect();
    let mut want = TUNE_CHECKS.to_vec();
    want.sort_unstable();
    assert_eq!(names, want, "{}", r.out);
    for s in statuses.values() {
        assert!(
            ["ok", "WARN", "FAIL", "unknown"].contains(&s.as_str()),
            "{s}"
        );
    }
    assert_eq!(
        statuses["o_direct"], "ok",
        "the test data dir takes O_DIRECT"
    );
    assert!(
        r.out.lines().any(|l| l.starts_with("18 checks: ")),
        "{}",
        r.out
    );
    assert!(r.out.contains("         why: "));
    assert_eq!(
        std::fs::read_dir(&data).unwrap().count(),
        0,
        "the probe file is gone"
    );

    // A data dir that does not exist yet: its parent is checked.
    let r = tune(&["--data-dir", data.join("later/on").to_str().unwrap()]);
    assert_eq!(r.code, 0, "{}", r.err);
    assert!(
        r.out.lines().next().unwrap().contains("does not exist yet"),
        "{}",
        r.out
    );
}

#[test]
fn tune_strict_fails_on_a_tmpfs_data_dir() {
    let shm = std::path::Path::new("/dev/shm");
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    if !mounts
        .lines()
        .any(|l| l.split(' ').nth(1) == Some("/dev/shm") && l.contains(" tmpfs "))
    {
        eprintln!("skipped: /dev/shm is not a tmpfs here");
        return;
    }
    let dir = tempfile::tempdir_in(shm).unwrap();
    let path = dir.path().to_str().unwrap();
    let r = tune(&["--check", "--data-dir", path]);
    assert_eq!(r.code, 0, "without --strict a failed check still exits 0");
    let statuses = tune_statuses(&r.out);
    // tmpfs takes O_DIRECT since Linux 6.6; the data would still be gone at a reboot.
    assert_eq!(statuses["data_dir_fs"], "FAIL", "{}", r.out);
    assert_eq!(
        statuses["scheduler"], "unknown",
        "tmpfs has no disk: {}",
        r.out
    );
    let r = tune(&["--check", "--strict", "--data-dir", path]);
    assert_eq!(r.code, 1);
    let r = tune(&["--check", "--apply"]);
    assert_eq!(r.code, 2, "--check and --apply conflict");
}
