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

pub use coordinator::{Coordinator, LogState};
pub use machine::Groups;

/// Number of group logs (Kafka's offsets.topic.num.partitions). Fixed for a data directory:
/// a group's log is `group_log_for(id)` whatever the shard count, and log `i` is served by
/// shard `i % shards`, so changing the shard count never strands a group's offsets.
pub const GROUP_LOGS: usize = 16;

/// The largest batch of group records a group log takes (a group's record holds every
/// member's assignment).
pub const GROUP_BATCH_BYTES_MAX: usize = 64 << 20;

/// In a cluster, the internal topic whose partition `i` is group log `i` (Kafka's name): a
/// replicated partition like any other, whose leader coordinates the log's groups.
pub const OFFSETS_TOPIC: &str = "__consumer_offsets";

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
    /// group.min.session.timeout.ms: the shortest session timeout a JoinGroup may ask for
    /// (shorter: INVALID_SESSION_TIMEOUT).
    pub session_timeout_ms_min: i32,
    /// group.max.session.timeout.ms: the longest session timeout a JoinGroup may ask for
    /// (longer: INVALID_SESSION_TIMEOUT).
    pub session_timeout_ms_max: i32,
    /// group.initial.rebalance.delay.ms: how long a join phase started from Empty waits for
    /// more members; a new group's (generation 0) waits another delay whenever members came
    /// during the last one, up to the rebalance timeout in all.
    pub initial_rebalance_delay_ms: DurationMs,
    /// group.max.size: the most members a group may have (more: GROUP_MAX_SIZE_REACHED).
    pub members_max: usize,
    /// offsets.retention.minutes, in ms: an Empty group's offsets expire this long after it
    /// went Empty, a simple group's this long after each commit.
    pub offsets_retention_ms: DurationMs,
    /// offsets.retention.check.interval.ms: how often expired offsets are looked for.
    pub offsets_retention_check_ms: DurationMs,
    /// offset.metadata.max.bytes: the longest metadata string a committed offset may carry
    /// (longer: OFFSET_METADATA_TOO_LARGE for that partition).
    pub offset_metadata_bytes_max: usize,
    /// Groups one shard may hold; JoinGroup/OffsetCommit creating more are refused
    /// (COORDINATOR_NOT_AVAILABLE).
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

