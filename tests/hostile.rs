//! The broker against hostile and unlucky input (issue 17): small requests that used to make
//! it read, allocate or open far more than they should. Each test drives the real binary with
//! our own client, byte-exact where the attack needs it, and checks the bound at its root (what
//! the broker sends, holds or opens) and that a well-behaved client is still served.

mod harness;

use bytes::Bytes;
use harness::Broker;
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use shardlog::storage::batch::{self, build_test_batch};
use shardlog::types::TimestampMs;

fn name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.to_string()))
}

fn create_topic(c: &mut harness::client::Client, topic: &str, partitions: i32) {
    let req = CreateTopicsRequest::default().with_topics(vec![CreatableTopic::default()
        .with_name(name(topic))
        .with_num_partitions(partitions)
        .with_replication_factor(1)]);
    let resp: CreateTopicsResponse = c.call(ApiKey::CreateTopics, 7, &req);
    assert_eq!(resp.topics[0].error_code, 0, "create {topic}");
}

/// Appends `batches` batches of `records` records of `value_bytes` each to one partition.
fn fill(
    c: &mut harness::client::Client,
    topic: &str,
    part: i32,
    batches: usize,
    value_bytes: usize,
) {
    for _ in 0..batches {
        let records = Bytes::from(build_test_batch(10, value_bytes, TimestampMs::now()));
        assert_eq!(produce_raw(c, topic, part, records, 9).0, 0);
    }
}

/// A Fetch v11 from offset 0 of `entries` (topic, partition, partition_max_bytes), in order.
fn fetch(
    c: &mut harness::client::Client,
    max_bytes: i32,
    entries: &[(&str, i32, i32)],
) -> FetchResponse {
    let topics = entries
        .iter()
        .map(|&(t, p, max)| {
            FetchTopic::default()
                .with_topic(name(t))
                .with_partitions(vec![FetchPartition::default()
                    .with_partition(p)
                    .with_fetch_offset(0)
                    .with_partition_max_bytes(max)])
        })
        .collect();
    let req = FetchRequest::default()
        .with_max_wait_ms(0)
        .with_min_bytes(1)
        .with_max_bytes(max_bytes)
        .with_topics(topics);
    c.call(ApiKey::Fetch, 11, &req)
}

/// Each partition of a response as (topic, partition, error, record bytes, whole batches).
fn parts(resp: &FetchResponse) -> Vec<(String, i32, i16, usize, usize)> {
    let mut out = Vec::new();
    for t in &resp.responses {
        for p in &t.partitions {
            let mut records = p.records.clone().unwrap_or_default();
            let bytes = records.len();
            let mut batches = 0;
            while !records.is_empty() {
                let size = batch::declared_size(&records).expect("batch header");
                batch::validate(&records.split_to(size), false).expect("whole, valid batches");
                batches += 1;
            }
            out.push((
                t.topic.0.to_string(),
                p.partition_index,
                p.error_code,
                bytes,
                batches,
            ));
        }
    }
    out
}

/// Issue 17, case 1: one small Fetch naming a partition 20 times with partition_max_bytes =
/// 2^31-1 used to read the whole segment for every entry at once (RSS +1 GB on a 48 MB
/// partition) and to answer far beyond the request's max_bytes. Now the partition is served
/// once, the response keeps to max_bytes (one batch over at most, the first), and reading
/// costs the broker no more than that.
#[test]
fn a_fetch_keeps_to_its_limits_in_what_it_reads_and_sends() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let broker = Broker::start(&data, 2);
    let mut c = broker.client();
    create_topic(&mut c, "amp", 1);
    let batch_bytes = build_test_batch(10, 10_000, TimestampMs(0)).len();
    fill(&mut c, "amp", 0, 400, 10_000); // 40 MB
    drop(c);
    let (data, port) = broker.stop();
    let broker = Broker::start_on(&data, 2, port, &[]); // from disk, nothing cached
    let mut c = broker.client();
    let before = broker.rss_bytes();
    let entries = vec![("amp", 0, i32::MAX); 20];
    for _ in 0..5 {
        let got = parts(&fetch(&mut c, 1_000_000, &entries));
        assert_eq!(
            got.len(),
            1,
            "a partition named 20 times is served once: {got:?}"
        );
        let (_, _, err, bytes, batches) = got[0];
        assert_eq!(err, 0);
        assert!(
            batches >= 1 && bytes <= 1_000_000 + batch_bytes,
            "{bytes} bytes"
        );
    }
    // fetch.max.bytes=1000000 with max.partition.fetch.bytes=20000000: about 1 MB, not 19 MB.
    let got = parts(&fetch(&mut c, 1_000_000, &[("amp", 0, 20_000_000)]));
    assert!(got[0].3 <= 1_000_000 + batch_bytes, "{got:?}");
    let grew = broker.rss_bytes().saturating_sub(before);
    assert!(grew < 200 << 20, "RSS grew by {} MiB", grew >> 20);
}

