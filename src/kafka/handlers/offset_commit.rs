//! OffsetCommit (API 8): stores consumers' positions on the group's shard. Partitions of
//! unknown topics are refused here; the rest go to the coordinator, which answers once the
//! offsets are written to its group log.

use std::rc::Rc;

use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::{OffsetCommitRequest, OffsetCommitResponse};

use super::Call;
use super::{on_group, partition_exists, topic_name};
use crate::group::{CommitRequest, GroupError, MemberRef, OffsetToCommit};
use crate::kafka::errors;
use crate::shard::Shard;
use crate::types::{DurationMs, Offset};

/// Answers each partition with its commit's error code, once the offsets are in the group log.
pub async fn handle(
    s: Rc<Shard>,
    r: OffsetCommitRequest,
    call: &Call<'_>,
) -> Option<OffsetCommitResponse> {
    let version = call.version;
    let group = r.group_id.0.to_string();
    // Request order, with Some(error) for partitions refused before the coordinator.
    let mut order: Vec<(String, i32, Option<GroupError>)> = Vec::new();
    let mut offsets = Vec::new();
    for t in &r.topics {
        let topic = t.name.0.to_string();
        for p in &t.partitions {
            let i = p.partition_index;
            if !partition_exists(&s, &topic, i) {
                order.push((topic.clone(), i, Some(GroupError::UnknownTopicOrPartition)));
                continue;
            }
            order.push((topic.clone(), i, None));
            offsets.push(OffsetToCommit {
                topic: topic.clone(),
                partition: i,
                offset: Offset(p.committed_offset),
                leader_epoch: p.committed_leader_epoch,
                metadata: p.committed_metadata.as_ref().map(|m| m.to_string()),
            });
        }
    }
    let req = CommitRequest {
        group: group.clone(),
        member: MemberRef {
            member_id: r.member_id.to_string(),
            instance_id: r.group_instance_id.map(|i| i.to_string()),
            generation: r.generation_id_or_member_epoch,
        },
        retention_ms: (version <= 4 && r.retention_time_ms != -1)
            .then_some(DurationMs(r.retention_time_ms)),
        group_id_not_found: version >= 9,
        offsets,
    };
    let n = req.offsets.len();
    let results = if n == 0 {
        Vec::new()
    } else {
        on_group(&s, &group, move |c| async move { c.commit(req).await })
            .await
            .unwrap_or_else(|e| vec![Err(e); n])
    };
    Some(OffsetCommitResponse::default().with_topics(response_topics(order, results)))
}

fn response_topics(
    order: Vec<(String, i32, Option<GroupError>)>,
    results: Vec<Result<(), GroupError>>,
) -> Vec<OffsetCommitResponseTopic> {
    let mut results = results.into_iter();
    let mut topics: Vec<OffsetCommitResponseTopic> = Vec::new();
    for (topic, partition, refused) in order {
        let outcome = match refused {
            Some(e) => Err(e),
            None => results
                .next()
                .unwrap_or(Err(GroupError::CoordinatorNotAvailable)),
        };
        let part = OffsetCommitResponsePartition::default()
            .with_partition_index(partition)
            .with_error_code(errors::group_result(&outcome).code());
        match topics.last_mut() {
            Some(t) if t.name.0.as_str() == topic => t.partitions.push(part),
            _ => topics.push(
                OffsetCommitResponseTopic::default()
                    .with_name(topic_name(&topic))
                    .with_partitions(vec![part]),
            ),
        }
    }
    topics
}
