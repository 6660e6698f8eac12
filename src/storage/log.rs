//! `PartitionLog`: one partition's log on its owning shard, the API the server calls.
//!
//! Appends are synchronous state changes (validate, assign offsets, queue); a per-log flusher
//! task carries out what [`LogState::next_action`] asks for: it writes what was queued since
//! the last write (up to `write_bytes_max`) in one aligned O_DIRECT write (group commit),
//! keeps the partial last block in memory and rewrites it with the next write, seals rolled
//! segments, and runs fdatasync as the flush policy says. Callers wait on a ticket for the
//! durability they need. Reads come from the tail cache, the shard's read cache (`readcache`)
//! or the disk, which read-ahead keeps ahead of sequential readers; nothing above the high
//! watermark (the written offset) is ever served. An I/O error fails the log: no further
//! append or ack succeeds.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use event_listener::Event;
use futures_lite::future;

use super::batch::{self, BatchHeader, Batches, Stop};
use super::config::LogConfig;
use super::epochs::{EpochCache, EPOCHS_FILE};
use super::error::{Result, StorageError};
use super::io::{self, align_down, align_up, IoBuf, SegmentFile};
use super::recovery::{self, segment_path};
use super::state::{
    Action, AppendInfo, Checkpoint, Durability, Failed, LogState, ReadPlan, Segment, Truncation,
    WriteJob,
};
use super::{files, readcache};
use crate::types::{Offset, TimestampMs};

/// Bytes a disk read brings in beyond `max_bytes`, to cover the sparse index gap.
const READ_SLACK_BYTES: usize = 8 << 10;

/// The least a segment file is grown by (see `preallocate_ahead`).
const PREALLOCATE_BYTES_MIN: u64 = 1 << 20;

/// How far past the write end `end` to fallocate: as much as the segment already holds, at least
/// `PREALLOCATE_BYTES_MIN` and at most `step_max`. Small partitions (a topic per test, a quiet
/// partition) then take about their size on disk, and busy ones grow in full steps.
fn preallocate_ahead(end: u64, step_max: u64, align: u64) -> u64 {
    end.max(PREALLOCATE_BYTES_MIN).min(step_max).max(align)
}

/// A run of batch bytes handed to a reader: from the tail cache or a DMA read buffer.
#[derive(Clone, Debug)]
pub enum Chunk {
    /// From memory: the tail cache or the shard's read cache.
    Mem(Bytes),
    /// Read from the segment file (a DMA buffer, not `Send`).
    Disk(IoBuf),
}

impl Deref for Chunk {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Chunk::Mem(b) => b,
            Chunk::Disk(b) => b,
        }
    }
}

impl Chunk {
    /// For crossing to another shard (`Bytes` is Send; DMA buffers are not): copies disk data.
    pub fn into_bytes(self) -> Bytes {
        match self {
            Chunk::Mem(b) => b,
            Chunk::Disk(b) => Bytes::copy_from_slice(&b),
        }
    }
}

/// A log's offsets and sizes at one moment (see [`PartitionLog::sizes`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LogSizes {
    /// The first offset kept.
    pub log_start: Offset,
    /// The high watermark.
    pub high_watermark: Offset,
    /// Bytes of all segments, batches not yet written included.
    pub size_bytes: u64,
    /// Segments, the active one included.
    pub segments: u64,
    /// Bytes the tail cache holds.
    pub tail_cache_bytes: u64,
}

/// The answer to a read: whole batches plus the log's bounds at the time of the read.
#[derive(Debug)]
pub struct ReadOutcome {
    /// Whole batches in offset order, the first holding the offset read (empty at the high
    /// watermark).
    pub chunks: Vec<Chunk>,
    /// The high watermark when read.
    pub high_watermark: Offset,
    /// The log start offset when read.
    pub log_start: Offset,
}

impl ReadOutcome {
    /// Bytes of all the chunks together.
    pub fn bytes(&self) -> usize {
        self.chunks.iter().map(|c| c.len()).sum()
    }
}

/// The in-memory partial last block of the segment being written.
#[derive(Default)]
struct Tail {
    segment: Option<Offset>,
    start: u64,
    bytes: Vec<u8>,
    allocated: u64,
}

/// The partial last block of segment `base`, whose data ends at `log_bytes`, read back from
/// its file (at open, and after a truncation), so the next write rewrites that block whole.
async fn load_tail(file: &SegmentFile, base: Offset, log_bytes: u64) -> Result<Tail> {
    let start = align_down(log_bytes, file.alignment());
    let buf = file.read(start, (log_bytes - start) as usize).await?;
    assert_eq!(buf.len() as u64, log_bytes - start, "tail block read");
    Ok(Tail {
        segment: Some(base),
        start,
        bytes: buf.to_vec(),
        allocated: file.size().await?,
    })
}

struct Inner {
    dir: PathBuf,
    state: RefCell<LogState>,
    files: RefCell<BTreeMap<Offset, Rc<SegmentFile>>>,
    tail: RefCell<Tail>,
    /// Notified after every completed write, sync or seal, and on failure.
    progress: Event,
    /// Wakes the flusher: new appends, or close.
    work: Event,
    closing: Cell<bool>,
    /// Set by `abandon`: the flusher stops where it is, as if the process died.
    abandoned: Cell<bool>,
    flusher_done: Cell<bool>,
    /// The flusher is carrying out an action (a truncation waits for it to finish).
    flusher_busy: Cell<bool>,
    /// Truncations completed: a disk read or read-ahead planned before one serves and caches
    /// nothing.
    truncations: Cell<u64>,
    /// The log start last written to the checkpoint file (None: not this run).
    checkpointed_start: Cell<Option<Offset>>,
    /// This log's key in the shard's read cache.
    cache_id: u64,
    /// Where the last read from the read cache or disk ended: read-ahead works from here.
    reader_at: Cell<Offset>,
    /// A read-ahead task is running (at most one per log).
    reading_ahead: Cell<bool>,
    /// What the running read-ahead step is reading: (segment, first offset, end position).
    ahead: Cell<Option<(Offset, Offset, u64)>>,
    /// Notified each time read-ahead adds an extent, and when a step ends.
    ahead_progress: Event,
    /// The corrupt batch last logged, (segment, byte position): each is logged once.
    corrupt_logged: Cell<Option<(Offset, u64)>>,
    /// The last retention run failed (its failure is logged once).
    retention_failing: Cell<bool>,
    /// A retention run is under way: runs take turns (the periodic one and DeleteRecords would
    /// otherwise write the log-start checkpoint's temp file at once and one rename would fail).
    retention_running: Cell<bool>,
    /// Notified when a retention run ends.
    retention_done: Event,
}

/// Ends a retention run's turn, also when its future is dropped part way.
struct RetentionTurn<'a>(&'a Inner);

impl Drop for RetentionTurn<'_> {
    fn drop(&mut self) {
        self.0.retention_running.set(false);
        self.0.retention_done.notify(usize::MAX);
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        readcache::with(|c| c.forget(self.cache_id, None));
        files::forget_log(self.cache_id);
    }
}

/// A handle on one partition's log (clones share it); see the module docs. Lives on the
/// shard that opened it, which also runs its flusher task.
#[derive(Clone)]
pub struct PartitionLog {
    inner: Rc<Inner>,
}

