//! ListPartitionReassignments (key 46): the partition reassignments in progress. A single
//! broker holds the only replica of every partition, so there is never one: the answer is an
//! empty list, whatever topics are named (Kafka skips unknown ones too).

use std::rc::Rc;

use kafka_protocol::messages::{
    ListPartitionReassignmentsRequest, ListPartitionReassignmentsResponse,
};

use super::Call;
use crate::shard::Shard;

/// Answers with no reassignment in progress.
pub async fn handle(
    _s: Rc<Shard>,
    _req: ListPartitionReassignmentsRequest,
    _call: &Call<'_>,
) -> Option<ListPartitionReassignmentsResponse> {
    Some(ListPartitionReassignmentsResponse::default().with_topics(Vec::new()))
}
