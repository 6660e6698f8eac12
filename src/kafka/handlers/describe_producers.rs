//! DescribeProducers (key 61): per partition, the idempotent producers it tracks (the state
//! that recognises retried batches), asked of each partition's owning shard. shardlog has no
//! transactions, so every producer has coordinator epoch -1 and no open transaction (-1).

use std::rc::Rc;

use kafka_protocol::messages::describe_producers_response::{
    PartitionResponse, ProducerState, TopicResponse,
};
use kafka_protocol::messages::{DescribeProducersRequest, DescribeProducersResponse, ProducerId};

use super::Call;
use crate::kafka::errors::ErrorCode;
use crate::kafka::fanout;
use crate::partition::producers::ProducerSummary;
use crate::shard::{route, Shard};

/// Answers each partition with its producers, or UNKNOWN_TOPIC_OR_PARTITION.
pub async fn handle(
    s: Rc<Shard>,
    req: DescribeProducersRequest,
    _call: &Call<'_>,
) -> Option<DescribeProducersResponse> {
    let snap = s.metadata();
    let flat = fanout::flatten(
        req.topics
            .into_iter()
            .map(|t| (t.name, t.partition_indexes)),
        |name| snap.topic(name).cloned(),
        |index| (index, ()),
    );
    let found = route::on_partitions(&s, flat.items, |p, ()| async move {
        Ok::<_, ErrorCode>(p.producers())
    })
    .await;
    let parts = flat.indexes.into_iter().zip(found).map(|(index, r)| {
        let base = PartitionResponse::default().with_partition_index(index);
        match r {
            Ok(producers) => base.with_active_producers(producers.iter().map(state).collect()),
            Err(code) => base.with_error_code(code.code()),
        }
    });
    let topics = fanout::regroup(flat.shapes, parts)
        .into_iter()
        .map(|(name, partitions)| {
            TopicResponse::default()
                .with_name(name)
                .with_partitions(partitions)
        })
        .collect();
    Some(DescribeProducersResponse::default().with_topics(topics))
}

fn state(p: &ProducerSummary) -> ProducerState {
    ProducerState::default()
        .with_producer_id(ProducerId(p.producer_id))
        .with_producer_epoch(i32::from(p.epoch))
        .with_last_sequence(p.last_sequence)
        .with_last_timestamp(p.last_ms)
        .with_coordinator_epoch(-1)
        .with_current_txn_start_offset(-1)
}