impl PartitionLog {
    /// Opens or creates the log in `dir`, recovering it, and starts its flusher task.
    pub async fn open(dir: impl AsRef<Path>, config: LogConfig) -> Result<PartitionLog> {
        let dir = dir.as_ref().to_path_buf();
        let rec = recovery::recover(&dir, &config).await?;
        if !rec.was_clean {
            tracing::debug!(dir = %dir.display(), bytes = rec.scanned_bytes, "recovery scanned");
        }
        if rec.truncated_bytes > 0 {
            tracing::warn!(dir = %dir.display(), bytes = rec.truncated_bytes, "truncated torn log tail");
        }
        let mut state = LogState::new(config, rec.segments, rec.log_start, TimestampMs::now());
        state.restore_epochs(rec.epochs, rec.epochs_changed);
        let active = state.active();
        let tail = match rec.files.get(&active.base) {
            Some(file) => load_tail(file, active.base, active.log_bytes).await?,
            None => Tail::default(),
        };
        let inner = Rc::new(Inner {
            dir,
            state: RefCell::new(state),
            files: RefCell::new(rec.files),
            tail: RefCell::new(tail),
            progress: Event::new(),
            work: Event::new(),
            closing: Cell::new(false),
            abandoned: Cell::new(false),
            flusher_done: Cell::new(false),
            flusher_busy: Cell::new(false),
            truncations: Cell::new(0),
            checkpointed_start: Cell::new(None),
            cache_id: readcache::next_log_id(),
            reader_at: Cell::new(Offset(0)),
            reading_ahead: Cell::new(false),
            ahead: Cell::new(None),
            ahead_progress: Event::new(),
            corrupt_logged: Cell::new(None),
            retention_failing: Cell::new(false),
            retention_running: Cell::new(false),
            retention_done: Event::new(),
        });
        io::spawn(run_flusher(inner.clone())).detach();
        Ok(PartitionLog { inner })
    }

    /// The log's directory (segments, indexes, checkpoints).
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// Appends one producer batch, waiting first if too much is queued for writing. Returns as
    /// soon as offsets are assigned; wait on `info.ticket` for durability.
    pub async fn append(&self, batch: BytesMut, now: TimestampMs) -> Result<AppendInfo> {
        self.wait_for_room().await?;
        self.append_now(batch, now)
    }

    /// Waits until the log takes appends (not too much queued for writing). A caller that must
    /// check something right before its append (producer state) calls this, checks, then
    /// [`PartitionLog::append_now`] with no await in between.
    pub async fn wait_for_room(&self) -> Result<()> {
        loop {
            let listener = self.inner.progress.listen();
            {
                let st = self.inner.state.borrow();
                if st.is_failed() {
                    return Err(StorageError::LogDirFailed(self.inner.dir.clone()));
                }
                if self.inner.closing.get() {
                    return Err(StorageError::Closed);
                }
                if st.is_paused() {
                    return Err(StorageError::Paused(self.inner.dir.clone()));
                }
                if st.has_room() {
                    return Ok(());
                }
            }
            listener.await;
        }
    }

    /// Appends one batch now (see `wait_for_room`; without room it still appends, and the
    /// queue bound is exceeded by this batch).
    pub fn append_now(&self, batch: BytesMut, now: TimestampMs) -> Result<AppendInfo> {
        if self.inner.closing.get() {
            return Err(StorageError::Closed);
        }
        let appended = self.inner.state.borrow_mut().append(batch, now);
        self.after_append(appended)
    }

    /// An append's bookkeeping: errors named with this log's directory, evicted tail-cache
    /// batches handed to the read cache, the flusher woken.
    fn after_append(&self, info: Result<AppendInfo>) -> Result<AppendInfo> {
        let evicted = self.inner.state.borrow_mut().take_evicted();
        let info = info.map_err(|e| match e {
            StorageError::LogDirFailed(_) => StorageError::LogDirFailed(self.inner.dir.clone()),
            StorageError::Paused(_) => StorageError::Paused(self.inner.dir.clone()),
            e => e,
        })?;
        if !evicted.is_empty() {
            readcache::with(|c| {
                for e in evicted {
                    c.insert(
                        self.inner.cache_id,
                        e.base,
                        (e.next, e.segment, e.position, e.bytes),
                    );
                }
            });
        }
        self.inner.work.notify(1);
        Ok(info)
    }

    /// Appends a batch as its partition's leader stored it (a Raft follower): base offset,
    /// leader epoch and timestamps kept (`LogState::append_replicated`). Returns at once,
    /// like `append_now`; wait on the ticket for durability.
    pub fn append_replicated(&self, batch: BytesMut, now: TimestampMs) -> Result<AppendInfo> {
        if self.inner.closing.get() {
            return Err(StorageError::Closed);
        }
        let appended = self.inner.state.borrow_mut().append_replicated(batch, now);
        self.after_append(appended)
    }

    /// Whether everything before `ticket` meets `level` now (false on a failed log).
    pub fn is_durable(&self, ticket: Offset, level: Durability) -> bool {
        self.inner.state.borrow().reached(ticket, level) == Ok(true)
    }

    /// Waits until everything before `ticket` meets `level`.
    pub async fn wait(&self, ticket: Offset, level: Durability) -> Result<()> {
        loop {
            let listener = self.inner.progress.listen();
            match self.inner.state.borrow().reached(ticket, level) {
                Ok(true) => return Ok(()),
                Ok(false) => {}
                Err(Failed) => return Err(StorageError::LogDirFailed(self.inner.dir.clone())),
            }
            if self.inner.flusher_done.get() {
                return Err(StorageError::Closed);
            }
            listener.await;
        }
    }

    /// Like `wait`, for at most `timeout`: false if the batch is not there by then (a log whose
    /// writes are paused on a full disk, say).
    pub async fn wait_at_most(
        &self,
        ticket: Offset,
        level: Durability,
        timeout: Duration,
    ) -> Result<bool> {
        let waited = future::or(async { Some(self.wait(ticket, level).await) }, async {
            io::sleep(timeout).await;
            None
        });
        match waited.await {
            Some(reached) => reached.map(|()| true),
            None => Ok(false),
        }
    }

    /// Waits until the high watermark passes `offset` or `timeout` elapses (fetch long-poll).
    pub async fn wait_for_data(&self, offset: Offset, timeout: Duration) {
        let listener = self.inner.progress.listen();
        if self.high_watermark() > offset || self.inner.flusher_done.get() {
            return;
        }
        future::or(listener, io::sleep(timeout)).await
    }

    /// The end of what reads serve: the offset below which everything is written to the
    /// device (and, for a replicated log, committed).
    pub fn high_watermark(&self) -> Offset {
        self.inner.state.borrow().readable_end()
    }

    /// Checks a producer's batch as `append` would (the log takes appends, `max.message.bytes`,
    /// a valid batch with its CRC) without appending it: a replicated partition's leader
    /// checks before proposing, as every replica must then store what it proposed.
    pub fn check_batch(&self, bytes: &[u8]) -> Result<BatchHeader> {
        self.inner.state.borrow().check_batch(bytes)
    }

    /// A replicated log's Raft checkpoint is stored at `limit`: the log start and retention
    /// never pass it (DeleteRecords then moves the start only that far), since the replica
    /// rebuilds its Raft log from the checkpoint's offset when it opens.
    pub fn set_start_limit(&self, limit: Offset) {
        self.inner.state.borrow_mut().set_start_limit(limit);
    }

