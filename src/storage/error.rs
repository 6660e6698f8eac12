//! The one error type of the storage module. Every failure below the partition layer is one of
//! these; `kafka/errors.rs` (the server) maps them to Kafka error codes in one place.

use std::path::PathBuf;

use crate::types::Offset;

/// Why a record batch was refused. Each maps to CORRUPT_MESSAGE or INVALID_RECORD on the wire.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    /// Fewer bytes than a v2 header (carries the header size).
    #[error("batch shorter than the {0}-byte v2 header")]
    TooShort(usize),
    /// Not a v2 batch (carries the magic byte found).
    #[error("batch magic {0} is not 2")]
    BadMagic(i8),
    /// The batch's length field disagrees with the bytes it came in.
    #[error("declared batch length {declared} does not match the {actual} bytes given")]
    LengthMismatch {
        /// The size the length field declares (12 + batchLength).
        declared: i64,
        /// The bytes actually given.
        actual: usize,
    },
    /// The stored CRC32C does not match the batch's bytes.
    #[error("batch CRC32C {stored:#010x} does not match the computed {computed:#010x}")]
    BadCrc {
        /// The CRC the batch carries.
        stored: u32,
        /// The CRC of its bytes.
        computed: u32,
    },
    /// The record count is zero or negative (carries it).
    #[error("batch holds {0} records; at least one is required")]
    NoRecords(i32),
    /// The last offset delta does not fit the record count: a produced batch's must be
    /// `count - 1`; a stored one's may be more (gaps), never less.
    #[error("last offset delta {delta} is inconsistent with {count} records")]
    BadLastOffsetDelta {
        /// The batch's last offset delta.
        delta: i32,
        /// The batch's record count.
        count: i32,
    },
}

/// Every failure of a partition log; `is_exhaustion` tells which ones more room would cure.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// A batch handed to append fails its checks.
    #[error("invalid record batch: {0}")]
    InvalidBatch(#[from] BatchError),
    /// A replicated batch does not continue the log: it does not start at the log end, or its
    /// leader epoch is older than the last batch's.
    #[error("replicated batch at {base} (epoch {epoch}) does not follow the log end {end} (epoch {latest})")]
    OutOfPlace {
        /// The batch's base offset.
        base: Offset,
        /// The log end offset.
        end: Offset,
        /// The batch's leader epoch.
        epoch: i32,
        /// The last batch's leader epoch.
        latest: i32,
    },
    /// A batch larger than the topic's max.message.bytes.
    #[error("batch of {size} bytes exceeds max.message.bytes {max}")]
    BatchTooLarge {
        /// The batch's size in bytes.
        size: usize,
        /// The topic's max.message.bytes.
        max: usize,
    },
    /// A read or DeleteRecords names an offset below the log start or past its end.
    #[error("offset {requested} is outside the log [{start}, {end}]")]
    OffsetOutOfRange {
        /// The offset asked for.
        requested: Offset,
        /// The log start offset.
        start: Offset,
        /// The high watermark.
        end: Offset,
    },
    /// A batch read back from a segment fails its checks (length, magic, offsets, or the CRC
    /// with `verify_reads`).
    /// `offset`: the segment's base offset; `position`: the batch's byte position in it.
    #[error("stored batch at byte {position} of segment {offset} in {path} is corrupt: {reason}")]
    CorruptOnDisk {
        /// The segment file.
        path: PathBuf,
        /// The segment's base offset.
        offset: Offset,
        /// The batch's byte position in the segment.
        position: u64,
        /// What is wrong with it.
        reason: String,
    },
    /// A system call failed.
    #[error("{op} failed on {path}: {source}")]
    Io {
        /// What was being done, e.g. `"fdatasync segment"` (`is_exhaustion` reads it).
        op: &'static str,
        /// The file or directory it was done on.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// An earlier write or sync of this log failed (not for lack of room): the log takes no
    /// more appends, and waiters on its durability get this too. Carries the log's directory.
    #[error("log directory {0} has failed an I/O operation and takes no more writes")]
    LogDirFailed(PathBuf),
    /// A write ran out of space or file descriptors: the log takes no appends until the
    /// flusher's retry of that write succeeds (storage.md §10).
    #[error("log directory {0} is out of disk space or open files; appends resume when a write succeeds")]
    Paused(PathBuf),
    /// The log was closed (shutdown, or its topic deleted) while the call waited or before it.
    #[error("log is closed")]
    Closed,
}

impl StorageError {
    /// An [`StorageError::Io`] for `op` on `path`.
    pub fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        StorageError::Io {
            op,
            path: path.into(),
            source,
        }
    }

    /// Whether this is an I/O error that more room would cure: no space (ENOSPC, EDQUOT) or
    /// no file descriptors (EMFILE, ENFILE). Retrying the same write later is then safe.
    ///
    /// Never an fdatasync/fsync of a segment or directory: Linux reports a writeback error
    /// once, so a retried sync could succeed with the data not durable ("fsyncgate").
    pub fn is_exhaustion(&self) -> bool {
        const EXHAUSTED: [i32; 4] = [libc::ENOSPC, libc::EDQUOT, libc::EMFILE, libc::ENFILE];
        match self {
            StorageError::Io { source, op, .. } => {
                let sync = matches!(*op, "fdatasync segment" | "fsync dir");
                !sync
                    && source
                        .raw_os_error()
                        .is_some_and(|c| EXHAUSTED.contains(&c))
            }
            _ => false,
        }
    }
}

/// A result whose error is a [`StorageError`] unless said otherwise.
pub type Result<T, E = StorageError> = std::result::Result<T, E>;
