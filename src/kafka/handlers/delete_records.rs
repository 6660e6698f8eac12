//! DeleteRecords (key 21): moves each partition's log start offset forward (-1 means the high
//! watermark) on its owning shard; whole segments below it are deleted.

use std::rc::Rc;

use kafka_protocol::messages::delete_records_response::{
    DeleteRecordsPartitionResult, DeleteRecordsTopicResult,
};
use kafka_protocol::messages::{DeleteRecordsRequest, DeleteRecordsResponse};

use crate::kafka::errors::{self, ErrorCode};
use crate::kafka::fanout;
use crate::shard::{route, Shard};
use crate::types::{Offset, TimestampMs};

use super::Call;

/// Moves each partition's log start; answers each with its new low watermark, or its error.
pub async fn handle(
    s: Rc<Shard>,
    req: DeleteRecordsRequest,
    _call: &Call<'_>,
) -> Option<DeleteRecordsResponse> {
    let snap = s.metadata();
    let flat = fanout::flatten(
        req.topics.into_iter().map(|t| (t.name, t.partitions)),
        |name| snap.topic(name).cloned(),
        |p| (p.partition_index, p.offset),
    );
    let moved = route::on_partitions(&s, flat.items, |p, offset| async move {
        if p.topic.name == crate::group::OFFSETS_TOPIC {
            return Err(errors::INVALID_TOPIC); // the groups' history is the brokers' to trim
        }
        p.check_leader(-1).map_err(ErrorCode::from)?;
        let to = if offset == -1 {
            p.high_watermark()
        } else {
            Offset(offset)
        };
        p.delete_records(to, TimestampMs::now())
            .await
            .map_err(|e| errors::storage(&e))
    })
    .await;
    let parts = flat.indexes.into_iter().zip(moved).map(|(index, r)| {
        let base = DeleteRecordsPartitionResult::default()
            .with_partition_index(index)
            .with_low_watermark(-1);
        match r {
            Ok(low) => base.with_low_watermark(low.get()),
            Err(code) => base.with_error_code(code.code()),
        }
    });
    let topics = fanout::regroup(flat.shapes, parts)
        .into_iter()
        .map(|(name, parts)| {
            DeleteRecordsTopicResult::default()
                .with_name(name)
                .with_partitions(parts)
        })
        .collect();
    Some(DeleteRecordsResponse::default().with_topics(topics))
}