    /// A replicated log's commit point moved: reads end there (or at what is written, if
    /// lower), and long polls waiting for data look again.
    pub fn set_commit(&self, commit: Offset) {
        self.inner.state.borrow_mut().set_visible(commit);
        self.inner.progress.notify(usize::MAX);
    }
    /// Writes are paused: a write ran out of space or files and is being retried.
    pub fn is_paused(&self) -> bool {
        self.inner.state.borrow().is_paused()
    }
    /// The first offset still kept.
    pub fn log_start(&self) -> Offset {
        self.inner.state.borrow().log_start()
    }
    /// The log end: the offset the next append gets (batches not yet written included).
    pub fn next_offset(&self) -> Offset {
        self.inner.state.borrow().next_offset()
    }
    /// Bytes of all segments, batches not yet written included.
    pub fn size_bytes(&self) -> u64 {
        self.inner.state.borrow().size_bytes()
    }
    /// What the metrics endpoint shows, read under one borrow: log start, high watermark,
    /// bytes and count of segments, tail-cache bytes.
    pub fn sizes(&self) -> LogSizes {
        let st = self.inner.state.borrow();
        let (segments, size_bytes) = st
            .segments()
            .fold((0, 0), |(n, b), s| (n + 1, b + s.log_bytes));
        LogSizes {
            log_start: st.log_start(),
            high_watermark: st.readable_end(),
            size_bytes,
            segments,
            tail_cache_bytes: st.cache_bytes() as u64,
        }
    }
    /// Segments the log has, the active one included.
    pub fn segment_count(&self) -> usize {
        self.inner.state.borrow().segments().count()
    }
    /// The largest timestamp in the log and the offset of the batch holding it.
    pub fn max_timestamp(&self) -> (TimestampMs, Offset) {
        self.inner.state.borrow().max_timestamp()
    }
    /// The leader epoch appends are stamped with.
    pub fn leader_epoch(&self) -> i32 {
        self.inner.state.borrow().leader_epoch()
    }
    /// From now on appends carry `epoch` (a new leader's, never lower than the current one).
    pub fn set_leader_epoch(&self, epoch: i32) {
        self.inner.state.borrow_mut().set_leader_epoch(epoch);
    }
    /// OffsetForLeaderEpoch: the latest epoch at or below `requested` and where it ends
    /// (`EpochCache::end_offset_for`), against the log end.
    pub fn end_offset_for_epoch(&self, requested: i32) -> (i32, i64) {
        let st = self.inner.state.borrow();
        st.epochs().end_offset_for(requested, st.next_offset())
    }
    /// The epoch of the batch holding `offset`, if the log still covers it.
    pub fn epoch_at(&self, offset: Offset) -> Option<i32> {
        self.inner.state.borrow().epochs().epoch_at(offset)
    }
    /// Removes every batch from offset `to` on, as a Raft follower does with a suffix its
    /// new leader does not have: `to` must be a batch boundary at or after the log start (a
    /// log ending at or before `to` is left alone). Waits for queued writes first; the caller
    /// appends nothing until this returns. Crash-safe: the recovery point moves back to the
    /// kept segment before any file changes, so a crash part-way reopens a contiguous log
    /// that ends somewhere at or past `to`. On success the log ends at `to`, synced; on an
    /// I/O error it is failed, as after a failed write.
    pub async fn truncate_to(&self, to: Offset) -> Result<()> {
        self.wait(self.next_offset(), Durability::Written).await?;
        if self.inner.closing.get() {
            return Err(StorageError::Closed);
        }
        let Some(plan) = self.inner.state.borrow_mut().begin_truncate(to)? else {
            return Ok(());
        };
        while self.inner.flusher_busy.get() {
            let listener = self.inner.progress.listen();
            if self.inner.flusher_busy.get() {
                listener.await;
            }
        }
        if self.inner.state.borrow().is_failed() {
            self.inner.state.borrow_mut().cancel_truncate();
            return Err(StorageError::LogDirFailed(self.inner.dir.clone()));
        }
        let (kept, file) = match rescan_kept(&self.inner, &plan).await {
            Ok(found) => found,
            Err(e) => {
                self.inner.state.borrow_mut().cancel_truncate();
                return Err(e);
            }
        };
        let cut = async {
            cut_files(&self.inner, &plan, &kept, &file).await?;
            load_tail(&file, kept.base, kept.log_bytes).await
        };
        match cut.await {
            Ok(tail) => {
                self.finish_truncate(&plan, kept, file, tail);
                Ok(())
            }
            Err(e) => {
                self.inner.state.borrow_mut().abort_truncate();
                self.inner.progress.notify(usize::MAX);
                self.inner.work.notify(1);
                Err(e)
            }
        }
    }

    fn finish_truncate(&self, plan: &Truncation, kept: Segment, file: Rc<SegmentFile>, tail: Tail) {
        let inner = &self.inner;
        inner.truncations.set(inner.truncations.get() + 1);
        readcache::with(|c| c.forget(inner.cache_id, None));
        files::forget_log(inner.cache_id);
        {
            let mut files = inner.files.borrow_mut();
            files.clear();
            files.insert(plan.keep, file);
        }
        *inner.tail.borrow_mut() = tail;
        inner.state.borrow_mut().complete_truncate(plan, kept);
        inner.progress.notify(usize::MAX);
        inner.work.notify(1);
    }

    /// Replaces the topic config (AlterConfigs). Takes effect for later appends and actions.
    pub fn set_config(&self, config: LogConfig) {
        self.inner.state.borrow_mut().config = config;
        self.inner.work.notify(1);
    }
    /// A copy of the log's current settings.
    pub fn config(&self) -> LogConfig {
        self.inner.state.borrow().config.clone()
    }

    /// Whole batches from `offset` up to `max_bytes` (the first batch always, whatever its size):
    /// from the tail cache, else the shard's read cache, else the disk (and then kept in the
    /// read cache). A read that did not come from the tail cache starts read-ahead after it.
    /// `max_bytes` 0 reads nothing: it only checks `offset` and answers the log's bounds.
    pub async fn read(&self, offset: Offset, max_bytes: usize) -> Result<ReadOutcome> {
        let (plan, hw, start, uncommitted) = {
            let st = self.inner.state.borrow();
            (
                st.plan_read(offset, max_bytes)?,
                st.readable_end(),
                st.log_start(),
                st.readable_end() < st.high_watermark(),
            )
        };
        let chunks = match plan {
            _ if max_bytes == 0 => Vec::new(),
            ReadPlan::Empty => Vec::new(),
            ReadPlan::Cached(v) => {
                super::stats::record_tail_read(true);
                v
            }
            ReadPlan::Disk {
                segment,
                position,
                end,
            } => {
                super::stats::record_tail_read(false);
                let id = self.inner.cache_id;
                let mut got = readcache::with(|c| c.read(id, offset, hw, max_bytes));
                if got.is_empty() {
                    got = self
                        .await_read_ahead(offset, (segment, position), hw, max_bytes)
                        .await;
                }
                if got.is_empty() {
                    readcache::with(|c| c.count_miss());
                    got = self
                        .read_disk(offset, max_bytes, (segment, position, end))
                        .await?;
                }
                self.after_read(&got);
                got
            }
        };
        // A disk read takes what is written: past the commit point of a replicated log.
        let chunks = if uncommitted {
            clamp_to(chunks, hw)
        } else {
            chunks
        };
        Ok(ReadOutcome {
            chunks: chunks.into_iter().map(Chunk::Mem).collect(),
            high_watermark: hw,
            log_start: start,
        })
    }

    /// Replays the log at startup: reads it from `from` up to the end it has now, in reads of
    /// `REPLAY_READ_BYTES`, and hands `visit` each whole batch holding offsets at or after
    /// `from`, in order, with its header and its bytes (a zero-copy view of the read). The
    /// first batch starts below `from` when `from` falls inside it (a log start moved by
    /// DeleteRecords): the visitor decides what of it counts. Stops where a read brings nothing
    /// new, and at the visitor's first error.
    pub async fn replay(
        &self,
        from: Offset,
        mut visit: impl FnMut(&BatchHeader, Bytes) -> Result<()>,
    ) -> Result<()> {
        let (mut at, end) = (from, self.next_offset());
        while at < end {
            let read = self.read(at, REPLAY_READ_BYTES).await?;
            let before = at;
            for chunk in read.chunks {
                for walked in Batches::new(chunk.into_bytes()) {
                    // `read` answers whole batches only: anything else is a bug, not bad bytes.
                    let (_, b) = walked.map_err(|stop| StorageError::CorruptOnDisk {
                        path: self.inner.dir.clone(),
                        offset: at,
                        position: 0,
                        reason: format!("a read answered part of a batch: {stop}"),
                    })?;
                    let h = batch::parse_header(&b)?;
                    if h.next_offset() > at {
                        visit(&h, b)?;
                        at = h.next_offset();
                    }
                }
            }
            if at == before {
                break; // nothing readable there (a gap below the log start)
            }
        }
        Ok(())
    }