/// Kafka's filling rule across partitions and shards: in request order, each partition gets
/// the whole batches that fit in what the earlier ones left; only the first non-empty one may
/// go over; nothing past the budget is read or sent.
#[test]
fn a_fetch_fills_partitions_in_order_with_what_is_left() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(&dir.path().join("data"), 2);
    let mut c = broker.client();
    create_topic(&mut c, "fill", 4);
    let batch_bytes = build_test_batch(10, 1_000, TimestampMs(0)).len();
    for p in 0..4 {
        fill(&mut c, "fill", p, 20, 1_000); // 20 batches of ~10 KB each
    }
    let entries: Vec<_> = (0..4).map(|p| ("fill", p, 1 << 20)).collect();
    // Room for 30 batches: the first partition takes its 20, the second the 10 that fit.
    let got = parts(&fetch(&mut c, (30 * batch_bytes) as i32, &entries));
    let batches: Vec<usize> = got.iter().map(|g| g.4).collect();
    assert_eq!(batches, vec![20, 10, 0, 0], "{got:?}");
    assert!(got.iter().all(|g| g.2 == 0));
    // A budget smaller than one batch: the first non-empty partition still gets one.
    let got = parts(&fetch(&mut c, 10, &entries));
    let batches: Vec<usize> = got.iter().map(|g| g.4).collect();
    assert_eq!(batches, vec![1, 0, 0, 0], "{got:?}");
    // A partition limit below a batch, on a partition that is not the first non-empty one:
    // whole batches only, so nothing; the first one gets its one batch over the limit.
    let small: Vec<_> = (0..4).map(|p| ("fill", p, 100)).collect();
    let got = parts(&fetch(&mut c, 1 << 20, &small));
    let batches: Vec<usize> = got.iter().map(|g| g.4).collect();
    assert_eq!(batches, vec![1, 0, 0, 0], "{got:?}");
}

/// One DeleteRecords entry for partition 0 of `topic`: (error code, low watermark).
fn delete_records(c: &mut harness::client::Client, topic: &str, offset: i64) -> (i16, i64) {
    use kafka_protocol::messages::delete_records_request::{
        DeleteRecordsPartition, DeleteRecordsTopic,
    };
    let req = DeleteRecordsRequest::default()
        .with_timeout_ms(5000)
        .with_topics(vec![DeleteRecordsTopic::default()
            .with_name(name(topic))
            .with_partitions(vec![DeleteRecordsPartition::default()
                .with_partition_index(0)
                .with_offset(offset)])]);
    let resp: DeleteRecordsResponse = c.call(ApiKey::DeleteRecords, 2, &req);
    let p = &resp.topics[0].partitions[0];
    (p.error_code, p.low_watermark)
}

/// Issue 17, case 7: DeleteRecords with an offset below -1 used to succeed and change nothing;
/// Kafka answers OFFSET_OUT_OF_RANGE (1) for any negative offset but -1 (the high watermark).
#[test]
fn delete_records_below_minus_one_is_out_of_range() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(&dir.path().join("data"), 1);
    let mut c = broker.client();
    create_topic(&mut c, "del", 1);
    fill(&mut c, "del", 0, 3, 10); // offsets 0..30
    assert_eq!(delete_records(&mut c, "del", -1001), (1, -1));
    assert_eq!(delete_records(&mut c, "del", -2), (1, -1));
    assert_eq!(delete_records(&mut c, "del", 31), (1, -1), "past the end");
    assert_eq!(delete_records(&mut c, "del", 5), (0, 5));
    assert_eq!(
        delete_records(&mut c, "del", -1),
        (0, 30),
        "-1: the high watermark"
    );
}

/// A batch whose header claims `count` records (and a consistent last offset delta) whatever
/// it holds, with its CRC made right again so only the count is a lie.
fn lying_about_count(mut b: Vec<u8>, count: i32) -> Bytes {
    b[57..61].copy_from_slice(&count.to_be_bytes()); // records count
    b[23..27].copy_from_slice(&(count - 1).to_be_bytes()); // last offset delta
    let crc = batch::compute_crc(&b);
    b[17..21].copy_from_slice(&crc.to_be_bytes());
    Bytes::from(b)
}

/// A gzip batch of `n` small records, as a client would send it (the protocol crate's
/// encoder, through the broker's own recompression).
fn gzip_batch(n: i32) -> Vec<u8> {
    let plain = Bytes::from(build_test_batch(n, 1, TimestampMs(1000)));
    let zipped = shardlog::kafka::compression::recompress(
        plain,
        kafka_protocol::records::Compression::Gzip,
        1 << 20,
    );
    zipped.unwrap().to_vec()
}

/// A Produce of `records` to partition `part` of `topic` with `acks`.
fn produce_request(topic: &str, part: i32, records: Bytes, acks: i16) -> ProduceRequest {
    ProduceRequest::default()
        .with_acks(acks)
        .with_timeout_ms(5000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(name(topic))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(part)
                .with_records(Some(records))])])
}

/// Produce `records` to partition `part` of `topic` with Produce `version`: (error, base
/// offset, error message).
fn produce_raw(
    c: &mut harness::client::Client,
    topic: &str,
    part: i32,
    records: Bytes,
    version: i16,
) -> (i16, i64, Option<String>) {
    let req = produce_request(topic, part, records, 1);
    let resp: ProduceResponse = c.call(ApiKey::Produce, version, &req);
    let p = &resp.responses[0].partition_responses[0];
    let message = p.error_message.as_ref().map(|m| m.to_string());
    (p.error_code, p.base_offset, message)
}