/// Why a group request failed. Each variant becomes the Kafka error code of the same name
/// (`kafka::errors::group`); the notes say which requests give it and when.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum GroupError {
    /// INVALID_GROUP_ID: JoinGroup, SyncGroup, Heartbeat or LeaveGroup with an empty group id
    /// (OffsetCommit, OffsetFetch, DescribeGroups and DeleteGroups accept "" as a group).
    #[error("invalid group id")]
    InvalidGroupId,
    /// INVALID_SESSION_TIMEOUT: a JoinGroup's session timeout is outside
    /// [`GroupConfig::session_timeout_ms_min`, `GroupConfig::session_timeout_ms_max`].
    #[error("session timeout outside the broker's bounds")]
    InvalidSessionTimeout,
    /// UNKNOWN_MEMBER_ID: the member id (or static instance id) names no current member, the
    /// group does not exist or is Empty, or the member was removed while its JoinGroup or
    /// SyncGroup was parked. The client drops its member id and joins afresh.
    #[error("unknown member id")]
    UnknownMemberId,
    /// MEMBER_ID_REQUIRED (KIP-394): the first JoinGroup (v4+) of a dynamic member, sent with
    /// no member id. The reply carries a new id; the member must rejoin with it in time.
    #[error("member id required: rejoin with the member id given")]
    MemberIdRequired,
    /// ILLEGAL_GENERATION: Heartbeat, SyncGroup or OffsetCommit names a generation other than
    /// the group's current one; also OffsetCommit v2-8 with a generation to an absent group.
    #[error("illegal generation")]
    IllegalGeneration,
    /// INCONSISTENT_GROUP_PROTOCOL: a JoinGroup whose protocol type differs from the group's,
    /// or whose protocols share none that every member supports (or, for the first member,
    /// an empty type or list); a SyncGroup naming another protocol type or name (or, v5+,
    /// leaving them out).
    #[error("protocol type or names inconsistent with the group")]
    InconsistentGroupProtocol,
    /// REBALANCE_IN_PROGRESS: Heartbeat or SyncGroup while PreparingRebalance, OffsetCommit
    /// while CompletingRebalance, a parked SyncGroup when a new rebalance starts, or a parked
    /// request replaced by a newer one from the same member. The client rejoins.
    #[error("rebalance in progress")]
    RebalanceInProgress,
    /// FENCED_INSTANCE_ID (KIP-345): the request's group.instance.id now belongs to another
    /// member id, because a newer instance with that id joined; also the answer to the
    /// replaced member's parked requests. Fatal for the old client.
    #[error("fenced: another member has this group.instance.id")]
    FencedInstanceId,
    /// GROUP_MAX_SIZE_REACHED: a JoinGroup would grow the group past
    /// [`GroupConfig::members_max`] (group.max.size).
    #[error("group is full")]
    GroupMaxSizeReached,
    /// COORDINATOR_NOT_AVAILABLE: this shard cannot serve the request now: creating the group
    /// would pass [`GroupConfig::groups_max`], the group log write behind the answer failed,
    /// the broker is shutting down, or the group's shard could not be reached. Clients look
    /// the coordinator up again and retry.
    #[error("coordinator not available")]
    CoordinatorNotAvailable,
    /// NOT_COORDINATOR: in a cluster, another broker coordinates the group (the client asks
    /// FindCoordinator again).
    #[error("another broker coordinates this group")]
    NotCoordinator,
    /// COORDINATOR_LOAD_IN_PROGRESS: in a cluster, this broker just became the group's
    /// coordinator and is still reading its group log (the client retries shortly).
    #[error("the group's log is still being loaded")]
    CoordinatorLoadInProgress,
    /// GROUP_ID_NOT_FOUND: DeleteGroups or OffsetDelete of an absent group, OffsetCommit v9+
    /// with a generation to an absent group, DescribeGroups v6+ of an absent group.
    #[error("group not found")]
    GroupIdNotFound,
    /// NON_EMPTY_GROUP: DeleteGroups of a group that is not Empty, or OffsetDelete on a group
    /// with members whose protocol type is not "consumer".
    #[error("group is not empty")]
    NonEmptyGroup,
    /// GROUP_SUBSCRIBED_TO_TOPIC: OffsetDelete of a topic a member of the (non-empty) group
    /// subscribes to (every topic when the subscriptions cannot be read).
    #[error("group is subscribed to the topic")]
    GroupSubscribedToTopic,
    /// OFFSET_METADATA_TOO_LARGE: a committed offset's metadata is longer than
    /// [`GroupConfig::offset_metadata_bytes_max`]; only that partition is refused.
    #[error("offset metadata too large")]
    OffsetMetadataTooLarge,
    /// UNKNOWN_TOPIC_OR_PARTITION: OffsetCommit or OffsetDelete names a partition that does
    /// not exist. Set by the handlers before the coordinator, never by the machine.
    #[error("unknown topic or partition")]
    UnknownTopicOrPartition,
}

/// A JoinGroup request, resolved from its wire form by the handler.
#[derive(Debug, Clone, Default)]
pub struct JoinRequest {
    /// group.id: the group to join; must not be empty.
    pub group: String,
    /// "" on a member's first join (the coordinator makes an id), else the id it was given.
    pub member_id: String,
    /// group.instance.id (v5+): Some for a static member (KIP-345), which keeps its place
    /// and assignment across restarts instead of causing a rebalance.
    pub instance_id: Option<String>,
    /// The request header's client.id: prefix of a new dynamic member's id; DescribeGroups
    /// shows it.
    pub client_id: String,
    /// The client's address as this broker sees it; DescribeGroups shows it.
    pub client_host: String,
    /// session.timeout.ms: a member not heard from (Heartbeat, JoinGroup, SyncGroup,
    /// OffsetCommit) for this long is removed and the group rebalances.
    pub session_timeout_ms: i32,
    /// How long members get to rejoin once a rebalance starts (the Java consumer sends
    /// max.poll.interval.ms); a join or sync phase lasts the members' largest. The handler
    /// puts the session timeout here for v0 and for values <= 0.
    pub rebalance_timeout_ms: i32,
    /// The kind of group, e.g. "consumer" or "connect": every member must give the same.
    pub protocol_type: String,
    /// (name, metadata) in the client's order of preference: assignor names (e.g. "range")
    /// with the client's opaque metadata for each (its subscription, for "consumer").
    pub protocols: Vec<(String, Bytes)>,
    /// v4+: a new dynamic member first gets MEMBER_ID_REQUIRED (KIP-394).
    pub require_known_member_id: bool,
    /// v9+: a returning static leader is told it is the leader and to skip assignment.
    pub supports_skip_assignment: bool,
}

