//! One file per Kafka API key. A handler takes the decoded request (and the shard it runs on),
//! does its work — locally or on the owning shards through `Shard::on` — and returns the
//! response to encode (None: send nothing, as for acks=0 produce).

pub mod alter_configs;
pub mod api_versions;
pub mod create_partitions;
pub mod create_topics;
pub mod delete_records;
pub mod delete_topics;
pub mod describe_cluster;
pub mod describe_configs;
pub mod fetch;
pub mod incremental_alter_configs;
pub mod list_offsets;
pub mod metadata;
pub mod produce;

use std::future::Future;

use kafka_protocol::messages::TopicName;
use kafka_protocol::protocol::StrBytes;

use crate::runtime;

/// Runs the futures concurrently on this shard and returns their outputs in order.
pub async fn join_all<T: 'static, F>(futs: impl IntoIterator<Item = F>) -> Vec<T>
where
    F: Future<Output = T> + 'static,
{
    let tasks: Vec<runtime::Task<T>> = futs.into_iter().map(runtime::spawn).collect();
    let mut out = Vec::with_capacity(tasks.len());
    for t in tasks {
        out.push(t.await);
    }
    out
}

pub fn topic_name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.to_string()))
}

pub fn str_bytes(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}
