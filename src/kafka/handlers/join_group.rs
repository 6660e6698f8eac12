//! JoinGroup (API 11): the first phase of a rebalance. The request is parked on the group's
//! shard until the join phase completes (or answered at once, e.g. MEMBER_ID_REQUIRED).

use std::rc::Rc;

use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::{JoinGroupRequest, JoinGroupResponse};

use super::Call;
use super::{on_group, opt_str_bytes, str_bytes};
use crate::group::{JoinReply, JoinRequest};
use crate::kafka::errors;
use crate::shard::Shard;

/// Answers once the join phase ends: generation, leader, member id, members (to the leader).
pub async fn handle(
    s: Rc<Shard>,
    r: JoinGroupRequest,
    call: &Call<'_>,
) -> Option<JoinGroupResponse> {
    let version = call.version;
    let req = JoinRequest {
        group: r.group_id.0.to_string(),
        member_id: r.member_id.to_string(),
        instance_id: r.group_instance_id.map(|i| i.to_string()),
        client_id: call.client_id.clone(),
        client_host: call.client_host.to_string(),
        session_timeout_ms: r.session_timeout_ms,
        // v0 has no rebalance timeout (and a non-positive one is useless): the session
        // timeout serves.
        rebalance_timeout_ms: if version == 0 || r.rebalance_timeout_ms <= 0 {
            r.session_timeout_ms
        } else {
            r.rebalance_timeout_ms
        },
        protocol_type: r.protocol_type.to_string(),
        protocols: r
            .protocols
            .into_iter()
            .map(|p| (p.name.to_string(), p.metadata))
            .collect(),
        require_known_member_id: version >= 4,
        supports_skip_assignment: version >= 9,
    };
    let group = req.group.clone();
    let member_id = req.member_id.clone();
    let reply = on_group(&s, &group, move |c| async move { c.join(req).await })
        .await
        .unwrap_or_else(|e| JoinReply::failed(e, member_id));
    Some(response(reply, version))
}

fn response(r: JoinReply, version: i16) -> JoinGroupResponse {
    let members = r
        .members
        .into_iter()
        .map(|m| {
            let member = JoinGroupResponseMember::default()
                .with_member_id(str_bytes(&m.member_id))
                .with_metadata(m.metadata);
            if version >= 5 {
                member.with_group_instance_id(opt_str_bytes(m.instance_id.as_deref()))
            } else {
                member
            }
        })
        .collect();
    let mut resp = JoinGroupResponse::default()
        .with_error_code(r.error.as_ref().map_or(errors::NONE, errors::group).code())
        .with_generation_id(r.generation)
        .with_leader(str_bytes(&r.leader))
        .with_member_id(str_bytes(&r.member_id))
        .with_members(members);
    if version >= 7 {
        resp = resp
            .with_protocol_type(opt_str_bytes(r.protocol_type.as_deref()))
            .with_protocol_name(opt_str_bytes(r.protocol_name.as_deref()));
    } else {
        // Not nullable before v7.
        resp = resp.with_protocol_name(Some(str_bytes(
            r.protocol_name.as_deref().unwrap_or_default(),
        )));
    }
    if version >= 9 {
        resp = resp.with_skip_assignment(r.skip_assignment);
    }
    resp
}
