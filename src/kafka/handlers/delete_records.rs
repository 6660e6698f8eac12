//! DeleteRecords (key 21): moves each partition's log start offset forward (-1 means the high
//! watermark) on its owning shard; whole segments below it are deleted.

use std::rc::Rc;

use kafka_protocol::messages::delete_records_response::{
    DeleteRecordsPartitionResult, DeleteRecordsTopicResult,
};
use kafka_protocol::messages::{DeleteRecordsRequest, DeleteRecordsResponse};

use crate::kafka::errors;
use crate::kafka::fanout::{self, PartItem};
use crate::shard::Shard;
use crate::types::{Offset, TimestampMs};

pub async fn handle(s: Rc<Shard>, req: DeleteRecordsRequest) -> Option<DeleteRecordsResponse> {
    let snap = s.metadata();
    let (mut shapes, mut indexes, mut items) = (Vec::new(), Vec::new(), Vec::new());
    for t in req.topics {
        let topic = snap.topic(&t.name).cloned();
        shapes.push((t.name, t.partitions.len()));
        for p in t.partitions {
            indexes.push(p.partition_index);
            items.push(PartItem {
                topic: topic.clone(),
                index: p.partition_index,
                item: p.offset,
            });
        }
    }
    let moved = fanout::on_partitions(&s, items, |p, offset| async move {
        let to = if offset == -1 {
            p.log.high_watermark()
        } else {
            Offset(offset)
        };
        p.log
            .delete_records(to, TimestampMs::now())
            .await
            .map_err(|e| errors::storage(&e))
    })
    .await;
    let parts = indexes.into_iter().zip(moved).map(|(index, r)| {
        let base = DeleteRecordsPartitionResult::default()
            .with_partition_index(index)
            .with_low_watermark(-1);
        match r {
            Ok(low) => base.with_low_watermark(low.get()),
            Err(code) => base.with_error_code(code),
        }
    });
    let topics = fanout::regroup(shapes, parts)
        .into_iter()
        .map(|(name, parts)| {
            DeleteRecordsTopicResult::default()
                .with_name(name)
                .with_partitions(parts)
        })
        .collect();
    Some(DeleteRecordsResponse::default().with_topics(topics))
}
