//! LeaveGroup (API 13): members leave at once instead of waiting out their session. v0-2
//! name one member; v3+ a batch (KIP-345), answered member by member.

use std::rc::Rc;

use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::{LeaveGroupRequest, LeaveGroupResponse};

use super::Call;
use super::{on_group, opt_str_bytes, str_bytes};
use crate::group::MemberRef;
use crate::kafka::errors;
use crate::shard::Shard;

/// Removes the members from the group; answers with one error code (v0-2) or one per member.
pub async fn handle(
    s: Rc<Shard>,
    r: LeaveGroupRequest,
    call: &Call<'_>,
) -> Option<LeaveGroupResponse> {
    let version = call.version;
    let group = r.group_id.0.to_string();
    let members: Vec<MemberRef> = if version < 3 {
        vec![MemberRef {
            member_id: r.member_id.to_string(),
            ..MemberRef::default()
        }]
    } else {
        r.members
            .iter()
            .map(|m| MemberRef {
                member_id: m.member_id.to_string(),
                instance_id: m.group_instance_id.as_ref().map(|i| i.to_string()),
                generation: -1,
            })
            .collect()
    };
    let (g, ms) = (group.clone(), members.clone());
    let result = on_group(&s, &group, move |c| async move { c.leave(&g, &ms).await })
        .await
        .and_then(|r| r);
    let resp = LeaveGroupResponse::default();
    Some(match result {
        Err(e) => resp.with_error_code(errors::group(&e).code()),
        Ok(per_member) if version < 3 => resp.with_error_code(
            per_member
                .first()
                .map_or(errors::NONE, errors::group_result)
                .code(),
        ),
        Ok(per_member) => resp.with_members(
            members
                .iter()
                .zip(per_member)
                .map(|(m, r)| {
                    MemberResponse::default()
                        .with_member_id(str_bytes(&m.member_id))
                        .with_group_instance_id(opt_str_bytes(m.instance_id.as_deref()))
                        .with_error_code(errors::group_result(&r).code())
                })
                .collect(),
        ),
    })
}
