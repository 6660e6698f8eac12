//! DeleteRecords (key 21): moves each partition's log start offset forward (-1 means the high
//! watermark) on its owning shard; whole segments below it are deleted.

use std::rc::Rc;

use kafka_protocol::messages::delete_records_response::{
    DeleteRecordsPartitionResult, DeleteRecordsTopicResult,
};
use kafka_protocol::messages::{DeleteRecordsRequest, DeleteRecordsResponse};

use super::{on_partition, per_partition};
use crate::kafka::errors;
use crate::shard::Shard;
use crate::types::{Offset, TimestampMs};

pub async fn handle(s: Rc<Shard>, req: DeleteRecordsRequest) -> Option<DeleteRecordsResponse> {
    let snap = s.metadata();
    let topics = req
        .topics
        .into_iter()
        .map(|t| (t.name, t.partitions))
        .collect();
    let results = per_partition(topics, |name, p| {
        let (s, topic) = (s.clone(), snap.topic(name).cloned());
        async move {
            let base = DeleteRecordsPartitionResult::default()
                .with_partition_index(p.partition_index)
                .with_low_watermark(-1);
            let offset = p.offset;
            let r = on_partition(&s, topic.as_ref(), p.partition_index, move |p| async move {
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
            match r {
                Ok(low) => base.with_low_watermark(low.get()),
                Err(code) => base.with_error_code(code),
            }
        }
    })
    .await;
    let topics = results
        .into_iter()
        .map(|(name, parts)| {
            DeleteRecordsTopicResult::default()
                .with_name(name)
                .with_partitions(parts)
        })
        .collect();
    Some(DeleteRecordsResponse::default().with_topics(topics))
}
