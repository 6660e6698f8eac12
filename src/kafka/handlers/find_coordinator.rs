//! FindCoordinator (API 10): a single broker coordinates every group (inside it, the owning
//! shard is found per request); in a cluster, the leader of the group's partition of the
//! replicated group logs' topic `__consumer_offsets` (`Shard::group_home`), which the first
//! FindCoordinator creates; COORDINATOR_NOT_AVAILABLE while the topic cannot be created
//! (fewer live brokers than its replication factor) or the partition has no live leader.
//! v0-3 ask for one key, v4+ for a batch (KIP-699).
//! There are no transactions yet: a transactional producer is told so at once with
//! CLUSTER_AUTHORIZATION_FAILED, the one code that the Java client, librdkafka, kafkajs and
//! aiokafka all treat as fatal (COORDINATOR_NOT_AVAILABLE, say, is retried until the client's
//! timeout, 60 s for Java); Java and librdkafka show the error message with it.

use std::rc::Rc;

use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::{BrokerId, FindCoordinatorRequest, FindCoordinatorResponse};
use kafka_protocol::protocol::StrBytes;

use super::{str_bytes, Call};
use crate::kafka::errors::{self, ErrorCode};
use crate::shard::{GroupHome, Shard};

const KEY_TYPE_GROUP: i8 = 0;
const KEY_TYPE_TRANSACTION: i8 = 1;

const TRANSACTIONS_REFUSED: &str = "shardlog does not support transactions yet: a producer \
    with a transactional.id cannot start (idempotent producers work)";

/// Answers with this broker for each group key, and an error for a transactional or unknown
/// key type.
pub async fn handle(
    s: Rc<Shard>,
    r: FindCoordinatorRequest,
    call: &Call<'_>,
) -> Option<FindCoordinatorResponse> {
    let version = call.version;
    if r.key_type == KEY_TYPE_GROUP {
        if let Err(e) = s.ensure_offsets_topic().await {
            tracing::debug!(error = %e, "the group logs' topic could not be created yet");
        }
    }
    let answer = |key: StrBytes| coordinator(&s, key, r.key_type);
    if version >= 4 {
        let coordinators = r.coordinator_keys.into_iter().map(answer).collect();
        return Some(FindCoordinatorResponse::default().with_coordinators(coordinators));
    }
    let c = answer(r.key);
    let mut resp = FindCoordinatorResponse::default()
        .with_error_code(c.error_code)
        .with_node_id(c.node_id)
        .with_host(c.host)
        .with_port(c.port);
    if version >= 1 {
        resp = resp.with_error_message(c.error_message);
    }
    Some(resp)
}

fn coordinator(s: &Shard, key: StrBytes, key_type: i8) -> Coordinator {
    let c = Coordinator::default().with_key(key);
    let refuse = |c: Coordinator, e: ErrorCode, msg: &str| {
        c.with_error_code(e.code())
            .with_error_message(Some(str_bytes(msg)))
            .with_node_id(BrokerId(-1))
            .with_host(StrBytes::default())
            .with_port(-1)
    };
    match key_type {
        KEY_TYPE_GROUP => {
            let at = match s.group_home(c.key.as_str()) {
                GroupHome::Here(_) => Some(s.config.node_id),
                GroupHome::Broker(b) => Some(b),
                GroupHome::Nowhere => None,
            };
            let brokers = s.client_brokers(&s.metadata()).0;
            match brokers.into_iter().find(|(id, _)| Some(*id) == at) {
                Some((id, addr)) => c
                    .with_node_id(BrokerId(id))
                    .with_host(str_bytes(&addr.host))
                    .with_port(i32::from(addr.port)),
                None => refuse(
                    c,
                    errors::COORDINATOR_NOT_AVAILABLE,
                    "the group's coordinator is not available",
                ),
            }
        }
        KEY_TYPE_TRANSACTION => refuse(
            c,
            errors::CLUSTER_AUTHORIZATION_FAILED,
            TRANSACTIONS_REFUSED,
        ),
        _ => refuse(c, errors::INVALID_REQUEST, "unknown coordinator key type"),
    }
}
