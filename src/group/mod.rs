//! Consumer groups: Kafka's classic group protocol (JoinGroup, SyncGroup, Heartbeat,
//! LeaveGroup) and committed offsets.
//!
//! Each group belongs to one of [`GROUP_LOGS`] group logs (by a hash of its id), and each group
//! log to one shard, so a group's requests all run on one core: the Kafka handlers route them
//! there with `Shard::on`, as partition requests are routed. On that shard:
//! - [`machine::Groups`] is the pure state machine: requests and the current time come in as
//!   arguments; responses (also to requests parked earlier), records to persist and the next
//!   deadline go out as values. No I/O, no clock, no executor: unit tests drive it directly.
//!   `invariants` asserts what the machine keeps true after each call (debug builds, tests).
//! - [`record`] is the persisted form (group metadata and committed offsets as key/value
//!   records in Kafka record batches) and its replay.
//! - [`coordinator`] is the I/O edge: it owns the machine, the group logs (one
//!   `storage::PartitionLog` each, group-committed, compacted by snapshot), the timer task, and
//!   hands responses back to waiting connections.
//!
//! docs/design/group-protocol-notes.md is the behaviour reference (taken from Kafka's own
//! coordinator and the clients' sources); section numbers (§4.3) in comments point there.

pub mod coordinator;
mod invariants;
pub mod machine;
pub mod offsets;
pub mod record;
#[cfg(test)]
mod tests;

use bytes::Bytes;

use crate::types::{DurationMs, Offset, TimestampMs};

pub use coordinator::Coordinator;
pub use machine::Groups;

/// Number of group logs (Kafka's offsets.topic.num.partitions). Fixed for a data directory:
/// a group's log is `group_log_for(id)` whatever the shard count, and log `i` is served by
/// shard `i % shards`, so changing the shard count never strands a group's offsets.
pub const GROUP_LOGS: usize = 16;

/// Which group log holds a group (FNV-1a of the id).
pub fn group_log_for(group: &str) -> usize {
    let h = group
        .as_bytes()
        .iter()
        .fold(0xcbf2_9ce4_8422_2325u64, |h, &x| {
            (h ^ u64::from(x)).wrapping_mul(0x0100_0000_01b3)
        });
    (h % GROUP_LOGS as u64) as usize
}

/// Which shard coordinates a group.
pub fn shard_for_group(group: &str, shards: usize) -> usize {
    group_log_for(group) % shards
}

/// Opaque handle of a request waiting for an answer (JoinGroup and SyncGroup may be parked).
pub type Token = u64;

/// Coordinator settings (Kafka's broker configs of the same names).
#[derive(Clone, Debug)]
pub struct GroupConfig {
    /// group.min.session.timeout.ms
    pub session_timeout_ms_min: i32,
    /// group.max.session.timeout.ms
    pub session_timeout_ms_max: i32,
    /// group.initial.rebalance.delay.ms
    pub initial_rebalance_delay_ms: DurationMs,
    /// group.max.size
    pub members_max: usize,
    /// offsets.retention.minutes, in ms.
    pub offsets_retention_ms: DurationMs,
    /// offsets.retention.check.interval.ms
    pub offsets_retention_check_ms: DurationMs,
    /// offset.metadata.max.bytes
    pub offset_metadata_bytes_max: usize,
    /// Groups one shard may hold; JoinGroup/OffsetCommit creating more are refused.
    pub groups_max: usize,
    /// A group log is compacted once it grew this much since its last snapshot (and by
    /// twice the snapshot's size); its segments are half this size.
    pub log_compact_bytes_min: u64,
}

impl Default for GroupConfig {
    fn default() -> Self {
        GroupConfig {
            session_timeout_ms_min: 6000,
            session_timeout_ms_max: 1_800_000,
            initial_rebalance_delay_ms: DurationMs(3000),
            members_max: 100_000,
            offsets_retention_ms: DurationMs(7 * 24 * 3600 * 1000),
            offsets_retention_check_ms: DurationMs(600_000),
            offset_metadata_bytes_max: 4096,
            groups_max: 100_000,
            log_compact_bytes_min: 16 << 20,
        }
    }
}

