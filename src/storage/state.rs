//! The partition log as a pure state machine: what is appended, where it goes, what to write,
//! sync, seal or delete next, and where a read must look. No I/O and no clock: time comes in as
//! arguments and effects go out as [`Action`] values that `log.rs` (the I/O edge) carries out,
//! reporting completion back through `complete_*`. This keeps every storage decision testable
//! without an executor or a disk.
//!
//! Offsets obey `synced ≤ written ≤ next_offset` and `log_start ≤ written` (asserted): `written`
//! is the high watermark, everything below it is on the device (O_DIRECT write completed);
//! `synced` has also been through fdatasync; `next_offset` is the log end, including
//! appended-but-unwritten data. (DeleteRecords may move `log_start` above `synced`.)

use std::collections::VecDeque;

use bytes::{Bytes, BytesMut};

use super::batch::{self, BatchHeader};
use super::cache::{self, TailCache};
use super::config::{LogConfig, TimestampType};
use super::epochs::EpochCache;
use super::error::{Result, StorageError};
use super::index::{OffsetIndex, SegmentSummary, TimeIndex};
use crate::types::{Offset, TimestampMs};

/// One segment's bookkeeping. Its bytes live in `<base>.log`.
#[derive(Debug, Clone)]
pub struct Segment {
    /// The offset of its first batch, which also names its files.
    pub base: Offset,
    /// The offset one past its last batch (pending ones included).
    pub next_offset: Offset,
    /// Logical bytes appended, including pending ones.
    pub log_bytes: u64,
    /// Bytes that reached the device.
    pub written_bytes: u64,
    /// The largest batch max timestamp in it ([`TimestampMs::NONE`] while empty).
    pub max_timestamp: TimestampMs,
    /// The base offset of the batch holding `max_timestamp` (the segment base while empty).
    pub offset_of_max_timestamp: Offset,
    /// When the first batch was appended (for segment.ms); None for an empty segment.
    pub first_append: Option<TimestampMs>,
    /// Its sparse offset index, in memory (written to `<base>.index` when finalized).
    pub offset_index: OffsetIndex,
    /// Its sparse time index, in memory (written to `<base>.timeindex` when finalized).
    pub time_index: TimeIndex,
    bytes_since_index: u64,
    /// No more appends: a newer segment exists.
    pub sealed: bool,
    /// Sealed, fully written, synced, truncated and its index files written.
    pub finalized: bool,
    /// The segment as far as it is written (what `summary` said after the last written
    /// batch): what a recovery checkpoint may cover.
    pub written_summary: SegmentSummary,
    /// Bytes covered by this segment's last recovery checkpoint (its index files as of a
    /// synced prefix; 0: none).
    pub checkpoint_bytes: u64,
}

impl Segment {
    /// An empty, unsealed segment starting at `base`.
    pub fn new(base: Offset) -> Segment {
        Segment {
            base,
            next_offset: base,
            log_bytes: 0,
            written_bytes: 0,
            max_timestamp: TimestampMs::NONE,
            offset_of_max_timestamp: base,
            first_append: None,
            offset_index: OffsetIndex::default(),
            time_index: TimeIndex::default(),
            bytes_since_index: 0,
            sealed: false,
            finalized: false,
            written_summary: SegmentSummary {
                log_bytes: 0,
                next_offset: base,
                max_timestamp: TimestampMs::NONE,
                offset_of_max_timestamp: base,
            },
            checkpoint_bytes: 0,
        }
    }

    /// Records a batch at `position` in the indexes and counters (append and recovery share it).
    pub fn track(&mut self, h: &BatchHeader, position: u64, index_interval_bytes: u32) {
        assert_eq!(position, self.log_bytes, "batches are contiguous");
        assert!(h.base_offset >= self.next_offset, "offsets increase");
        let relative = (h.base_offset.0 - self.base.0) as u32;
        if h.max_timestamp > self.max_timestamp {
            self.max_timestamp = h.max_timestamp;
            self.offset_of_max_timestamp = h.base_offset;
        }
        if self.bytes_since_index >= u64::from(index_interval_bytes) {
            self.offset_index.push(relative, position as u32);
            let rel_max = (self.offset_of_max_timestamp.0 - self.base.0) as u32;
            self.time_index.maybe_push(self.max_timestamp, rel_max);
            self.bytes_since_index = 0;
        }
        self.bytes_since_index += h.size_bytes as u64;
        self.log_bytes += h.size_bytes as u64;
        self.next_offset = h.next_offset();
    }

    /// What its index headers record: size, end offset and max timestamp, pending batches
    /// included.
    pub fn summary(&self) -> SegmentSummary {
        SegmentSummary {
            log_bytes: self.log_bytes,
            next_offset: self.next_offset,
            max_timestamp: self.max_timestamp,
            offset_of_max_timestamp: self.offset_of_max_timestamp,
        }
    }

    /// The files a recovery checkpoint writes for the written prefix: (offset index, time
    /// index), as they would be for a segment that ended there.
    pub fn encode_written(&self) -> (Vec<u8>, Vec<u8>) {
        let s = self.written_summary;
        (
            self.offset_index.encode(s),
            self.time_index.encode(self.base, s),
        )
    }

    /// A segment restored from its index files (a clean open, or a checkpoint's prefix that
    /// recovery then scans on from).
    pub fn from_index(base: Offset, o: OffsetIndex, t: TimeIndex, s: SegmentSummary) -> Segment {
        let mut seg = Segment::new(base);
        seg.next_offset = s.next_offset;
        seg.log_bytes = s.log_bytes;
        seg.written_bytes = s.log_bytes;
        seg.max_timestamp = s.max_timestamp;
        seg.offset_of_max_timestamp = s.offset_of_max_timestamp;
        seg.offset_index = o;
        seg.time_index = t;
        seg.bytes_since_index = 0;
        seg.written_summary = s;
        seg.checkpoint_bytes = s.log_bytes;
        seg
    }
}

/// What the caller learns when a batch is accepted. `ticket` is what to wait on for durability.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AppendInfo {
    /// The offset assigned to the batch's first record.
    pub base_offset: Offset,
    /// The offset assigned to its last record.
    pub last_offset: Offset,
    /// The time set on the batch for LogAppendTime topics, else NONE (-1).
    pub log_append_time: TimestampMs,
    /// The log start offset at the append.
    pub log_start_offset: Offset,
    /// The offset one past the batch: `PartitionLog::wait(ticket, ..)` returns once
    /// everything before it meets the durability asked for.
    pub ticket: Offset,
}

