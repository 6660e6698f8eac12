//! OffsetDelete (API 47): deletes a group's committed offsets of topics it does not consume.

use std::rc::Rc;

use kafka_protocol::messages::offset_delete_response::{
    OffsetDeleteResponsePartition, OffsetDeleteResponseTopic,
};
use kafka_protocol::messages::{OffsetDeleteRequest, OffsetDeleteResponse};

use super::Call;
use super::{on_group, partition_exists, topic_name};
use crate::group::{GroupError, TopicPartitions};
use crate::kafka::errors;
use crate::shard::Shard;

/// Deletes the group's offsets of the named partitions; answers each with its error code.
pub async fn handle(
    s: Rc<Shard>,
    r: OffsetDeleteRequest,
    _call: &Call<'_>,
) -> Option<OffsetDeleteResponse> {
    let group = r.group_id.0.to_string();
    let mut unknown: Vec<(String, i32)> = Vec::new();
    let mut known: TopicPartitions = Vec::new();
    for t in &r.topics {
        let name = t.name.0.to_string();
        let mut parts = Vec::new();
        for p in &t.partitions {
            if partition_exists(&s, &name, p.partition_index) {
                parts.push(p.partition_index);
            } else {
                unknown.push((name.clone(), p.partition_index));
            }
        }
        if !parts.is_empty() {
            known.push((name, parts));
        }
    }
    let g = group.clone();
    let result = on_group(&s, &group, move |c| async move {
        c.delete_offsets(&g, known).await
    })
    .await
    .and_then(|r| r);
    let resp = OffsetDeleteResponse::default();
    let mut results = match result {
        Err(e) => return Some(resp.with_error_code(errors::group(&e).code())),
        Ok(r) => r,
    };
    for (t, p) in unknown {
        results.push((t, vec![(p, Err(GroupError::UnknownTopicOrPartition))]));
    }
    let topics = results
        .into_iter()
        .map(|(t, parts)| {
            OffsetDeleteResponseTopic::default()
                .with_name(topic_name(&t))
                .with_partitions(
                    parts
                        .into_iter()
                        .map(|(p, r)| {
                            OffsetDeleteResponsePartition::default()
                                .with_partition_index(p)
                                .with_error_code(errors::group_result(&r).code())
                        })
                        .collect(),
                )
        })
        .collect();
    Some(resp.with_topics(topics))
}