    /// A read from disk: the batches from the index position `at` (≤ the batch holding
    /// `offset`) are copied out of the DMA buffer once, into one `Bytes` that the read cache
    /// keeps; the answer is slices of it from the batch holding `offset`.
    async fn read_disk(
        &self,
        offset: Offset,
        max_bytes: usize,
        at: (Offset, u64, u64),
    ) -> Result<Vec<Bytes>> {
        let (segment, position, end) = at;
        let truncations = self.inner.truncations.get();
        // Room for what will be taken, so the run is not reallocated (and copied) as it grows:
        // only a first batch larger than `max_bytes` grows it.
        let expected = (end.saturating_sub(position) as usize).min(max_bytes);
        let mut run = BytesMut::with_capacity(expected.min(READ_RESERVE_BYTES_MAX));
        let mut sizes = Vec::new();
        let (mut total, mut taken) = (0usize, 0usize);
        let scanned = self
            .scan_disk(segment, position, end, max_bytes, |h, buf| {
                if h.next_offset() > offset {
                    if taken > 0 && total + buf.len() > max_bytes {
                        return Visit::Stop;
                    }
                    total += buf.len();
                    taken += 1;
                }
                run.extend_from_slice(&buf);
                sizes.push((*h, buf.len()));
                if total >= max_bytes {
                    Visit::Stop
                } else {
                    Visit::Skip
                }
            })
            .await;
        match scanned {
            Err(e @ StorageError::CorruptOnDisk { .. }) => {
                self.log_corrupt(&e);
                if taken == 0 {
                    return Err(e); // the batch holding `offset` is the corrupt one
                }
                // Served: the intact batches before it. The next read, from the corrupt
                // batch's offset, gets the error.
            }
            other => other?,
        }
        let (Some(first), Some(last)) = (sizes.first(), sizes.last()) else {
            return Ok(Vec::new());
        };
        if self.inner.truncations.get() != truncations {
            // Planned before a truncation: the bytes may be of batches now gone. Nothing is
            // served or cached; the reader asks again.
            return Ok(Vec::new());
        }
        let run = run.freeze();
        if self.inner.state.borrow().config.read_cache {
            let extent = (last.0.next_offset(), segment, position, run.clone());
            readcache::with(|c| c.insert(self.inner.cache_id, first.0.base_offset, extent));
        }
        let mut out = Vec::new();
        let mut from = 0usize;
        for (h, size) in sizes {
            if h.next_offset() > offset {
                out.push(run.slice(from..from + size));
            }
            from += size;
        }
        Ok(out)
    }

    /// A read that missed the read cache while read-ahead is reading the part of the segment
    /// it wants (`at`: the segment and the index position at or before `offset`) waits for it
    /// instead of reading the same bytes itself. Empty: nothing to wait for, or it did not
    /// bring `offset`.
    async fn await_read_ahead(
        &self,
        offset: Offset,
        at: (Offset, u64),
        hw: Offset,
        max_bytes: usize,
    ) -> Vec<Bytes> {
        loop {
            let listener = self.inner.ahead_progress.listen();
            let covered = self.inner.ahead.get().is_some_and(|(segment, first, end)| {
                segment == at.0 && offset >= first && at.1 < end
            });
            if !covered {
                return Vec::new();
            }
            listener.await;
            let id = self.inner.cache_id;
            let got = readcache::with(|c| c.read(id, offset, hw, max_bytes));
            if !got.is_empty() {
                return got;
            }
        }
    }

    /// Notes where a sequential reader is and starts read-ahead if it is not running.
    fn after_read(&self, got: &[Bytes]) {
        let Some(last) = got.last().and_then(|b| batch::parse_header(b).ok()) else {
            return;
        };
        self.inner.reader_at.set(last.next_offset());
        let wanted = {
            let c = &self.inner.state.borrow().config;
            c.read_cache && c.readahead_bytes > 0
        };
        if wanted && !self.inner.reading_ahead.get() {
            self.inner.reading_ahead.set(true);
            io::spawn(read_ahead(self.clone())).detach();
        }
    }

    /// What read-ahead should read next: the extents after the cached run that holds the
    /// reader's position, up to `readahead_bytes` ahead of it. None when there is nothing
    /// (more) to read: the reader is at the high watermark or in the tail cache, its position
    /// is not cached, or the run already reaches far enough.
    fn next_read_ahead(&self) -> Option<AheadJob> {
        let st = self.inner.state.borrow();
        if st.is_failed() || st.is_truncating() || self.inner.closing.get() {
            return None;
        }
        let (at, hw) = (self.inner.reader_at.get(), st.high_watermark());
        let window = st.config.readahead_bytes;
        if at >= hw || st.tail_covers(at) {
            return None;
        }
        let run = self.run_past_reader(window)?;
        if run.bytes >= window || run.next >= hw || st.tail_covers(run.next) {
            return None;
        }
        let seg = st.segment(run.segment)?;
        let (segment, position) = if run.position < seg.written_bytes {
            (run.segment, run.position)
        } else {
            (st.segment(run.next)?.base, 0)
        };
        let end = st.segment(segment)?.written_bytes;
        let chunk = st.config.read_chunk_bytes.max(1);
        (position < end).then_some(AheadJob {
            segment,
            position,
            first: run.next,
            end,
            chunk,
            truncations: self.inner.truncations.get(),
        })
    }

    /// Streams `job`'s segment from its position: keeps up to `readahead_bytes /
    /// read_chunk_bytes` reads of `read_chunk_bytes` in flight while the cache holds less than
    /// `readahead_bytes` past the reader (counting what is in flight), and adds the whole
    /// batches of each read to the read cache in order as it completes; a batch split between
    /// two reads is joined from both. Ends at the segment's written end, when the window is
    /// full and nothing is in flight, or at a short read. Returns how many extents it added.
    async fn run_read_ahead(&self, job: AheadJob) -> Result<usize> {
        let Some(file) = self.file_for(job.segment).await? else {
            return Ok(0);
        };
        let mut inflight = std::collections::VecDeque::new();
        let mut join = Join::new(&job, self.inner.state.borrow().config.verify_reads);
        let mut cursor = job.position;
        let mut done = job.position; // where the next completed read starts
        let depth = (self.inner.state.borrow().config.readahead_bytes / job.chunk).max(1);
        let result = loop {
            while inflight.len() < depth && cursor < job.end && self.has_room_ahead(&inflight) {
                let len = job.chunk.min((job.end - cursor) as usize);
                let Some(claim) = AheadClaim::take(len) else {
                    break; // the shard has enough read-ahead in flight
                };
                let (f, pos) = (file.clone(), cursor);
                let read = io::spawn(async move {
                    let _claim = claim;
                    f.read(pos, len).await
                });
                inflight.push_back((len, read));
                cursor += len as u64;
                self.inner.ahead.set(Some((job.segment, job.first, cursor)));
            }
            let Some((len, read)) = inflight.pop_front() else {
                break Ok(join.added);
            };
            let buf = match read.await {
                Ok(buf) => buf,
                Err(e) => break Err(e),
            };
            if self.inner.truncations.get() != job.truncations {
                break Ok(join.added); // read before a truncation: maybe of batches now gone
            }
            if let Err(reason) = join.push(&buf, self.inner.cache_id) {
                break Err(StorageError::CorruptOnDisk {
                    path: file.path().to_path_buf(),
                    offset: job.segment,
                    position: done, // the read it is in (or the one before it ends in) starts here
                    reason,
                });
            }
            done += buf.len() as u64;
            self.inner.ahead_progress.notify(usize::MAX);
            if buf.len() < len {
                break Ok(join.added); // the file ends early: recovery's business, not ours
            }
        };
        self.inner.ahead.set(None);
        self.inner.ahead_progress.notify(usize::MAX);
        result
    }

    /// Whether read-ahead may issue another read: the cached run past the reader plus the
    /// reads in flight stay under `readahead_bytes`.
    fn has_room_ahead(
        &self,
        inflight: &std::collections::VecDeque<(usize, io::Task<Result<IoBuf>>)>,
    ) -> bool {
        let window = self.inner.state.borrow().config.readahead_bytes;
        let cached = self.run_past_reader(window).map_or(0, |r| r.bytes);
        cached + inflight.iter().map(|(len, _)| len).sum::<usize>() < window
    }

    /// The cached run holding the reader's last batch (its last offset is `reader_at - 1`),
    /// followed for at most `window` bytes.
    fn run_past_reader(&self, window: usize) -> Option<readcache::RunEnd> {
        let last = Offset(self.inner.reader_at.get().0 - 1);
        readcache::with(|c| c.run_end(self.inner.cache_id, last, window))
    }

