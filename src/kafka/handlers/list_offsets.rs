//! ListOffsets (key 2): earliest (-2), latest (-1), max timestamp (-3) or the first offset at or
//! after a timestamp, answered by each partition's owning shard. For -3 and a timestamp the
//! answer is the exact record inside the batch storage finds, compressed or not
//! (`compression::first_record_at_or_after`). With no transactions the last stable offset
//! equals the high watermark, so both isolation levels get the same answer. The request's
//! `current_leader_epoch` is checked, and each answer carries the leader epoch of the batch
//! that holds its offset (for the latest offset, the current epoch).

use std::rc::Rc;

use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse};

use crate::kafka::errors::{self, ErrorCode};
use crate::kafka::{compression, fanout};
use crate::shard::{route, Shard};

use super::Call;

/// Answers each partition with the offset (and its timestamp) the request's timestamp asks
/// for, -1 when there is none, or its error.
pub async fn handle(
    s: Rc<Shard>,
    req: ListOffsetsRequest,
    call: &Call<'_>,
) -> Option<ListOffsetsResponse> {
    // The leader epoch is a v4+ field: older versions cannot carry anything but its default.
    let with_epoch = call.version >= 4;
    let snap = s.metadata();
    let flat = fanout::flatten(
        req.topics.into_iter().map(|t| (t.name, t.partitions)),
        |name| snap.topic(name).cloned(),
        |p| (p.partition_index, (p.timestamp, p.current_leader_epoch)),
    );
    let found = route::on_partitions(&s, flat.items, |p, (ts, current)| async move {
        p.check_leader(current).map_err(ErrorCode::from)?;
        let found = p
            .offset_for(ts, compression::first_record_at_or_after)
            .await;
        let found = found.map_err(|e| errors::storage(&e))?;
        Ok::<_, ErrorCode>(found.map(|(o, t)| (o, t, p.epoch_at(o).unwrap_or(-1))))
    })
    .await;
    let parts = flat.indexes.into_iter().zip(found).map(|(index, r)| {
        let base = ListOffsetsPartitionResponse::default()
            .with_partition_index(index)
            .with_timestamp(-1)
            .with_offset(-1)
            .with_leader_epoch(-1);
        match r {
            Ok(Some((o, t, epoch))) => base
                .with_offset(o.get())
                .with_timestamp(t.get())
                .with_leader_epoch(if with_epoch { epoch } else { -1 }),
            Ok(None) => base,
            Err(code) => base.with_error_code(code.code()),
        }
    });
    let topics = fanout::regroup(flat.shapes, parts)
        .into_iter()
        .map(|(name, parts)| {
            ListOffsetsTopicResponse::default()
                .with_name(name)
                .with_partitions(parts)
        })
        .collect();
    Some(ListOffsetsResponse::default().with_topics(topics))
}
