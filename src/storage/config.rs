//! Per-partition log settings: Kafka's topic configs that storage obeys, plus our memory bounds.
//!
//! The server builds one from a topic's configs (names in comments are Kafka's) and hands it to
//! `PartitionLog::open`. Defaults follow Kafka except where docs/storage.md says why not.

use crate::types::TimestampMs;

/// Kafka's message.timestamp.type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum TimestampType {
    /// Batches keep the timestamps the producer set.
    #[default]
    CreateTime,
    /// The broker stamps each batch with its append time (`batch::set_log_append_time`).
    LogAppendTime,
}

/// One partition log's settings; see the module docs. Changed on a live log by
/// `PartitionLog::set_config` when the topic's configs change.
#[derive(Clone, Debug)]
pub struct LogConfig {
    /// segment.bytes: roll when the active segment would exceed this.
    pub segment_bytes_max: u64,
    /// segment.ms: roll when the active segment's first append is this old.
    pub segment_ms: i64,
    /// retention.ms: delete sealed segments whose newest record is older (-1: keep forever).
    pub retention_ms: i64,
    /// retention.bytes: delete oldest sealed segments while the log exceeds this (-1: no limit).
    pub retention_bytes: i64,
    /// flush.messages: fdatasync once this many records are unsynced (1 = every batch).
    pub flush_messages: u64,
    /// flush.ms: fdatasync when unsynced data is this old (0 = every batch).
    pub flush_ms: u64,
    /// index.interval.bytes: bytes of log between sparse index entries.
    pub index_interval_bytes: u32,
    /// max.message.bytes: the largest batch accepted.
    pub message_bytes_max: usize,
    /// message.timestamp.type.
    pub timestamp_type: TimestampType,
    /// Bytes of recent batches kept in memory so tail readers never touch the disk.
    pub cache_bytes_max: usize,
    /// Appended-but-unwritten bytes allowed before appenders wait (backpressure).
    pub pending_bytes_max: usize,
    /// fallocate step for the active segment file.
    pub preallocate_bytes_step: u64,
    /// The most one write takes of what is queued (at least one batch): more waits for the
    /// next write. Large enough for the device's full speed, small enough that the copy into
    /// the DMA buffer stays short and reuses memory.
    pub write_bytes_max: u64,
    /// Whether the shard's read cache takes this log's batches (off for group logs, read
    /// once at start).
    pub read_cache: bool,
    /// How far ahead of a sequential reader the log keeps batches read from disk.
    pub readahead_bytes: usize,
    /// The size of one read-ahead read (O_DIRECT); `readahead_bytes / read_chunk_bytes` are
    /// in flight at once.
    pub read_chunk_bytes: usize,
    /// Check every batch's CRC32C when it is read from disk (`--verify-reads`). Off by
    /// default: every batch was checked when it was appended, and the recovery scan checks
    /// what a crash may have torn; length, magic and offsets are always checked.
    pub verify_reads: bool,
    /// A recovery checkpoint of the active segment (its indexes as of a synced prefix, so a
    /// crash recovery scans only what follows) is written once this much more is on disk...
    pub checkpoint_bytes_min: u64,
    /// ...and at most once per this many milliseconds.
    pub checkpoint_ms_min: i64,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            segment_bytes_max: 1 << 30,
            segment_ms: 7 * 24 * 3600 * 1000,
            retention_ms: 7 * 24 * 3600 * 1000,
            retention_bytes: -1,
            flush_messages: i64::MAX as u64,
            flush_ms: 1000,
            index_interval_bytes: 4096,
            message_bytes_max: 1_048_588,
            timestamp_type: TimestampType::CreateTime,
            cache_bytes_max: 16 << 20,
            pending_bytes_max: 64 << 20,
            preallocate_bytes_step: 32 << 20,
            write_bytes_max: 8 << 20,
            read_cache: true,
            readahead_bytes: 16 << 20,
            read_chunk_bytes: 2 << 20,
            verify_reads: false,
            checkpoint_bytes_min: 16 << 20,
            checkpoint_ms_min: 1000,
        }
    }
}

impl LogConfig {
    /// True when acks=all must wait for fdatasync of the batch (Redpanda-style durability).
    pub fn sync_every_batch(&self) -> bool {
        self.flush_messages <= 1 || self.flush_ms == 0
    }

    /// Whether unsynced data (`messages` records, oldest unsynced since `since`) is due a sync.
    pub fn sync_due(&self, messages: u64, since: TimestampMs, now: TimestampMs) -> bool {
        messages > 0
            && (messages >= self.flush_messages
                || now.0.saturating_sub(since.0) >= self.flush_ms.min(i64::MAX as u64) as i64)
    }
}