/// One member as the leader sees it in its JoinGroup response.
#[derive(Debug, Clone, PartialEq)]
pub struct JoinedMember {
    /// The member's id, the key of its share in the leader's SyncGroup assignments.
    pub member_id: String,
    /// Its group.instance.id if it is a static member (sent to JoinGroup v5+).
    pub instance_id: Option<String>,
    /// Its metadata for the protocol chosen for this generation (its subscription), from
    /// which the leader computes the assignment.
    pub metadata: Bytes,
}

/// The answer to a JoinGroup, given at once or when the join phase completes; the handler
/// turns it into the JoinGroup response of the request's version.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct JoinReply {
    /// None on success; on an error the other fields are as [`JoinReply::failed`] sets them.
    pub error: Option<GroupError>,
    /// generation_id: the generation the member joined, to send with SyncGroup, Heartbeat
    /// and OffsetCommit; -1 on an error.
    pub generation: i32,
    /// The group's protocol type (sent to v7+); None on an error.
    pub protocol_type: Option<String>,
    /// The protocol (assignor) chosen for this generation; None on an error.
    pub protocol_name: Option<String>,
    /// The leader's member id; "" on an error. Before v9, a static member taking over its
    /// place in a Stable group is told the leader as it was before (its own old id if it
    /// led), so it does not assign.
    pub leader: String,
    /// The member's id: a new one for a new member (with MEMBER_ID_REQUIRED, the id to
    /// rejoin with), else the request's; "" on some errors.
    pub member_id: String,
    /// Every member with its metadata, for the leader only (it computes the assignment);
    /// empty for the others.
    pub members: Vec<JoinedMember>,
    /// v9+: the leader is a returning static member and the current assignment stands: it
    /// sends SyncGroup without computing a new one.
    pub skip_assignment: bool,
}

impl JoinReply {
    /// A failed JoinGroup: `error`, generation -1, `member_id` as given (the request's, "",
    /// or the new id with MEMBER_ID_REQUIRED), everything else empty.
    pub fn failed(error: GroupError, member_id: String) -> JoinReply {
        JoinReply {
            error: Some(error),
            generation: -1,
            member_id,
            ..JoinReply::default()
        }
    }
}

/// A SyncGroup request, resolved from its wire form by the handler: after its JoinGroup
/// answer every member asks for its assignment, and the leader brings everyone's.
#[derive(Debug, Clone, Default)]
pub struct SyncRequest {
    /// The group, as in the JoinGroup; must not be empty.
    pub group: String,
    /// The member's id from its JoinGroup answer.
    pub member_id: String,
    /// group.instance.id of a static member (v3+); must still map to `member_id`.
    pub instance_id: Option<String>,
    /// The generation of the member's JoinGroup answer; must be the group's current one.
    pub generation: i32,
    /// v5+ (where the handler requires it): must equal the group's protocol type if given.
    pub protocol_type: Option<String>,
    /// v5+ (where the handler requires it): must equal the chosen protocol if given.
    pub protocol_name: Option<String>,
    /// The leader's (member id, assignment) for each member; members left out get empty
    /// bytes, unknown ids are ignored. Ignored from other members and once Stable.
    pub assignments: Vec<(String, Bytes)>,
}

/// The answer to a SyncGroup, given at once (Stable, errors) or once the leader's assignment
/// arrives; the handler turns it into the SyncGroup response.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SyncReply {
    /// None on success, else why the member has no assignment (often: rejoin).
    pub error: Option<GroupError>,
    /// The group's protocol type (sent to v5+); None on an error.
    pub protocol_type: Option<String>,
    /// The protocol chosen for this generation (sent to v5+); None on an error.
    pub protocol_name: Option<String>,
    /// This member's share of the leader's assignment (opaque to the broker); empty on an
    /// error or when the leader gave it nothing.
    pub assignment: Bytes,
}

impl SyncReply {
    /// A failed SyncGroup: `error`, no protocol, an empty assignment.
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
    /// The answer to a JoinGroup.
    Join(JoinReply),
    /// The answer to a SyncGroup.
    Sync(SyncReply),
}

/// A member identity as Heartbeat, OffsetCommit and LeaveGroup carry it.
#[derive(Debug, Clone, Default)]
pub struct MemberRef {
    /// The member's id; "" for a standalone OffsetCommit, or a LeaveGroup (v3+) naming a
    /// static member by its instance id.
    pub member_id: String,
    /// group.instance.id of a static member; when given it must map to `member_id`.
    pub instance_id: Option<String>,
    /// The generation the member holds; checked by Heartbeat and OffsetCommit (-1 in an
    /// OffsetCommit from outside group management), ignored by LeaveGroup (which sends -1).
    pub generation: i32,
}

