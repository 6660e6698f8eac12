//! AlterConfigs (key 33): replaces a topic's whole config set (configs not named return to their
//! defaults), through the controller. No broker setting is dynamic: a BROKER or BROKER_LOGGER
//! resource naming any config gets INVALID_CONFIG with a message saying how to set it
//! instead (`kafka::broker_configs::check_change`); other resource types INVALID_REQUEST.

use std::rc::Rc;

use kafka_protocol::messages::alter_configs_request::AlterConfigsResource;
use kafka_protocol::messages::alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::{AlterConfigsRequest, AlterConfigsResponse};

use super::admin_outcome;
use super::describe_configs::{RESOURCE_BROKER, RESOURCE_BROKER_LOGGER, RESOURCE_TOPIC};
use super::{str_bytes, Call};
use crate::kafka::broker_configs::{check_change, Change as BrokerChange};
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
        .map(|c| match c.value {
            None => BrokerChange::Delete(c.name.as_str()),
            Some(_) => BrokerChange::Set(c.name.as_str()),
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
