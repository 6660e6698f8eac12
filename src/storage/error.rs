//! The one error type of the storage module. Every failure below the partition layer is one of
//! these; `kafka/errors.rs` (the server) maps them to Kafka error codes in one place.

use std::path::PathBuf;

use crate::types::Offset;

/// Why a record batch was refused. Each maps to CORRUPT_MESSAGE or INVALID_RECORD on the wire.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    #[error("batch shorter than the {0}-byte v2 header")]
    TooShort(usize),
    #[error("batch magic {0} is not 2")]
    BadMagic(i8),
    #[error("declared batch length {declared} does not match the {actual} bytes given")]
    LengthMismatch { declared: i64, actual: usize },
    #[error("batch CRC32C {stored:#010x} does not match the computed {computed:#010x}")]
    BadCrc { stored: u32, computed: u32 },
    #[error("batch holds {0} records; at least one is required")]
    NoRecords(i32),
    #[error("last offset delta {delta} is inconsistent with {count} records")]
    BadLastOffsetDelta { delta: i32, count: i32 },
}

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("invalid record batch: {0}")]
    InvalidBatch(#[from] BatchError),
    #[error("batch of {size} bytes exceeds max.message.bytes {max}")]
    BatchTooLarge { size: usize, max: usize },
    #[error("offset {requested} is outside the log [{start}, {end}]")]
    OffsetOutOfRange {
        requested: Offset,
        start: Offset,
        end: Offset,
    },
    /// `offset`: the segment's base offset; `position`: the batch's byte position in it.
    #[error("stored batch at byte {position} of segment {offset} in {path} is corrupt: {reason}")]
    CorruptOnDisk {
        path: PathBuf,
        offset: Offset,
        position: u64,
        reason: String,
    },
    #[error("{op} failed on {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("log directory {0} has failed an I/O operation and takes no more writes")]
    LogDirFailed(PathBuf),
    /// A write ran out of space or file descriptors: the log takes no appends until the
    /// flusher's retry of that write succeeds (storage.md §10).
    #[error("log directory {0} is out of disk space or open files; appends resume when a write succeeds")]
    Paused(PathBuf),
    #[error("log is closed")]
    Closed,
}

impl StorageError {
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

pub type Result<T, E = StorageError> = std::result::Result<T, E>;
