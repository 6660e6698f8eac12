//! CreateTopics (key 19): each topic goes through the controller (validate_only plans without
//! applying). -1 partitions means num.partitions and -1 replicas default.replication.factor;
//! in a cluster up to the live brokers may hold a partition (issue 21), on a single broker
//! one. Manual assignments are accepted when every replica list is just this broker.

use std::rc::Rc;

use kafka_protocol::messages::create_topics_response::CreatableTopicResult;
use kafka_protocol::messages::{CreateTopicsRequest, CreateTopicsResponse};

use super::str_bytes;
use super::Call;
use crate::kafka::errors;
use crate::shard::controller::Change;
use crate::shard::{AdminError, Shard};

/// Creates each topic; answers each with its id, partition count and replication factor, or
/// its error.
pub async fn handle(
    s: Rc<Shard>,
    req: CreateTopicsRequest,
    _call: &Call<'_>,
) -> Option<CreateTopicsResponse> {
    let mut out = Vec::with_capacity(req.topics.len());
    for t in req.topics {
        let name = t.name.0.to_string();
        let partitions = if !t.assignments.is_empty() {
            t.assignments.len() as i32
        } else if t.num_partitions == -1 {
            s.config.num_partitions
        } else {
            t.num_partitions
        };
        let node = s.config.node_id;
        let foreign = t
            .assignments
            .iter()
            .any(|a| a.broker_ids.iter().any(|b| b.0 != node));
        let change = Change::CreateTopic {
            name: name.clone(),
            partitions,
            replication_factor: match t.replication_factor {
                -1 => s.config.default_replication_factor,
                rf => rf,
            },
            configs: t
                .configs
                .iter()
                .map(|c| (c.name.to_string(), c.value.as_ref().map(|v| v.to_string())))
                .collect(),
        };
        let base = CreatableTopicResult::default().with_name(t.name.clone());
        if foreign {
            let why = "replica assignments naming other brokers are not served; give a \
                       replication factor instead";
            out.push(failed(
                base,
                &AdminError::InvalidReplicaAssignment(why.into()),
            ));
            continue;
        }
        out.push(match s.admin(change, req.validate_only).await {
            Ok(snap) => {
                let meta = snap.topic(&name).expect("created");
                let c = snap.cluster.as_ref();
                let set = c.and_then(|c| c.replica_set(&meta.id, 0));
                let rf = set.map_or(1, |s| s.members.len().max(1));
                base.with_topic_id(meta.id)
                    .with_num_partitions(meta.partitions)
                    .with_replication_factor(i16::try_from(rf).unwrap_or(i16::MAX))
            }
            Err(e) => failed(base, &e),
        });
    }
    Some(CreateTopicsResponse::default().with_topics(out))
}

fn failed(base: CreatableTopicResult, e: &AdminError) -> CreatableTopicResult {
    base.with_error_code(errors::admin(e).code())
        .with_error_message(Some(str_bytes(&e.to_string())))
        .with_num_partitions(-1)
        .with_replication_factor(-1)
}
