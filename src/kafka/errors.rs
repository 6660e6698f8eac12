//! The one place where domain errors become Kafka error codes: every code a response carries
//! is an [`ErrorCode`] made here, from a domain error (storage, produce, admin, group,
//! routing) or one of the named codes below; handlers put it on the wire with
//! [`ErrorCode::code`].

use kafka_protocol::ResponseError as E;

use super::compression::CompressionError;
use crate::group::GroupError;
use crate::metadata::TopicConfigError;
use crate::partition::producers::ProducerError;
use crate::partition::{EpochError, ProduceError};
use crate::replica::ReplicaError;
use crate::shard::route::Unrouted;
use crate::shard::{AdminError, ShardGone};
use crate::storage::StorageError;

/// A Kafka error code (0: none), on its way from where the error is known to the response.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ErrorCode(i16);

impl ErrorCode {
    /// The code as the wire carries it.
    pub const fn code(self) -> i16 {
        self.0
    }

    /// Whether this is NONE (no error).
    pub const fn is_none(self) -> bool {
        self.0 == 0
    }
}

const fn of(e: E) -> ErrorCode {
    ErrorCode(e.code())
}

/// No error (0).
pub const NONE: ErrorCode = ErrorCode(0);

impl From<Unrouted> for ErrorCode {
    fn from(u: Unrouted) -> ErrorCode {
        match u {
            Unrouted::UnknownPartition => UNKNOWN_TOPIC_OR_PARTITION,
            Unrouted::ShardGone(gone) => shard_gone(&gone),
            // Kafka's answer from a broker that does not lead the partition, whether or not
            // another one does (the Java consumer takes LEADER_NOT_AVAILABLE in a Fetch badly).
            Unrouted::NotHere => NOT_LEADER_OR_FOLLOWER,
        }
    }
}

impl From<EpochError> for ErrorCode {
    fn from(e: EpochError) -> ErrorCode {
        match e {
            EpochError::Fenced => of(E::FencedLeaderEpoch),
            EpochError::Unknown => of(E::UnknownLeaderEpoch),
            EpochError::NotLeader => of(E::NotLeaderOrFollower),
        }
    }
}

/// The code for a storage failure (a partition log's, or the producer-id block's): bad or
/// oversized batches, offsets out of range, disk failures, a paused (full) log.
pub fn storage(e: &StorageError) -> ErrorCode {
    match e {
        StorageError::InvalidBatch(_) => of(E::CorruptMessage),
        StorageError::BatchTooLarge { .. } => of(E::MessageTooLarge),
        StorageError::OffsetOutOfRange { .. } => of(E::OffsetOutOfRange),
        // Only a replica's own appends meet it; a client that did would be out of range.
        StorageError::OutOfPlace { .. } => of(E::OffsetOutOfRange),
        StorageError::CorruptOnDisk { .. } => of(E::KafkaStorageError),
        StorageError::Io { .. } | StorageError::LogDirFailed(_) => of(E::KafkaStorageError),
        // Not retriable, so clients report it at once (with `produce_message`) instead of
        // retrying until their delivery timeout; an idempotent producer stays usable
        // (compatibility.md, "A full disk").
        StorageError::Paused(_) => of(E::PolicyViolation),
        StorageError::Closed => of(E::NotLeaderOrFollower),
    }
}

/// The code for a refused Produce batch: its log's failure, or the idempotent producer's
/// state refusing it (sequence, epoch, too many producers).
pub fn produce(e: &ProduceError) -> ErrorCode {
    match e {
        ProduceError::Storage(e) => storage(e),
        ProduceError::Producer(ProducerError::OutOfOrderSequence) => {
            of(E::OutOfOrderSequenceNumber)
        }
        ProduceError::Producer(ProducerError::InvalidEpoch) => of(E::InvalidProducerEpoch),
        ProduceError::Producer(ProducerError::TooManyProducers) => of(E::PolicyViolation),
        ProduceError::Replica(e) => replica(e),
        ProduceError::NotEnoughReplicasAfterAppend => of(E::NotEnoughReplicasAfterAppend),
        ProduceError::TimedOut => of(E::RequestTimedOut),
    }
}