/// A contiguous run of pending batches for one segment, to be written in one aligned write.
#[derive(Debug)]
pub struct WriteJob {
    /// The base offset of the segment written to.
    pub segment: Offset,
    /// The byte position in the segment where the first batch goes.
    pub position: u64,
    /// The batches, in order, laid end to end from `position`.
    pub chunks: Vec<Bytes>,
    /// Bytes of all the batches (at most `write_bytes_max`, unless one batch is larger).
    pub bytes: u64,
    /// The offset one past the last batch: the high watermark once the write completes.
    pub end_offset: Offset,
    /// Records in the batches (for flush.messages).
    pub records: u64,
    /// The segment as it is once this job's last batch is written.
    pub summary: SegmentSummary,
}

/// A recovery checkpoint to write: once `segment`'s file is synced, its indexes as of the
/// written prefix `summary` describes (so recovery after a crash scans only what follows).
#[derive(Debug)]
pub struct Checkpoint {
    /// The base offset of the (active) segment.
    pub segment: Offset,
    /// The written prefix the checkpoint covers.
    pub summary: SegmentSummary,
    /// The offset index file's bytes for that prefix.
    pub offset_index: Vec<u8>,
    /// The time index file's bytes for that prefix.
    pub time_index: Vec<u8>,
}

/// The next effect the I/O edge should carry out.
#[derive(Debug)]
pub enum Action {
    /// Write these batches in one aligned write, then report it with `complete_write`.
    Write(WriteJob),
    /// Sync, truncate to `log_bytes` and write the indexes of a sealed, fully written segment.
    Seal(Offset),
    /// fdatasync the segment last written to.
    Sync(Offset),
    /// fdatasync the active segment and write its recovery checkpoint.
    Checkpoint(Checkpoint),
    /// Nothing to do until more is appended or a sync falls due (or the log has failed).
    Idle,
}

/// Where a read must look.
#[derive(Debug, PartialEq, Eq)]
pub enum ReadPlan {
    /// Nothing at or above the offset yet (offset == high watermark).
    Empty,
    /// Answered from the tail cache: these whole batches.
    Cached(Vec<Bytes>),
    /// Scan `<segment>.log` from `position` (≤ the batch holding `offset`) to at most `end`.
    Disk {
        /// The base offset of the segment to read.
        segment: Offset,
        /// Where to start scanning (from the offset index).
        position: u64,
        /// Where its written bytes end.
        end: u64,
    },
}

#[derive(Debug)]
struct Pending {
    segment: Offset,
    position: u64,
    next_offset: Offset,
    records: u64,
    bytes: Bytes,
    /// The segment as it is with this batch in it.
    summary: SegmentSummary,
}

/// One partition log's bookkeeping: its segments, offsets, queued batches, tail cache and
/// flags; see the module docs. Owned by a `PartitionLog` behind a `RefCell`.
#[derive(Debug)]
pub struct LogState {
    /// The log's settings; replaced whole when the topic's configs change.
    pub config: LogConfig,
    segments: VecDeque<Segment>,
    log_start: Offset,
    written: Offset,
    synced: Offset,
    /// A replicated log's commit point (its replica's high watermark): reads end at the lower
    /// of it and `written`. None for a log of one replica.
    visible: Option<Offset>,
    /// A replicated log's stored Raft checkpoint: the log start (and retention) never pass
    /// it, as the replica rebuilds its Raft log from there at open. None for one replica.
    start_limit: Option<Offset>,
    pending: VecDeque<Pending>,
    /// Bytes appended and not yet reported written (queued or in flight).
    unwritten_bytes: usize,
    cache: TailCache,
    /// Batches that left the tail cache since `take_evicted` last ran (for the read cache).
    evicted: Vec<cache::Entry>,
    unsynced_records: u64,
    unsynced_since: TimestampMs,
    last_written_segment: Offset,
    /// When the last recovery checkpoint was handed out (checkpoint_ms_min apart).
    checkpointed_at: TimestampMs,
    failed: bool,
    /// A write is being retried after running out of space or files: appends are refused.
    paused: bool,
    /// Where each leader epoch begins in this log.
    epochs: EpochCache,
    /// Whether `epochs` changed since its file was last written.
    epochs_changed: bool,
    /// The epoch stamped into appended batches.
    leader_epoch: i32,
    /// A truncation is under way: the flusher starts nothing and appends are refused.
    truncating: bool,
}

impl LogState {
    /// A log over recovered segments (oldest first; the last one is active). All data in them is
    /// on disk, so the high watermark is the log end.
    ///
    /// The active segment's age for segment.ms counts from `now` (its first append time is not
    /// stored), so a reopened segment rolls at most segment.ms after the restart.
    pub fn new(
        config: LogConfig,
        mut segments: VecDeque<Segment>,
        log_start: Offset,
        now: TimestampMs,
    ) -> Self {
        if segments.is_empty() {
            segments.push_back(Segment::new(log_start));
        }
        let end = segments.back().expect("one segment").next_offset;
        let n = segments.len();
        for (i, s) in segments.iter_mut().enumerate() {
            s.sealed = i + 1 < n;
            s.finalized = s.sealed;
            assert_eq!(s.written_bytes, s.log_bytes, "recovered data is on disk");
            s.written_summary = s.summary();
        }
        let log_start = log_start.max(segments.front().expect("one").base).min(end);
        let cache = TailCache::new(config.cache_bytes_max);
        let active = segments.back_mut().expect("one");
        if active.log_bytes > 0 {
            active.first_append = Some(now);
        }
        let last = active.base;
        LogState {
            config,
            segments,
            log_start,
            written: end,
            visible: None,
            start_limit: None,
            synced: end,
            pending: VecDeque::new(),
            unwritten_bytes: 0,
            cache,
            evicted: Vec::new(),
            unsynced_records: 0,
            unsynced_since: TimestampMs(0),
            last_written_segment: last,
            checkpointed_at: now,
            failed: false,
            paused: false,
            epochs: EpochCache::default(),
            epochs_changed: false,
            leader_epoch: 0,
            truncating: false,
        }
    }