/// Issue 17, case 2: a batch declaring 2^31-1 records while holding one used to be accepted,
/// moving the log end by 2^31 and rolling a segment (one more open file) per 121-byte request.
/// Now each batch's count is checked against its records (decompressing where it must):
/// INVALID_RECORD from Produce v8, CORRUPT_MESSAGE before, nothing appended, no segment made.
#[test]
fn a_batch_must_hold_the_records_it_declares() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let broker = Broker::start(&data, 1);
    let mut c = broker.client();
    create_topic(&mut c, "lie", 1);
    let plain = build_test_batch(1, 10, TimestampMs::now());
    for _ in 0..200 {
        let (err, _, message) = produce_raw(
            &mut c,
            "lie",
            0,
            lying_about_count(plain.clone(), i32::MAX),
            9,
        );
        assert_eq!(err, 87, "INVALID_RECORD");
        assert!(message.unwrap_or_default().contains("declares"));
    }
    let fewer = lying_about_count(build_test_batch(3, 10, TimestampMs::now()), 2);
    assert_eq!(
        produce_raw(&mut c, "lie", 0, fewer, 9).0,
        87,
        "more records than declared"
    );
    let old = lying_about_count(plain.clone(), 5);
    assert_eq!(
        produce_raw(&mut c, "lie", 0, old, 7).0,
        2,
        "CORRUPT_MESSAGE before v8"
    );
    let zipped = lying_about_count(gzip_batch(3), i32::MAX);
    assert_eq!(produce_raw(&mut c, "lie", 0, zipped, 9).0, 87, "compressed");
    // Honest batches, plain and compressed, go on at offset 0: nothing moved the log end.
    assert_eq!(
        produce_raw(&mut c, "lie", 0, Bytes::from(plain), 9),
        (0, 0, None)
    );
    assert_eq!(
        produce_raw(&mut c, "lie", 0, Bytes::from(gzip_batch(3)), 9),
        (0, 1, None)
    );
    let segments = std::fs::read_dir(data.join("lie-0"))
        .map(|d| {
            d.filter(|e| {
                let name = e.as_ref().unwrap().file_name();
                name.to_string_lossy().ends_with(".log")
            })
            .count()
        })
        .unwrap_or(0);
    assert_eq!(segments, 1, "one segment");
}

/// Issue 17, case 10: a transactional producer used to hang for its whole timeout (60 s for
/// Java, 10-30 s for librdkafka, for ever in aiokafka) because FindCoordinator for a
/// transaction answered COORDINATOR_NOT_AVAILABLE, which clients retry. Each client must now
/// report a non-retriable error at once; the time limits are far below the clients' 60 s.
#[test]
fn a_transactional_producer_is_refused_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(&dir.path().join("data"), 2);
    let json = |out: std::process::Output| -> serde_json::Value {
        serde_json::from_str(harness::stdout(&out).trim()).expect("one JSON line")
    };
    let script = harness::clients_dir().join("python/transactional.py");
    for client in ["confluent-kafka", "aiokafka"] {
        let mut cmd = std::process::Command::new("python3");
        cmd.arg(&script).args([client, &broker.addr()]);
        let v = json(harness::run(&mut cmd, 30));
        assert_eq!(v["refused"], true, "{client}: {v}");
        assert_eq!(v["fatal"], true, "{client}: {v}");
        if client == "confluent-kafka" {
            let e = v["error"].as_str().unwrap_or_default();
            assert!(e.contains("does not support transactions"), "{client}: {v}");
        }
    }
    let v = json(harness::run(
        &mut harness::node("transactional.js", &broker.addr()),
        30,
    ));
    assert_eq!(v["refused"], true, "kafkajs: {v}");
    assert_eq!(v["retriable"], false, "kafkajs: {v}");
}

/// A listening socket on 127.0.0.1:`port` with SO_REUSEPORT set, as a killed broker's shard
/// socket is while the kernel tears its io_uring down; non-blocking, so `accept` never waits.
fn reuseport_listener(port: u16) -> std::net::TcpListener {
    use std::os::fd::FromRawFd;
    // SAFETY: plain socket calls on a descriptor this function owns; the sockaddr is a local
    // value of the right size.
    unsafe {
        let fd = libc::socket(
            libc::AF_INET,
            libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
        );
        assert!(fd >= 0);
        let one: libc::c_int = 1;
        let len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        for opt in [libc::SO_REUSEADDR, libc::SO_REUSEPORT] {
            let on = &one as *const libc::c_int as *const libc::c_void;
            assert_eq!(libc::setsockopt(fd, libc::SOL_SOCKET, opt, on, len), 0);
        }
        let addr = libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: port.to_be(),
            sin_addr: libc::in_addr {
                s_addr: u32::from(std::net::Ipv4Addr::LOCALHOST).to_be(),
            },
            sin_zero: [0; 8],
        };
        let size = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
        let sa = &addr as *const libc::sockaddr_in as *const libc::sockaddr;
        assert_eq!(libc::bind(fd, sa, size), 0, "bind");
        assert_eq!(libc::listen(fd, 128), 0, "listen");
        std::net::TcpListener::from_raw_fd(fd)
    }
}

