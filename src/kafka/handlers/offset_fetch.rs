//! OffsetFetch (API 9): committed offsets of a group (v1-7) or of several groups (v8+, each
//! asked of its own shard). Partitions with nothing committed answer offset -1.

use std::rc::Rc;

use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
    OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};
use kafka_protocol::messages::{OffsetFetchRequest, OffsetFetchResponse};

use super::Call;
use super::{group_id, join_all, on_group, str_bytes, topic_name};
use crate::group::{CommittedOffsets, TopicPartitions};
use crate::kafka::errors::{self, ErrorCode};
use crate::shard::Shard;

/// Answers with each group's committed offsets (-1 where none), of the named partitions or all.
pub async fn handle(
    s: Rc<Shard>,
    r: OffsetFetchRequest,
    call: &Call<'_>,
) -> Option<OffsetFetchResponse> {
    let version = call.version;
    if version >= 8 {
        let futs = r.groups.into_iter().map(|g| {
            let s = s.clone();
            let topics = g.topics.map(|ts| {
                ts.into_iter()
                    .map(|t| (t.name.0.to_string(), t.partition_indexes))
                    .collect()
            });
            let id = g.group_id.0.to_string();
            async move { (id.clone(), fetch(&s, id, topics).await) }
        });
        let groups = join_all(futs)
            .await
            .into_iter()
            .map(|(id, result)| group_v8(id, result))
            .collect();
        return Some(OffsetFetchResponse::default().with_groups(groups));
    }
    let topics = r.topics.map(|ts| {
        ts.into_iter()
            .map(|t| (t.name.0.to_string(), t.partition_indexes))
            .collect()
    });
    let result = fetch(&s, r.group_id.0.to_string(), topics).await;
    Some(response_v1_7(result, version))
}

async fn fetch(
    s: &Shard,
    group: String,
    topics: Option<TopicPartitions>,
) -> Result<CommittedOffsets, ErrorCode> {
    let g = group.clone();
    on_group(
        s,
        &group,
        move |c| async move { c.fetch_offsets(&g, topics) },
    )
    .await
    .map_err(|e| errors::group(&e))
}

fn response_v1_7(result: Result<CommittedOffsets, ErrorCode>, version: i16) -> OffsetFetchResponse {
    let (fetched, error) = split(result);
    let topics = shape(fetched, |t, parts| {
        let parts = parts
            .into_iter()
            .map(|(p, offset, epoch, meta)| {
                let part = OffsetFetchResponsePartition::default()
                    .with_partition_index(p)
                    .with_committed_offset(offset)
                    .with_metadata(Some(str_bytes(&meta)));
                if version >= 5 {
                    part.with_committed_leader_epoch(epoch)
                } else {
                    part
                }
            })
            .collect();
        OffsetFetchResponseTopic::default()
            .with_name(topic_name(t))
            .with_partitions(parts)
    });
    let resp = OffsetFetchResponse::default().with_topics(topics);
    if version >= 2 {
        resp.with_error_code(error.code())
    } else {
        resp
    }
}

fn group_v8(id: String, result: Result<CommittedOffsets, ErrorCode>) -> OffsetFetchResponseGroup {
    let (fetched, error) = split(result);
    let topics = shape(fetched, |t, parts| {
        let parts = parts
            .into_iter()
            .map(|(p, offset, epoch, meta)| {
                OffsetFetchResponsePartitions::default()
                    .with_partition_index(p)
                    .with_committed_offset(offset)
                    .with_committed_leader_epoch(epoch)
                    .with_metadata(Some(str_bytes(&meta)))
            })
            .collect();
        OffsetFetchResponseTopics::default()
            .with_name(topic_name(t))
            .with_partitions(parts)
    });
    OffsetFetchResponseGroup::default()
        .with_group_id(group_id(&id))
        .with_topics(topics)
        .with_error_code(error.code())
}

/// The offsets and the group-level error code of a fetch.
fn split(result: Result<CommittedOffsets, ErrorCode>) -> (CommittedOffsets, ErrorCode) {
    match result {
        Ok(f) => (f, errors::NONE),
        Err(e) => (Vec::new(), e),
    }
}

/// Builds each topic of a response (the v1-7 and v8+ shapes differ only in their types) from
/// (partition, offset, leader epoch, metadata); nothing committed is -1, -1, "".
fn shape<T>(
    fetched: CommittedOffsets,
    topic: impl Fn(&str, Vec<(i32, i64, i32, String)>) -> T,
) -> Vec<T> {
    fetched
        .into_iter()
        .map(|(t, parts)| {
            let parts = parts
                .into_iter()
                .map(|(p, c)| match c {
                    Some(c) => (p, c.offset.get(), c.leader_epoch, c.metadata),
                    None => (p, -1, -1, String::new()),
                })
                .collect();
            topic(&t, parts)
        })
        .collect()
}