    /// Takes the epoch boundaries recovery found, cut to this log's range; appends continue
    /// in the latest of them (0 for a new log). `changed` says they differ from the file, which
    /// is then written at the next checkpoint.
    pub fn restore_epochs(&mut self, mut epochs: EpochCache, changed: bool) {
        let end = self.next_offset();
        let mut changed = changed | epochs.truncate_from(end);
        changed |= epochs.advance_start(self.log_start);
        self.leader_epoch = epochs.latest().unwrap_or(0);
        self.epochs_changed = changed;
        self.epochs = epochs;
    }

    /// The epoch boundaries.
    pub fn epochs(&self) -> &EpochCache {
        &self.epochs
    }

    /// The epoch appends are stamped with.
    pub fn leader_epoch(&self) -> i32 {
        self.leader_epoch
    }

    /// This log's leader (or the leader it follows) is in `epoch` from now on: later appends
    /// carry it. Epochs never go back.
    pub fn set_leader_epoch(&mut self, epoch: i32) {
        assert!(epoch >= self.leader_epoch, "leader epochs only grow");
        self.leader_epoch = epoch;
    }

    /// The checkpoint file's bytes if the boundaries changed since they were last taken (the
    /// caller writes them, and hands them back with `epochs_not_written` if it could not).
    pub fn take_changed_epochs(&mut self) -> Option<Vec<u8>> {
        std::mem::take(&mut self.epochs_changed).then(|| self.epochs.encode())
    }

    /// The epochs file could not be written: it is due again.
    pub fn epochs_not_written(&mut self) {
        self.epochs_changed = true;
    }

    fn check_invariants(&self) {
        assert!(self.log_start <= self.written, "log start ≤ high watermark");
        assert!(self.synced <= self.written, "synced ≤ written");
        assert!(self.written <= self.next_offset(), "written ≤ log end");
    }

    /// The first offset still kept.
    pub fn log_start(&self) -> Offset {
        self.log_start
    }
    /// The offset below which everything is written to the device: what readers may see.
    pub fn high_watermark(&self) -> Offset {
        self.written
    }
    /// Where reads end: what is written, and for a replicated log also committed.
    pub fn readable_end(&self) -> Offset {
        self.visible.map_or(self.written, |v| v.min(self.written))
    }
    /// A replicated log's stored checkpoint moved: the log start may go up to it.
    pub fn set_start_limit(&mut self, limit: Offset) {
        self.start_limit = Some(limit);
    }
    /// A replicated log's commit point moved (its replica's high watermark).
    pub fn set_visible(&mut self, commit: Offset) {
        self.visible = Some(commit);
    }
    /// The offset below which everything has been through fdatasync.
    pub fn synced(&self) -> Offset {
        self.synced
    }
    /// The log end: the offset the next appended batch gets (queued batches included).
    pub fn next_offset(&self) -> Offset {
        self.segments.back().expect("one segment").next_offset
    }
    /// The segment appends go to (there is always one).
    pub fn active(&self) -> &Segment {
        self.segments.back().expect("one segment")
    }
    /// The segments, oldest first; the last is the active one.
    pub fn segments(&self) -> impl Iterator<Item = &Segment> {
        self.segments.iter()
    }
    /// The segment based at `base`, if the log still has it.
    pub fn segment(&self, base: Offset) -> Option<&Segment> {
        self.segments.iter().find(|s| s.base == base)
    }
    /// Bytes of all segments, queued batches included.
    pub fn size_bytes(&self) -> u64 {
        self.segments.iter().map(|s| s.log_bytes).sum()
    }
    /// Whether the log has failed an I/O operation (see [`LogState::fail`]).
    pub fn is_failed(&self) -> bool {
        self.failed
    }
    /// Whether fewer than `pending_bytes_max` bytes wait to be written: appenders may go on.
    pub fn has_room(&self) -> bool {
        self.unwritten_bytes < self.config.pending_bytes_max
    }
    /// Whether nothing is queued or being written.
    pub fn is_drained(&self) -> bool {
        self.pending.is_empty() && self.unwritten_bytes == 0
    }
    /// Marks the log failed after an I/O error the flusher cannot retry: appends are refused
    /// and waiters get an error from then on.
    pub fn fail(&mut self) {
        self.failed = true;
    }
    /// Whether writes are paused (see [`LogState::set_paused`]).
    pub fn is_paused(&self) -> bool {
        self.paused
    }
    /// Set while the flusher retries a write that ran out of space or files; cleared when it
    /// succeeds. Batches appended before stay queued and are written then.
    pub fn set_paused(&mut self, paused: bool) {
        self.paused = paused;
    }
    /// Bytes held in the tail cache.
    pub fn cache_bytes(&self) -> usize {
        self.cache.bytes()
    }
    /// True when the tail cache can answer a read at `offset`.
    pub fn tail_covers(&self, offset: Offset) -> bool {
        self.cache.covers(offset)
    }
    /// The batches that left the tail cache since the last call, oldest first.
    pub fn take_evicted(&mut self) -> Vec<cache::Entry> {
        std::mem::take(&mut self.evicted)
    }

    /// Whether the batch at `ticket` meets `level`; Err once the log has failed.
    pub fn reached(&self, ticket: Offset, level: Durability) -> Result<bool, Failed> {
        if self.failed {
            return Err(Failed);
        }
        Ok(match level {
            Durability::Written => self.written >= ticket,
            Durability::Synced => self.synced >= ticket,
            Durability::Policy if self.config.sync_every_batch() => self.synced >= ticket,
            Durability::Policy => self.written >= ticket,
        })
    }

