//! DeleteTopics (key 20): by name (v1-5) or by name or id (v6), through the controller; the
//! owning shards close and delete the partitions before the answer.

use std::rc::Rc;

use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::{DeleteTopicsRequest, DeleteTopicsResponse};

use super::Call;
use super::{admin_outcome, topic_name};
use crate::kafka::errors;
use crate::shard::controller::Change;
use crate::shard::Shard;

/// Deletes each topic, named or by id; answers each with its name, id and error code.
pub async fn handle(
    s: Rc<Shard>,
    req: DeleteTopicsRequest,
    _call: &Call<'_>,
) -> Option<DeleteTopicsResponse> {
    let mut wanted: Vec<(Option<String>, uuid::Uuid)> = req
        .topic_names
        .iter()
        .map(|n| (Some(n.0.to_string()), uuid::Uuid::nil()))
        .collect();
    wanted.extend(
        req.topics
            .iter()
            .map(|t| (t.name.as_ref().map(|n| n.0.to_string()), t.topic_id)),
    );
    let mut out = Vec::with_capacity(wanted.len());
    for (name, id) in wanted {
        let snap = s.metadata();
        let resolved = name
            .clone()
            .or_else(|| snap.topic_by_id(&id).map(|t| t.name.clone()));
        let base = DeletableTopicResult::default()
            .with_name(resolved.as_deref().or(name.as_deref()).map(topic_name))
            .with_topic_id(id);
        let Some(resolved) = resolved else {
            out.push(base.with_error_code(errors::UNKNOWN_TOPIC_ID.code()));
            continue;
        };
        let topic_id = snap.topic(&resolved).map_or(id, |t| t.id);
        let (code, message) = admin_outcome(&s.admin(Change::DeleteTopic(resolved), false).await);
        out.push(
            base.with_topic_id(topic_id)
                .with_error_code(code.code())
                .with_error_message(message),
        );
    }
    Some(DeleteTopicsResponse::default().with_responses(out))
}