    /// The first batch whose max timestamp is ≥ `ts` (ListOffsets by time); the caller finds
    /// the exact record inside it.
    pub async fn batch_for_timestamp(
        &self,
        ts: TimestampMs,
    ) -> Result<Option<(BatchHeader, Chunk)>> {
        let candidates = self.inner.state.borrow().plan_time_lookup(ts);
        let start = self.log_start();
        for (segment, position, end) in candidates {
            let mut found = None;
            self.scan_disk(segment, position, end, 0, |h, buf| {
                if h.max_timestamp >= ts && h.next_offset() > start {
                    found = Some((*h, Chunk::Disk(buf)));
                    Visit::Stop
                } else {
                    Visit::Skip
                }
            })
            .await?;
            if found.is_some() {
                return Ok(found);
            }
        }
        Ok(None)
    }

    /// Logs a corrupt stored batch, once per batch (clients retry the read that found it).
    fn log_corrupt(&self, e: &StorageError) {
        let StorageError::CorruptOnDisk {
            offset, position, ..
        } = e
        else {
            return;
        };
        let at = Some((*offset, *position));
        if self.inner.corrupt_logged.replace(at) != at {
            tracing::error!(error = %e, "corrupt batch on disk: reads stop before it");
        }
    }

    /// Visits whole, CRC-verified batches of a segment from `position` to `end`, each starting
    /// at the offset the one before it ended (and the segment's first at its base). Corrupt
    /// bytes are reported as an error, never handed to the visitor, with their byte position.
    async fn scan_disk(
        &self,
        segment: Offset,
        mut position: u64,
        end: u64,
        max_bytes: usize,
        mut visit: impl FnMut(&BatchHeader, IoBuf) -> Visit,
    ) -> Result<()> {
        let file = self.file_for(segment).await?;
        let file = file.ok_or(StorageError::OffsetOutOfRange {
            requested: segment,
            start: self.log_start(),
            end: self.high_watermark(),
        })?;
        let verify = self.inner.state.borrow().config.verify_reads;
        let mut want = max_bytes.saturating_add(READ_SLACK_BYTES);
        let mut expect = (position == 0).then_some(segment);
        while position < end {
            let len = want.min((end - position) as usize);
            let buf = file.read(position, len).await?;
            let mut batches = Batches::new(&buf[..]);
            let at = loop {
                let at = batches.position();
                let corrupt = |reason: String| StorageError::CorruptOnDisk {
                    path: file.path().to_path_buf(),
                    offset: segment,
                    position: position + at as u64,
                    reason,
                };
                let (size, whole) = match batches.next() {
                    None => break at,
                    Some(Ok((_, b))) => (b.len(), Some(b)),
                    Some(Err(Stop::Partial { batch_bytes })) => (batch_bytes, None),
                    Some(Err(Stop::BadLength | Stop::TooLarge { .. })) => {
                        return Err(corrupt("bad length".into()))
                    }
                };
                if position + (at + size) as u64 > end {
                    return Err(corrupt(format!(
                        "batch of {size} bytes runs past the log end"
                    )));
                }
                let Some(b) = whole else {
                    if at == 0 {
                        want = size; // the batch is larger than the window: read it whole
                    }
                    break at;
                };
                let h = check_batch(b, verify).map_err(corrupt)?;
                if let Some(e) = expect.filter(|&e| e != h.base_offset) {
                    return Err(corrupt(format!(
                        "base offset {} where {e} was expected",
                        h.base_offset
                    )));
                }
                expect = Some(h.next_offset());
                let slice = buf.slice(at, size).expect("in bounds");
                if visit(&h, slice) == Visit::Stop {
                    return Ok(());
                }
            };
            if at == 0 && buf.len() < len {
                break; // short read: nothing more on disk
            }
            position += at as u64;
        }
        Ok(())
    }

    /// DeleteRecords: moves the log start to `offset`, deleting whole segments below it.
    pub async fn delete_records(&self, offset: Offset, now: TimestampMs) -> Result<Offset> {
        let start = self.inner.state.borrow_mut().advance_log_start(offset)?;
        self.enforce_retention(now).await?;
        Ok(start)
    }

    /// Applies segment.ms, retention.ms, retention.bytes and the log start: rolls an expired
    /// active segment and deletes the segments that may go. Run periodically by the owner. A
    /// failure is logged when it starts and when it ends, not at every run.
    pub async fn enforce_retention(&self, now: TimestampMs) -> Result<()> {
        let result = {
            let _turn = self.retention_turn().await?;
            self.apply_retention(now).await
        };
        let failing = &self.inner.retention_failing;
        match &result {
            Err(StorageError::Closed) => {}
            Err(e) if !failing.replace(true) => {
                tracing::warn!(dir = %self.inner.dir.display(), error = %e, "retention failed; retrying");
            }
            Ok(()) if failing.replace(false) => {
                tracing::info!(dir = %self.inner.dir.display(), "retention works again");
            }
            _ => {}
        }
        result
    }

    /// Waits until no retention run is under way and takes the turn, given back when the
    /// [`RetentionTurn`] is dropped; Closed once the log is closing (its last start is
    /// written by `close`).
    async fn retention_turn(&self) -> Result<RetentionTurn<'_>> {
        let inner = &self.inner;
        loop {
            if inner.closing.get() {
                return Err(StorageError::Closed);
            }
            if !inner.retention_running.get() {
                inner.retention_running.set(true);
                return Ok(RetentionTurn(inner));
            }
            let done = inner.retention_done.listen();
            if inner.retention_running.get() && !inner.closing.get() {
                done.await;
            }
        }
    }

    async fn apply_retention(&self, now: TimestampMs) -> Result<()> {
        let before = self.inner.checkpointed_start.get();
        let removed = {
            let mut st = self.inner.state.borrow_mut();
            st.roll_if_expired(now);
            st.plan_retention(now)
        };
        self.inner.work.notify(1);
        let start = self.log_start();
        if removed.is_empty() && before == Some(start) {
            return Ok(());
        }
        readcache::with(|c| c.forget(self.inner.cache_id, Some(start)));
        if !removed.is_empty() {
            // The active segment's file must exist before older ones go: a directory left with
            // no segment file would reopen at the checkpointed start and reuse offsets.
            let active = self.inner.state.borrow().active().base;
            segment_file(&self.inner, active).await?;
        }
        // The new start is checkpointed before files go (a crash between reopens at it); on a
        // full disk, where the checkpoint's temp file finds no room, the files go first to make
        // some, which is safe as the active segment's file stays (recovery takes the larger of
        // the checkpoint and the first base).
        let cp = recovery::encode_checkpoint(start);
        let dir = &self.inner.dir;
        let first = io::write_small_atomic(dir, recovery::LOG_START_FILE, cp.clone()).await;
        if let Err(e) = &first {
            if !e.is_exhaustion() || removed.is_empty() {
                return first;
            }
        }
        for base in &removed {
            self.inner.files.borrow_mut().remove(base);
            files::forget(self.inner.cache_id, *base);
            recovery::delete_segment_files(dir, *base).await?;
        }
        if first.is_err() {
            io::write_small_atomic(dir, recovery::LOG_START_FILE, cp).await?;
        }
        self.inner.checkpointed_start.set(Some(start));
        Ok(())
    }

    /// The open file of `segment`: the log's own while the flusher writes it, else from the
    /// shard's table of sealed segment files (`files`), opened there if it is not open. None
    /// for a segment the log no longer has.
    async fn file_for(&self, segment: Offset) -> Result<Option<Rc<SegmentFile>>> {
        if let Some(f) = self.inner.files.borrow().get(&segment) {
            return Ok(Some(f.clone()));
        }
        let id = self.inner.cache_id;
        if let Some(f) = files::get(id, segment) {
            return Ok(Some(f));
        }
        let known = || self.inner.state.borrow().segment(segment).is_some();
        if !known() {
            return Ok(None);
        }
        let path = segment_path(&self.inner.dir, segment, "log");
        let file = match SegmentFile::open(&path, false).await {
            Err(_) if !known() => return Ok(None), // deleted by retention meanwhile
            opened => opened?,
        };
        if known() {
            files::keep(id, segment, file.clone()); // not if retention took it meanwhile
        }
        Ok(Some(file))
    }

    async fn flusher_stopped(&self) {
        while !self.inner.flusher_done.get() {
            let listener = self.inner.progress.listen();
            if self.inner.flusher_done.get() {
                break;
            }
            listener.await;
        }
    }

    /// Stops the flusher after its current action and writes nothing more, leaving the files
    /// as a crash (kill -9) would. For crash tests; a real shutdown calls `close`.
    pub async fn abandon(&self) {
        self.inner.abandoned.set(true);
        self.inner.closing.set(true);
        self.inner.work.notify(1);
        self.flusher_stopped().await;
        files::forget_log(self.inner.cache_id);
    }

    /// Clean shutdown: stops appends, writes and syncs everything queued, writes the active
    /// segment's indexes and the clean-shutdown marker so the next open scans nothing.
    pub async fn close(&self) -> Result<()> {
        self.inner.closing.set(true);
        self.inner.work.notify(1);
        self.flusher_stopped().await;
        // A retention run under way finishes first (it writes the log-start file too); the
        // turn is never given back, so none runs after (those waiting see the log closing).
        while self.inner.retention_running.get() {
            let done = self.inner.retention_done.listen();
            if self.inner.retention_running.get() {
                done.await;
            }
        }
        self.inner.retention_running.set(true);
        // Sealed files close now, not when the last handle goes: a deleted topic's space is
        // freed at once.
        files::forget_log(self.inner.cache_id);
        if self.inner.state.borrow().is_failed() {
            return Err(StorageError::LogDirFailed(self.inner.dir.clone()));
        }
        let active = self.inner.state.borrow().active().clone();
        let file = self.inner.files.borrow().get(&active.base).cloned();
        let dir = &self.inner.dir;
        write_epochs(&self.inner).await?;
        if let Some(file) = file {
            file.truncate(active.log_bytes).await?;
            file.sync().await?;
            recovery::write_indexes(dir, &active).await?;
        }
        let start = recovery::encode_checkpoint(self.log_start());
        io::write_small_atomic(dir, recovery::LOG_START_FILE, start).await?;
        let marker = recovery::encode_checkpoint(active.next_offset);
        io::write_small_atomic(dir, recovery::CLEAN_SHUTDOWN_FILE, marker).await
    }
}

