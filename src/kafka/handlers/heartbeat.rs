//! Heartbeat (API 12): keeps a member's session alive and tells it when to rejoin
//! (REBALANCE_IN_PROGRESS).

use std::rc::Rc;

use kafka_protocol::messages::{HeartbeatRequest, HeartbeatResponse};

use super::on_group;
use super::Call;
use crate::group::{GroupError, MemberRef};
use crate::kafka::errors;
use crate::shard::Shard;

/// Answers with NONE, REBALANCE_IN_PROGRESS when the member must rejoin, or its group error.
pub async fn handle(
    s: Rc<Shard>,
    r: HeartbeatRequest,
    _call: &Call<'_>,
) -> Option<HeartbeatResponse> {
    let group = r.group_id.0.to_string();
    let member = MemberRef {
        member_id: r.member_id.to_string(),
        instance_id: r.group_instance_id.map(|i| i.to_string()),
        generation: r.generation_id,
    };
    let g = group.clone();
    let result = on_group(&s, &group, move |c| async move { c.heartbeat(&g, &member) })
        .await
        .and_then(|r| r);
    // Kafka answers a heartbeat NONE while a new coordinator loads the group: clients do not
    // expect COORDINATOR_LOAD_IN_PROGRESS here.
    let result = match result {
        Err(GroupError::CoordinatorLoadInProgress) => Ok(()),
        other => other,
    };
    Some(HeartbeatResponse::default().with_error_code(errors::group_result(&result).code()))
}