/// Issue 17, case 8: after a kill -9, the dead broker's SO_REUSEPORT sockets linger for a few
/// milliseconds, and a restarted broker that bound beside them let them take (and reset) a
/// share of new connections. Now the broker binds only once no other socket listens on the
/// port: while one does, every connection goes to it; once it is gone, the broker serves.
#[test]
fn the_broker_listens_only_once_the_port_is_its_own() {
    let dir = tempfile::tempdir().unwrap();
    let port = harness::free_port();
    let lingering = reuseport_listener(port);
    let broker = Broker::start_unready(&dir.path().join("data"), 2, port);
    std::thread::sleep(std::time::Duration::from_millis(1500)); // long enough to have bound
    let conns: Vec<_> = (0..32)
        .map(|_| std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect"))
        .collect();
    std::thread::sleep(std::time::Duration::from_millis(200));
    let mut ours = 0;
    while lingering.accept().is_ok() {
        ours += 1;
    }
    assert_eq!(
        ours,
        conns.len(),
        "every connection reached the lingering socket"
    );
    drop(lingering);
    broker.wait_ready();
    let mut c = broker.client();
    create_topic(&mut c, "after", 1);
}

/// Whether a fresh connection gets an ApiVersions answer, or is closed first.
fn answered(s: &mut std::net::TcpStream) -> bool {
    use std::io::{Read, Write};
    // ApiVersions v0: key 18, version 0, correlation id 1, null client id.
    let req = [0, 0, 0, 10, 0, 18, 0, 0, 0, 0, 0, 1, 0xff, 0xff];
    let mut head = [0u8; 8];
    s.write_all(&req).is_ok() && s.read_exact(&mut head).is_ok() && head[4..8] == [0, 0, 0, 1]
}

/// Waits (up to 20 s) for the broker to close `s`; false if it stays open.
fn closed_by_broker(s: &mut std::net::TcpStream) -> bool {
    use std::io::Read;
    s.set_read_timeout(Some(std::time::Duration::from_secs(20)))
        .unwrap();
    let mut b = [0u8; 64];
    loop {
        match s.read(&mut b) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
            Err(_) => return false, // timed out: still open
        }
    }
}

/// Issue 17, case 6 (its connection part): connections had no cap and no idle timeout (5,000
/// idle plus 2,000 half-sent headers all stayed open for ever). Now a connection over
/// `--connections-per-ip-max` is closed when accepted, one that is idle or leaves a frame
/// unfinished for `--connection-idle-ms-max` is closed, which frees its place, and one waiting
/// on a long poll is not idle.
#[test]
fn connections_are_capped_and_idle_ones_closed() {
    use std::io::Write;
    use std::net::TcpStream;
    let dir = tempfile::tempdir().unwrap();
    let port = harness::free_port();
    let limits = [
        "--connections-per-ip-max",
        "3",
        "--connection-idle-ms-max",
        "700",
    ];
    let broker = Broker::start_on(&dir.path().join("data"), 2, port, &limits);
    let connect = || TcpStream::connect(("127.0.0.1", port)).unwrap();
    // The start-up check's connections are closed; let the broker see them go.
    std::thread::sleep(std::time::Duration::from_millis(300));
    let mut open: Vec<TcpStream> = (0..3).map(|_| connect()).collect();
    assert!(open.iter_mut().all(answered), "three are served");
    let mut fourth = connect();
    assert!(
        !answered(&mut fourth),
        "a fourth from the same address is closed"
    );
    // Idle ones are closed: two that send nothing, one with half a size prefix.
    open[2].write_all(&[0, 0]).unwrap();
    for s in open.iter_mut() {
        assert!(closed_by_broker(s), "an idle connection is closed");
    }
    // Their places are free again (a closed connection's place is released when its task
    // ends, a moment after the client sees the close: wait until three are served at once,
    // then let the broker see those go too); a long poll longer than the idle time is not
    // idle.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let mut probes: Vec<TcpStream> = (0..3).map(|_| connect()).collect();
        if probes.iter_mut().all(answered) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "places never freed");
        drop(probes);
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    std::thread::sleep(std::time::Duration::from_millis(300));
    let mut c = broker.client();
    create_topic(&mut c, "quiet", 1);
    let req = FetchRequest::default()
        .with_max_wait_ms(2000)
        .with_min_bytes(1)
        .with_max_bytes(1 << 20)
        .with_topics(vec![FetchTopic::default()
            .with_topic(name("quiet"))
            .with_partitions(vec![FetchPartition::default()
                .with_partition(0)
                .with_fetch_offset(0)
                .with_partition_max_bytes(1 << 20)])]);
    let resp: FetchResponse = c.call(ApiKey::Fetch, 11, &req);
    assert_eq!(resp.responses[0].partitions[0].error_code, 0);
}

