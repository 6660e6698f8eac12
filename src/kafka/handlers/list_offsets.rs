//! ListOffsets (key 2): earliest (-2), latest (-1), max timestamp (-3) or the first offset at or
//! after a timestamp, answered by each partition's owning shard. With no transactions the last
//! stable offset equals the high watermark, so both isolation levels get the same answer.

use std::rc::Rc;

use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse};

use super::join_all;
use crate::kafka::errors;
use crate::shard::Shard;

pub async fn handle(s: Rc<Shard>, req: ListOffsetsRequest) -> Option<ListOffsetsResponse> {
    let snap = s.metadata();
    let mut shapes = Vec::new();
    let mut futs = Vec::new();
    for t in req.topics {
        let topic = snap.topic(&t.name.0).cloned();
        shapes.push((t.name, t.partitions.len()));
        for p in t.partitions {
            let (s, topic) = (s.clone(), topic.clone());
            futs.push(async move {
                let base = ListOffsetsPartitionResponse::default()
                    .with_partition_index(p.partition_index)
                    .with_timestamp(-1)
                    .with_offset(-1);
                let Some(topic) =
                    topic.filter(|t| p.partition_index >= 0 && p.partition_index < t.partitions)
                else {
                    return base.with_error_code(errors::UNKNOWN_TOPIC_OR_PARTITION);
                };
                let (id, index, ts) = (topic.id, p.partition_index, p.timestamp);
                let r = s
                    .on(s.owner_of(&id, index), move |s| async move {
                        let p = s
                            .partition(&id, index)
                            .ok_or(errors::UNKNOWN_TOPIC_OR_PARTITION)?;
                        p.offset_for(ts).await.map_err(|e| errors::storage(&e))
                    })
                    .await
                    .unwrap_or_else(|g| Err(errors::shard_gone(&g)));
                match r {
                    Ok(Some((o, t))) => base.with_offset(o.get()).with_timestamp(t.get()),
                    Ok(None) => base,
                    Err(code) => base.with_error_code(code),
                }
            });
        }
    }
    let mut results = join_all(futs).await.into_iter();
    let topics = shapes
        .into_iter()
        .map(|(name, n)| {
            ListOffsetsTopicResponse::default()
                .with_name(name)
                .with_partitions(results.by_ref().take(n).collect())
        })
        .collect();
    Some(ListOffsetsResponse::default().with_topics(topics))
}
