//! SyncGroup (API 14): the second phase of a rebalance. The leader brings the assignment;
//! every member's request is parked until it has, then gets its own share.

use std::rc::Rc;

use kafka_protocol::messages::{SyncGroupRequest, SyncGroupResponse};

use super::Call;
use super::{on_group, opt_str_bytes};
use crate::group::{GroupError, SyncReply, SyncRequest};
use crate::kafka::errors;
use crate::shard::Shard;

/// Answers once the leader's assignment is in: this member's share of it, or the group's error.
pub async fn handle(
    s: Rc<Shard>,
    r: SyncGroupRequest,
    call: &Call<'_>,
) -> Option<SyncGroupResponse> {
    let version = call.version;
    if version >= 5 && (r.protocol_type.is_none() || r.protocol_name.is_none()) {
        return Some(response(
            SyncReply::failed(GroupError::InconsistentGroupProtocol),
            version,
        ));
    }
    let req = SyncRequest {
        group: r.group_id.0.to_string(),
        member_id: r.member_id.to_string(),
        instance_id: r.group_instance_id.map(|i| i.to_string()),
        generation: r.generation_id,
        protocol_type: r.protocol_type.map(|p| p.to_string()),
        protocol_name: r.protocol_name.map(|p| p.to_string()),
        assignments: r
            .assignments
            .into_iter()
            .map(|a| (a.member_id.to_string(), a.assignment))
            .collect(),
    };
    let group = req.group.clone();
    let reply = on_group(&s, &group, move |c| async move { c.sync(req).await })
        .await
        .unwrap_or_else(SyncReply::failed);
    // Kafka's answer while a new coordinator loads the group: the rebalance's state is lost,
    // so the member joins again (clients do not expect COORDINATOR_LOAD_IN_PROGRESS here).
    let reply = match reply.error {
        Some(GroupError::CoordinatorLoadInProgress) => {
            SyncReply::failed(GroupError::RebalanceInProgress)
        }
        _ => reply,
    };
    Some(response(reply, version))
}

fn response(r: SyncReply, version: i16) -> SyncGroupResponse {
    let resp = SyncGroupResponse::default()
        .with_error_code(r.error.as_ref().map_or(errors::NONE, errors::group).code())
        .with_assignment(r.assignment);
    if version >= 5 {
        resp.with_protocol_type(opt_str_bytes(r.protocol_type.as_deref()))
            .with_protocol_name(opt_str_bytes(r.protocol_name.as_deref()))
    } else {
        resp
    }
}