/// Produce requests of `value_bytes` records sent `per_connection` times on each of
/// `connections` connections at once, none of whose responses is read; returns once all are
/// sent, with the connections still open.
fn flood(
    broker: &Broker,
    topic: &str,
    partitions: i32,
    connections: usize,
    per_connection: usize,
    value_bytes: usize,
) -> Vec<harness::client::Client> {
    let records = Bytes::from(build_test_batch(1, value_bytes, TimestampMs::now()));
    let threads: Vec<_> = (0..connections)
        .map(|i| {
            let mut c = broker.client();
            let req = ProduceRequest::default()
                .with_acks(1)
                .with_timeout_ms(30_000)
                .with_topic_data(vec![TopicProduceData::default()
                    .with_name(name(topic))
                    .with_partition_data(vec![PartitionProduceData::default()
                        .with_index(i as i32 % partitions)
                        .with_records(Some(records.clone()))])]);
            std::thread::spawn(move || {
                for _ in 0..per_connection {
                    c.send(ApiKey::Produce, 9, &req);
                }
                c
            })
        })
        .collect();
    threads.into_iter().map(|t| t.join().unwrap()).collect()
}

/// Fetch requests for all of `partitions` of `topic` from offset 0, `per_connection` times
/// on each of `connections` connections, none of whose responses is read.
fn fetch_flood(
    broker: &Broker,
    topic: &str,
    partitions: i32,
    connections: usize,
    per_connection: usize,
) -> Vec<harness::client::Client> {
    let parts = (0..partitions)
        .map(|p| {
            FetchPartition::default()
                .with_partition(p)
                .with_fetch_offset(0)
                .with_partition_max_bytes(8 << 20)
        })
        .collect();
    let req = FetchRequest::default()
        .with_max_wait_ms(0)
        .with_min_bytes(1)
        .with_max_bytes(16 << 20)
        .with_topics(vec![FetchTopic::default()
            .with_topic(name(topic))
            .with_partitions(parts)]);
    (0..connections)
        .map(|_| {
            let mut c = broker.client();
            for _ in 0..per_connection {
                c.send(ApiKey::Fetch, 11, &req);
            }
            c
        })
        .collect()
}

/// A well-behaved client's round: one produce and one fetch of what it produced.
fn well_behaved(c: &mut harness::client::Client) {
    let records = Bytes::from(build_test_batch(1, 100, TimestampMs::now()));
    let (code, offset, _) = produce_raw(c, "calm", 0, records, 9);
    assert_eq!(code, 0);
    let req = FetchRequest::default()
        .with_max_wait_ms(0)
        .with_max_bytes(1 << 20)
        .with_topics(vec![FetchTopic::default()
            .with_topic(name("calm"))
            .with_partitions(vec![FetchPartition::default()
                .with_fetch_offset(offset)
                .with_partition_max_bytes(1 << 20)])]);
    let resp: FetchResponse = c.call(ApiKey::Fetch, 11, &req);
    let p = &resp.responses[0].partitions[0];
    assert_eq!(p.error_code, 0);
    assert!(p.records.as_ref().is_some_and(|r| !r.is_empty()), "served");
}