/// The batches of `chunks` (runs of whole batches, in offset order) that begin below `end`.
fn clamp_to(mut chunks: Vec<Bytes>, end: Offset) -> Vec<Bytes> {
    let past = |b: &Bytes| {
        let mut at = 0;
        while at + batch::HEADER_BYTES <= b.len() {
            let Ok(h) = batch::parse_header(&b[at..]) else {
                return None;
            };
            if h.base_offset >= end {
                return Some(at);
            }
            at += h.size_bytes.max(batch::HEADER_BYTES);
        }
        None
    };
    while let Some(last) = chunks.last() {
        match past(last) {
            None => break,
            Some(0) => {
                chunks.pop();
            }
            Some(at) => {
                let kept = last.slice(..at);
                *chunks.last_mut().expect("a last chunk") = kept;
                break;
            }
        }
    }
    chunks
}

/// Bytes read per step while replaying a log (`PartitionLog::replay`).
const REPLAY_READ_BYTES: usize = 1 << 20;

/// The most a disk read reserves up front for the batches it collects.
const READ_RESERVE_BYTES_MAX: usize = 64 << 20;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Visit {
    Skip,
    Stop,
}

/// Read-ahead bytes in flight at once on one shard, over all its logs: many partitions read
/// from the start at once must not queue hundreds of reads before the one a consumer waits for.
const SHARD_READAHEAD_BYTES_MAX: usize = 32 << 20;

thread_local! {
    /// Read-ahead bytes in flight on this shard (see `AheadClaim`).
    static SHARD_READAHEAD_BYTES: Cell<usize> = const { Cell::new(0) };
}

/// A share of the shard's read-ahead budget, held by one read until it completes or is
/// dropped.
struct AheadClaim(usize);

impl AheadClaim {
    fn take(len: usize) -> Option<AheadClaim> {
        SHARD_READAHEAD_BYTES.with(|n| {
            (n.get() + len <= SHARD_READAHEAD_BYTES_MAX || n.get() == 0).then(|| {
                n.set(n.get() + len);
                AheadClaim(len)
            })
        })
    }
}

impl Drop for AheadClaim {
    fn drop(&mut self) {
        SHARD_READAHEAD_BYTES.with(|n| n.set(n.get() - self.0));
    }
}

/// One read-ahead step: reads of `chunk` bytes from `position` of `segment` (not past `end`,
/// its written bytes), whose first batch starts at offset `first`.
struct AheadJob {
    segment: Offset,
    position: u64,
    first: Offset,
    end: u64,
    chunk: usize,
    /// The log's truncation count when planned: after a truncation nothing read is cached.
    truncations: u64,
}

/// Largest extent read-ahead adds (one batch may be larger): about the size of the produced
/// batches the read cache evicts, so the allocator can give read-ahead those freed blocks. One
/// extent per 2 MiB read, joined to the batch carried over from the read before, asked for a
/// fresh block of 2-3 MiB every time, which the holes left by 1 MiB batches never fit: the
/// heap grew at its top and every byte read from disk faulted in a new page.
const AHEAD_EXTENT_BYTES_MAX: usize = 1 << 20;

/// Joins read-ahead reads, in order, into extents of whole batches.
struct Join {
    /// The start of a batch that the last read cut off.
    carry: BytesMut,
    segment: Offset,
    position: u64,
    next: Offset,
    verify: bool,
    added: usize,
}

impl Join {
    fn new(job: &AheadJob, verify: bool) -> Join {
        Join {
            carry: BytesMut::new(),
            segment: job.segment,
            position: job.position,
            next: job.first,
            verify,
            added: 0,
        }
    }

    /// Adds the bytes of the next read: the batch carried over is completed from its front,
    /// the whole batches after it become extents, and a batch it cuts off is carried.
    fn push(&mut self, buf: &[u8], cache_id: u64) -> std::result::Result<(), String> {
        let mut buf = buf;
        if !self.carry.is_empty() {
            // Its length prefix first (rarely cut), then the rest of the batch it declares;
            // a bad length adds nothing more (`whole_runs` reports it).
            let head = batch::LOG_OVERHEAD_BYTES
                .saturating_sub(self.carry.len())
                .min(buf.len());
            self.carry.extend_from_slice(&buf[..head]);
            buf = &buf[head..];
            let rest = batch::declared_size(&self.carry).map_or(0, |size| {
                size.saturating_sub(self.carry.len()).min(buf.len())
            });
            self.carry.extend_from_slice(&buf[..rest]);
            buf = &buf[rest..];
            let carry = std::mem::take(&mut self.carry);
            let used = self.add_whole(&carry, cache_id)?;
            if used < carry.len() {
                if !buf.is_empty() {
                    return Err("a batch carried over did not complete".into());
                }
                self.carry = carry;
                return Ok(());
            }
        }
        let used = self.add_whole(buf, cache_id)?;
        self.carry.extend_from_slice(&buf[used..]);
        Ok(())
    }

    /// Adds the whole batches at the front of `bytes` to the cache, as extents of at most
    /// AHEAD_EXTENT_BYTES_MAX (one batch at least), each copied into a block of its own size.
    /// Returns the bytes used.
    fn add_whole(&mut self, bytes: &[u8], cache_id: u64) -> std::result::Result<usize, String> {
        let runs = whole_runs(bytes, self.next, self.verify, AHEAD_EXTENT_BYTES_MAX)?;
        let mut at = 0;
        for (end, next) in runs {
            let run = Bytes::copy_from_slice(&bytes[at..end]);
            let extent = (next, self.segment, self.position, run);
            readcache::with(|c| c.insert(cache_id, self.next, extent));
            self.position += (end - at) as u64;
            self.next = next;
            self.added += 1;
            at = end;
        }
        Ok(at)
    }
}

/// Keeps reading ahead while there is something to read and each step adds to the cache.
async fn read_ahead(log: PartitionLog) {
    while let Some(job) = log.next_read_ahead() {
        match log.run_read_ahead(job).await {
            Ok(0) => break, // a batch larger than the window: demand reads get it
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(dir = %log.inner.dir.display(), error = %e, "read-ahead failed");
                break;
            }
        }
    }
    log.inner.reading_ahead.set(false);
}

