//! The one place where domain errors become Kafka error codes.

use kafka_protocol::ResponseError as E;

use super::compression::CompressionError;
use crate::group::GroupError;
use crate::metadata::ConfigError;
use crate::partition::producers::ProducerError;
use crate::partition::ProduceError;
use crate::shard::{AdminError, ShardGone};
use crate::storage::StorageError;

pub const NONE: i16 = 0;

pub fn storage(e: &StorageError) -> i16 {
    match e {
        StorageError::InvalidBatch(_) => E::CorruptMessage.code(),
        StorageError::BatchTooLarge { .. } => E::MessageTooLarge.code(),
        StorageError::OffsetOutOfRange { .. } => E::OffsetOutOfRange.code(),
        StorageError::CorruptOnDisk { .. } => E::KafkaStorageError.code(),
        StorageError::Io { .. } | StorageError::LogDirFailed(_) => E::KafkaStorageError.code(),
        // Not retriable, so clients report it at once (with `produce_message`) instead of
        // retrying until their delivery timeout; an idempotent producer stays usable
        // (compatibility.md, "A full disk").
        StorageError::Paused(_) => E::PolicyViolation.code(),
        StorageError::Closed => E::NotLeaderOrFollower.code(),
    }
}

pub fn produce(e: &ProduceError) -> i16 {
    match e {
        ProduceError::Storage(e) => storage(e),
        ProduceError::Producer(ProducerError::OutOfOrderSequence) => {
            E::OutOfOrderSequenceNumber.code()
        }
        ProduceError::Producer(ProducerError::InvalidEpoch) => E::InvalidProducerEpoch.code(),
        ProduceError::Producer(ProducerError::TooManyProducers) => E::PolicyViolation.code(),
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
        _ => None,
    }
}

pub fn admin(e: &AdminError) -> i16 {
    match e {
        AdminError::TopicExists(_) => E::TopicAlreadyExists.code(),
        AdminError::UnknownTopic(_) => E::UnknownTopicOrPartition.code(),
        AdminError::InvalidTopicName(_) => E::InvalidTopicException.code(),
        AdminError::InvalidPartitions(_) => E::InvalidPartitions.code(),
        AdminError::InvalidReplicationFactor(_) => E::InvalidReplicationFactor.code(),
        AdminError::InvalidConfig(ConfigError::Unknown(_) | ConfigError::Invalid { .. }) => {
            E::InvalidConfig.code()
        }
        AdminError::Failed(_) => E::UnknownServerError.code(),
        AdminError::NoSpace(_) => E::KafkaStorageError.code(),
    }
}

/// `produce_version`: INVALID_RECORD exists from Produce v8 (KIP-467); older clients get
/// CORRUPT_MESSAGE, as Kafka answers them.
pub fn compression(e: &CompressionError, produce_version: i16) -> i16 {
    match e {
        CompressionError::Corrupt(_) => E::CorruptMessage.code(),
        CompressionError::TooLarge(_) => E::MessageTooLarge.code(),
        CompressionError::InvalidRecord(_) if produce_version >= 8 => E::InvalidRecord.code(),
        CompressionError::InvalidRecord(_) => E::CorruptMessage.code(),
    }
}

pub fn group(e: &GroupError) -> i16 {
    match e {
        GroupError::InvalidGroupId => E::InvalidGroupId.code(),
        GroupError::InvalidSessionTimeout => E::InvalidSessionTimeout.code(),
        GroupError::UnknownMemberId => E::UnknownMemberId.code(),
        GroupError::MemberIdRequired => E::MemberIdRequired.code(),
        GroupError::IllegalGeneration => E::IllegalGeneration.code(),
        GroupError::InconsistentGroupProtocol => E::InconsistentGroupProtocol.code(),
        GroupError::RebalanceInProgress => E::RebalanceInProgress.code(),
        GroupError::FencedInstanceId => E::FencedInstanceId.code(),
        GroupError::GroupMaxSizeReached => E::GroupMaxSizeReached.code(),
        GroupError::CoordinatorNotAvailable => E::CoordinatorNotAvailable.code(),
        GroupError::GroupIdNotFound => E::GroupIdNotFound.code(),
        GroupError::NonEmptyGroup => E::NonEmptyGroup.code(),
        GroupError::GroupSubscribedToTopic => E::GroupSubscribedToTopic.code(),
        GroupError::OffsetMetadataTooLarge => E::OffsetMetadataTooLarge.code(),
        GroupError::UnknownTopicOrPartition => E::UnknownTopicOrPartition.code(),
    }
}

/// The error code of a group outcome (NONE for success).
pub fn group_result<T>(r: &Result<T, GroupError>) -> i16 {
    r.as_ref().err().map_or(NONE, group)
}

pub fn shard_gone(_: &ShardGone) -> i16 {
    E::NotLeaderOrFollower.code()
}

pub const UNKNOWN_TOPIC_OR_PARTITION: i16 = E::UnknownTopicOrPartition.code();
pub const UNKNOWN_TOPIC_ID: i16 = E::UnknownTopicId.code();
pub const INVALID_TOPIC: i16 = E::InvalidTopicException.code();
pub const INVALID_REQUIRED_ACKS: i16 = E::InvalidRequiredAcks.code();
pub const INVALID_REQUEST: i16 = E::InvalidRequest.code();
pub const UNSUPPORTED_VERSION: i16 = E::UnsupportedVersion.code();
pub const INVALID_CONFIG: i16 = E::InvalidConfig.code();
pub const CORRUPT_MESSAGE: i16 = E::CorruptMessage.code();
pub const UNKNOWN_SERVER_ERROR: i16 = E::UnknownServerError.code();