/// Issue 17, case 6 (memory): 200 connections each pipelining 50 produces of 100 KiB without
/// reading a response took RSS to 1.52 GB, and 1.33 GB stayed after they closed; 10
/// connections leaving 60 disk fetches unread added 565 MB more. Now bytes in flight come out
/// of per-shard budgets (`--inflight-bytes-max` for requests being handled and again for
/// responses not yet sent; reads pause while they are spent, a connection holds at most a
/// quarter in unsent responses, and one whose client takes nothing while the shard is short is
/// closed), so RSS stays under budgets + caches, memory goes back once the burst is over, and a
/// well-behaved client is served throughout.
#[test]
fn memory_in_flight_has_a_bound_and_is_given_back() {
    const MIB: u64 = 1 << 20;
    let dir = tempfile::tempdir().unwrap();
    let port = harness::free_port();
    let (shards, budget, read_cache, tail_caches) = (2u64, 64 * MIB, 32 * MIB, 5 * 16 * MIB);
    let settings = [
        "--read-cache-bytes",
        "33554432",
        "--inflight-bytes-max",
        "67108864",
    ];
    let broker = Broker::start_on(&dir.path().join("data"), shards as usize, port, &settings);
    let mut c = broker.client();
    create_topic(&mut c, "flood", 4);
    create_topic(&mut c, "calm", 1);
    let before = broker.rss_bytes();
    // Caches full; on every shard both budgets spent, one more response (16 MiB) unsent and
    // read-ahead's 32 MiB in flight; and 100 MiB for the rest (the allocator's own).
    let caches = tail_caches + shards * read_cache;
    let bound = before + caches + shards * (2 * budget + 16 * MIB + 32 * MIB) + 100 * MIB;
    let flooding = std::thread::scope(|s| {
        let f = s.spawn(|| flood(&broker, "flood", 4, 200, 50, 100 << 10));
        while !f.is_finished() {
            well_behaved(&mut c);
        }
        f.join().unwrap()
    });
    for mut c in flooding {
        for _ in 0..50 {
            assert!(c.read_frame().is_some(), "every produce is answered");
        }
    }
    let produced = broker.peak_rss_bytes();
    // Readers from disk that take none of their responses.
    let unread = fetch_flood(&broker, "flood", 4, 10, 60);
    for _ in 0..20 {
        well_behaved(&mut c);
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let fetched = broker.peak_rss_bytes();
    drop(unread);
    let mut after = u64::MAX;
    for _ in 0..20 {
        std::thread::sleep(std::time::Duration::from_millis(500));
        after = broker.rss_bytes();
        if after < before + caches + 50 * MIB {
            break;
        }
    }
    eprintln!(
        "RSS before {} MiB, peak {} MiB producing, {} MiB fetching (bound {} MiB), after {} MiB",
        before / MIB,
        produced / MIB,
        fetched / MIB,
        bound / MIB,
        after / MIB
    );
    assert!(fetched < bound, "peak RSS {} MiB", fetched / MIB);
    assert!(
        after < before + caches + 50 * MIB,
        "RSS after the burst {} MiB",
        after / MIB
    );
    well_behaved(&mut c);
}

/// Issue 17's hostile suite, random input: thousands of frames with a valid size prefix and
/// random contents — random API keys and versions among the supported ones, random bodies,
/// some cut short — on many connections. The broker stays up, answers or closes each
/// connection, keeps serving a well-behaved client, and its RSS stays bounded.
#[test]
fn random_frames_leave_the_broker_up_and_serving() {
    use rand::{Rng, SeedableRng};
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(&dir.path().join("data"), 2);
    let mut c = broker.client();
    create_topic(&mut c, "calm", 1);
    let before = broker.rss_bytes();
    let mut rng = rand::rngs::StdRng::seed_from_u64(17);
    for round in 0..40 {
        let mut conns: Vec<std::net::TcpStream> = (0..10)
            .map(|_| std::net::TcpStream::connect(broker.addr()).unwrap())
            .collect();
        for s in conns.iter_mut() {
            for _ in 0..10 {
                let len = rng.gen_range(8..2048usize);
                let mut frame = (len as u32).to_be_bytes().to_vec();
                frame.extend_from_slice(&rng.gen_range(0i16..70).to_be_bytes());
                frame.extend_from_slice(&rng.gen_range(-1i16..16).to_be_bytes());
                frame.extend((4..len).map(|_| rng.gen::<u8>()));
                let cut = if rng.gen_bool(0.1) {
                    frame.len() / 2
                } else {
                    frame.len()
                };
                if s.write_all(&frame[..cut]).is_err() {
                    break; // closed by the broker: bad input gets a closed connection
                }
            }
        }
        drop(conns);
        if round % 10 == 0 {
            well_behaved(&mut c);
        }
    }
    well_behaved(&mut c);
    let grew = broker.rss_bytes().saturating_sub(before);
    assert!(grew < 100 << 20, "RSS grew by {} MiB", grew >> 20);
}

/// A long poll followed, on the same connection, by Fetches whose responses fill the
/// connection's share of the budget: the later responses are built first and held (responses
/// go out in order), and the long poll's last read used to wait for memory that only sending
/// them frees, for ever. Now a read waits for memory a bounded time, then reads
/// nothing, so both are answered.
#[test]
fn a_long_poll_never_waits_for_memory_its_own_connection_holds() {
    const MIB: i32 = 1 << 20;
    let dir = tempfile::tempdir().unwrap();
    let port = harness::free_port();
    let settings = ["--inflight-bytes-max", "16777216"]; // a 4 MiB share per connection
    let broker = Broker::start_on(&dir.path().join("data"), 1, port, &settings);
    let mut c = broker.client();
    create_topic(&mut c, "empty", 1);
    create_topic(&mut c, "full", 1);
    fill(&mut c, "full", 0, 8, 100 << 10); // 8 MiB
    let fetch = |topic: &str, wait_ms: i32| {
        FetchRequest::default()
            .with_max_wait_ms(wait_ms)
            .with_min_bytes(1)
            .with_max_bytes(8 * MIB)
            .with_topics(vec![FetchTopic::default()
                .with_topic(name(topic))
                .with_partitions(vec![
                    FetchPartition::default().with_partition_max_bytes(8 * MIB)
                ])])
    };
    // One Fetch leases at most a quarter of the budget (so reads 2 MiB here): three of them
    // fill the connection's share.
    let poll = c.send(ApiKey::Fetch, 11, &fetch("empty", 1000));
    let big: Vec<i32> = (0..3)
        .map(|_| c.send(ApiKey::Fetch, 11, &fetch("full", 0)))
        .collect();
    let first: FetchResponse = c.recv(ApiKey::Fetch, 11, poll);
    assert_eq!(first.responses[0].partitions[0].error_code, 0);
    for corr in big {
        let r: FetchResponse = c.recv(ApiKey::Fetch, 11, corr);
        let records = r.responses[0].partitions[0].records.as_ref();
        assert!(records.is_some_and(|r| r.len() >= 1 << 20), "served");
    }
}

/// A size prefix declaring a frame as large as the whole budget, and then nothing: the lease
/// used to be taken for the declared size at once, so every other connection of the shard
/// waited (up to the idle timeout). Now the lease grows with the bytes that arrive.
#[test]
fn a_size_prefix_alone_does_not_hold_the_budget() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let port = harness::free_port();
    let settings = ["--inflight-bytes-max", "16777216"];
    let broker = Broker::start_on(&dir.path().join("data"), 1, port, &settings);
    let mut c = broker.client();
    create_topic(&mut c, "calm", 1);
    let mut liar = std::net::TcpStream::connect(broker.addr()).unwrap();
    liar.write_all(&(60u32 << 20).to_be_bytes()).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(200));
    for _ in 0..5 {
        well_behaved(&mut c); // within the client's read timeout (30 s), not after 70 s
    }
    drop(liar);
}

