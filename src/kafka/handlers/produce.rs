//! Produce (key 0): each partition's records go to the shard that owns the partition, all
//! partitions in parallel; the answer waits for the durability `acks` asks for (see
//! `Partition::produce`). acks=0 gets no response at all, as in Kafka.

use std::rc::Rc;
use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{ProduceRequest, ProduceResponse};

use super::{on_partition, per_partition};
use crate::kafka::{compression, errors};
use crate::metadata::TopicMeta;
use crate::shard::Shard;

/// Largest batch, decompressed, that recompression will expand.
const DECOMPRESSED_BYTES_MAX: usize = 64 << 20;

pub async fn handle(s: Rc<Shard>, req: ProduceRequest, _version: i16) -> Option<ProduceResponse> {
    let acks = req.acks;
    let snap = s.metadata();
    let topics = req
        .topic_data
        .into_iter()
        .map(|t| ((t.name, t.topic_id), t.partition_data))
        .collect();
    let results = per_partition(topics, |(name, _), pd| {
        produce_one(
            s.clone(),
            snap.topic(name).cloned(),
            pd.index,
            pd.records,
            acks,
        )
    })
    .await;
    let responses = results
        .into_iter()
        .map(|((name, id), parts)| {
            TopicProduceResponse::default()
                .with_name(name)
                .with_topic_id(id)
                .with_partition_responses(parts)
        })
        .collect();
    (acks != 0).then(|| ProduceResponse::default().with_responses(responses))
}

async fn produce_one(
    s: Rc<Shard>,
    topic: Option<Arc<TopicMeta>>,
    index: i32,
    records: Option<Bytes>,
    acks: i16,
) -> PartitionProduceResponse {
    let fail = |code| {
        PartitionProduceResponse::default()
            .with_index(index)
            .with_error_code(code)
            .with_base_offset(-1)
            .with_log_append_time_ms(-1)
            .with_log_start_offset(-1)
    };
    if !matches!(acks, -1..=1) {
        return fail(errors::INVALID_REQUIRED_ACKS);
    }
    let Some(records) = records.filter(|r| !r.is_empty()) else {
        return fail(errors::CORRUPT_MESSAGE);
    };
    // A topic with its own compression.type gets every batch in that codec (here, on the
    // connection's shard, so the owner's core only appends).
    let codec = topic
        .as_ref()
        .and_then(|t| compression::target(t.configs.compression()));
    let records = match codec {
        None => records,
        Some(codec) => match compression::recompress(records, codec, DECOMPRESSED_BYTES_MAX) {
            Ok(r) => r,
            Err(e) => return fail(errors::compression(&e)),
        },
    };
    let r = on_partition(&s, topic.as_ref(), index, move |p| async move {
        p.produce(records, acks)
            .await
            .map_err(|e| errors::produce(&e))
    })
    .await;
    match r {
        Ok(a) => PartitionProduceResponse::default()
            .with_index(index)
            .with_base_offset(a.base_offset.get())
            .with_log_append_time_ms(a.log_append_time.get())
            .with_log_start_offset(a.log_start_offset.get()),
        Err(code) => fail(code),
    }
}
