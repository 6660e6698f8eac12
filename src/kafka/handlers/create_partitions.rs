//! CreatePartitions (key 37): grows a topic's partition count through the controller. New
//! partitions are placed like all others (`shard_for`); existing ones keep their owner.

use std::rc::Rc;

use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::{CreatePartitionsRequest, CreatePartitionsResponse};

use super::str_bytes;
use crate::kafka::errors;
use crate::shard::controller::Change;
use crate::shard::Shard;

pub async fn handle(
    s: Rc<Shard>,
    req: CreatePartitionsRequest,
) -> Option<CreatePartitionsResponse> {
    let mut out = Vec::with_capacity(req.topics.len());
    for t in req.topics {
        let change = Change::CreatePartitions {
            name: t.name.0.to_string(),
            count: t.count,
        };
        let base = CreatePartitionsTopicResult::default().with_name(t.name);
        out.push(match s.admin(change, req.validate_only).await {
            Ok(_) => base,
            Err(e) => base
                .with_error_code(errors::admin(&e))
                .with_error_message(Some(str_bytes(&e.to_string()))),
        });
    }
    Some(CreatePartitionsResponse::default().with_results(out))
}