/// The code for a replica's refusal of a produce (issue 21).
pub fn replica(e: &ReplicaError) -> ErrorCode {
    match e {
        ReplicaError::NotLeader(_) => of(E::NotLeaderOrFollower),
        ReplicaError::NotEnoughReplicas { .. } => of(E::NotEnoughReplicas),
        ReplicaError::NotABatch => of(E::CorruptMessage),
        ReplicaError::Storage(e) => storage(e),
        // A leader transfer, too much uncommitted: retriable once metadata is refreshed.
        ReplicaError::Raft(_) => of(E::NotLeaderOrFollower),
        ReplicaError::Damaged(..) | ReplicaError::CatchUpGap { .. } | ReplicaError::Copy(_) => {
            of(E::KafkaStorageError)
        }
    }
}

/// The error_message (Produce v8+) for a refused batch, where the code alone would mislead.
pub fn produce_message(e: &ProduceError) -> Option<String> {
    match e {
        ProduceError::Storage(StorageError::Paused(_)) => Some(
            "the broker's disk is full (or it is out of open files): appends resume once \
             space returns"
                .into(),
        ),
        ProduceError::Producer(ProducerError::TooManyProducers) => {
            Some("this partition tracks too many idempotent producers".into())
        }
        ProduceError::Replica(e @ ReplicaError::NotEnoughReplicas { .. }) => Some(e.to_string()),
        _ => None,
    }
}

/// The code for a refused topic change (CreateTopics, DeleteTopics, CreatePartitions,
/// AlterConfigs); [`crate::kafka::handlers::admin_outcome`] pairs it with the message.
pub fn admin(e: &AdminError) -> ErrorCode {
    match e {
        AdminError::TopicExists(_) => of(E::TopicAlreadyExists),
        AdminError::UnknownTopic(_) => of(E::UnknownTopicOrPartition),
        AdminError::InvalidTopicName(_) | AdminError::InternalTopic(_) => {
            of(E::InvalidTopicException)
        }
        AdminError::InvalidPartitions(_) => of(E::InvalidPartitions),
        AdminError::InvalidReplicationFactor(_) => of(E::InvalidReplicationFactor),
        AdminError::InvalidReplicaAssignment(_) => of(E::InvalidReplicaAssignment),
        AdminError::InvalidConfig(
            TopicConfigError::Unknown(_) | TopicConfigError::Invalid { .. },
        ) => of(E::InvalidConfig),
        AdminError::Failed(_) => of(E::UnknownServerError),
        AdminError::NoSpace(_) => of(E::KafkaStorageError),
        AdminError::NotController(_) => of(E::NotController),
        AdminError::TimedOut(_) => of(E::RequestTimedOut),
    }
}

/// The code for a Produce batch whose records fail the checks of `kafka::compression`.
/// `produce_version`: INVALID_RECORD exists from Produce v8 (KIP-467); older clients get
/// CORRUPT_MESSAGE, as Kafka answers them.
pub fn compression(e: &CompressionError, produce_version: i16) -> ErrorCode {
    match e {
        CompressionError::Corrupt(_) => of(E::CorruptMessage),
        CompressionError::TooLarge(_) => of(E::MessageTooLarge),
        CompressionError::InvalidRecord(_) if produce_version >= 8 => of(E::InvalidRecord),
        CompressionError::InvalidRecord(_) => of(E::CorruptMessage),
    }
}

