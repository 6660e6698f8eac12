//! librdkafka settings for the run's producers, consumers and admin client, built from the
//! workload in one place so every client of a run is configured the same way and the settings
//! that matter for a benchmark (acks, compression, linger, batch size, bounded queues) are
//! visible here rather than scattered over the client code. Workload `producer_config` and
//! `consumer_config` entries are applied last and win.

use rdkafka::ClientConfig;

use crate::workload::Workload;

/// librdkafka's local send queue per producer, KiB (its default is 1 GiB): bounded so a
/// max-rate run against a slow broker measures the broker, not the benchmark's memory.
pub const PRODUCER_QUEUE_KIB_MAX: u64 = 64 * 1024;

/// Messages librdkafka may buffer per producer (its default).
pub const PRODUCER_QUEUE_MSGS_MAX: u64 = 100_000;

/// librdkafka's prefetch queue per consumer, KiB (its default, stated so the bound is visible).
pub const CONSUMER_QUEUE_KIB_MAX: u64 = 64 * 1024;

fn base(bootstrap: &str, client_id: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", bootstrap)
        .set("client.id", client_id)
        // Loopback and test brokers: do not wait for a DNS answer or an IPv6 fallback.
        .set("broker.address.family", "v4");
    c
}

pub fn admin(bootstrap: &str) -> ClientConfig {
    base(bootstrap, "shardlog-bench-admin")
}

pub fn producer(bootstrap: &str, w: &Workload, index: usize) -> ClientConfig {
    let mut c = base(bootstrap, &format!("shardlog-bench-producer-{index}"));
    c.set("acks", w.acks.as_config())
        .set("compression.type", w.compression.as_config())
        .set("linger.ms", w.linger_ms.to_string())
        .set("batch.size", w.batch_size_bytes.to_string())
        .set(
            "queue.buffering.max.kbytes",
            PRODUCER_QUEUE_KIB_MAX.to_string(),
        )
        .set(
            "queue.buffering.max.messages",
            PRODUCER_QUEUE_MSGS_MAX.to_string(),
        )
        .set("enable.idempotence", "false");
    for (k, v) in &w.producer_config {
        c.set(k, v);
    }
    c
}

pub fn consumer(bootstrap: &str, w: &Workload, index: usize, group: &str) -> ClientConfig {
    let mut c = base(bootstrap, &format!("shardlog-bench-consumer-{index}"));
    // Partitions are assigned by the tool, not by a group; the id only satisfies librdkafka.
    c.set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .set("auto.offset.reset", "earliest")
        .set(
            "queued.max.messages.kbytes",
            CONSUMER_QUEUE_KIB_MAX.to_string(),
        );
    for (k, v) in &w.consumer_config {
        c.set(k, v);
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workload::Overrides;

    #[test]
    fn workload_settings_reach_the_clients() {
        let w = Workload::parse(
            r#"
            name = "x"
            acks = "all"
            compression = "lz4"
            linger_ms = 0.5
            batch_size_bytes = 65536
            [producer_config]
            "linger.ms" = "7"
            [consumer_config]
            "fetch.wait.max.ms" = "50"
            "#,
            &Overrides::default(),
        )
        .unwrap();
        let p = producer("127.0.0.1:1", &w, 3);
        assert_eq!(p.get("bootstrap.servers"), Some("127.0.0.1:1"));
        assert_eq!(p.get("client.id"), Some("shardlog-bench-producer-3"));
        assert_eq!(p.get("acks"), Some("all"));
        assert_eq!(p.get("compression.type"), Some("lz4"));
        assert_eq!(p.get("batch.size"), Some("65536"));
        assert_eq!(p.get("linger.ms"), Some("7"), "producer_config wins");
        assert_eq!(p.get("queue.buffering.max.kbytes"), Some("65536"));
        let c = consumer("127.0.0.1:1", &w, 0, "g");
        assert_eq!(c.get("group.id"), Some("g"));
        assert_eq!(c.get("enable.partition.eof"), Some("true"));
        assert_eq!(c.get("fetch.wait.max.ms"), Some("50"));
        assert_eq!(c.get("queued.max.messages.kbytes"), Some("65536"));
        // linger.ms takes fractions of a millisecond; whole ones are written without a point.
        for (given, set) in [("0.5", "0.5"), ("2", "2")] {
            let text = format!("name = \"x\"\nlinger_ms = {given}");
            let w = Workload::parse(&text, &Overrides::default()).unwrap();
            assert_eq!(producer("b", &w, 0).get("linger.ms"), Some(set));
        }
    }
}
