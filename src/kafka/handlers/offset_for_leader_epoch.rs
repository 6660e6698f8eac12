//! OffsetForLeaderEpoch (key 23): for each partition, the end offset of a leader epoch the
//! client last saw, so a consumer can tell whether its position is still on the log after a
//! leader change (KIP-101, KIP-320) — answered by the owning shard from the log's epoch
//! boundaries (`storage::epochs`), after the `current_leader_epoch` check. A partition this
//! broker does not lead gets NOT_LEADER_OR_FOLLOWER from the router. Versions 2-4, the ones
//! the protocol crate decodes (librdkafka and the Java client send 2+).

use std::rc::Rc;

use kafka_protocol::messages::offset_for_leader_epoch_response::{
    EpochEndOffset, OffsetForLeaderTopicResult,
};
use kafka_protocol::messages::{OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse};

use crate::kafka::errors::ErrorCode;
use crate::kafka::fanout;
use crate::shard::{route, Shard};

use super::Call;

/// Answers each partition with (epoch, end offset), or its error with -1/-1.
pub async fn handle(
    s: Rc<Shard>,
    req: OffsetForLeaderEpochRequest,
    _call: &Call<'_>,
) -> Option<OffsetForLeaderEpochResponse> {
    let snap = s.metadata();
    let flat = fanout::flatten(
        req.topics.into_iter().map(|t| (t.topic, t.partitions)),
        |name| snap.topic(name).cloned(),
        |p| (p.partition, (p.current_leader_epoch, p.leader_epoch)),
    );
    let found = route::on_partitions(&s, flat.items, |p, (current, requested)| async move {
        p.check_leader(current).map_err(ErrorCode::from)?;
        Ok::<_, ErrorCode>(p.end_offset_for_epoch(requested))
    })
    .await;
    let parts = flat.indexes.into_iter().zip(found).map(|(index, r)| {
        let base = EpochEndOffset::default().with_partition(index);
        match r {
            Ok((epoch, end)) => base.with_leader_epoch(epoch).with_end_offset(end),
            Err(code) => base
                .with_error_code(code.code())
                .with_leader_epoch(-1)
                .with_end_offset(-1),
        }
    });
    let topics = fanout::regroup(flat.shapes, parts)
        .into_iter()
        .map(|(topic, partitions)| {
            OffsetForLeaderTopicResult::default()
                .with_topic(topic)
                .with_partitions(partitions)
        })
        .collect();
    Some(OffsetForLeaderEpochResponse::default().with_topics(topics))
}