/// A small ext4 file system on a loop device, mounted for one test and unmounted after. Needs
/// root and loop devices, as CI's machine has.
struct SmallDisk {
    mount: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl SmallDisk {
    fn new(mib: u64) -> SmallDisk {
        let dir = tempfile::tempdir().unwrap();
        let image = dir.path().join("disk.img");
        std::fs::File::create(&image)
            .unwrap()
            .set_len(mib << 20)
            .unwrap();
        let mount = dir.path().join("mnt");
        std::fs::create_dir(&mount).unwrap();
        let sh = |cmd: &mut std::process::Command| {
            let out = cmd.output().expect("run");
            assert!(out.status.success(), "{cmd:?}: {out:?}");
        };
        sh(std::process::Command::new("mkfs.ext4")
            .args(["-q", "-F"])
            .arg(&image));
        sh(std::process::Command::new("mount")
            .args(["-o", "loop"])
            .arg(&image)
            .arg(&mount));
        SmallDisk { mount, _dir: dir }
    }

    /// Fills the disk with a file of ours (an operator's, say) until a write fails.
    fn fill(&self, name: &str) {
        use std::io::Write;
        let mut f = std::fs::File::create(self.mount.join(name)).unwrap();
        // Large blocks, then single ones (ext4 frees reservations as data is synced).
        for size in [64 << 10, 4 << 10, 4 << 10] {
            let block = vec![7u8; size];
            while f.write_all(&block).and_then(|()| f.sync_data()).is_ok() {}
        }
    }

    fn free_bytes(&self) -> u64 {
        let out = std::process::Command::new("df")
            .args(["--output=avail", "-B1"])
            .arg(&self.mount)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.split_whitespace().last().unwrap().parse().unwrap()
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.mount)
            .status();
    }
}

