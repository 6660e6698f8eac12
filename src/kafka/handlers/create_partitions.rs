//! CreatePartitions (key 37): grows a topic's partition count through the controller. New
//! partitions are placed like all others (`shard_for`); existing ones keep their owner.

use std::rc::Rc;

use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::{CreatePartitionsRequest, CreatePartitionsResponse};

use super::admin_outcome;
use super::Call;
use crate::shard::controller::Change;
use crate::shard::Shard;

/// Grows each topic to its new count; answers each topic with its error code and message.
pub async fn handle(
    s: Rc<Shard>,
    req: CreatePartitionsRequest,
    _call: &Call<'_>,
) -> Option<CreatePartitionsResponse> {
    let mut out = Vec::with_capacity(req.topics.len());
    for t in req.topics {
        let change = Change::CreatePartitions {
            name: t.name.0.to_string(),
            count: t.count,
        };
        let base = CreatePartitionsTopicResult::default().with_name(t.name);
        let (code, message) = admin_outcome(&s.admin(change, req.validate_only).await);
        out.push(
            base.with_error_code(code.code())
                .with_error_message(message),
        );
    }
    Some(CreatePartitionsResponse::default().with_results(out))
}