    /// Validates and appends one producer batch; assigns its offsets. The bytes become visible
    /// to readers once written (see `complete_write`).
    pub fn append(&mut self, mut bytes: BytesMut, now: TimestampMs) -> Result<AppendInfo> {
        let header = self.check_batch(&bytes)?;
        let base = self.next_offset();
        // Replicated batches raise the epoch (`append_replicated`), so it is never below the
        // last batch's and the epoch cache only grows.
        assert!(self.epochs.latest().is_none_or(|e| e <= self.leader_epoch));
        batch::assign_offset(&mut bytes, base, self.leader_epoch);
        let mut log_append_time = TimestampMs::NONE;
        if self.config.timestamp_type == TimestampType::LogAppendTime {
            batch::set_log_append_time(&mut bytes, now);
            log_append_time = now;
        }
        self.epochs_changed |= self.epochs.assign(self.leader_epoch, base);
        let header = BatchHeader {
            base_offset: base,
            leader_epoch: self.leader_epoch,
            attributes: batch::parse_header(&bytes)?.attributes,
            max_timestamp: if log_append_time == TimestampMs::NONE {
                header.max_timestamp
            } else {
                now
            },
            ..header
        };
        let info = self.push(bytes, &header, now);
        Ok(AppendInfo {
            log_append_time,
            ..info
        })
    }

    /// Appends a batch as the partition's leader stored it (a Raft follower's append): its
    /// base offset, leader epoch and timestamps are kept, not rewritten. It must start at the
    /// log end and carry an epoch no older than the last batch's.
    pub fn append_replicated(&mut self, bytes: BytesMut, now: TimestampMs) -> Result<AppendInfo> {
        // No size limit: the leader checked the batch against the topic's (`check_batch`), and
        // a committed entry must be stored whatever this replica's settings say.
        self.check_appendable(None)?;
        let header = batch::validate(&bytes, false)?;
        let (end, latest) = (self.next_offset(), self.epochs.latest().unwrap_or(0));
        if header.base_offset != end || header.leader_epoch < latest {
            return Err(StorageError::OutOfPlace {
                base: header.base_offset,
                end,
                epoch: header.leader_epoch,
                latest,
            });
        }
        self.epochs_changed |= self.epochs.assign(header.leader_epoch, end);
        self.leader_epoch = self.leader_epoch.max(header.leader_epoch);
        Ok(self.push(bytes, &header, now))
    }

    /// Whether a producer's batch may be appended now: the log takes appends, the batch fits
    /// `max.message.bytes`, and it is a valid batch (CRC included). Its header if so.
    pub fn check_batch(&self, bytes: &[u8]) -> Result<BatchHeader> {
        self.check_appendable(Some(bytes.len()))?;
        Ok(batch::validate(bytes, true)?)
    }

    fn check_appendable(&self, size: Option<usize>) -> Result<()> {
        if self.failed {
            return Err(StorageError::LogDirFailed(Default::default()));
        }
        if self.paused {
            return Err(StorageError::Paused(Default::default()));
        }
        assert!(!self.truncating, "no appends while the log is truncated");
        match size {
            Some(size) if size > self.config.message_bytes_max => {
                Err(StorageError::BatchTooLarge {
                    size,
                    max: self.config.message_bytes_max,
                })
            }
            _ => Ok(()),
        }?;
        Ok(())
    }

    /// Queues a batch whose header is final (offsets, epoch, timestamps) at the log end.
    fn push(&mut self, bytes: BytesMut, header: &BatchHeader, now: TimestampMs) -> AppendInfo {
        let base = header.base_offset;
        self.maybe_roll(header, now);
        let interval = self.config.index_interval_bytes;
        let seg = self.segments.back_mut().expect("active segment");
        let position = seg.log_bytes;
        seg.first_append.get_or_insert(now);
        seg.track(header, position, interval);
        let bytes = bytes.freeze();
        let next = header.next_offset();
        let out = self.cache.push(cache::Entry {
            base,
            next,
            segment: seg.base,
            position,
            bytes: bytes.clone(),
        });
        if self.config.read_cache {
            self.evicted.extend(out);
        }
        self.unwritten_bytes += bytes.len();
        self.pending.push_back(Pending {
            segment: seg.base,
            position,
            next_offset: next,
            records: header.record_count as u64,
            bytes,
            summary: seg.summary(),
        });
        self.check_invariants();
        AppendInfo {
            base_offset: base,
            last_offset: header.last_offset(),
            log_append_time: TimestampMs::NONE,
            log_start_offset: self.log_start,
            ticket: next,
        }
    }

    fn maybe_roll(&mut self, h: &BatchHeader, now: TimestampMs) {
        let next = self.next_offset();
        let active = self.segments.back().expect("active segment");
        if active.log_bytes == 0 {
            return;
        }
        let bytes_max = self.config.segment_bytes_max.min(u64::from(u32::MAX));
        let too_big = active.log_bytes + h.size_bytes as u64 > bytes_max;
        let too_old = active
            .first_append
            .is_some_and(|t| now.0.saturating_sub(t.0) >= self.config.segment_ms);
        let offsets_full = h.next_offset().0 - active.base.0 > i64::from(u32::MAX) / 2;
        if too_big || too_old || offsets_full {
            self.segments.back_mut().expect("active").sealed = true;
            self.segments.push_back(Segment::new(next));
        }
    }

    /// Rolls an idle, non-empty active segment once it reaches segment.ms (Kafka rolls on time
    /// even without new data, so retention can delete it).
    pub fn roll_if_expired(&mut self, now: TimestampMs) {
        if self.truncating {
            return;
        }
        let next = self.next_offset();
        let active = self.segments.back().expect("active segment");
        let expired = active
            .first_append
            .is_some_and(|t| now.0.saturating_sub(t.0) >= self.config.segment_ms);
        if active.log_bytes > 0 && expired {
            self.segments.back_mut().expect("active").sealed = true;
            self.segments.push_back(Segment::new(next));
        }
    }

    /// The next effect to carry out, oldest first: seal a finished segment, write pending data,
    /// or sync what is due.
    pub fn next_action(&mut self, now: TimestampMs) -> Action {
        if self.failed || self.truncating {
            return Action::Idle;
        }
        let front_pending = self.pending.front().map(|p| p.segment);
        let seal = self.segments.iter().find(|s| {
            s.sealed
                && !s.finalized
                && s.written_bytes == s.log_bytes
                && front_pending.is_none_or(|p| s.base < p)
        });
        if let Some(s) = seal {
            return Action::Seal(s.base);
        }
        if let Some(c) = self.checkpoint_due(now) {
            return Action::Checkpoint(c);
        }
        // A due sync goes before more writes, or a steady stream of appends would starve it.
        if self
            .config
            .sync_due(self.unsynced_records, self.unsynced_since, now)
        {
            return Action::Sync(self.last_written_segment);
        }
        if let Some(segment) = front_pending {
            return Action::Write(self.take_job(segment));
        }
        Action::Idle
    }

