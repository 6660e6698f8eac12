//! AlterConfigs (key 33): replaces a topic's whole config set (configs not named return to their
//! defaults), through the controller. Broker configs are not alterable (INVALID_REQUEST).

use std::rc::Rc;

use kafka_protocol::messages::alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::{AlterConfigsRequest, AlterConfigsResponse};

use super::admin_outcome;
use super::describe_configs::RESOURCE_TOPIC;
use super::Call;
use crate::kafka::errors;
use crate::shard::controller::Change;
use crate::shard::Shard;

/// Replaces each topic's config set; answers each resource with its error code and message.
pub async fn handle(
    s: Rc<Shard>,
    req: AlterConfigsRequest,
    _call: &Call<'_>,
) -> Option<AlterConfigsResponse> {
    let mut out = Vec::with_capacity(req.resources.len());
    for r in req.resources {
        let base = AlterConfigsResourceResponse::default()
            .with_resource_type(r.resource_type)
            .with_resource_name(r.resource_name.clone());
        if r.resource_type != RESOURCE_TOPIC {
            out.push(base.with_error_code(errors::INVALID_REQUEST.code()));
            continue;
        }
        let change = Change::AlterConfigs {
            name: r.resource_name.to_string(),
            changes: r
                .configs
                .iter()
                .map(|c| (c.name.to_string(), c.value.as_ref().map(|v| v.to_string())))
                .collect(),
            replace: true,
        };
        let (code, message) = admin_outcome(&s.admin(change, req.validate_only).await);
        out.push(
            base.with_error_code(code.code())
                .with_error_message(message),
        );
    }
    Some(AlterConfigsResponse::default().with_responses(out))
}