/// The code for a consumer-group request the coordinator refused; each `GroupError` is the
/// Kafka error of the same name.
pub fn group(e: &GroupError) -> ErrorCode {
    match e {
        GroupError::InvalidGroupId => of(E::InvalidGroupId),
        GroupError::InvalidSessionTimeout => of(E::InvalidSessionTimeout),
        GroupError::UnknownMemberId => of(E::UnknownMemberId),
        GroupError::MemberIdRequired => of(E::MemberIdRequired),
        GroupError::IllegalGeneration => of(E::IllegalGeneration),
        GroupError::InconsistentGroupProtocol => of(E::InconsistentGroupProtocol),
        GroupError::RebalanceInProgress => of(E::RebalanceInProgress),
        GroupError::FencedInstanceId => of(E::FencedInstanceId),
        GroupError::GroupMaxSizeReached => of(E::GroupMaxSizeReached),
        GroupError::CoordinatorNotAvailable => of(E::CoordinatorNotAvailable),
        GroupError::NotCoordinator => of(E::NotCoordinator),
        GroupError::CoordinatorLoadInProgress => of(E::CoordinatorLoadInProgress),
        GroupError::GroupIdNotFound => of(E::GroupIdNotFound),
        GroupError::NonEmptyGroup => of(E::NonEmptyGroup),
        GroupError::GroupSubscribedToTopic => of(E::GroupSubscribedToTopic),
        GroupError::OffsetMetadataTooLarge => of(E::OffsetMetadataTooLarge),
        GroupError::UnknownTopicOrPartition => of(E::UnknownTopicOrPartition),
    }
}

/// The error code of a group outcome (NONE for success).
pub fn group_result<T>(r: &Result<T, GroupError>) -> ErrorCode {
    r.as_ref().err().map_or(NONE, group)
}

/// The code for work whose shard is shutting down: NOT_LEADER_OR_FOLLOWER, which clients
/// retry after refreshing metadata.
pub fn shard_gone(_: &ShardGone) -> ErrorCode {
    of(E::NotLeaderOrFollower)
}

/// A topic name no topic has, or a partition index out of its range.
pub const UNKNOWN_TOPIC_OR_PARTITION: ErrorCode = of(E::UnknownTopicOrPartition);
/// In a cluster: a partition another broker serves (the client refreshes its metadata).
pub const NOT_LEADER_OR_FOLLOWER: ErrorCode = of(E::NotLeaderOrFollower);
/// In a cluster: a partition whose broker is dead (Metadata's partitions without a leader).
pub const LEADER_NOT_AVAILABLE: ErrorCode = of(E::LeaderNotAvailable);
/// In a cluster: no broker is known to coordinate the group now (FindCoordinator).
pub const COORDINATOR_NOT_AVAILABLE: ErrorCode = of(E::CoordinatorNotAvailable);
/// A topic id (Fetch, Metadata, DeleteTopics) no topic has.
pub const UNKNOWN_TOPIC_ID: ErrorCode = of(E::UnknownTopicId);
/// A topic name Kafka's naming rule refuses (a Metadata request naming an unknown topic).
pub const INVALID_TOPIC: ErrorCode = of(E::InvalidTopicException);
/// A Produce with acks other than -1, 0 or 1.
pub const INVALID_REQUIRED_ACKS: ErrorCode = of(E::InvalidRequiredAcks);
/// An acks=all Produce to a partition with fewer in-sync replicas than the topic's
/// min.insync.replicas (retriable; nothing is appended).
pub const NOT_ENOUGH_REPLICAS: ErrorCode = of(E::NotEnoughReplicas);
/// A request that decodes but asks for what the API does not allow here (an unknown
/// resource or coordinator key type, a transactional InitProducerId, say).
pub const INVALID_REQUEST: ErrorCode = of(E::InvalidRequest);
/// A version the API table does not serve (ApiVersions answers with it and the table).
pub const UNSUPPORTED_VERSION: ErrorCode = of(E::UnsupportedVersion);
/// A config change that cannot apply (an unknown IncrementalAlterConfigs operation).
pub const INVALID_CONFIG: ErrorCode = of(E::InvalidConfig);
/// A Produce partition with no records.
pub const CORRUPT_MESSAGE: ErrorCode = of(E::CorruptMessage);
/// A failure no other code describes.
pub const UNKNOWN_SERVER_ERROR: ErrorCode = of(E::UnknownServerError);
/// FindCoordinator for a transaction: there are no transactions yet, and this is the code
/// every client takes as fatal (see `handlers::find_coordinator`).
pub const CLUSTER_AUTHORIZATION_FAILED: ErrorCode = of(E::ClusterAuthorizationFailed);
