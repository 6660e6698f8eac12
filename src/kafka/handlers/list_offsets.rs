//! ListOffsets (key 2): earliest (-2), latest (-1), max timestamp (-3) or the first offset at or
//! after a timestamp, answered by each partition's owning shard. With no transactions the last
//! stable offset equals the high watermark, so both isolation levels get the same answer.

use std::rc::Rc;

use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse};

use super::{on_partition, per_partition};
use crate::kafka::errors;
use crate::shard::Shard;

pub async fn handle(s: Rc<Shard>, req: ListOffsetsRequest) -> Option<ListOffsetsResponse> {
    let snap = s.metadata();
    let topics = req
        .topics
        .into_iter()
        .map(|t| (t.name, t.partitions))
        .collect();
    let results = per_partition(topics, |name, p| {
        let (s, topic) = (s.clone(), snap.topic(name).cloned());
        async move {
            let base = ListOffsetsPartitionResponse::default()
                .with_partition_index(p.partition_index)
                .with_timestamp(-1)
                .with_offset(-1);
            let ts = p.timestamp;
            let r = on_partition(&s, topic.as_ref(), p.partition_index, move |p| async move {
                p.offset_for(ts).await.map_err(|e| errors::storage(&e))
            })
            .await;
            match r {
                Ok(Some((o, t))) => base.with_offset(o.get()).with_timestamp(t.get()),
                Ok(None) => base,
                Err(code) => base.with_error_code(code),
            }
        }
    })
    .await;
    let topics = results
        .into_iter()
        .map(|(name, parts)| {
            ListOffsetsTopicResponse::default()
                .with_name(name)
                .with_partitions(parts)
        })
        .collect();
    Some(ListOffsetsResponse::default().with_topics(topics))
}