/// One offset to commit.
#[derive(Debug, Clone)]
pub struct OffsetToCommit {
    /// The topic of the committed partition (one that exists: the handler checked).
    pub topic: String,
    /// The partition index within `topic`.
    pub partition: i32,
    /// The consumer's position: by Kafka convention the next offset it will read.
    pub offset: Offset,
    /// committed_leader_epoch (v6+, else -1): the partition leader epoch of the last record
    /// consumed, handed back by OffsetFetch so the consumer can detect log truncation.
    pub leader_epoch: i32,
    /// The client's free-form string, at most offset.metadata.max.bytes; None is stored as "".
    pub metadata: Option<String>,
}

/// An OffsetCommit for one group, without the partitions of unknown topics (the handler
/// answers those itself).
#[derive(Debug, Clone, Default)]
pub struct CommitRequest {
    /// The group committing; "" is a legal group here.
    pub group: String,
    /// Who commits: a current member at its generation, or generation -1 with no member id
    /// for a standalone commit (a "simple" group, created if absent).
    pub member: MemberRef,
    /// v2-4's retention_time_ms, when not -1.
    pub retention_ms: Option<DurationMs>,
    /// v9+: an unknown group is GROUP_ID_NOT_FOUND rather than ILLEGAL_GENERATION.
    pub group_id_not_found: bool,
    /// The offsets, in request order; the results come back in the same order.
    pub offsets: Vec<OffsetToCommit>,
}

/// A committed offset as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Committed {
    /// The consumer's committed position (the next offset it will read).
    pub offset: Offset,
    /// The committed leader epoch, -1 when the client gave none.
    pub leader_epoch: i32,
    /// The client's metadata string ("" when it gave none).
    pub metadata: String,
    /// When the commit was accepted (broker wall clock); retention of simple groups and of
    /// topics the group stopped consuming counts from it.
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
    /// The group id.
    pub group: String,
    /// Kafka's state name ([`machine::State::name`]): "Empty", "Stable", ...
    pub state: &'static str,
    /// The group's protocol type; "" for a simple group (offsets only).
    pub protocol_type: String,
    /// The chosen protocol's name when Stable, else "".
    pub protocol_data: String,
    /// Every member; their metadata and assignment are filled in only when Stable.
    pub members: Vec<MemberSummary>,
}

/// One member as DescribeGroups shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct MemberSummary {
    /// The member's id.
    pub member_id: String,
    /// Its group.instance.id if static (shown to DescribeGroups v4+).
    pub instance_id: Option<String>,
    /// The client.id it joined with.
    pub client_id: String,
    /// The address it joined from.
    pub client_host: String,
    /// Its metadata for the chosen protocol (its subscription); empty unless Stable.
    pub metadata: Bytes,
    /// Its share of the current assignment; empty unless Stable.
    pub assignment: Bytes,
}

/// A group as the metrics endpoint shows it (`Groups::stats`): `Send`, plain data.
#[derive(Clone, Debug, PartialEq)]
pub struct GroupStats {
    /// The group id.
    pub group: String,
    /// Kafka's state name ("Empty", "Stable", ...).
    pub state: &'static str,
    /// The protocol type ("consumer"; "" for a group that only commits offsets).
    pub protocol_type: String,
    /// Members now.
    pub members: usize,
    /// Every committed offset: topic, partition, offset (in no particular order).
    pub committed: Vec<(String, i32, i64)>,
}

/// A group as ListGroups shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupListing {
    /// The group id.
    pub group: String,
    /// The group's protocol type; "" for a simple group (offsets only).
    pub protocol_type: String,
    /// Kafka's state name ([`machine::State::name`]), which ListGroups' states filter matches.
    pub state: &'static str,
}

/// A standalone commit of offsets `offset + p` for partitions 0-9 of "topic" (tests).
#[cfg(test)]
pub(crate) fn test_commit(group: &str, offset: i64) -> CommitRequest {
    CommitRequest {
        group: group.into(),
        member: MemberRef {
            generation: -1,
            ..MemberRef::default()
        },
        offsets: (0..10)
            .map(|p| OffsetToCommit {
                topic: "topic".into(),
                partition: p,
                offset: Offset(offset + i64::from(p)),
                leader_epoch: 1,
                metadata: Some("some metadata".into()),
            })
            .collect(),
        ..CommitRequest::default()
    }
}
