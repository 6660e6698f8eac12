//! Metadata (key 3): the brokers, and topics with their partitions and each one's leader.
//! A single broker lists itself and leads every partition; in a cluster the registry lists
//! the live brokers with their advertised addresses and each partition's broker, its one
//! replica (leader -1 and LEADER_NOT_AVAILABLE while that broker is dead). Unknown topics are
//! auto-created when both the broker (auto.create.topics.enable) and the request (v4+)
//! allow it, with num.partitions partitions (in a cluster, through the metadata log).

use std::rc::Rc;

use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::metadata_response::*;
use kafka_protocol::messages::{BrokerId, MetadataRequest, MetadataResponse};

use super::Call;
use super::{str_bytes, topic_name};
use crate::kafka::errors::{self, ErrorCode};
use crate::metadata::{valid_topic_name, Snapshot, TopicMeta};
use crate::shard::controller::Change;
use crate::shard::{AdminError, Shard};

/// Answers with the brokers and the topics asked for (or all), creating unknown ones when
/// allowed.
pub async fn handle(
    s: Rc<Shard>,
    req: MetadataRequest,
    call: &Call<'_>,
) -> Option<MetadataResponse> {
    let version = call.version;
    // v0: an empty list means all topics; v1+: null means all.
    let all = match &req.topics {
        None => true,
        Some(t) => t.is_empty() && version == 0,
    };
    let topics = if all {
        let snap = s.metadata();
        snap.topics
            .values()
            .map(|t| describe(&s, &snap, t))
            .collect()
    } else {
        let auto = s.config.auto_create_topics && (version < 4 || req.allow_auto_topic_creation);
        let mut out = Vec::new();
        for t in req.topics.unwrap_or_default() {
            out.push(lookup(&s, &t, auto).await);
        }
        out
    };
    let (brokers, controller) = brokers(&s, &s.metadata());
    Some(
        MetadataResponse::default()
            .with_brokers(brokers)
            .with_cluster_id(Some(str_bytes(&s.cluster_id)))
            .with_controller_id(controller)
            .with_topics(topics),
    )
}

/// The brokers clients are told about (with their advertised addresses) and the controller
/// (-1 while a cluster has no metadata leader).
fn brokers(s: &Shard, snap: &Snapshot) -> (Vec<MetadataResponseBroker>, BrokerId) {
    let (list, controller) = s.client_brokers(snap);
    let list = list.into_iter().map(|(id, b)| {
        MetadataResponseBroker::default()
            .with_node_id(BrokerId(id))
            .with_host(str_bytes(&b.host))
            .with_port(i32::from(b.port))
    });
    (list.collect(), BrokerId(controller))
}

async fn lookup(s: &Shard, t: &MetadataRequestTopic, auto: bool) -> MetadataResponseTopic {
    let snap = s.metadata();
    let Some(name) = t.name.as_ref().map(|n| String::from(n.0.as_str())) else {
        return match snap.topic_by_id(&t.topic_id) {
            Some(meta) => describe(s, &snap, meta),
            None => error_topic(None, t.topic_id, errors::UNKNOWN_TOPIC_ID),
        };
    };
    if let Some(meta) = snap.topic(&name) {
        return describe(s, &snap, meta);
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
        replication_factor: s.config.default_replication_factor,
        configs: Vec::new(),
    };
    let snap = match s.admin(change, false).await {
        Ok(snap) => snap,
        Err(AdminError::TopicExists(_)) => s.metadata(),
        Err(e) => return error_topic(Some(&name), t.topic_id, errors::admin(&e)),
    };
    match snap.topic(&name) {
        Some(meta) => describe(s, &snap, meta),
        // Created elsewhere and not installed here yet, or deleted meanwhile: retriable.
        None => error_topic(Some(&name), t.topic_id, errors::UNKNOWN_TOPIC_OR_PARTITION),
    }
}

fn error_topic(name: Option<&str>, id: uuid::Uuid, code: ErrorCode) -> MetadataResponseTopic {
    MetadataResponseTopic::default()
        .with_error_code(code.code())
        .with_name(name.map(topic_name))
        .with_topic_id(id)
}

/// A topic's entry: each partition with its leader, epoch, replicas and in-sync replicas
/// (`Snapshot::partition_view`); LEADER_NOT_AVAILABLE while it has no live leader.
fn describe(s: &Shard, snap: &Snapshot, t: &TopicMeta) -> MetadataResponseTopic {
    let me = s.config.node_id;
    let ids = |v: Vec<i32>| v.into_iter().map(BrokerId).collect::<Vec<_>>();
    let partitions = (0..t.partitions)
        .map(|i| {
            let v = snap.partition_view(&t.id, i, me);
            let p = MetadataResponsePartition::default()
                .with_partition_index(i)
                .with_leader_id(BrokerId(v.leader.unwrap_or(-1)))
                .with_leader_epoch(v.epoch)
                .with_replica_nodes(ids(v.replicas))
                .with_isr_nodes(ids(v.isr))
                .with_offline_replicas(ids(v.offline));
            match v.leader {
                Some(_) => p,
                None => p.with_error_code(errors::LEADER_NOT_AVAILABLE.code()),
            }
        })
        .collect();
    MetadataResponseTopic::default()
        .with_name(Some(topic_name(&t.name)))
        .with_topic_id(t.id)
        .with_is_internal(t.name == crate::group::OFFSETS_TOPIC)
        .with_partitions(partitions)
}