/// Sends acks=0 produces of about 100 KiB to `topic` until the broker logs that its writes
/// paused for the `nth` time (the disk is full), or panics after `sends_max`.
fn produce_until_paused(broker: &Broker, topic: &str, nth: usize, sends_max: usize) {
    let mut c = broker.client();
    let records = Bytes::from(build_test_batch(10, 10 << 10, TimestampMs::now()));
    let req = produce_request(topic, 0, records, 0);
    let paused = || broker.log().matches("log writes paused").count() >= nth;
    for _ in 0..sends_max {
        if paused() {
            return;
        }
        c.send(ApiKey::Produce, 9, &req);
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !paused() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(paused(), "writes never paused: {}", broker.log());
}

fn wait_for_log(broker: &Broker, needle: &str, count: usize) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    while broker.log().matches(needle).count() < count {
        assert!(
            std::time::Instant::now() < deadline,
            "no {needle:?} in the log: {}",
            broker.log()
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// Records readable from partition 0 of `topic` (one Fetch from offset 0).
fn readable_records(c: &mut harness::client::Client, topic: &str) -> usize {
    let resp = fetch(c, 50 << 20, &[(topic, 0, 50 << 20)]);
    let p = &resp.responses[0].partitions[0];
    assert_eq!(p.error_code, 0, "fetch {topic}");
    let mut records = p.records.clone().unwrap_or_default();
    let mut n = 0;
    while let Some(size) = batch::declared_size(&records) {
        n += batch::parse_header(&records[..size]).unwrap().record_count as usize;
        bytes::Buf::advance(&mut records, size);
    }
    n
}

fn topic_codes(c: &mut harness::client::Client, create: &str, delete: &str) -> (i16, i16) {
    let req = CreateTopicsRequest::default().with_topics(vec![CreatableTopic::default()
        .with_name(name(create))
        .with_num_partitions(1)
        .with_replication_factor(1)]);
    let created: CreateTopicsResponse = c.call(ApiKey::CreateTopics, 7, &req);
    let req = DeleteTopicsRequest::default().with_topic_names(vec![name(delete)]);
    let deleted: DeleteTopicsResponse = c.call(ApiKey::DeleteTopics, 5, &req);
    (
        created.topics[0].error_code,
        deleted.responses[0].error_code,
    )
}

/// Issue 17, case 5: on a full disk a log's writes pause (appends are refused at once with
/// POLICY_VIOLATION and a message saying why) instead of failing the log for good; they resume
/// by themselves when space returns; acknowledged data stays readable; a topic can still be
/// deleted, which frees its space; a CreateTopics is refused and leaves nothing behind; and the
/// broker starts on a full disk with every shard serving.
#[test]
fn a_full_disk_pauses_writes_and_deleting_data_still_works() {
    let disk = SmallDisk::new(64);
    let logs = tempfile::tempdir().unwrap();
    let (data, log) = (disk.mount.join("data"), logs.path().join("broker.log"));
    let port = harness::free_port();
    let broker = Broker::start_logging_to(&data, 2, port, &log);
    let mut c = broker.client();
    create_topic(&mut c, "fill", 1);
    create_topic(&mut c, "kept", 1);
    fill(&mut c, "kept", 0, 3, 100);
    let small = || Bytes::from(build_test_batch(1, 10, TimestampMs::now()));

    disk.fill("hog");
    produce_until_paused(&broker, "fill", 1, 2000);
    let (code, _, message) = produce_raw(&mut c, "fill", 0, small(), 9);
    assert_eq!(code, 44, "POLICY_VIOLATION while paused");
    assert!(message.unwrap_or_default().contains("disk is full"));
    assert_eq!(
        readable_records(&mut c, "kept"),
        30,
        "acknowledged data stays readable"
    );

    std::fs::remove_file(disk.mount.join("hog")).unwrap();
    wait_for_log(&broker, "log writes resumed", 1);
    assert_eq!(produce_raw(&mut c, "fill", 0, small(), 9).0, 0, "resumed");

    disk.fill("hog");
    produce_until_paused(&broker, "fill", 2, 2000);
    let before = disk.free_bytes();
    assert_eq!(
        topic_codes(&mut c, "new", "fill"),
        (56, 0),
        "create refused, delete done"
    );
    assert!(
        disk.free_bytes() > before + (1 << 20),
        "deleting the topic freed its space"
    );

    // Restarts on a full disk, clean and after a crash (a clean close truncates the segments'
    // preallocated space, so recovery has none of its own to write into).
    drop(c);
    broker.stop();
    disk.fill("hog2");
    let broker = Broker::start_logging_to(&data, 2, port, &log);
    let mut c = broker.client();
    fill(&mut c, "kept", 0, 1, 100);
    drop(c);
    broker.kill();
    disk.fill("hog3");
    let broker = Broker::start_logging_to(&data, 2, port, &log);
    let mut c = broker.client();
    assert_eq!(
        readable_records(&mut c, "kept"),
        40,
        "after restarts on a full disk"
    );
    assert_eq!(topic_codes(&mut c, "new", "new").0, 56, "refused again");
    let req = MetadataRequest::default().with_topics(None);
    let md: MetadataResponse = c.call(ApiKey::Metadata, 12, &req);
    let mut names: Vec<String> = md
        .topics
        .iter()
        .filter_map(|t| t.name.as_ref().map(|n| n.to_string()))
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["kept"],
        "a refused CreateTopics leaves no topic behind"
    );
}

/// Issue 17, case 2 (the open-file half): every segment file used to stay open, one fd each,
/// so many small segments (or rolls forced by hostile input) exhausted the process's files and
/// failed unrelated partitions. Now only active segments stay open; sealed ones are opened as
/// reads need them, at most `--segment-files-open-max` per shard, the least recently used
/// closed first.
#[test]
fn open_segment_files_have_a_bound() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let port = harness::free_port();
    let broker = Broker::start_on(&data, 1, port, &["--segment-files-open-max", "8"]);
    let mut c = broker.client();
    let req = CreateTopicsRequest::default().with_topics(vec![CreatableTopic::default()
        .with_name(name("rolls"))
        .with_num_partitions(1)
        .with_replication_factor(1)
        .with_configs(vec![create_topics_request::CreatableTopicConfig::default()
            .with_name(StrBytes::from_static_str("segment.bytes"))
            .with_value(Some(StrBytes::from_static_str("4096")))])]);
    let resp: CreateTopicsResponse = c.call(ApiKey::CreateTopics, 7, &req);
    assert_eq!(resp.topics[0].error_code, 0);
    create_topic(&mut c, "calm", 1);
    fill(&mut c, "rolls", 0, 120, 400); // ~4 KiB a batch: a segment each
    drop(c);
    broker.stop();
    // Restarted, so reads come from the segment files, not the tail cache.
    let broker = Broker::start_on(&data, 1, port, &["--segment-files-open-max", "8"]);
    let mut c = broker.client();
    let part = data.join("rolls-0");
    assert!(
        broker.open_files(&part, ".log") <= 1,
        "only the active segment"
    );
    let segments = std::fs::read_dir(&part)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".log"))
        .count();
    assert!(segments >= 100, "{segments} segments");
    // Read every segment, from the first: each sealed one must be opened to be read.
    let mut offset = 0;
    while offset < 1200 {
        let resp = fetch_from(&mut c, "rolls", offset, 64 << 10);
        let p = &resp.responses[0].partitions[0];
        assert_eq!(p.error_code, 0);
        let records = p.records.clone().unwrap_or_default();
        let size = batch::declared_size(&records).expect("a batch");
        offset = batch::parse_header(&records[..size])
            .unwrap()
            .next_offset()
            .0;
        let open = broker.open_files(&part, ".log");
        assert!(
            open <= 8 + 2,
            "{open} segment files open at offset {offset}"
        );
    }
    well_behaved(&mut c);
}

/// A Fetch v11 of one partition from `offset`.
fn fetch_from(
    c: &mut harness::client::Client,
    topic: &str,
    offset: i64,
    max_bytes: i32,
) -> FetchResponse {
    let req = FetchRequest::default()
        .with_max_wait_ms(0)
        .with_max_bytes(max_bytes)
        .with_topics(vec![FetchTopic::default()
            .with_topic(name(topic))
            .with_partitions(vec![FetchPartition::default()
                .with_partition(0)
                .with_fetch_offset(offset)
                .with_partition_max_bytes(max_bytes)])]);
    c.call(ApiKey::Fetch, 11, &req)
}