    /// A recovery checkpoint of the active segment, when checkpoint_bytes_min more of it is
    /// written than the last one covered and checkpoint_ms_min has passed since the last.
    fn checkpoint_due(&mut self, now: TimestampMs) -> Option<Checkpoint> {
        let (bytes_min, ms_min) = (
            self.config.checkpoint_bytes_min,
            self.config.checkpoint_ms_min,
        );
        let active = self.segments.back_mut().expect("active segment");
        let written = active.written_summary;
        let grown = written.log_bytes >= active.checkpoint_bytes.saturating_add(bytes_min);
        let spaced = now.0.saturating_sub(self.checkpointed_at.0) >= ms_min;
        if active.sealed || !grown || !spaced {
            return None;
        }
        assert!(
            written.log_bytes <= active.written_bytes,
            "only written bytes"
        );
        active.checkpoint_bytes = written.log_bytes;
        self.checkpointed_at = now;
        let (offset_index, time_index) = active.encode_written();
        Some(Checkpoint {
            segment: active.base,
            summary: written,
            offset_index,
            time_index,
        })
    }

    /// When the next time-based sync is due, if any data is unsynced.
    pub fn sync_deadline(&self) -> Option<TimestampMs> {
        (self.unsynced_records > 0).then(|| {
            TimestampMs(
                self.unsynced_since
                    .0
                    .saturating_add(self.config.flush_ms as i64),
            )
        })
    }

    fn take_job(&mut self, segment: Offset) -> WriteJob {
        let first = self.pending.front().expect("pending");
        let mut job = WriteJob {
            segment,
            position: first.position,
            chunks: Vec::new(),
            bytes: 0,
            end_offset: first.next_offset,
            records: 0,
            summary: first.summary,
        };
        while let Some(p) = self.pending.front() {
            let full =
                job.bytes > 0 && job.bytes + p.bytes.len() as u64 > self.config.write_bytes_max;
            if p.segment != segment || full {
                break;
            }
            let p = self.pending.pop_front().expect("front");
            assert_eq!(p.position, job.position + job.bytes, "contiguous");
            job.bytes += p.bytes.len() as u64;
            job.records += p.records;
            job.end_offset = p.next_offset;
            job.summary = p.summary;
            job.chunks.push(p.bytes);
        }
        job
    }

    /// The write of `job` reached the device.
    pub fn complete_write(&mut self, job: &WriteJob, now: TimestampMs) {
        let seg = self.segment_mut(job.segment);
        assert_eq!(seg.written_bytes, job.position, "writes are in order");
        seg.written_bytes = job.position + job.bytes;
        assert!(seg.written_bytes <= seg.log_bytes);
        assert_eq!(
            job.summary.log_bytes, seg.written_bytes,
            "the job's summary is its end"
        );
        seg.written_summary = job.summary;
        assert!(job.end_offset > self.written);
        self.written = job.end_offset;
        self.unwritten_bytes -= job.bytes as usize;
        if self.unsynced_records == 0 {
            self.unsynced_since = now;
        }
        self.unsynced_records += job.records;
        self.last_written_segment = job.segment;
        self.check_invariants();
    }

    /// An fdatasync that started when the high watermark was `upto` has completed.
    pub fn complete_sync(&mut self, upto: Offset) {
        assert!(upto <= self.written);
        if upto > self.synced {
            self.synced = upto;
        }
        if self.synced == self.written {
            self.unsynced_records = 0;
        }
        self.check_invariants();
    }

    /// A sealed segment is synced, truncated and indexed. Everything up to its end is durable.
    pub fn complete_seal(&mut self, base: Offset) {
        let seg = self.segment_mut(base);
        assert!(seg.sealed && seg.written_bytes == seg.log_bytes);
        seg.finalized = true;
        let end = seg.next_offset;
        if end > self.synced {
            self.complete_sync(end);
        }
    }

    /// Base offset of the oldest segment that is not finalized: recovery must scan from here.
    pub fn recovery_point(&self) -> Offset {
        self.segments
            .iter()
            .find(|s| !s.finalized)
            .map_or(self.next_offset(), |s| s.base)
    }

    fn segment_mut(&mut self, base: Offset) -> &mut Segment {
        self.segments
            .iter_mut()
            .find(|s| s.base == base)
            .expect("known segment")
    }

    /// Starts removing everything from offset `to` on (a follower cutting a suffix its
    /// leader does not have): returns the plan for the edge, or None when the log ends at or
    /// before `to`. Everything appended must be written first; from now until
    /// `complete_truncate` the flusher starts nothing. `to` may not be below the log start.
    pub fn begin_truncate(&mut self, to: Offset) -> Result<Option<Truncation>> {
        if self.failed {
            return Err(StorageError::LogDirFailed(Default::default()));
        }
        assert!(self.is_drained(), "a truncation waits for every write");
        assert!(!self.truncating, "one truncation at a time");
        if to >= self.next_offset() {
            return Ok(None);
        }
        if to < self.log_start {
            return Err(StorageError::OffsetOutOfRange {
                requested: to,
                start: self.log_start,
                end: self.written,
            });
        }
        let keep = self
            .segments
            .iter()
            .rev()
            .find(|s| s.base <= to)
            .expect("the log start's segment is kept");
        let drop = self.segments.iter().rev().map(|s| s.base);
        let drop = drop.take_while(|&b| b > keep.base).collect();
        self.truncating = true;
        Ok(Some(Truncation {
            to,
            keep: keep.base,
            recovery_point: self.recovery_point().min(keep.base),
            drop,
        }))
    }

