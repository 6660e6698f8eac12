//! Produce (key 0): each partition's records go to the shard that owns the partition, all
//! partitions in parallel, one mesh round trip per owner shard (`kafka::fanout`); the answer
//! waits for the durability `acks` asks for (see `Partition::produce`). acks=0 gets no
//! response at all, as in Kafka.

use std::rc::Rc;
use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{ProduceRequest, ProduceResponse};

use crate::kafka::fanout::{self, PartItem};
use crate::kafka::{compression, errors};
use crate::metadata::TopicMeta;
use crate::shard::Shard;

/// Largest batch, decompressed, that recompression will expand.
const DECOMPRESSED_BYTES_MAX: usize = 64 << 20;

pub async fn handle(s: Rc<Shard>, req: ProduceRequest, _version: i16) -> Option<ProduceResponse> {
    let acks = req.acks;
    let snap = s.metadata();
    let mut shapes = Vec::with_capacity(req.topic_data.len());
    // Per partition entry in request order: its index, and the error it was refused with here.
    let mut checked: Vec<(i32, Option<i16>)> = Vec::new();
    let mut items = Vec::new();
    for t in req.topic_data {
        let topic = snap.topic(&t.name).cloned();
        shapes.push(((t.name, t.topic_id), t.partition_data.len()));
        for pd in t.partition_data {
            match prepare(topic.as_ref(), pd.records, acks) {
                Ok(records) => {
                    checked.push((pd.index, None));
                    items.push(PartItem {
                        topic: topic.clone(),
                        index: pd.index,
                        item: records,
                    });
                }
                Err(code) => checked.push((pd.index, Some(code))),
            }
        }
    }
    let appended = fanout::on_partitions(&s, items, move |p, records| async move {
        p.produce(records, acks)
            .await
            .map_err(|e| errors::produce(&e))
    })
    .await;
    let mut appended = appended.into_iter();
    let parts = checked.into_iter().map(|(index, refused)| {
        let r = match refused {
            Some(code) => Err(code),
            None => appended.next().expect("one answer per item sent"),
        };
        match r {
            Ok(a) => PartitionProduceResponse::default()
                .with_index(index)
                .with_base_offset(a.base_offset.get())
                .with_log_append_time_ms(a.log_append_time.get())
                .with_log_start_offset(a.log_start_offset.get()),
            Err(code) => fail(index, code),
        }
    });
    let responses = fanout::regroup(shapes, parts)
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

fn fail(index: i32, code: i16) -> PartitionProduceResponse {
    PartitionProduceResponse::default()
        .with_index(index)
        .with_error_code(code)
        .with_base_offset(-1)
        .with_log_append_time_ms(-1)
        .with_log_start_offset(-1)
}

/// Checks one partition's part of the request here, on the connection's shard, and
/// recompresses it if the topic has its own compression.type, so the owner's core only
/// appends.
fn prepare(
    topic: Option<&Arc<TopicMeta>>,
    records: Option<Bytes>,
    acks: i16,
) -> Result<Bytes, i16> {
    if !matches!(acks, -1..=1) {
        return Err(errors::INVALID_REQUIRED_ACKS);
    }
    let Some(records) = records.filter(|r| !r.is_empty()) else {
        return Err(errors::CORRUPT_MESSAGE);
    };
    let codec = topic.and_then(|t| compression::target(t.configs.compression()));
    let records = match codec {
        None => records,
        Some(codec) => compression::recompress(records, codec, DECOMPRESSED_BYTES_MAX)
            .map_err(|e| errors::compression(&e))?,
    };
    Ok(records)
}
