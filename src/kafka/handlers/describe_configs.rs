//! DescribeConfigs (key 32), answered from the connection's shard: a topic's effective configs
//! (explicit values as DYNAMIC_TOPIC_CONFIG, the rest as DEFAULT_CONFIG), and this broker's
//! settings (`kafka::broker_configs`: given at startup as STATIC_BROKER_CONFIG, the rest as
//! DEFAULT_CONFIG, all read-only), with synonyms and documentation when asked.

use std::rc::Rc;

use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult, DescribeConfigsSynonym,
};
use kafka_protocol::messages::{DescribeConfigsRequest, DescribeConfigsResponse};
use kafka_protocol::protocol::StrBytes;

use super::str_bytes;
use super::Call;
use crate::config::Config;
use crate::kafka::broker_configs::{self, broker_resource, BrokerConfig, BrokerResource};
use crate::kafka::errors;
use crate::metadata::configs::SPECS;
use crate::metadata::TopicMeta;
use crate::shard::Shard;

/// The resource type of a topic in the config APIs (DescribeConfigs, AlterConfigs, ...).
pub const RESOURCE_TOPIC: i8 = 2;
/// The resource type of a broker: its name is the node id, or "" for the cluster-wide
/// defaults.
pub const RESOURCE_BROKER: i8 = 4;
/// The resource type of a broker's loggers (named by the node id).
pub const RESOURCE_BROKER_LOGGER: i8 = 8;
const SOURCE_DYNAMIC_TOPIC: i8 = 1;
const SOURCE_STATIC_BROKER: i8 = 4;
const SOURCE_DEFAULT: i8 = 5;
const TYPE_STRING: i8 = 2;
const TYPE_LONG: i8 = 5;

/// Answers each resource: a topic with every config (or the ones asked for), this broker with
/// every setting (or the ones asked for), the cluster-wide broker defaults and this broker's
/// loggers with none (there are no dynamic defaults, and logging is one filter set at startup,
/// RUST_LOG, with no named loggers); another broker, an unknown topic or another resource
/// type with its error.
pub async fn handle(
    s: Rc<Shard>,
    req: DescribeConfigsRequest,
    _call: &Call<'_>,
) -> Option<DescribeConfigsResponse> {
    let snap = s.metadata();
    let ask = Asked {
        synonyms: req.include_synonyms,
        documentation: req.include_documentation,
    };
    let results = req
        .resources
        .into_iter()
        .map(|r| {
            let base = DescribeConfigsResult::default()
                .with_resource_type(r.resource_type)
                .with_resource_name(r.resource_name.clone());
            let keys = r.configuration_keys.as_ref();
            match r.resource_type {
                RESOURCE_TOPIC => match snap.topic(&r.resource_name) {
                    None => base.with_error_code(errors::UNKNOWN_TOPIC_OR_PARTITION.code()),
                    Some(t) => base.with_configs(topic_configs(t, keys, ask)),
                },
                RESOURCE_BROKER | RESOURCE_BROKER_LOGGER => broker(&s.config, &r, ask, base),
                _ => base.with_error_code(errors::INVALID_REQUEST.code()),
            }
        })
        .collect();
    Some(DescribeConfigsResponse::default().with_results(results))
}

/// What the request asks beyond names and values.
#[derive(Clone, Copy, Debug, Default)]
struct Asked {
    synonyms: bool,
    documentation: bool,
}

/// Whether `name` is among the keys asked for (all when none are named).
fn wanted(keys: Option<&Vec<StrBytes>>, name: &str) -> bool {
    keys.is_none_or(|k| k.iter().any(|k| k.as_str() == name))
}

fn topic_configs(
    t: &TopicMeta,
    keys: Option<&Vec<StrBytes>>,
    ask: Asked,
) -> Vec<DescribeConfigsResourceResult> {
    SPECS
        .iter()
        .filter(|spec| wanted(keys, spec.name))
        .map(|spec| {
            let (value, default) = t.configs.get(spec);
            let numeric = spec.default.parse::<i64>().is_ok();
            let source = if default {
                SOURCE_DEFAULT
            } else {
                SOURCE_DYNAMIC_TOPIC
            };
            let mut synonyms = Vec::new();
            if ask.synonyms {
                if !default {
                    synonyms.push(synonym(spec.name, Some(value), SOURCE_DYNAMIC_TOPIC));
                }
                let broker_name = broker_configs::default_of(spec.name).unwrap_or(spec.name);
                synonyms.push(synonym(broker_name, Some(spec.default), SOURCE_DEFAULT));
            }
            DescribeConfigsResourceResult::default()
                .with_name(str_bytes(spec.name))
                .with_value(Some(str_bytes(value)))
                .with_config_source(source)
                .with_synonyms(synonyms)
                .with_config_type(if numeric { TYPE_LONG } else { TYPE_STRING })
        })
        .collect()
}