/// Why a group request failed. errors.rs maps each to its Kafka error code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum GroupError {
    #[error("invalid group id")]
    InvalidGroupId,
    #[error("session timeout outside the broker's bounds")]
    InvalidSessionTimeout,
    #[error("unknown member id")]
    UnknownMemberId,
    #[error("member id required: rejoin with the member id given")]
    MemberIdRequired,
    #[error("illegal generation")]
    IllegalGeneration,
    #[error("protocol type or names inconsistent with the group")]
    InconsistentGroupProtocol,
    #[error("rebalance in progress")]
    RebalanceInProgress,
    #[error("fenced: another member has this group.instance.id")]
    FencedInstanceId,
    #[error("group is full")]
    GroupMaxSizeReached,
    #[error("coordinator not available")]
    CoordinatorNotAvailable,
    #[error("group not found")]
    GroupIdNotFound,
    #[error("group is not empty")]
    NonEmptyGroup,
    #[error("group is subscribed to the topic")]
    GroupSubscribedToTopic,
    #[error("offset metadata too large")]
    OffsetMetadataTooLarge,
    #[error("unknown topic or partition")]
    UnknownTopicOrPartition,
}

/// A JoinGroup request, resolved from its wire form by the handler.
#[derive(Debug, Clone, Default)]
pub struct JoinRequest {
    pub group: String,
    pub member_id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout_ms: i32,
    pub rebalance_timeout_ms: i32,
    pub protocol_type: String,
    /// (name, metadata) in the client's order of preference.
    pub protocols: Vec<(String, Bytes)>,
    /// v4+: a new dynamic member first gets MEMBER_ID_REQUIRED (KIP-394).
    pub require_known_member_id: bool,
    /// v9+: a returning static leader is told it is the leader and to skip assignment.
    pub supports_skip_assignment: bool,
}

/// One member as the leader sees it in its JoinGroup response.
#[derive(Debug, Clone, PartialEq)]
pub struct JoinedMember {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub metadata: Bytes,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct JoinReply {
    pub error: Option<GroupError>,
    pub generation: i32,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub leader: String,
    pub member_id: String,
    pub members: Vec<JoinedMember>,
    pub skip_assignment: bool,
}

impl JoinReply {
    pub fn failed(error: GroupError, member_id: String) -> JoinReply {
        JoinReply {
            error: Some(error),
            generation: -1,
            member_id,
            ..JoinReply::default()
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct SyncRequest {
    pub group: String,
    pub member_id: String,
    pub instance_id: Option<String>,
    pub generation: i32,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub assignments: Vec<(String, Bytes)>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct SyncReply {
    pub error: Option<GroupError>,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub assignment: Bytes,
}

impl SyncReply {
    pub fn failed(error: GroupError) -> SyncReply {
        SyncReply {
            error: Some(error),
            ..SyncReply::default()
        }
    }
}

/// The answer to a request that may have been parked.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    Join(JoinReply),
    Sync(SyncReply),
}

/// A member identity as Heartbeat, OffsetCommit and LeaveGroup carry it.
#[derive(Debug, Clone, Default)]
pub struct MemberRef {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub generation: i32,
}

/// One offset to commit.
#[derive(Debug, Clone)]
pub struct OffsetToCommit {
    pub topic: String,
    pub partition: i32,
    pub offset: Offset,
    pub leader_epoch: i32,
    pub metadata: Option<String>,
}

#[derive(Debug, Clone, Default)]
pub struct CommitRequest {
    pub group: String,
    pub member: MemberRef,
    /// v2-4's retention_time_ms, when not -1.
    pub retention_ms: Option<DurationMs>,
    /// v9+: an unknown group is GROUP_ID_NOT_FOUND rather than ILLEGAL_GENERATION.
    pub group_id_not_found: bool,
    pub offsets: Vec<OffsetToCommit>,
}

/// A committed offset as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Committed {
    pub offset: Offset,
    pub leader_epoch: i32,
    pub metadata: String,
    pub commit_ms: TimestampMs,
    /// Explicit expiry (OffsetCommit v2-4 retention_time_ms).
    pub expire_ms: Option<TimestampMs>,
}

/// Topics with partitions, the shape of OffsetFetch and OffsetDelete requests.
pub type TopicPartitions = Vec<(String, Vec<i32>)>;

/// OffsetFetch's answer: per topic, per partition, the committed offset if any.
pub type CommittedOffsets = Vec<(String, Vec<(i32, Option<Committed>)>)>;

/// A group as DescribeGroups shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupSummary {
    pub group: String,
    pub state: &'static str,
    pub protocol_type: String,
    pub protocol_data: String,
    pub members: Vec<MemberSummary>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct MemberSummary {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub metadata: Bytes,
    pub assignment: Bytes,
}

/// A group as ListGroups shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupListing {
    pub group: String,
    pub protocol_type: String,
    pub state: &'static str,
}