/// A batch read from disk: its length, magic, record count and offsets are checked always,
/// its CRC32C with `verify` (`LogConfig::verify_reads`).
fn check_batch(b: &[u8], verify: bool) -> std::result::Result<BatchHeader, String> {
    let checked = if verify {
        batch::validate(b, false)
    } else {
        batch::validate_structure(b, false)
    };
    checked.map_err(|e| e.to_string())
}

/// The whole batches at the start of `buf`, the first with base offset `first` or more, cut
/// into runs of at most `run_bytes_max` (one batch at least): each run's end in `buf` and the
/// offset after it. Offsets must increase batch to batch.
fn whole_runs(
    buf: &[u8],
    first: Offset,
    verify: bool,
    run_bytes_max: usize,
) -> std::result::Result<Vec<(usize, Offset)>, String> {
    let (mut runs, mut start, mut used, mut next) = (Vec::new(), 0usize, 0usize, first);
    for walked in Batches::new(buf) {
        let b = match walked {
            Ok((_, b)) => b,
            // A bad length is an error at the start of `buf`; after whole batches `Join` carries
            // it, as it does a cut batch, and it is reported here when its turn comes.
            Err(Stop::BadLength) if used == 0 => return Err("bad length".into()),
            Err(_) => break,
        };
        let h = check_batch(b, verify)?;
        if h.base_offset < next {
            return Err(format!(
                "batch at offset {} where {} was expected",
                h.base_offset.0, next.0
            ));
        }
        if used > start && used + b.len() - start > run_bytes_max {
            runs.push((used, next));
            start = used;
        }
        next = h.next_offset();
        used += b.len();
    }
    if used > start {
        runs.push((used, next));
    }
    Ok(runs)
}

/// The flusher: carries out the state machine's actions until closed (and drained) or failed.
async fn run_flusher(inner: Rc<Inner>) {
    loop {
        let listener = inner.work.listen();
        if inner.abandoned.get() {
            break;
        }
        let now = TimestampMs::now();
        let action = inner.state.borrow_mut().next_action(now);
        if let Action::Idle = action {
            let (drained, deadline) = {
                let st = inner.state.borrow();
                (st.is_drained() || st.is_failed(), st.sync_deadline())
            };
            let truncating = inner.state.borrow().is_truncating();
            if inner.closing.get() && drained && !truncating {
                break;
            }
            let wait_ms = deadline.map_or(1000, |d| (d.0 - now.0).clamp(1, 1000)) as u64;
            future::or(listener, io::sleep(Duration::from_millis(wait_ms))).await;
            continue;
        }
        inner.flusher_busy.set(true);
        let done = carry_out(&inner, &action).await;
        inner.flusher_busy.set(false);
        if let Err(e) = done {
            if !inner.abandoned.get() {
                tracing::error!(dir = %inner.dir.display(), error = %e, "log I/O failed; no more acks");
            }
            inner.state.borrow_mut().fail();
            break;
        }
        inner.progress.notify(usize::MAX);
    }
    inner.flusher_done.set(true);
    inner.progress.notify(usize::MAX);
}

/// First wait between retries of a write that ran out of space or files; doubles up to
/// `PAUSE_RETRY_MS_MAX`.
const PAUSE_RETRY_MS_MIN: u64 = 50;
const PAUSE_RETRY_MS_MAX: u64 = 1000;

/// Carries out one action. One that runs out of space or file descriptors is retried, the same
/// action again (each is idempotent: same bytes, same positions), until it succeeds; appends
/// are refused meanwhile, and queued ones wait. Any other error, or a close or abandon while
/// paused, ends the log's writes (what was not written was not acknowledged).
async fn carry_out(inner: &Inner, action: &Action) -> Result<()> {
    let mut wait_ms = PAUSE_RETRY_MS_MIN;
    loop {
        let result = match action {
            Action::Write(job) => do_write(inner, job).await,
            Action::Seal(base) => do_seal(inner, *base).await,
            Action::Sync(segment) => do_sync(inner, *segment).await,
            Action::Checkpoint(c) => do_checkpoint(inner, c).await,
            Action::Idle => Ok(()),
        };
        let paused = inner.state.borrow().is_paused();
        match result {
            Ok(()) => {
                if paused {
                    inner.state.borrow_mut().set_paused(false);
                    tracing::warn!(dir = %inner.dir.display(), "log writes resumed");
                }
                return Ok(());
            }
            Err(e) if e.is_exhaustion() && !inner.closing.get() => {
                if !paused {
                    inner.state.borrow_mut().set_paused(true);
                    tracing::error!(dir = %inner.dir.display(), error = %e,
                        "log writes paused: appends are refused until a retry succeeds");
                    inner.progress.notify(usize::MAX);
                }
                // A close or abandon (which notify `work`) ends the wait early.
                let woken = inner.work.listen();
                if !inner.closing.get() {
                    future::or(woken, io::sleep(Duration::from_millis(wait_ms))).await;
                }
                wait_ms = (wait_ms * 2).min(PAUSE_RETRY_MS_MAX);
            }
            Err(e) => return Err(e),
        }
    }
}

async fn segment_file(inner: &Inner, base: Offset) -> Result<Rc<SegmentFile>> {
    if let Some(f) = inner.files.borrow().get(&base) {
        return Ok(f.clone());
    }
    // A new segment: index files of that base can only be left over (a crash while an older
    // version deleted a segment, log first); recovery would take them for a checkpoint.
    for ext in ["index", "timeindex"] {
        io::remove(&segment_path(&inner.dir, base, ext)).await?;
    }
    let file = SegmentFile::open(&segment_path(&inner.dir, base, "log"), true).await?;
    io::sync_dir(&inner.dir).await?;
    inner.files.borrow_mut().insert(base, file.clone());
    Ok(file)
}

async fn do_write(inner: &Inner, job: &WriteJob) -> Result<()> {
    let file = segment_file(inner, job.segment).await?;
    let align = file.alignment();
    let (start, old_tail, allocated) = {
        let mut t = inner.tail.borrow_mut();
        if t.segment != Some(job.segment) {
            *t = Tail {
                segment: Some(job.segment),
                ..Tail::default()
            };
        }
        // A copy (under one block): the tail stays as it is if this write fails and is retried.
        (t.start, t.bytes.clone(), t.allocated)
    };
    assert_eq!(
        start + old_tail.len() as u64,
        job.position,
        "tail ends where the job starts"
    );
    assert_eq!(start % align, 0);
    let end = job.position + job.bytes;
    let mut allocated = allocated;
    if align_up(end, align) > allocated {
        let step_max = inner.state.borrow().config.preallocate_bytes_step;
        allocated = align_up(end, align) + preallocate_ahead(end, step_max, align);
        if let Err(e) = file.preallocate(allocated).await {
            // Short of room for the step ahead: take only what this write needs.
            if !e.is_exhaustion() {
                return Err(e);
            }
            allocated = align_up(end, align);
            file.preallocate(allocated).await?;
        }
    }
    let mut parts: Vec<&[u8]> = Vec::with_capacity(job.chunks.len() + 1);
    parts.push(&old_tail);
    parts.extend(job.chunks.iter().map(|c| &c[..]));
    file.write_aligned(start, &parts).await?;
    let new_start = align_down(end, align);
    let new_tail = copy_range(
        &parts,
        (new_start - start) as usize,
        (end - new_start) as usize,
    );
    *inner.tail.borrow_mut() = Tail {
        segment: Some(job.segment),
        start: new_start,
        bytes: new_tail,
        allocated,
    };
    inner
        .state
        .borrow_mut()
        .complete_write(job, TimestampMs::now());
    Ok(())
}

/// Copies `len` bytes at `from` of the concatenation of `parts`.
fn copy_range(parts: &[&[u8]], mut from: usize, len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len);
    for p in parts {
        if out.len() == len {
            break;
        }
        if from >= p.len() {
            from -= p.len();
            continue;
        }
        let take = (p.len() - from).min(len - out.len());
        out.extend_from_slice(&p[from..from + take]);
        from = 0;
    }
    assert_eq!(out.len(), len, "range inside parts");
    out
}

async fn do_sync(inner: &Inner, segment: Offset) -> Result<()> {
    let upto = inner.state.borrow().high_watermark();
    let file = segment_file(inner, segment).await?;
    file.sync().await?;
    inner.state.borrow_mut().complete_sync(upto);
    Ok(())
}

