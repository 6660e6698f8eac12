//! Real Kafka clients against the real broker: kcat (Debian's librdkafka) keeping keys in their
//! partitions, and kafkajs running the seed walkthrough code. Codecs, headers, tombstones and the
//! rest of what each client can do are cells of the compatibility matrix (compat_matrix.rs).
//! tests/setup-clients.sh (run by tests/run-all.sh) installs them; a missing client fails the
//! test (nothing is skipped).

mod harness;

use std::collections::HashMap;
use std::process::Command;

use harness::{clients_dir, run, stdout, Broker};

fn python(script: &str) -> Command {
    let mut c = Command::new("python3");
    c.arg(clients_dir().join("python").join(script));
    c
}

#[test]
fn kcat_produces_and_consumes_keyed_messages() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start_on(
        &dir.path().join("data"),
        2,
        harness::free_port(),
        &["--num-partitions", "3"],
    );
    let input: String = (0..60)
        .map(|i| format!("key{}:value{i}\n", i % 6))
        .collect();
    let mut produce = Command::new("kcat");
    produce.args([
        "-b",
        &broker.addr(),
        "-P",
        "-t",
        "kc",
        "-K:",
        "-X",
        "acks=all",
    ]);
    let child = std::process::Command::new("timeout")
        .args(["60"])
        .arg("kcat")
        .args(produce.get_args())
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .as_ref()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "kcat produce");
    let out = run(
        Command::new("kcat").args([
            "-b",
            &broker.addr(),
            "-C",
            "-t",
            "kc",
            "-e",
            "-q",
            "-f",
            "%p %o %k %s\n",
        ]),
        60,
    );
    let mut per_partition: HashMap<String, Vec<u64>> = HashMap::new();
    let mut key_partition: HashMap<String, String> = HashMap::new();
    let lines = stdout(&out);
    for line in lines.lines() {
        let f: Vec<&str> = line.split(' ').collect();
        per_partition
            .entry(f[0].into())
            .or_default()
            .push(f[1].parse().unwrap());
        let p = key_partition
            .entry(f[2].into())
            .or_insert_with(|| f[0].into());
        assert_eq!(p, f[0], "a key always lands in one partition");
    }
    assert_eq!(lines.lines().count(), 60);
    for offsets in per_partition.values() {
        assert!(
            offsets.windows(2).all(|w| w[1] == w[0] + 1),
            "dense, in order"
        );
    }
}

#[test]
fn kafkajs_seed_walkthrough_creates_topic_and_produces_keyed_events() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(&dir.path().join("data"), 2);
    let seed = |file: &str| harness::node(&format!("seeds/{file}"), &broker.addr());
    assert!(stdout(&run(&mut seed("kafka-topic.js"), 60)).contains("Topic created!"));
    assert!(stdout(&run(&mut seed("kafka-producer.js"), 60)).contains("Message sent!"));
    run(
        harness::node("keyed-producer.js", &broker.addr()).args(["user-events", "300"]),
        60,
    );
    // Read back with a different client: every key stays in one partition, in send order.
    let out = run(
        python("read_all.py").args([&broker.addr(), "user-events"]),
        60,
    );
    let mut partitions: HashMap<String, i64> = HashMap::new();
    let mut seqs: HashMap<String, Vec<i64>> = HashMap::new();
    let mut count = 0;
    for line in stdout(&out).lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let (part, key, value) = (
            v[0].as_i64().unwrap(),
            v[2].as_str().unwrap(),
            v[3].as_str().unwrap(),
        );
        assert_eq!(
            *partitions.entry(key.into()).or_insert(part),
            part,
            "key {key} in one partition"
        );
        let value: serde_json::Value = serde_json::from_str(value).unwrap();
        if let Some(seq) = value["seq"].as_i64() {
            seqs.entry(key.into()).or_default().push(seq);
        }
        count += 1;
    }
    assert_eq!(count, 301, "the seed's event plus 300 keyed events");
    let distinct: std::collections::HashSet<_> = partitions.values().collect();
    assert!(distinct.len() > 1, "keys spread over partitions");
    for (key, s) in seqs {
        assert_eq!(s, (1..=30).collect::<Vec<_>>(), "{key} in order");
    }
}

