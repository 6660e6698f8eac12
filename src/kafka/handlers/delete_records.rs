//! DeleteRecords (key 21): moves each partition's log start offset forward (-1 means the high
//! watermark) on its owning shard; whole segments below it are deleted.

use std::rc::Rc;

use kafka_protocol::messages::delete_records_response::{
    DeleteRecordsPartitionResult, DeleteRecordsTopicResult,
};
use kafka_protocol::messages::{DeleteRecordsRequest, DeleteRecordsResponse};

use super::join_all;
use crate::kafka::errors;
use crate::shard::Shard;
use crate::types::{Offset, TimestampMs};

pub async fn handle(s: Rc<Shard>, req: DeleteRecordsRequest) -> Option<DeleteRecordsResponse> {
    let snap = s.metadata();
    let mut shapes = Vec::new();
    let mut futs = Vec::new();
    for t in req.topics {
        let topic = snap.topic(&t.name.0).cloned();
        shapes.push((t.name, t.partitions.len()));
        for p in t.partitions {
            let (s, topic) = (s.clone(), topic.clone());
            futs.push(async move {
                let base = DeleteRecordsPartitionResult::default()
                    .with_partition_index(p.partition_index)
                    .with_low_watermark(-1);
                let Some(topic) =
                    topic.filter(|t| p.partition_index >= 0 && p.partition_index < t.partitions)
                else {
                    return base.with_error_code(errors::UNKNOWN_TOPIC_OR_PARTITION);
                };
                let (id, index, offset) = (topic.id, p.partition_index, p.offset);
                let r = s
                    .on(s.owner_of(&id, index), move |s| async move {
                        let p = s
                            .partition(&id, index)
                            .ok_or(errors::UNKNOWN_TOPIC_OR_PARTITION)?;
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
                    .await
                    .unwrap_or_else(|g| Err(errors::shard_gone(&g)));
                match r {
                    Ok(low) => base.with_low_watermark(low.get()),
                    Err(code) => base.with_error_code(code),
                }
            });
        }
    }
    let mut results = join_all(futs).await.into_iter();
    let topics = shapes
        .into_iter()
        .map(|(name, n)| {
            DeleteRecordsTopicResult::default()
                .with_name(name)
                .with_partitions(results.by_ref().take(n).collect())
        })
        .collect();
    Some(DeleteRecordsResponse::default().with_topics(topics))
}