/// Makes the written prefix of the active segment durable, then writes its indexes as of that
/// prefix: recovery after a crash loads them and scans only what follows (storage.md §6).
async fn do_checkpoint(inner: &Inner, c: &Checkpoint) -> Result<()> {
    let file = segment_file(inner, c.segment).await?;
    assert!(
        file.size().await? >= c.summary.log_bytes,
        "the prefix is in the file"
    );
    file.sync().await?;
    write_epochs(inner).await?;
    let (index, time) = (c.offset_index.clone(), c.time_index.clone());
    recovery::write_checkpoint(&inner.dir, c.segment, index, time).await
}

/// The segment a truncation keeps, rebuilt from its batches up to the cut, with its file:
/// read only, so a cut that is not a batch boundary is refused before anything changes.
async fn rescan_kept(inner: &Inner, plan: &Truncation) -> Result<(Segment, Rc<SegmentFile>)> {
    let config = inner.state.borrow().config.clone();
    let open = inner.files.borrow().get(&plan.keep).cloned();
    let file = match open {
        Some(f) => f,
        None => SegmentFile::open(&segment_path(&inner.dir, plan.keep, "log"), false).await?,
    };
    let mut unused = EpochCache::default();
    let fresh = Segment::new(plan.keep);
    let scanned = recovery::scan_segment_until(&file, fresh, &config, &mut unused, plan.to);
    let (kept, _) = scanned.await?;
    if kept.next_offset != plan.to {
        return Err(StorageError::OffsetOutOfRange {
            requested: plan.to,
            start: kept.base,
            end: kept.next_offset,
        });
    }
    Ok((kept, file))
}

/// A truncation's file work (`PartitionLog::truncate_to`): moves the recovery point back to
/// the kept segment, deletes the later segments newest first and the kept one's stale index
/// files, then cuts and syncs its file.
async fn cut_files(
    inner: &Inner,
    plan: &Truncation,
    kept: &Segment,
    file: &SegmentFile,
) -> Result<()> {
    let dir = &inner.dir;
    let point = recovery::encode_checkpoint(plan.recovery_point);
    io::write_small_atomic(dir, recovery::RECOVERY_POINT_FILE, point).await?;
    for base in &plan.drop {
        recovery::delete_segment_files(dir, *base).await?;
    }
    for ext in ["index", "timeindex"] {
        io::remove(&segment_path(dir, plan.keep, ext)).await?;
    }
    file.truncate(kept.log_bytes).await?;
    file.sync().await?;
    io::sync_dir(dir).await
}

/// Writes the leader-epoch checkpoint if the boundaries changed. Called only by the flusher
/// (and by `close` once it has stopped), before each checkpoint that lets an open skip
/// scanning batches: what recovery does not scan, the file must describe.
async fn write_epochs(inner: &Inner) -> Result<()> {
    let Some(bytes) = inner.state.borrow_mut().take_changed_epochs() else {
        return Ok(());
    };
    let written = io::write_small_atomic(&inner.dir, EPOCHS_FILE, bytes).await;
    if written.is_err() {
        inner.state.borrow_mut().epochs_not_written();
    }
    written
}

/// Seals a finished segment. Resumable: a retry after its recovery-point write failed (a full
/// disk) finds the segment finalized, or already deleted by retention, and only does the rest.
async fn do_seal(inner: &Inner, base: Offset) -> Result<()> {
    let seg = inner.state.borrow().segment(base).cloned();
    if let Some(seg) = seg.filter(|s| !s.finalized) {
        let file = segment_file(inner, base).await?;
        file.sync().await?;
        file.truncate(seg.log_bytes).await?;
        // Before the indexes: an open that trusts them scans nothing of this segment.
        write_epochs(inner).await?;
        recovery::write_indexes(&inner.dir, &seg).await?;
        inner.state.borrow_mut().complete_seal(base);
    }
    write_epochs(inner).await?;
    let point = recovery::encode_checkpoint(inner.state.borrow().recovery_point());
    io::write_small_atomic(&inner.dir, recovery::RECOVERY_POINT_FILE, point).await?;
    {
        let mut t = inner.tail.borrow_mut();
        if t.segment == Some(base) {
            *t = Tail::default();
        }
    }
    // Written no more: from now on the shard's table of sealed files holds it, within its bound.
    if let Some(file) = inner.files.borrow_mut().remove(&base) {
        files::keep(inner.cache_id, base, file);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn preallocation_grows_with_the_segment_up_to_the_step() {
        use super::preallocate_ahead as ahead;
        let mib = 1 << 20;
        assert_eq!(
            ahead(100, 32 * mib, 4096),
            mib,
            "a small segment takes 1 MiB more"
        );
        assert_eq!(ahead(5 * mib, 32 * mib, 4096), 5 * mib, "then its own size");
        assert_eq!(
            ahead(900 * mib, 32 * mib, 4096),
            32 * mib,
            "at most the step"
        );
        assert_eq!(
            ahead(100, 8192, 4096),
            8192,
            "a step below the minimum wins"
        );
        assert_eq!(ahead(100, 0, 4096), 4096, "never less than the alignment");
    }

    use super::*;

    #[test]
    fn read_ahead_joins_cut_reads_into_extents_of_whole_batches() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        // Batches of 1-1,500 records of 1 KiB, so some are larger than an extent may be.
        let (mut image, mut batches, mut next) = (Vec::new(), Vec::new(), 0i64);
        while image.len() < 24 << 20 {
            let count = rng.gen_range(1..=1500);
            let mut b = batch::build_test_batch(count, 1000, TimestampMs(1));
            batch::assign_offset(&mut b, Offset(next), 0);
            next += i64::from(count);
            image.extend_from_slice(&b);
            batches.push(b);
        }
        let job = AheadJob {
            segment: Offset(0),
            position: 0,
            first: Offset(0),
            end: image.len() as u64,
            chunk: 2 << 20,
            truncations: 0,
        };
        let mut join = Join::new(&job, true);
        let id = readcache::next_log_id();
        let mut at = 0;
        while at < image.len() {
            // Reads of any length, a few shorter than a batch's length prefix.
            let len = if rng.gen_bool(0.1) {
                rng.gen_range(1..12)
            } else {
                rng.gen_range(1..3 << 20)
            };
            let end = (at + len).min(image.len());
            join.push(&image[at..end], id).unwrap();
            at = end;
        }
        assert!(join.carry.is_empty(), "every batch completed");
        assert!(
            join.added >= image.len() / AHEAD_EXTENT_BYTES_MAX,
            "extents of at most 1 MiB"
        );
        let got = readcache::with(|c| c.read(id, Offset(0), Offset(next), usize::MAX));
        readcache::with(|c| c.forget(id, None));
        assert_eq!(got.len(), batches.len());
        for (g, b) in got.iter().zip(&batches) {
            assert_eq!(&g[..], &b[..]);
        }
    }

    #[test]
    fn whole_runs_cut_at_batch_ends_within_the_bound() {
        let (mut image, mut ends, mut next) = (Vec::new(), Vec::new(), 0);
        for count in [3, 3, 3, 20, 1, 1] {
            let mut b = batch::build_test_batch(count, 100, TimestampMs(1));
            batch::assign_offset(&mut b, Offset(next), 0);
            next += i64::from(count);
            image.extend_from_slice(&b);
            ends.push(image.len());
        }
        let cut = image.len() - 5; // the last batch cut off
        let bound = ends[1]; // two of the small batches; the big one alone exceeds it
        let runs = whole_runs(&image[..cut], Offset(0), true, bound).unwrap();
        let got: Vec<usize> = runs.iter().map(|r| r.0).collect();
        assert_eq!(got, [ends[1], ends[2], ends[3], ends[4]]);
        assert_eq!(
            runs.last().unwrap().1,
            Offset(30),
            "the offset after the last whole batch"
        );
    }

    #[test]
    fn copy_range_spans_parts() {
        let parts: [&[u8]; 3] = [b"abc", b"", b"defg"];
        assert_eq!(copy_range(&parts, 2, 3), b"cde");
        assert_eq!(copy_range(&parts, 0, 7), b"abcdefg");
        assert_eq!(copy_range(&parts, 7, 0), b"");
    }
}
