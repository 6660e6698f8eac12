//! DescribeGroups (API 15): state, protocol and members of groups, each asked of its shard.

use std::rc::Rc;

use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::{DescribeGroupsRequest, DescribeGroupsResponse};

use super::Call;
use super::{group_id, join_all, on_group, opt_str_bytes, str_bytes};
use crate::group::{GroupError, GroupSummary};
use crate::kafka::errors;
use crate::shard::Shard;

/// Answers each group with its state, protocol and members, or Dead when it does not exist.
pub async fn handle(
    s: Rc<Shard>,
    r: DescribeGroupsRequest,
    call: &Call<'_>,
) -> Option<DescribeGroupsResponse> {
    let version = call.version;
    let futs = r.groups.into_iter().map(|g| {
        let s = s.clone();
        let id = g.0.to_string();
        async move {
            let g = id.clone();
            let found = on_group(&s, &id, move |c| async move { c.describe(&g) }).await;
            described(id, found, version)
        }
    });
    Some(DescribeGroupsResponse::default().with_groups(join_all(futs).await))
}

fn described(
    id: String,
    found: Result<Option<GroupSummary>, GroupError>,
    version: i16,
) -> DescribedGroup {
    let base = DescribedGroup::default().with_group_id(group_id(&id));
    match found {
        Err(e) => base.with_error_code(errors::group(&e).code()),
        Ok(None) if version >= 6 => base
            .with_error_code(errors::group(&GroupError::GroupIdNotFound).code())
            .with_error_message(Some(str_bytes(&format!("group {id} not found"))))
            .with_group_state(str_bytes("Dead")),
        Ok(None) => base.with_group_state(str_bytes("Dead")),
        Ok(Some(g)) => {
            let members = g
                .members
                .into_iter()
                .map(|m| {
                    let member = DescribedGroupMember::default()
                        .with_member_id(str_bytes(&m.member_id))
                        .with_client_id(str_bytes(&m.client_id))
                        .with_client_host(str_bytes(&m.client_host))
                        .with_member_metadata(m.metadata)
                        .with_member_assignment(m.assignment);
                    if version >= 4 {
                        member.with_group_instance_id(opt_str_bytes(m.instance_id.as_deref()))
                    } else {
                        member
                    }
                })
                .collect();
            base.with_group_state(str_bytes(g.state))
                .with_protocol_type(str_bytes(&g.protocol_type))
                .with_protocol_data(str_bytes(&g.protocol_data))
                .with_members(members)
        }
    }
}
