//! DescribeConfigs (key 32): a topic's effective configs (explicit values as
//! DYNAMIC_TOPIC_CONFIG, the rest as DEFAULT_CONFIG); a broker resource lists nothing yet.

use std::rc::Rc;

use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult,
};
use kafka_protocol::messages::{DescribeConfigsRequest, DescribeConfigsResponse};

use super::str_bytes;
use super::Call;
use crate::kafka::errors;
use crate::metadata::configs::SPECS;
use crate::shard::Shard;

/// The resource type of a topic in the config APIs (DescribeConfigs, AlterConfigs, ...).
pub const RESOURCE_TOPIC: i8 = 2;
const RESOURCE_BROKER: i8 = 4;
const SOURCE_DYNAMIC_TOPIC: i8 = 1;
const SOURCE_DEFAULT: i8 = 5;
const TYPE_STRING: i8 = 2;
const TYPE_LONG: i8 = 5;

/// Answers each topic with every config (or the ones asked for): value and whether it is
/// the default; a broker resource with no configs, any other type with INVALID_REQUEST.
pub async fn handle(
    s: Rc<Shard>,
    req: DescribeConfigsRequest,
    _call: &Call<'_>,
) -> Option<DescribeConfigsResponse> {
    let snap = s.metadata();
    let results = req
        .resources
        .into_iter()
        .map(|r| {
            let base = DescribeConfigsResult::default()
                .with_resource_type(r.resource_type)
                .with_resource_name(r.resource_name.clone());
            match r.resource_type {
                RESOURCE_BROKER => base,
                RESOURCE_TOPIC => match snap.topic(&r.resource_name) {
                    None => base.with_error_code(errors::UNKNOWN_TOPIC_OR_PARTITION.code()),
                    Some(t) => {
                        let keys = r.configuration_keys.as_ref();
                        let configs = SPECS
                            .iter()
                            .filter(|spec| {
                                keys.is_none_or(|k| k.iter().any(|k| k.as_str() == spec.name))
                            })
                            .map(|spec| {
                                let (value, default) = t.configs.get(spec);
                                let numeric = spec.default.parse::<i64>().is_ok();
                                DescribeConfigsResourceResult::default()
                                    .with_name(str_bytes(spec.name))
                                    .with_value(Some(str_bytes(value)))
                                    .with_config_source(if default {
                                        SOURCE_DEFAULT
                                    } else {
                                        SOURCE_DYNAMIC_TOPIC
                                    })
                                    .with_config_type(if numeric { TYPE_LONG } else { TYPE_STRING })
                            })
                            .collect();
                        base.with_configs(configs)
                    }
                },
                _ => base.with_error_code(errors::INVALID_REQUEST.code()),
            }
        })
        .collect();
    Some(DescribeConfigsResponse::default().with_results(results))
}
