//! Metadata (key 3): brokers (just us), and topics with their partitions, all led by us.
//! Unknown topics are auto-created when both the broker (auto.create.topics.enable) and the
//! request (v4+) allow it, with num.partitions partitions.

use std::rc::Rc;

use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::metadata_response::*;
use kafka_protocol::messages::{BrokerId, MetadataRequest, MetadataResponse};

use super::Call;
use super::{str_bytes, topic_name};
use crate::kafka::errors::{self, ErrorCode};
use crate::metadata::{valid_topic_name, TopicMeta};
use crate::shard::controller::Change;
use crate::shard::{AdminError, Shard};

/// Answers with this broker and the topics asked for (or all), creating unknown ones when
/// allowed; each topic's partitions are all led by this broker.
pub async fn handle(
    s: Rc<Shard>,
    req: MetadataRequest,
    call: &Call<'_>,
) -> Option<MetadataResponse> {
    let version = call.version;
    let node = BrokerId(s.config.node_id);
    let broker = MetadataResponseBroker::default()
        .with_node_id(node)
        .with_host(str_bytes(&s.config.advertised_host))
        .with_port(s.config.advertised_port);
    // v0: an empty list means all topics; v1+: null means all.
    let all = match &req.topics {
        None => true,
        Some(t) => t.is_empty() && version == 0,
    };
    let topics = if all {
        s.metadata()
            .topics
            .values()
            .map(|t| describe(t, node))
            .collect()
    } else {
        let auto = s.config.auto_create_topics && (version < 4 || req.allow_auto_topic_creation);
        let mut out = Vec::new();
        for t in req.topics.unwrap_or_default() {
            out.push(lookup(&s, &t, auto, node).await);
        }
        out
    };
    Some(
        MetadataResponse::default()
            .with_brokers(vec![broker])
            .with_cluster_id(Some(str_bytes(&s.cluster_id)))
            .with_controller_id(node)
            .with_topics(topics),
    )
}

async fn lookup(
    s: &Shard,
    t: &MetadataRequestTopic,
    auto: bool,
    node: BrokerId,
) -> MetadataResponseTopic {
    let snap = s.metadata();
    let Some(name) = t.name.as_ref().map(|n| String::from(n.0.as_str())) else {
        return match snap.topic_by_id(&t.topic_id) {
            Some(meta) => describe(meta, node),
            None => error_topic(None, t.topic_id, errors::UNKNOWN_TOPIC_ID),
        };
    };
    if let Some(meta) = snap.topic(&name) {
        return describe(meta, node);
    }
    if !valid_topic_name(&name) {
        return error_topic(Some(&name), t.topic_id, errors::INVALID_TOPIC);
    }
    if !auto {
        return error_topic(Some(&name), t.topic_id, errors::UNKNOWN_TOPIC_OR_PARTITION);
    }
    let change = Change::CreateTopic {
        name: name.clone(),
        partitions: s.config.num_partitions,
        replication_factor: -1,
        configs: Vec::new(),
    };
    match s.admin(change, false).await {
        Ok(snap) => describe(snap.topic(&name).expect("just created"), node),
        Err(AdminError::TopicExists(_)) => match s.metadata().topic(&name) {
            Some(meta) => describe(meta, node),
            None => error_topic(Some(&name), t.topic_id, errors::UNKNOWN_TOPIC_OR_PARTITION),
        },
        Err(e) => error_topic(Some(&name), t.topic_id, errors::admin(&e)),
    }
}

fn error_topic(name: Option<&str>, id: uuid::Uuid, code: ErrorCode) -> MetadataResponseTopic {
    MetadataResponseTopic::default()
        .with_error_code(code.code())
        .with_name(name.map(topic_name))
        .with_topic_id(id)
}

/// A topic's entry: every partition led by `node`, its only replica and in-sync replica.
fn describe(t: &TopicMeta, node: BrokerId) -> MetadataResponseTopic {
    let partitions = (0..t.partitions)
        .map(|i| {
            MetadataResponsePartition::default()
                .with_partition_index(i)
                .with_leader_id(node)
                .with_leader_epoch(0)
                .with_replica_nodes(vec![node])
                .with_isr_nodes(vec![node])
        })
        .collect();
    MetadataResponseTopic::default()
        .with_name(Some(topic_name(&t.name)))
        .with_topic_id(t.id)
        .with_partitions(partitions)
}