    /// The edge removed the dropped segments and cut `kept` (rescanned up to the truncation
    /// point, written and synced): it becomes the active segment, and the log ends there.
    pub fn complete_truncate(&mut self, t: &Truncation, mut kept: Segment) {
        assert!(self.truncating, "a truncation was begun");
        assert_eq!(
            (kept.base, kept.next_offset),
            (t.keep, t.to),
            "cut where planned"
        );
        assert_eq!(
            kept.written_bytes, kept.log_bytes,
            "the kept part is written"
        );
        while self.segments.back().is_some_and(|s| s.base > t.keep) {
            self.segments.pop_back();
        }
        kept.sealed = false;
        kept.finalized = false;
        kept.written_summary = kept.summary();
        kept.checkpoint_bytes = 0;
        *self.segments.back_mut().expect("the kept segment") = kept;
        self.written = t.to;
        self.synced = t.to;
        self.cache.clear();
        self.evicted.clear();
        self.unsynced_records = 0;
        self.last_written_segment = t.keep;
        self.epochs_changed |= self.epochs.truncate_from(t.to);
        self.truncating = false;
        self.check_invariants();
    }

    /// Whether a truncation is under way.
    pub fn is_truncating(&self) -> bool {
        self.truncating
    }

    /// A truncation was refused before anything changed (its point is not a batch
    /// boundary): the log goes on as it was.
    pub fn cancel_truncate(&mut self) {
        assert!(self.truncating, "a truncation was begun");
        self.truncating = false;
    }

    /// A truncation failed half-way (an I/O error): the log is failed, as after any write
    /// error, and reopening it recovers a consistent prefix.
    pub fn abort_truncate(&mut self) {
        self.truncating = false;
        self.failed = true;
    }

    /// Plans a read of whole batches from `offset` (Kafka semantics: the batch holding `offset`
    /// comes first, then more while they fit `max_bytes`).
    pub fn plan_read(&self, offset: Offset, max_bytes: usize) -> Result<ReadPlan> {
        let hw = self.readable_end();
        // Offsets up to what is written are in range; a replicated log serves nothing at or
        // past its commit point yet (a consumer there waits, as at the end of the log).
        if offset < self.log_start || offset > self.written {
            return Err(StorageError::OffsetOutOfRange {
                requested: offset,
                start: self.log_start,
                end: self.written,
            });
        }
        if offset >= hw {
            return Ok(ReadPlan::Empty);
        }
        if self.cache.covers(offset) {
            return Ok(ReadPlan::Cached(self.cache.read(offset, hw, max_bytes)));
        }
        let seg = self
            .segments
            .iter()
            .rev()
            .find(|s| s.base <= offset && offset < s.next_offset)
            .or_else(|| self.segments.iter().find(|s| s.next_offset > offset))
            .expect("offset below hw lies in a segment");
        let relative = (offset.0 - seg.base.0).max(0) as u32;
        Ok(ReadPlan::Disk {
            segment: seg.base,
            position: u64::from(seg.offset_index.lookup(relative)),
            end: seg.written_bytes,
        })
    }

    /// Where to scan, in order, for the first batch whose max timestamp is ≥ `ts`: every
    /// segment that holds such a batch above the log start, as (segment, position, end).
    pub fn plan_time_lookup(&self, ts: TimestampMs) -> Vec<(Offset, u64, u64)> {
        self.segments
            .iter()
            .filter(|s| s.max_timestamp >= ts && s.next_offset > self.log_start)
            .map(|seg| {
                let rel = seg.time_index.lookup(ts);
                let pos = seg.offset_index.lookup(rel);
                (seg.base, u64::from(pos), seg.written_bytes)
            })
            .collect()
    }

    /// The largest timestamp in the log and the base offset of the batch holding it.
    pub fn max_timestamp(&self) -> (TimestampMs, Offset) {
        self.segments
            .iter()
            .filter(|s| s.next_offset > self.log_start)
            .fold((TimestampMs::NONE, self.log_start), |acc, s| {
                if s.max_timestamp > acc.0 {
                    (s.max_timestamp, s.offset_of_max_timestamp)
                } else {
                    acc
                }
            })
    }

    /// DeleteRecords: moves the log start to `offset` (0 ≤ offset ≤ high watermark; an offset
    /// below the start leaves it where it is). A negative offset is out of range, as in Kafka.
    pub fn advance_log_start(&mut self, offset: Offset) -> Result<Offset> {
        if self.truncating {
            // The kept part is being decided: the caller retries (a leader never truncates).
            return Err(StorageError::Paused(Default::default()));
        }
        let end = self.readable_end();
        if offset > end || offset < Offset(0) {
            return Err(StorageError::OffsetOutOfRange {
                requested: offset,
                start: self.log_start,
                end,
            });
        }
        let offset = self.start_limit.map_or(offset, |l| offset.min(l));
        self.log_start = self.log_start.max(offset);
        self.epochs_changed |= self.epochs.advance_start(self.log_start);
        Ok(self.log_start)
    }

    /// Removes the segments that retention (time, size, log start) lets go, oldest first, and
    /// returns their bases for the edge to delete. Only finalized segments are ever removed.
    pub fn plan_retention(&mut self, now: TimestampMs) -> Vec<Offset> {
        let mut removed = Vec::new();
        if self.truncating {
            return removed; // the next run does it, once the segments are settled
        }
        let mut size = self.size_bytes() as i64;
        while self.segments.len() > 1 {
            let s = self.segments.front().expect("non-empty");
            if !s.finalized || self.start_limit.is_some_and(|l| s.next_offset > l) {
                break;
            }
            let by_start = s.next_offset <= self.log_start;
            let by_time = self.config.retention_ms >= 0
                && s.max_timestamp.0 < now.0.saturating_sub(self.config.retention_ms);
            let by_size = self.config.retention_bytes >= 0
                && size - s.log_bytes as i64 >= self.config.retention_bytes;
            if !(by_start || by_time || by_size) {
                break;
            }
            size -= s.log_bytes as i64;
            let s = self.segments.pop_front().expect("non-empty");
            removed.push(s.base);
        }
        let first = self.segments.front().expect("active remains").base;
        self.log_start = self.log_start.max(first);
        self.epochs_changed |= self.epochs.advance_start(self.log_start);
        self.check_invariants();
        removed
    }
}

/// What the edge does to cut a log at `to` (`LogState::begin_truncate`): write
/// `recovery_point` (so a crash part-way rescans the kept segment), delete the `drop`
/// segments' files newest first, then rescan `keep` up to `to` and cut its file there.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Truncation {
    /// The new log end.
    pub to: Offset,
    /// The base of the segment holding `to`, which becomes the active one.
    pub keep: Offset,
    /// The recovery point to write first.
    pub recovery_point: Offset,
    /// Segments wholly at or past `to`, newest first.
    pub drop: Vec<Offset>,
}

