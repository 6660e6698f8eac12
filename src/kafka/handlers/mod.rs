//! One file per Kafka API key. A handler takes the decoded request (and the shard it runs on),
//! does its work — locally or on the owning shards through `Shard::on` — and returns the
//! response to encode (None: send nothing, as for acks=0 produce).

pub mod alter_configs;
pub mod api_versions;
pub mod create_partitions;
pub mod create_topics;
pub mod delete_groups;
pub mod delete_records;
pub mod delete_topics;
pub mod describe_client_quotas;
pub mod describe_cluster;
pub mod describe_configs;
pub mod describe_groups;
pub mod describe_log_dirs;
pub mod describe_producers;
pub mod describe_topic_partitions;
pub mod fetch;
pub mod find_coordinator;
pub mod heartbeat;
pub mod incremental_alter_configs;
pub mod init_producer_id;
pub mod join_group;
pub mod leave_group;
pub mod list_groups;
pub mod list_offsets;
pub mod list_partition_reassignments;
pub mod metadata;
pub mod offset_commit;
pub mod offset_delete;
pub mod offset_fetch;
pub mod offset_for_leader_epoch;
pub mod produce;
pub mod sync_group;

use std::cell::Cell;
use std::future::Future;
use std::rc::Rc;

use bytes::Bytes;
use kafka_protocol::messages::TopicName;
use kafka_protocol::protocol::StrBytes;

use crate::budget::Lease;
use crate::group::{Coordinator, GroupError};
use crate::kafka::errors::{self, ErrorCode};
use crate::shard::{route, GroupHome, Shard};

/// What every handler gets besides the shard and its decoded request: the request's version,
/// who sent it, the connection's memory lease, and (Produce only) the request body the
/// request was decoded from.
pub struct Call<'a> {
    /// The request's API version (already checked against the API table).
    pub version: i16,
    /// The client id from the request header: what JoinGroup records for the member.
    pub client_id: String,
    /// "/1.2.3.4", as Kafka shows client hosts.
    pub client_host: &'a str,
    /// The bytes the connection holds on its shard's budget; Fetch grows it before it reads.
    pub lease: &'a Lease,
    frame: Cell<Option<Bytes>>,
}

impl<'a> Call<'a> {
    /// `frame`: the request body, kept only where the handler takes its bytes over.
    pub fn new(
        version: i16,
        client_id: String,
        client_host: &'a str,
        lease: &'a Lease,
        frame: Option<Bytes>,
    ) -> Call<'a> {
        Call {
            version,
            client_id,
            client_host,
            lease,
            frame: Cell::new(frame),
        }
    }

    /// The request body the request was decoded from (empty if the dispatcher kept none, or
    /// if it was taken already): Produce takes its record batches over from it without a copy.
    pub fn take_frame(&self) -> Bytes {
        self.frame.take().unwrap_or_default()
    }
}

pub use crate::runtime::join_all;

/// Runs `f` with the coordinator of `group` on the shard that owns it, if that coordinator
/// serves the group now: NOT_COORDINATOR when another broker coordinates it (or this one
/// has not loaded its log: COORDINATOR_LOAD_IN_PROGRESS), COORDINATOR_NOT_AVAILABLE when
/// none does.
pub async fn on_group<T, F, Fut>(s: &Shard, group: &str, f: F) -> Result<T, GroupError>
where
    T: Send + 'static,
    F: FnOnce(Rc<Coordinator>) -> Fut + Send + 'static,
    Fut: Future<Output = T> + 'static,
{
    let shard = match s.group_home(group) {
        GroupHome::Here(shard) => shard,
        GroupHome::Broker(_) => return Err(GroupError::NotCoordinator),
        GroupHome::Nowhere => return Err(GroupError::CoordinatorNotAvailable),
    };
    let g = group.to_string();
    let served = route::on_coordinator(s, shard, move |c| async move {
        c.serving(&g)?;
        Ok(f(c).await)
    });
    served
        .await
        .map_err(|_| GroupError::CoordinatorNotAvailable)?
}

/// The (error code, error message) pair an admin change answers with.
pub fn admin_outcome<T>(r: &Result<T, crate::shard::AdminError>) -> (ErrorCode, Option<StrBytes>) {
    match r {
        Ok(_) => (errors::NONE, None),
        Err(e) => (errors::admin(e), Some(str_bytes(&e.to_string()))),
    }
}

/// `s` as the protocol crate's topic name (a copy).
pub fn topic_name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.to_string()))
}

/// `s` as the protocol crate's string (a copy).
pub fn str_bytes(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

/// [`str_bytes`] for a nullable string.
pub fn opt_str_bytes(s: Option<&str>) -> Option<StrBytes> {
    s.map(str_bytes)
}

/// `s` as the protocol crate's group id (a copy).
pub fn group_id(s: &str) -> kafka_protocol::messages::GroupId {
    kafka_protocol::messages::GroupId(str_bytes(s))
}

/// Whether `topic` exists with partition `index` (in this shard's metadata copy).
pub fn partition_exists(s: &Shard, topic: &str, index: i32) -> bool {
    s.metadata()
        .topic(topic)
        .is_some_and(|t| index >= 0 && index < t.partitions)
}
