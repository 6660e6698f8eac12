//! ListGroups (API 16): every group of every shard, optionally filtered by state (v4+) and
//! type (v5+; all our groups are "classic").

use std::rc::Rc;

use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::{ListGroupsRequest, ListGroupsResponse};

use super::Call;
use super::{group_id, str_bytes};
use crate::group::GroupError;
use crate::kafka::errors;
use crate::shard::{route, Shard};

/// Answers with every group on every shard, filtered by the request's states and types.
pub async fn handle(
    s: Rc<Shard>,
    r: ListGroupsRequest,
    call: &Call<'_>,
) -> Option<ListGroupsResponse> {
    let version = call.version;
    let (all, gone) = route::list_groups_everywhere(&s).await;
    let error = match gone {
        Some(_) => errors::group(&GroupError::CoordinatorNotAvailable),
        None => errors::NONE,
    };
    let wanted = |filter: &[kafka_protocol::protocol::StrBytes], value: &str| {
        filter.is_empty() || filter.iter().any(|f| f.eq_ignore_ascii_case(value))
    };
    let groups = all
        .into_iter()
        .filter(|g| wanted(&r.states_filter, g.state) && wanted(&r.types_filter, "classic"))
        .map(|g| {
            let mut l = ListedGroup::default()
                .with_group_id(group_id(&g.group))
                .with_protocol_type(str_bytes(&g.protocol_type));
            if version >= 4 {
                l = l.with_group_state(str_bytes(g.state));
            }
            if version >= 5 {
                l = l.with_group_type(str_bytes("classic"));
            }
            l
        })
        .collect();
    Some(
        ListGroupsResponse::default()
            .with_error_code(error.code())
            .with_groups(groups),
    )
}