/// The log has failed an I/O operation; nothing more will be acknowledged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Failed;

/// How far along a batch must be before the caller is told.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Durability {
    /// On the device (O_DIRECT write completed): survives a process crash.
    Written,
    /// Through fdatasync: survives power loss.
    Synced,
    /// What the topic's flush policy asks of acks=all: Synced if it syncs every batch, else Written.
    Policy,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::batch::build_test_batch;

    fn cfg() -> LogConfig {
        LogConfig {
            segment_bytes_max: 1000,
            index_interval_bytes: 200,
            cache_bytes_max: 600,
            ..LogConfig::default()
        }
    }

    fn batch(n: i32, ts: i64) -> BytesMut {
        BytesMut::from(&build_test_batch(n, 40, TimestampMs(ts))[..])
    }

    fn drain(s: &mut LogState, now: i64) {
        loop {
            match s.next_action(TimestampMs(now)) {
                Action::Write(job) => s.complete_write(&job, TimestampMs(now)),
                Action::Seal(b) => s.complete_seal(b),
                Action::Sync(_) => {
                    let hw = s.high_watermark();
                    s.complete_sync(hw)
                }
                Action::Checkpoint(_) => {}
                Action::Idle => break,
            }
        }
    }

    #[test]
    fn the_log_start_moves_only_forward_within_the_log() {
        let mut s = LogState::new(cfg(), VecDeque::new(), Offset(0), TimestampMs(0));
        s.append(batch(3, 10), TimestampMs(1)).unwrap();
        drain(&mut s, 2);
        let out = |r: Result<Offset>| matches!(r, Err(StorageError::OffsetOutOfRange { .. }));
        assert!(
            out(s.advance_log_start(Offset(-1001))),
            "negative: out of range"
        );
        assert!(out(s.advance_log_start(Offset(-2))));
        assert!(
            out(s.advance_log_start(Offset(4))),
            "past the high watermark"
        );
        assert_eq!(s.advance_log_start(Offset(2)).unwrap(), Offset(2));
        assert_eq!(
            s.advance_log_start(Offset(1)).unwrap(),
            Offset(2),
            "never back"
        );
        assert_eq!(s.advance_log_start(Offset(3)).unwrap(), Offset(3));
        assert_eq!(s.log_start(), Offset(3));
    }

    #[test]
    fn a_paused_log_refuses_appends_and_writes_its_queue_when_resumed() {
        let mut s = LogState::new(cfg(), VecDeque::new(), Offset(0), TimestampMs(0));
        let queued = s.append(batch(3, 10), TimestampMs(1)).unwrap();
        let Action::Write(job) = s.next_action(TimestampMs(2)) else {
            panic!("a write is due");
        };
        // The write ran out of space: the edge pauses the log and retries the same job.
        s.set_paused(true);
        assert!(matches!(
            s.append(batch(1, 11), TimestampMs(3)),
            Err(StorageError::Paused(_))
        ));
        assert_eq!(
            s.next_offset(),
            Offset(3),
            "nothing refused was given offsets"
        );
        assert_eq!(s.reached(queued.ticket, Durability::Written), Ok(false));
        s.complete_write(&job, TimestampMs(4));
        s.set_paused(false);
        assert_eq!(s.reached(queued.ticket, Durability::Written), Ok(true));
        assert!(s.append(batch(1, 12), TimestampMs(5)).is_ok(), "resumed");
    }

    #[test]
    fn append_assigns_offsets_and_waits_for_write() {
        let mut s = LogState::new(cfg(), VecDeque::new(), Offset(0), TimestampMs(0));
        let a = s.append(batch(3, 10), TimestampMs(1)).unwrap();
        let b = s.append(batch(2, 11), TimestampMs(1)).unwrap();
        assert_eq!((a.base_offset, a.last_offset), (Offset(0), Offset(2)));
        assert_eq!((b.base_offset, b.ticket), (Offset(3), Offset(5)));
        assert_eq!(s.high_watermark(), Offset(0));
        assert_eq!(s.plan_read(Offset(0), 100).unwrap(), ReadPlan::Empty);
        assert_eq!(s.reached(b.ticket, Durability::Written), Ok(false));
        match s.next_action(TimestampMs(2)) {
            Action::Write(job) => {
                assert_eq!(job.chunks.len(), 2, "group commit coalesces");
                s.complete_write(&job, TimestampMs(2));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(s.high_watermark(), Offset(5));
        assert_eq!(s.reached(b.ticket, Durability::Policy), Ok(true));
        assert_eq!(s.reached(b.ticket, Durability::Synced), Ok(false));
        match s.plan_read(Offset(4), 1).unwrap() {
            ReadPlan::Cached(v) => assert_eq!(v.len(), 1),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_write_takes_at_most_write_bytes_max_but_always_one_batch() {
        let one = batch(1, 1).len() as u64;
        let c = LogConfig {
            segment_bytes_max: 1 << 20,
            write_bytes_max: 2 * one + 1,
            ..cfg()
        };
        let mut s = LogState::new(c, VecDeque::new(), Offset(0), TimestampMs(0));
        for _ in 0..5 {
            s.append(batch(1, 1), TimestampMs(1)).unwrap();
        }
        let mut sizes = Vec::new();
        while let Action::Write(job) = s.next_action(TimestampMs(2)) {
            sizes.push(job.chunks.len());
            s.complete_write(&job, TimestampMs(2));
        }
        assert_eq!(sizes, [2, 2, 1], "five batches in writes of at most two");
        assert_eq!(s.high_watermark(), Offset(5));
        s.config.write_bytes_max = 1;
        s.append(batch(1, 1), TimestampMs(3)).unwrap();
        match s.next_action(TimestampMs(3)) {
            Action::Write(job) => assert_eq!(job.chunks.len(), 1, "a batch above the limit"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn rolls_seals_and_retains() {
        let mut s = LogState::new(cfg(), VecDeque::new(), Offset(0), TimestampMs(0));
        for i in 0..40 {
            s.append(batch(1, i), TimestampMs(i)).unwrap();
            drain(&mut s, i);
        }
        let n = s.segments().count();
        assert!(n > 3, "rolled into {n} segments");
        assert!(s.segments().take(n - 1).all(|x| x.finalized));
        assert_eq!(s.synced(), s.segments().last().unwrap().base);
        assert_eq!(s.recovery_point(), s.segments().last().unwrap().base);
        s.config.retention_bytes = 1500;
        let removed = s.plan_retention(TimestampMs(100));
        assert!(!removed.is_empty());
        assert!(s.size_bytes() >= 1500 - 1000);
        assert_eq!(s.log_start(), s.segments().next().unwrap().base);
        assert!(matches!(
            s.plan_read(Offset(0), 10),
            Err(StorageError::OffsetOutOfRange { .. })
        ));
    }

    #[test]
    fn sync_policy_every_batch() {
        let c = LogConfig {
            flush_messages: 1,
            ..cfg()
        };
        let mut s = LogState::new(c, VecDeque::new(), Offset(0), TimestampMs(0));
        let a = s.append(batch(2, 1), TimestampMs(1)).unwrap();
        let Action::Write(job) = s.next_action(TimestampMs(1)) else {
            panic!()
        };
        s.complete_write(&job, TimestampMs(1));
        assert_eq!(s.reached(a.ticket, Durability::Policy), Ok(false));
        assert!(matches!(s.next_action(TimestampMs(1)), Action::Sync(_)));
        s.complete_sync(s.high_watermark());
        assert_eq!(s.reached(a.ticket, Durability::Policy), Ok(true));
        assert!(matches!(s.next_action(TimestampMs(1)), Action::Idle));
    }

    #[test]
    fn sync_is_not_starved_by_steady_appends() {
        let c = LogConfig {
            flush_messages: 1,
            ..cfg()
        };
        let mut s = LogState::new(c, VecDeque::new(), Offset(0), TimestampMs(0));
        let mut syncs = 0;
        for i in 0..100 {
            s.append(batch(1, i), TimestampMs(i)).unwrap();
            match s.next_action(TimestampMs(i)) {
                Action::Write(job) => s.complete_write(&job, TimestampMs(i)),
                Action::Sync(_) => {
                    syncs += 1;
                    let hw = s.high_watermark();
                    s.complete_sync(hw)
                }
                Action::Seal(b) => s.complete_seal(b),
                Action::Checkpoint(_) | Action::Idle => {}
            }
        }
        assert!(syncs >= 25, "syncs interleave with writes: {syncs}");
    }

    #[test]
    fn a_checkpoint_covers_the_written_prefix_once_enough_is_written_and_time_passed() {
        let c = LogConfig {
            checkpoint_bytes_min: 2000,
            checkpoint_ms_min: 100,
            index_interval_bytes: 1,
            segment_bytes_max: 1 << 20,
            ..cfg()
        };
        let mut s = LogState::new(c, VecDeque::new(), Offset(0), TimestampMs(0));
        let mut checkpoints = Vec::new();
        for i in 0..40 {
            s.append(batch(1, i * 10), TimestampMs(i * 10)).unwrap();
            if i % 2 == 1 {
                continue; // a batch stays pending: the checkpoint must not cover it
            }
            loop {
                match s.next_action(TimestampMs(i * 10)) {
                    Action::Write(job) => s.complete_write(&job, TimestampMs(i * 10)),
                    Action::Checkpoint(cp) => checkpoints.push((i, cp)),
                    Action::Idle => break,
                    other => panic!("unexpected {other:?}"),
                }
            }
        }
        assert!(checkpoints.len() >= 2, "{} checkpoints", checkpoints.len());
        let mut last = 0;
        for (i, cp) in checkpoints {
            let seg = s.segments().last().unwrap();
            assert!(cp.summary.log_bytes >= last + 2000 && i * 10 >= 100);
            last = cp.summary.log_bytes;
            let (o, os) = OffsetIndex::decode(&cp.offset_index).unwrap();
            let (_, ts) = TimeIndex::decode(&cp.time_index).unwrap();
            assert_eq!(os, cp.summary);
            assert_eq!(ts, cp.summary);
            assert!(
                cp.summary.log_bytes < seg.log_bytes,
                "not the pending batch"
            );
            // Offset k is batch k, stamped k * 10: the prefix's newest is its last batch.
            let newest = TimestampMs((cp.summary.next_offset.0 - 1) * 10);
            assert_eq!(cp.summary.max_timestamp, newest, "as of the prefix");
            let restored = Segment::from_index(seg.base, o, TimeIndex::default(), cp.summary);
            assert_eq!(restored.next_offset, cp.summary.next_offset);
        }
    }

    #[test]
    fn rejects_bad_batches_without_changing_state() {
        let mut s = LogState::new(cfg(), VecDeque::new(), Offset(0), TimestampMs(0));
        let mut bad = batch(1, 1);
        let n = bad.len();
        bad[n - 1] ^= 1;
        assert!(matches!(
            s.append(bad, TimestampMs(1)),
            Err(StorageError::InvalidBatch(_))
        ));
        let big = BytesMut::from(&build_test_batch(1, 2_000_000, TimestampMs(1))[..]);
        assert!(matches!(
            s.append(big, TimestampMs(1)),
            Err(StorageError::BatchTooLarge { .. })
        ));
        assert_eq!(s.next_offset(), Offset(0));
        s.fail();
        assert!(matches!(
            s.append(batch(1, 1), TimestampMs(1)),
            Err(StorageError::LogDirFailed(_))
        ));
    }

    #[test]
    fn time_lookup_and_log_append_time() {
        let c = LogConfig {
            timestamp_type: TimestampType::LogAppendTime,
            ..cfg()
        };
        let mut s = LogState::new(c, VecDeque::new(), Offset(0), TimestampMs(0));
        let a = s.append(batch(1, 5), TimestampMs(500)).unwrap();
        assert_eq!(a.log_append_time, TimestampMs(500));
        drain(&mut s, 500);
        assert_eq!(s.max_timestamp(), (TimestampMs(500), Offset(0)));
        assert_eq!(s.plan_time_lookup(TimestampMs(400)).len(), 1);
        assert!(s.plan_time_lookup(TimestampMs(600)).is_empty());
    }
}