/// A BROKER or BROKER_LOGGER resource's answer.
fn broker(
    c: &Config,
    r: &DescribeConfigsResource,
    ask: Asked,
    base: DescribeConfigsResult,
) -> DescribeConfigsResult {
    let logger = r.resource_type == RESOURCE_BROKER_LOGGER;
    match broker_resource(&r.resource_name, c.node_id, logger) {
        Err(message) => base
            .with_error_code(errors::INVALID_REQUEST.code())
            .with_error_message(Some(str_bytes(&message))),
        Ok(BrokerResource::This) if !logger => {
            let keys = r.configuration_keys.as_ref();
            let configs = broker_configs::list(c)
                .iter()
                .filter(|e| wanted(keys, e.name))
                .map(|e| broker_entry(e, ask))
                .collect();
            base.with_configs(configs)
        }
        Ok(_) => base.with_configs(Vec::new()),
    }
}

/// One broker setting on the wire; a sensitive one without its value (nor its default's).
fn broker_entry(e: &BrokerConfig, ask: Asked) -> DescribeConfigsResourceResult {
    let shown = |v: &str| (!e.sensitive).then(|| v.to_string());
    let source = if e.given {
        SOURCE_STATIC_BROKER
    } else {
        SOURCE_DEFAULT
    };
    let mut synonyms = Vec::new();
    if ask.synonyms {
        if e.given {
            synonyms.push(synonym(e.name, shown(&e.value).as_deref(), source));
        }
        synonyms.push(synonym(
            e.name,
            shown(&e.default).as_deref(),
            SOURCE_DEFAULT,
        ));
    }
    DescribeConfigsResourceResult::default()
        .with_name(str_bytes(e.name))
        .with_value(shown(&e.value).as_deref().map(str_bytes))
        .with_read_only(true)
        .with_config_source(source)
        .with_is_sensitive(e.sensitive)
        .with_synonyms(synonyms)
        .with_config_type(e.kind)
        .with_documentation(ask.documentation.then(|| str_bytes(e.doc)))
}

fn synonym(name: &str, value: Option<&str>, source: i8) -> DescribeConfigsSynonym {
    DescribeConfigsSynonym::default()
        .with_name(str_bytes(name))
        .with_value(value.map(str_bytes))
        .with_source(source)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_configs_have_the_broker_default_as_a_synonym() {
        let mut t = TopicMeta {
            name: "t".into(),
            id: uuid::Uuid::new_v4(),
            partitions: 1,
            configs: Default::default(),
        };
        t.configs.set("retention.ms", Some("1000")).unwrap();
        let keys = vec![str_bytes("retention.ms"), str_bytes("segment.bytes")];
        let ask = Asked {
            synonyms: true,
            documentation: false,
        };
        let got = topic_configs(&t, Some(&keys), ask);
        let syn = |i: usize| -> Vec<(String, Option<String>, i8)> {
            let s = got[i].synonyms.iter();
            s.map(|s| {
                (
                    s.name.to_string(),
                    s.value.as_deref().map(String::from),
                    s.source,
                )
            })
            .collect()
        };
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].config_source, SOURCE_DYNAMIC_TOPIC);
        let v = |s: &str| Some(s.to_string());
        assert_eq!(
            syn(0),
            [
                ("retention.ms".into(), v("1000"), SOURCE_DYNAMIC_TOPIC),
                ("log.retention.ms".into(), v("604800000"), SOURCE_DEFAULT),
            ]
        );
        assert_eq!(
            syn(1),
            [("log.segment.bytes".into(), v("1073741824"), SOURCE_DEFAULT)]
        );
        assert!(topic_configs(&t, Some(&keys), Asked::default())[0]
            .synonyms
            .is_empty());
    }

    #[test]
    fn entries_carry_source_synonyms_type_and_docs_and_sensitive_ones_hide_values() {
        let mut e = BrokerConfig {
            name: "num.partitions",
            value: "6".into(),
            default: "1".into(),
            given: true,
            kind: broker_configs::kind::INT,
            doc: "partitions",
            sensitive: false,
        };
        let all = Asked {
            synonyms: true,
            documentation: true,
        };
        let got = broker_entry(&e, all);
        assert_eq!(got.value.as_deref(), Some("6"));
        assert_eq!(
            (got.config_source, got.read_only),
            (SOURCE_STATIC_BROKER, true)
        );
        let syn: Vec<(Option<&str>, i8)> = got
            .synonyms
            .iter()
            .map(|s| (s.value.as_deref(), s.source))
            .collect();
        assert_eq!(
            syn,
            [
                (Some("6"), SOURCE_STATIC_BROKER),
                (Some("1"), SOURCE_DEFAULT)
            ]
        );
        assert_eq!(
            (got.config_type, got.documentation.as_deref()),
            (3, Some("partitions"))
        );
        let bare = broker_entry(&e, Asked::default());
        assert!(bare.synonyms.is_empty() && bare.documentation.is_none());
        e.given = false;
        assert_eq!(broker_entry(&e, all).config_source, SOURCE_DEFAULT);
        assert_eq!(broker_entry(&e, all).synonyms.len(), 1);
        e.sensitive = true;
        let hidden = broker_entry(&e, all);
        assert!(hidden.is_sensitive && hidden.value.is_none());
        assert!(hidden.synonyms.iter().all(|s| s.value.is_none()));
    }
}
