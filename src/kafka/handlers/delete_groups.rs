//! DeleteGroups (API 42): removes empty groups and their committed offsets.

use std::rc::Rc;

use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::{DeleteGroupsRequest, DeleteGroupsResponse};

use super::Call;
use super::{group_id, join_all, on_group};
use crate::kafka::errors;
use crate::shard::Shard;

/// Deletes each empty group with its offsets; answers each with its error code.
pub async fn handle(
    s: Rc<Shard>,
    r: DeleteGroupsRequest,
    _call: &Call<'_>,
) -> Option<DeleteGroupsResponse> {
    let mut names: Vec<String> = Vec::new();
    for g in &r.groups_names {
        if !names.iter().any(|n| n == g.0.as_str()) {
            names.push(g.0.to_string());
        }
    }
    let futs = names.into_iter().map(|id| {
        let s = s.clone();
        async move {
            let g = id.clone();
            let result = on_group(&s, &id, move |c| async move { c.delete_group(&g).await })
                .await
                .and_then(|r| r);
            DeletableGroupResult::default()
                .with_group_id(group_id(&id))
                .with_error_code(errors::group_result(&result).code())
        }
    });
    Some(DeleteGroupsResponse::default().with_results(join_all(futs).await))
}