/// kcat's values for `kcat_reads_back_a_topic_from_disk_after_a_restart`: numbered, 2 KiB.
fn numbered_values(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| format!("{i:08}-{}", "abcdefghij".repeat(200)))
        .collect()
}

/// Reads topic `t` partition 0 from the beginning to its end with kcat: (offset, value) lines.
fn kcat_consume_all(addr: &str) -> Vec<(u64, String)> {
    let out = run(
        Command::new("kcat").args([
            "-b",
            addr,
            "-C",
            "-t",
            "disk",
            "-p",
            "0",
            "-o",
            "beginning",
            "-e",
            "-q",
            "-f",
            "%o %s\n",
        ]),
        120,
    );
    assert!(out.status.success(), "kcat consume");
    stdout(&out)
        .lines()
        .map(|l| {
            let (o, v) = l.split_once(' ').expect("offset and value");
            (o.parse().unwrap(), v.to_string())
        })
        .collect()
}

#[test]
fn kcat_reads_back_a_topic_from_disk_after_a_restart() {
    // 40 MB over five 8 MiB segments: after a clean restart nothing is in memory, so the
    // consumer is served by demand reads and read-ahead across segment ends; then again with
    // a read cache smaller than one read-ahead window, where extents are evicted before use.
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let broker = Broker::start_on(&data, 2, harness::free_port(), &[]);
    let create = run(
        Command::new(env!("CARGO_BIN_EXE_shardlog")).args([
            "topics",
            "create",
            "disk",
            "--partitions",
            "1",
            "--config",
            "segment.bytes=8388608",
            "--bootstrap-server",
            &broker.addr(),
        ]),
        30,
    );
    assert!(create.status.success(), "create topic");
    let values = numbered_values(20_000);
    let mut child = Command::new("timeout")
        .args([
            "120",
            "kcat",
            "-b",
            &broker.addr(),
            "-P",
            "-t",
            "disk",
            "-p",
            "0",
        ])
        .args(["-X", "acks=all", "-X", "linger.ms=5"])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        for v in &values {
            writeln!(stdin, "{v}").unwrap();
        }
    }
    assert!(child.wait().unwrap().success(), "kcat produce");
    let (data, port) = broker.stop();
    for extra in [&[][..], &["--read-cache-bytes", "3000000"][..]] {
        let broker = Broker::start_on(&data, 2, port, extra);
        let got = kcat_consume_all(&broker.addr());
        assert_eq!(got.len(), values.len(), "every record once ({extra:?})");
        for (i, ((offset, value), want)) in got.iter().zip(&values).enumerate() {
            assert_eq!(*offset, i as u64, "dense offsets in order ({extra:?})");
            assert_eq!(value, want, "the value at offset {i} ({extra:?})");
        }
        broker.stop();
    }
}

/// Kafka's acks=all rule with real producers: a topic whose min.insync.replicas (2) exceeds
/// its in-sync replicas (1) refuses acks=all with NOT_ENOUGH_REPLICAS and appends nothing,
/// while acks=1 and a topic with the default are served.
#[test]
fn acks_all_is_refused_below_min_insync_replicas() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(&dir.path().join("data"), 2);
    let out = run(python("min_insync.py").arg(broker.addr()), 120);
    let lines: Vec<serde_json::Value> = stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 8, "{lines:?}");
    for v in &lines {
        let refused = v["topic"] == "strict" && v["acks"] == -1;
        let error = v["error"].as_str();
        match (refused, v["client"].as_str().unwrap()) {
            (false, _) => assert_eq!(error, None, "{v}"),
            (true, "kafka-python") => assert_eq!(error, Some("NotEnoughReplicasError"), "{v}"),
            (true, _) => assert_eq!(error, Some("NOT_ENOUGH_REPLICAS"), "{v}"),
        }
    }
    // Nothing of the refused produces was appended: `strict` holds the two acks=1 records.
    let out = run(python("read_all.py").args([&broker.addr(), "strict"]), 60);
    assert_eq!(stdout(&out).lines().count(), 2);
}
