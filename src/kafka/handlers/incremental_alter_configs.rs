//! IncrementalAlterConfigs (key 44): SET (0) and DELETE (1) of single topic configs, through the
//! controller. APPEND/SUBTRACT (2/3) apply to list configs only, and we have none: INVALID_CONFIG.
//! No broker setting is dynamic: on a BROKER or BROKER_LOGGER resource only DELETEs of known
//! settings succeed (there is nothing to delete); anything else gets INVALID_CONFIG with a
//! message saying how to set it instead (`kafka::broker_configs::check_change`).

use std::rc::Rc;

use kafka_protocol::messages::incremental_alter_configs_request::AlterConfigsResource;
use kafka_protocol::messages::incremental_alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::{IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse};

use super::admin_outcome;
use super::describe_configs::{RESOURCE_BROKER, RESOURCE_BROKER_LOGGER, RESOURCE_TOPIC};
use super::{str_bytes, Call};
use crate::kafka::broker_configs::{check_change, Change as BrokerChange};
use crate::kafka::errors;
use crate::shard::controller::Change;
use crate::shard::Shard;

/// Sets or deletes single topic configs; answers each resource with its error code and message.
pub async fn handle(
    s: Rc<Shard>,
    req: IncrementalAlterConfigsRequest,
    _call: &Call<'_>,
) -> Option<IncrementalAlterConfigsResponse> {
    let mut out = Vec::with_capacity(req.resources.len());
    for r in req.resources {
        let base = AlterConfigsResourceResponse::default()
            .with_resource_type(r.resource_type)
            .with_resource_name(r.resource_name.clone());
        if matches!(r.resource_type, RESOURCE_BROKER | RESOURCE_BROKER_LOGGER) {
            out.push(broker(s.config.node_id, &r, base));
            continue;
        }
        if r.resource_type != RESOURCE_TOPIC {
            let message = format!("resource type {} cannot be altered", r.resource_type);
            out.push(
                base.with_error_code(errors::INVALID_REQUEST.code())
                    .with_error_message(Some(str_bytes(&message))),
            );
            continue;
        }
        if r.configs
            .iter()
            .any(|c| c.config_operation > 1 || c.config_operation < 0)
        {
            out.push(base.with_error_code(errors::INVALID_CONFIG.code()));
            continue;
        }
        let change = Change::AlterConfigs {
            name: r.resource_name.to_string(),
            changes: r
                .configs
                .iter()
                .map(|c| {
                    let v = (c.config_operation == 0)
                        .then(|| c.value.as_ref().map(|v| v.to_string()))
                        .flatten();
                    (c.name.to_string(), v)
                })
                .collect(),
            replace: false,
        };
        let (code, message) = admin_outcome(&s.admin(change, req.validate_only).await);
        out.push(
            base.with_error_code(code.code())
                .with_error_message(message),
        );
    }
    Some(IncrementalAlterConfigsResponse::default().with_responses(out))
}

/// A BROKER or BROKER_LOGGER resource's answer (`broker_configs::check_change`: nothing is
/// dynamic, so only a change that changes nothing succeeds).
fn broker(
    node_id: i32,
    r: &AlterConfigsResource,
    base: AlterConfigsResourceResponse,
) -> AlterConfigsResourceResponse {
    let changes: Vec<BrokerChange<'_>> = r
        .configs
        .iter()
        .map(|c| match c.config_operation {
            1 => BrokerChange::Delete(c.name.as_str()),
            _ => BrokerChange::Set(c.name.as_str()),
        })
        .collect();
    let logger = r.resource_type == RESOURCE_BROKER_LOGGER;
    match check_change(&r.resource_name, node_id, logger, &changes) {
        Ok(()) => base,
        Err((code, message)) => base
            .with_error_code(code.code())
            .with_error_message(Some(str_bytes(&message))),
    }
}
