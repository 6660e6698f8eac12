//! Produce (key 0): each partition's records go to the shard that owns the partition, all
//! partitions in parallel; the answer waits for the durability `acks` asks for (see
//! `Partition::produce`). acks=0 gets no response at all, as in Kafka.

use std::rc::Rc;
use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{ProduceRequest, ProduceResponse};

use super::join_all;
use crate::kafka::{compression, errors};
use crate::metadata::TopicMeta;
use crate::shard::Shard;

/// Largest batch, decompressed, that recompression will expand.
const DECOMPRESSED_BYTES_MAX: usize = 64 << 20;

pub async fn handle(s: Rc<Shard>, req: ProduceRequest, _version: i16) -> Option<ProduceResponse> {
    let acks = req.acks;
    let snap = s.metadata();
    let mut shapes = Vec::with_capacity(req.topic_data.len());
    let mut futs = Vec::new();
    for td in req.topic_data {
        let topic = snap.topic(&td.name.0).cloned();
        shapes.push((td.name, td.topic_id, td.partition_data.len()));
        for pd in td.partition_data {
            futs.push(produce_one(
                s.clone(),
                topic.clone(),
                pd.index,
                pd.records,
                acks,
            ));
        }
    }
    let mut results = join_all(futs).await.into_iter();
    let responses = shapes
        .into_iter()
        .map(|(name, id, n)| {
            TopicProduceResponse::default()
                .with_name(name)
                .with_topic_id(id)
                .with_partition_responses(results.by_ref().take(n).collect())
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
    let Some(topic) = topic.filter(|t| index >= 0 && index < t.partitions) else {
        return fail(errors::UNKNOWN_TOPIC_OR_PARTITION);
    };
    let Some(records) = records.filter(|r| !r.is_empty()) else {
        return fail(errors::CORRUPT_MESSAGE);
    };
    // A topic with its own compression.type gets every batch in that codec (here, on the
    // connection's shard, so the owner's core only appends).
    let records = match compression::target(topic.configs.compression()) {
        None => records,
        Some(codec) => match compression::recompress(records, codec, DECOMPRESSED_BYTES_MAX) {
            Ok(r) => r,
            Err(e) => return fail(errors::compression(&e)),
        },
    };
    let id = topic.id;
    let owner = s.owner_of(&id, index);
    let r = s
        .on(owner, move |s| async move {
            let p = s
                .partition(&id, index)
                .ok_or(errors::UNKNOWN_TOPIC_OR_PARTITION)?;
            p.produce(records, acks)
                .await
                .map_err(|e| errors::storage(&e))
        })
        .await;
    match r {
        Ok(Ok(a)) => PartitionProduceResponse::default()
            .with_index(index)
            .with_base_offset(a.base_offset.get())
            .with_log_append_time_ms(a.log_append_time.get())
            .with_log_start_offset(a.log_start_offset.get()),
        Ok(Err(code)) => fail(code),
        Err(gone) => fail(errors::shard_gone(&gone)),
    }
}
