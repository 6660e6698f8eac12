//! The group coordinator's I/O edge on one shard: it feeds requests and the clock to the pure
//! [`Groups`] machine and carries out the effects it returns.
//!
//! - Replies: a JoinGroup or SyncGroup gets a token and a oneshot; the machine answers the
//!   token now or from a later call (other members' requests, timers).
//! - Records: queued per group log in machine order and written by one writer task per log,
//!   many records per batch (group commit). Replies of a call that produced records are sent
//!   only once those records are written, so an acknowledged commit survives kill -9.
//! - Compaction: when a log has grown by more than `log_compact_bytes_min` (and twice the last
//!   snapshot) since its last snapshot, the writer appends a snapshot of the live state of its
//!   groups and moves the log start to it; whole segments before it are deleted.
//! - Timers: one task sleeps until the machine's next deadline (or a wake-up) and ticks it.
//! - Loading: at start the shard replays the group logs it serves before accepting clients.
//! - In a cluster the group logs are the partitions of the replicated internal topic
//!   `__consumer_offsets` ([`OFFSETS_TOPIC`]): the shard holding a log's leader replica
//!   adopts the log ([`Coordinator::adopt`]: replays it, then serves its groups), writes its
//!   records through Raft (a reply waits until they are committed), and releases it when
//!   leadership moves ([`Coordinator::release`]: its groups are forgotten, parked requests
//!   answered NOT_COORDINATOR). Requests for a log being loaded get
//!   COORDINATOR_LOAD_IN_PROGRESS, for one not served here NOT_COORDINATOR.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::Duration;

use event_listener::Event;
use futures_channel::oneshot;
use futures_lite::future;

use bytes::{Bytes, BytesMut};

use super::machine::Effects;
use super::offsets::PartitionResults;
use super::record::{self, Record};
use super::*;
use crate::runtime;
use crate::storage::batch::BatchHeader;
use crate::storage::{Durability, LogConfig, PartitionLog, StorageError};
use crate::types::TimestampMs;

/// Records waiting to be written to one group log before new requests for it wait.
const QUEUE_RECORDS_MAX: usize = 65_536;
/// Records per written batch.
const BATCH_RECORDS_MAX: usize = 512;
/// Bytes of group records per batch written to a replicated group log (a record larger
/// than this goes alone).
const REPLICA_BATCH_BYTES_MAX: usize = 1 << 20;

/// Settings of the partition log behind a group log.
pub(crate) fn group_log_config(config: &GroupConfig) -> LogConfig {
    LogConfig {
        segment_bytes_max: (config.log_compact_bytes_min / 2).max(64 << 10),
        retention_ms: -1,
        message_bytes_max: GROUP_BATCH_BYTES_MAX,
        cache_bytes_max: 1 << 20,
        read_cache: false,
        pending_bytes_max: 16 << 20,
        preallocate_bytes_step: 1 << 20,
        ..LogConfig::default()
    }
}

/// The directory of group log `index`.
pub fn group_log_dir(data_dir: &Path, index: usize) -> PathBuf {
    data_dir.join("__cluster").join(format!("groups-{index}"))
}

/// What a group log is written to.
enum Backing {
    /// This broker's own log (a single broker).
    Local(PartitionLog),
    /// In a cluster: this shard's replica of the log's partition, leading in `term`.
    Replica {
        part: Rc<dyn ReplicatedLog>,
        term: u64,
    },
}

/// Why a group log write failed.
#[derive(Debug, thiserror::Error)]
enum WriteError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The replicated log did not commit the batch (not the leader in the term, too few
    /// replicas, timed out...).
    #[error("not committed: {0}")]
    Replica(String),
}

/// A future a [`ReplicatedLog`] returns.
pub type LogFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + 'a>>;

/// A group log as a replicated partition, as the coordinator uses it in a cluster: the
/// partition of the group logs' topic on this shard (implemented by `Partition`, in
/// `shard/group_logs.rs`), so this module stays below the partition and replica layers.
pub trait ReplicatedLog {
    /// The term this replica leads in with the term's first entry committed (0: a
    /// partition without replicas, which always leads); None while it does not lead.
    fn leads(&self) -> Option<u64>;
    /// The first offset kept.
    fn log_start(&self) -> Offset;
    /// The end of what is committed.
    fn high_watermark(&self) -> Offset;
    /// Bytes of its segments.
    fn size_bytes(&self) -> u64;
    /// Its directory (for error reports).
    fn dir(&self) -> &Path;
    /// Hands `visit` each committed batch from `from` on, in order.
    fn replay_committed<'a>(
        &'a self,
        from: Offset,
        visit: &'a mut dyn FnMut(&BatchHeader, Bytes) -> Result<(), StorageError>,
    ) -> LogFuture<'a, Result<(), StorageError>>;
    /// Appends one batch if this replica leads in `term`, and waits until it is committed
    /// (and held by min.insync.replicas); its base offset, or why not.
    fn append_in_term(&self, batch: BytesMut, term: u64) -> LogFuture<'_, Result<Offset, String>>;
    /// Moves this replica's log start up to `before` (not beyond what is committed).
    fn delete_before(&self, before: Offset) -> LogFuture<'_, Result<Offset, StorageError>>;
}

/// One group log and its write queue.
struct GroupLog {
    index: usize,
    backing: Backing,
    queue: RefCell<Vec<Record>>,
    /// Records ever queued / written (sequence numbers for waiters).
    queued: Cell<u64>,
    written: Cell<u64>,
    failed: Cell<bool>,
    closing: Cell<bool>,
    writer_done: Cell<bool>,
    progress: Event,
    work: Event,
    grown_bytes: Cell<u64>,
    snapshot_bytes: Cell<u64>,
}

/// How a group log is served by one shard's coordinator (in a cluster).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogState {
    /// Not served here.
    Idle,
    /// Being read, adopted in `term`.
    Loading {
        /// The term of the leadership it was adopted in.
        term: u64,
    },
    /// Served, adopted in `term` (0 on a single broker); `failed` once its writer stopped.
    Serving {
        /// The term of the leadership it was adopted in.
        term: u64,
        /// Its writer stopped: a write failed (a replica that lost leadership, say).
        failed: bool,
    },
}

/// The group coordinator of one shard: the [`Groups`] machine of the groups in the group logs
/// this shard serves (log `i` when `i % shards == shard` on a single broker; in a cluster the
/// logs whose partition leader is here), those logs with their writers, the parked requests
/// and the timer task. Handlers reach it on the group's shard
/// (`handlers::on_group`); it is not `Send` and runs on that shard's executor only.
pub struct Coordinator {
    shard: usize,
    shards: usize,
    data_dir: PathBuf,
    machine: RefCell<Groups>,
    waiting: RefCell<HashMap<Token, oneshot::Sender<Reply>>>,
    next_token: Cell<Token>,
    logs: RefCell<HashMap<usize, Rc<GroupLog>>>,
    /// In a cluster: logs being read before they are served: the term they were adopted
    /// in, and which adoption reads them.
    loading: RefCell<HashMap<usize, (u64, u64)>>,
    next_adoption: Cell<u64>,
    /// In a cluster: logs are adopted, not opened from `data_dir`.
    replicated: bool,
    wake: Event,
    stopped: Cell<bool>,
}

impl Coordinator {
    /// The coordinator of shard `shard` of `shards`, its group logs under `data_dir`
    /// ([`group_log_dir`]). Opens nothing: [`Coordinator::start`] loads the logs before
    /// requests are served. Member ids are seeded at random, so they differ across restarts.
    /// In a cluster (`replicated`), no log is opened from `data_dir`: each is adopted when
    /// its partition's replica here leads.
    pub fn new(
        shard: usize,
        shards: usize,
        data_dir: &Path,
        config: GroupConfig,
        replicated: bool,
    ) -> Rc<Coordinator> {
        let seed = uuid::Uuid::new_v4().as_u64_pair().0;
        Rc::new(Coordinator {
            shard,
            shards,
            data_dir: data_dir.to_path_buf(),
            machine: RefCell::new(Groups::new(config, TimestampMs::now(), seed)),
            waiting: RefCell::new(HashMap::new()),
            next_token: Cell::new(1),
            logs: RefCell::new(HashMap::new()),
            loading: RefCell::new(HashMap::new()),
            next_adoption: Cell::new(0),
            replicated,
            wake: Event::new(),
            stopped: Cell::new(false),
        })
    }

    /// Opens (creating if needed) and replays the group logs this shard serves, then starts
    /// the timer task. Every served log is open from here on, so records can be queued
    /// synchronously, in the order the machine produced them.
    pub async fn start(self: &Rc<Self>) -> Result<(), StorageError> {
        let served = (0..GROUP_LOGS).filter(|i| !self.replicated && i % self.shards == self.shard);
        for index in served {
            let log = self.open_log(index).await?;
            self.replay(index, &log.backing, &self.machine).await?;
        }
        let groups = self.machine.borrow().list().len();
        tracing::info!(shard = self.shard, groups, "group coordinator loaded");
        runtime::spawn(self.clone().timers()).detach();
        Ok(())
    }

    async fn open_log(self: &Rc<Self>, index: usize) -> Result<Rc<GroupLog>, StorageError> {
        let dir = group_log_dir(&self.data_dir, index);
        let config = group_log_config(self.machine.borrow().config());
        let log = PartitionLog::open(&dir, config).await?;
        let size = log.size_bytes();
        Ok(self.install(index, Backing::Local(log), size))
    }

    /// Makes `backing` group log `index`, served from now on, with its writer.
    fn install(self: &Rc<Self>, index: usize, backing: Backing, size: u64) -> Rc<GroupLog> {
        let gl = Rc::new(GroupLog {
            index,
            backing,
            queue: RefCell::new(Vec::new()),
            queued: Cell::new(0),
            written: Cell::new(0),
            failed: Cell::new(false),
            closing: Cell::new(false),
            writer_done: Cell::new(false),
            progress: Event::new(),
            work: Event::new(),
            grown_bytes: Cell::new(size),
            snapshot_bytes: Cell::new(0),
        });
        assert!(
            self.logs.borrow_mut().insert(index, gl.clone()).is_none(),
            "group log opened twice"
        );
        runtime::spawn(self.clone().writer(gl.clone())).detach();
        gl
    }

    /// Replays group log `index` into `into`, from its log start (a replica's up to its
    /// high watermark: what is committed).
    async fn replay(
        &self,
        index: usize,
        backing: &Backing,
        into: &RefCell<Groups>,
    ) -> Result<(), StorageError> {
        let (start, dir) = match backing {
            Backing::Local(log) => (log.log_start(), log.dir()),
            Backing::Replica { part, .. } => (part.log_start(), part.dir()),
        };
        let now = TimestampMs::now();
        let mut count = 0usize;
        let visit = |h: &crate::storage::batch::BatchHeader, batch| {
            if h.is_control() {
                return Ok(()); // a replica's leader marks its term with a control batch
            }
            let records =
                record::decode_batches(batch).map_err(|e| StorageError::CorruptOnDisk {
                    path: dir.to_path_buf(),
                    offset: h.base_offset,
                    position: 0,
                    reason: e.to_string(),
                })?;
            let mut m = into.borrow_mut();
            for (_, r) in records.into_iter().filter(|(o, _)| *o >= start) {
                m.replay(now, r);
                count += 1;
            }
            Ok(())
        };
        match backing {
            Backing::Local(log) => log.replay(start, visit).await?,
            Backing::Replica { part, .. } => {
                let mut visit = visit;
                part.replay_committed(start, &mut visit).await?
            }
        }
        tracing::debug!(log = index, records = count, "replayed group log");
        Ok(())
    }

    /// In a cluster: starts serving group log `index`, whose partition's replica here
    /// (`part`) leads in `term`: reads the log into a machine of its own, then, if this
    /// adoption is still the current one and the replica still leads in `term`, moves the
    /// groups into the coordinator's machine and serves them. Meanwhile their requests get
    /// COORDINATOR_LOAD_IN_PROGRESS. Does nothing if the log is served or loading already;
    /// a load that [`Coordinator::release`] overtook is dropped, touching nothing.
    pub async fn adopt(self: &Rc<Self>, index: usize, part: Rc<dyn ReplicatedLog>, term: u64) {
        if self.logs.borrow().contains_key(&index) || self.loading.borrow().contains_key(&index) {
            return;
        }
        let adoption = self.next_adoption.get();
        self.next_adoption.set(adoption + 1);
        self.loading.borrow_mut().insert(index, (term, adoption));
        // A barrier first: once it is committed, so is everything an earlier writer proposed
        // in this term (a write that timed out may still commit), and the replay sees it.
        let barrier = part
            .append_in_term(record::encode_barrier(TimestampMs::now()), term)
            .await;
        let backing = Backing::Replica {
            part: part.clone(),
            term,
        };
        let config = self.machine.borrow().config().clone();
        let loaded = RefCell::new(Groups::new(config, TimestampMs::now(), 0));
        let replayed = match barrier {
            Ok(_) => match self.replay(index, &backing, &loaded).await {
                Ok(()) => true,
                Err(e) => {
                    tracing::warn!(log = index, error = %e, "could not load the group log");
                    false
                }
            },
            Err(e) => {
                tracing::debug!(log = index, term, error = %e, "group log barrier not committed");
                false
            }
        };
        let current = self.loading.borrow().get(&index) == Some(&(term, adoption));
        let leads = part.leads() == Some(term);
        if !current || !leads || self.stopped.get() || !replayed {
            if current {
                self.loading.borrow_mut().remove(&index);
            }
            return;
        }
        self.loading.borrow_mut().remove(&index);
        let size = part.size_bytes();
        {
            let mut m = self.machine.borrow_mut();
            let fx = m.unload(|g| group_log_for(g) == index); // none: released before
            assert!(fx.replies.is_empty(), "a log's groups are loaded once");
            m.take_over(loaded.into_inner());
        }
        self.install(index, backing, size);
        let groups = self.machine.borrow().list().len();
        tracing::info!(
            shard = self.shard,
            log = index,
            term,
            groups,
            "coordinating group log"
        );
        self.wake.notify(1);
    }

    /// In a cluster: stops serving group log `index` (its partition's leadership moved, or
    /// its writes failed): its writer stops, its groups are forgotten here, and the requests
    /// waiting on them are answered NOT_COORDINATOR (or COORDINATOR_NOT_AVAILABLE for those
    /// whose records were queued), so clients look the coordinator up again.
    pub fn release(self: &Rc<Self>, index: usize) {
        self.loading.borrow_mut().remove(&index);
        if let Some(gl) = self.logs.borrow_mut().remove(&index) {
            gl.failed.set(true);
            gl.work.notify(usize::MAX);
            gl.progress.notify(usize::MAX);
            tracing::info!(
                shard = self.shard,
                log = index,
                "no longer coordinating group log"
            );
        }
        let fx = self
            .machine
            .borrow_mut()
            .unload(|g| group_log_for(g) == index);
        self.deliver(fx.replies, true);
    }

    /// In a cluster: how group log `index` is served here.
    pub fn log_state(&self, index: usize) -> LogState {
        if let Some(&(term, _)) = self.loading.borrow().get(&index) {
            return LogState::Loading { term };
        }
        match self.logs.borrow().get(&index) {
            Some(gl) => LogState::Serving {
                term: match &gl.backing {
                    Backing::Replica { term, .. } => *term,
                    Backing::Local(_) => 0,
                },
                failed: gl.failed.get() || gl.writer_done.get(),
            },
            None => LogState::Idle,
        }
    }

    /// Whether this coordinator serves `group` now: always on a single broker; in a
    /// cluster, if it has loaded the group's log (COORDINATOR_LOAD_IN_PROGRESS while
    /// loading, NOT_COORDINATOR if not here).
    pub fn serving(&self, group: &str) -> Result<(), GroupError> {
        if !self.replicated {
            return Ok(());
        }
        let index = group_log_for(group);
        if let Some(gl) = self.logs.borrow().get(&index) {
            // A replica that no longer leads in the term it loaded the log in serves
            // nothing from it, even before the next tending round releases it.
            match &gl.backing {
                Backing::Replica { part, term } if part.leads() != Some(*term) => {
                    Err(GroupError::NotCoordinator)
                }
                _ if gl.failed.get() => Err(GroupError::NotCoordinator),
                _ => Ok(()),
            }
        } else if self.loading.borrow().contains_key(&index) {
            Err(GroupError::CoordinatorLoadInProgress)
        } else {
            Err(GroupError::NotCoordinator)
        }
    }

    fn park(&self) -> (Token, oneshot::Receiver<Reply>) {
        let token = self.next_token.get();
        self.next_token.set(token + 1);
        let (tx, rx) = oneshot::channel();
        self.waiting.borrow_mut().insert(token, tx);
        (token, rx)
    }

    /// Waits while the group's log has too much queued (backpressure before the machine
    /// changes anything).
    async fn admit(&self, group: &str) {
        let Some(gl) = self.logs.borrow().get(&group_log_for(group)).cloned() else {
            return;
        };
        loop {
            let listener = gl.progress.listen();
            if gl.queue.borrow().len() < QUEUE_RECORDS_MAX || gl.failed.get() {
                return;
            }
            listener.await;
        }
    }

    /// Carries out the machine's effects. Records are queued now, in machine order; the
    /// replies are sent once they are written, by a detached task, so that cancelling the
    /// request that caused them (its connection closed) cannot lose other members' replies.
    /// The receiver says whether the records were written (the replies then report an error).
    fn apply(self: &Rc<Self>, fx: Effects) -> oneshot::Receiver<bool> {
        let (tx, rx) = oneshot::channel();
        let (waits, all_queued) = self.enqueue(fx.records);
        if waits.is_empty() && all_queued {
            self.deliver(fx.replies, true);
            let _ = tx.send(true);
            return rx;
        }
        let me = self.clone();
        runtime::spawn(async move {
            let ok = Self::written(waits).await && all_queued;
            me.deliver(fx.replies, ok);
            let _ = tx.send(ok);
        })
        .detach();
        rx
    }

    /// Queues records on their group logs; returns what to wait for, and whether every
    /// record was queued (false: some are for a log that failed, is closing or is not served
    /// here, and were dropped; those for the other logs are queued all the same, so one
    /// log's trouble does not drop the state changes of the others' groups).
    fn enqueue(&self, records: Vec<Record>) -> (Vec<(Rc<GroupLog>, u64)>, bool) {
        let mut by_log: HashMap<usize, Vec<Record>> = HashMap::new();
        for r in records {
            by_log.entry(group_log_for(r.group())).or_default().push(r);
        }
        let logs = self.logs.borrow();
        let mut waits = Vec::new();
        let mut all_queued = true;
        for (index, recs) in by_log {
            let ready = logs
                .get(&index)
                .filter(|gl| !gl.failed.get() && !gl.closing.get());
            let Some(gl) = ready else {
                all_queued = false;
                continue;
            };
            let n = recs.len() as u64;
            gl.queue.borrow_mut().extend(recs);
            gl.queued.set(gl.queued.get() + n);
            gl.work.notify(1);
            waits.push((gl.clone(), gl.queued.get()));
        }
        (waits, all_queued)
    }

    async fn written(waits: Vec<(Rc<GroupLog>, u64)>) -> bool {
        for (gl, seq) in waits {
            loop {
                let listener = gl.progress.listen();
                if gl.written.get() >= seq {
                    break;
                }
                if gl.failed.get() || gl.writer_done.get() {
                    return false;
                }
                listener.await;
            }
        }
        true
    }

    fn deliver(&self, replies: Vec<(Token, Reply)>, ok: bool) {
        for (token, mut reply) in replies {
            if !ok {
                reply = match reply {
                    Reply::Join(r) => Reply::Join(JoinReply::failed(
                        GroupError::CoordinatorNotAvailable,
                        r.member_id,
                    )),
                    Reply::Sync(_) => {
                        Reply::Sync(SyncReply::failed(GroupError::CoordinatorNotAvailable))
                    }
                };
            }
            if let Some(tx) = self.waiting.borrow_mut().remove(&token) {
                let _ = tx.send(reply); // the requester may have gone: nothing to do
            }
        }
    }

    /// The writer of one group log: drains its queue in order, batch by batch.
    async fn writer(self: Rc<Self>, gl: Rc<GroupLog>) {
        loop {
            let listener = gl.work.listen();
            if gl.failed.get() {
                break; // released
            }
            let records: Vec<Record> = std::mem::take(&mut *gl.queue.borrow_mut());
            if records.is_empty() {
                if gl.closing.get() {
                    break;
                }
                listener.await;
                continue;
            }
            let n = records.len() as u64;
            let result = self.write(&gl, &records).await;
            match result {
                Ok(bytes) => {
                    gl.written.set(gl.written.get() + n);
                    gl.grown_bytes.set(gl.grown_bytes.get() + bytes);
                }
                Err(WriteError::Replica(e)) => {
                    tracing::info!(log = gl.index, error = %e, "group log write not committed");
                    gl.failed.set(true);
                }
                Err(e) => {
                    tracing::error!(log = gl.index, error = %e, "group log write failed");
                    gl.failed.set(true);
                }
            }
            gl.progress.notify(usize::MAX);
            if gl.failed.get() {
                break;
            }
            if let Err(e) = self.maybe_compact(&gl).await {
                tracing::warn!(log = gl.index, error = %e, "group log compaction failed");
            }
        }
        gl.writer_done.set(true);
        gl.progress.notify(usize::MAX);
    }

    /// Appends records in batches and waits until they are written (a replica's: committed
    /// by Raft and held by min.insync.replicas); returns the bytes.
    async fn write(&self, gl: &GroupLog, records: &[Record]) -> Result<u64, WriteError> {
        let now = TimestampMs::now();
        let mut bytes = 0u64;
        match &gl.backing {
            Backing::Local(log) => {
                let mut last = None;
                for chunk in records.chunks(BATCH_RECORDS_MAX) {
                    let (info, batch_bytes) =
                        append_when_resumed(log, &gl.closing, chunk, now).await?;
                    bytes += batch_bytes;
                    last = Some(info.ticket);
                }
                if let Some(ticket) = last {
                    log.wait(ticket, Durability::Policy).await?;
                }
            }
            Backing::Replica { part, term } => {
                for chunk in replica_chunks(records) {
                    released(gl)?;
                    let batch = record::encode_batch(chunk, now);
                    bytes += batch.len() as u64;
                    part.append_in_term(batch, *term)
                        .await
                        .map_err(WriteError::Replica)?;
                }
            }
        }
        Ok(bytes)
    }

    /// Snapshot-compacts a group log that has grown enough (see the module docs).
    async fn maybe_compact(&self, gl: &GroupLog) -> Result<(), WriteError> {
        let min = self.machine.borrow().config().log_compact_bytes_min;
        let threshold = min.max(2 * gl.snapshot_bytes.get());
        if gl.grown_bytes.get() < threshold {
            return Ok(());
        }
        if let Backing::Replica { part, term } = &gl.backing {
            // The snapshot is of the machine's state: with records still queued it would
            // hold changes whose write may yet fail. Compact after a write that left none.
            if !gl.queue.borrow().is_empty() {
                return Ok(());
            }
            let bytes = match self.compact_replica(gl, part.as_ref(), *term).await {
                Ok(bytes) => bytes,
                Err(e) => {
                    // A partial snapshot stays in the log, harmless; the log is released and
                    // adopted again (replayed) rather than snapshotted again and again.
                    gl.failed.set(true);
                    return Err(e);
                }
            };
            gl.snapshot_bytes.set(bytes);
            gl.grown_bytes.set(0);
            return Ok(());
        }
        let index = gl.index;
        let snapshot = self
            .machine
            .borrow()
            .snapshot(|g| group_log_for(g) == index);
        let start = match &gl.backing {
            Backing::Local(log) => log.next_offset(),
            Backing::Replica { part, .. } => part.high_watermark(),
        };
        let bytes = if snapshot.is_empty() {
            0
        } else {
            self.write(gl, &snapshot).await?
        };
        let now = TimestampMs::now();
        match &gl.backing {
            Backing::Local(log) => log.delete_records(start, now).await?,
            Backing::Replica { part, .. } => part.delete_before(start).await?,
        };
        gl.snapshot_bytes.set(bytes);
        gl.grown_bytes.set(0);
        tracing::info!(
            log = index,
            records = snapshot.len(),
            bytes,
            "compacted group log"
        );
        Ok(())
    }

    /// Snapshot-compacts a replicated group log: the snapshot goes through Raft, then a mark
    /// naming its first offset (`record::encode_mark`), and the log start moves to that
    /// offset here; followers move theirs when they find the mark (`trim_follower`).
    /// Returns the snapshot's bytes.
    async fn compact_replica(
        &self,
        gl: &GroupLog,
        part: &dyn ReplicatedLog,
        term: u64,
    ) -> Result<u64, WriteError> {
        let index = gl.index;
        let snapshot = self
            .machine
            .borrow()
            .snapshot(|g| group_log_for(g) == index);
        let now = TimestampMs::now();
        // Nothing is in flight in this log (its one writer is here): the high watermark is
        // where the next batch goes.
        let mut start = part.high_watermark();
        let mut bytes = 0u64;
        for (i, chunk) in replica_chunks(&snapshot).enumerate() {
            released(gl)?;
            let batch = record::encode_batch(chunk, now);
            bytes += batch.len() as u64;
            let base = part
                .append_in_term(batch, term)
                .await
                .map_err(WriteError::Replica)?;
            if i == 0 {
                start = base;
            }
        }
        released(gl)?;
        let mark = record::encode_mark(start, now);
        part.append_in_term(mark, term)
            .await
            .map_err(WriteError::Replica)?;
        part.delete_before(start).await?;
        tracing::info!(
            log = index,
            records = snapshot.len(),
            bytes,
            start = start.get(),
            "compacted replicated group log"
        );
        Ok(bytes)
    }

    /// Sleeps until the next deadline (or a wake-up) and ticks the machine.
    async fn timers(self: Rc<Self>) {
        while !self.stopped.get() {
            let listener = self.wake.listen();
            let now = TimestampMs::now();
            if self.machine.borrow().next_deadline() <= now {
                let fx = self.machine.borrow_mut().tick(now);
                drop(self.apply(fx));
            }
            let deadline = self.machine.borrow().next_deadline();
            let wait = Duration::from_millis(deadline.since(now).get().clamp(1, 1000) as u64);
            future::or(listener, runtime::sleep(wait)).await;
        }
    }

    /// JoinGroup: answered at once (errors, MEMBER_ID_REQUIRED, a member rejoining unchanged
    /// after the join phase) or parked until the join phase ends (everyone joined, or the
    /// join timer). Waits first while the group's log has too much queued. After
    /// [`Coordinator::abort_parked`], or if the records behind the answer could not be
    /// written, the answer is COORDINATOR_NOT_AVAILABLE.
    pub async fn join(self: &Rc<Self>, req: JoinRequest) -> JoinReply {
        if self.stopped.get() {
            return JoinReply::failed(GroupError::CoordinatorNotAvailable, req.member_id);
        }
        self.admit(&req.group).await;
        if let Err(e) = self.serving(&req.group) {
            return JoinReply::failed(e, req.member_id);
        }
        let (token, rx) = self.park();
        let member_id = req.member_id.clone();
        let fx = self
            .machine
            .borrow_mut()
            .join(TimestampMs::now(), token, req);
        drop(self.apply(fx));
        self.wake.notify(1); // a join may arm an earlier deadline
        match rx.await {
            Ok(Reply::Join(r)) => r,
            _ => JoinReply::failed(GroupError::CoordinatorNotAvailable, member_id),
        }
    }

    /// SyncGroup: parked while CompletingRebalance until the leader's SyncGroup brings the
    /// assignment (or a rebalance, fencing or removal answers it); answered at once when
    /// Stable or on an error. Same backpressure and failure rules as [`Coordinator::join`].
    pub async fn sync(self: &Rc<Self>, req: SyncRequest) -> SyncReply {
        if self.stopped.get() {
            return SyncReply::failed(GroupError::CoordinatorNotAvailable);
        }
        self.admit(&req.group).await;
        if let Err(e) = self.serving(&req.group) {
            return SyncReply::failed(e);
        }
        let (token, rx) = self.park();
        let fx = self
            .machine
            .borrow_mut()
            .sync(TimestampMs::now(), token, req);
        drop(self.apply(fx));
        self.wake.notify(1);
        match rx.await {
            Ok(Reply::Sync(r)) => r,
            _ => SyncReply::failed(GroupError::CoordinatorNotAvailable),
        }
    }

    /// Heartbeats only push deadlines later, so the timer task need not wake.
    pub fn heartbeat(&self, group: &str, member: &MemberRef) -> Result<(), GroupError> {
        self.machine
            .borrow_mut()
            .heartbeat(TimestampMs::now(), group, member)
    }

    /// LeaveGroup: removes each member (by member id, or by instance id when the member id
    /// is "") and rebalances the group. Err is a group-level error, else one result per
    /// member in order. Returns once the records it caused are written or failed (a failure
    /// is not reflected in the results: the members are gone from memory either way).
    pub async fn leave(
        self: &Rc<Self>,
        group: &str,
        members: &[MemberRef],
    ) -> Result<Vec<Result<(), GroupError>>, GroupError> {
        let (result, fx) = self
            .machine
            .borrow_mut()
            .leave(TimestampMs::now(), group, members);
        let written = self.apply(fx);
        self.wake.notify(1);
        let _ = written.await;
        result
    }

    /// OffsetCommit: one result per offset, in request order, once the offsets are written
    /// to the group log (every one COORDINATOR_NOT_AVAILABLE if that write failed). Waits
    /// first while the group's log has too much queued.
    pub async fn commit(self: &Rc<Self>, req: CommitRequest) -> Vec<Result<(), GroupError>> {
        self.admit(&req.group).await;
        if let Err(e) = self.serving(&req.group) {
            return vec![Err(e); req.offsets.len()];
        }
        let (results, fx) = self.machine.borrow_mut().commit(TimestampMs::now(), req);
        if self.apply(fx).await.unwrap_or(false) {
            results
        } else {
            vec![Err(GroupError::CoordinatorNotAvailable); results.len()]
        }
    }

    /// OffsetFetch ([`Groups::fetch_offsets`]). Reads memory, so it also sees commits whose
    /// write is still in flight.
    pub fn fetch_offsets(&self, group: &str, topics: Option<TopicPartitions>) -> CommittedOffsets {
        self.machine.borrow().fetch_offsets(group, topics)
    }

    /// DescribeGroups of one group; None if this shard has no such group (the handler then
    /// answers state "Dead", or GROUP_ID_NOT_FOUND to v6+).
    pub fn describe(&self, group: &str) -> Option<GroupSummary> {
        self.machine.borrow().describe(group)
    }

    /// ListGroups: this shard's groups, sorted by id (ListGroups gathers every shard's).
    pub fn list(&self) -> Vec<GroupListing> {
        self.machine.borrow().list()
    }

    /// Every group with its committed offsets ([`Groups::stats`]).
    pub fn stats(&self) -> Vec<super::GroupStats> {
        self.machine.borrow().stats()
    }

    /// DeleteGroups of one group ([`Groups::delete_group`]): Ok once its tombstone is
    /// written, COORDINATOR_NOT_AVAILABLE if that write failed.
    pub async fn delete_group(self: &Rc<Self>, group: &str) -> Result<(), GroupError> {
        let (result, fx) = self.machine.borrow_mut().delete_group(group);
        if self.apply(fx).await.unwrap_or(false) {
            result
        } else {
            Err(GroupError::CoordinatorNotAvailable)
        }
    }

    /// OffsetDelete ([`Groups::delete_offsets`]): per-partition results once the tombstones
    /// are written, COORDINATOR_NOT_AVAILABLE if that write failed.
    pub async fn delete_offsets(
        self: &Rc<Self>,
        group: &str,
        topics: TopicPartitions,
    ) -> Result<PartitionResults, GroupError> {
        let (result, fx) = self.machine.borrow_mut().delete_offsets(group, topics);
        if self.apply(fx).await.unwrap_or(false) {
            result
        } else {
            Err(GroupError::CoordinatorNotAvailable)
        }
    }

    /// Drops committed offsets of topics that no longer exist (after a metadata change).
    pub fn forget_topics(self: &Rc<Self>, exists: impl Fn(&str) -> bool) {
        let fx = self.machine.borrow_mut().forget_topics(exists);
        if !fx.records.is_empty() {
            drop(self.apply(fx));
        }
    }

    /// Shutdown, first step: answer parked requests so connections can drain; later
    /// JoinGroup and SyncGroup requests are refused.
    pub fn abort_parked(self: &Rc<Self>) {
        self.stopped.set(true);
        self.wake.notify(1);
        let fx = self.machine.borrow_mut().abort_parked();
        self.deliver(fx.replies, true);
    }

    /// Shutdown, last step: write what is queued and close the logs cleanly.
    pub async fn close(&self) {
        let logs: Vec<Rc<GroupLog>> = self.logs.borrow_mut().drain().map(|(_, l)| l).collect();
        for gl in logs {
            gl.closing.set(true);
            gl.work.notify(1);
            let Backing::Local(log) = &gl.backing else {
                // A replica's partition is the shard's to close; what is queued was not
                // acknowledged, and the next leader serves the log.
                gl.failed.set(true);
                gl.work.notify(usize::MAX);
                continue;
            };
            loop {
                let listener = gl.progress.listen();
                // A paused log (full disk) writes nothing until space returns: its close
                // below ends the retries instead; what was queued was not acknowledged.
                if gl.failed.get()
                    || log.is_paused()
                    || (gl.queue.borrow().is_empty() && gl.written.get() >= gl.queued.get())
                {
                    break;
                }
                listener.await;
            }
            if let Err(e) = log.close().await {
                tracing::error!(log = gl.index, error = %e, "closing group log failed");
            }
        }
    }

    /// Abandons the logs as a crash would (tests).
    pub async fn abandon(&self) {
        let logs: Vec<Rc<GroupLog>> = self.logs.borrow_mut().drain().map(|(_, l)| l).collect();
        for gl in logs {
            if let Backing::Local(log) = &gl.backing {
                log.abandon().await;
            }
        }
    }
}

/// `records` cut into batches for a replicated group log: at most [`BATCH_RECORDS_MAX`]
/// records and, past the first record, [`REPLICA_BATCH_BYTES_MAX`] bytes of keys and values.
fn replica_chunks(records: &[Record]) -> impl Iterator<Item = &[Record]> {
    let mut rest = records;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let (mut n, mut bytes) = (0, 0usize);
        while n < rest.len() && n < BATCH_RECORDS_MAX {
            let (k, v) = record::encode(&rest[n]);
            bytes += k.len() + v.map_or(0, |v| v.len());
            if n > 0 && bytes > REPLICA_BATCH_BYTES_MAX {
                break;
            }
            n += 1;
        }
        let (chunk, tail) = rest.split_at(n);
        rest = tail;
        Some(chunk)
    })
}

/// Err once `gl` was released: its writer proposes nothing more.
fn released(gl: &GroupLog) -> Result<(), WriteError> {
    if gl.failed.get() {
        return Err(WriteError::Replica("the log was released".into()));
    }
    Ok(())
}

/// In a cluster, on a follower of group log partition `part`: moves its log start to the
/// start of the last snapshot its leader marked (`record::encode_mark`), as the leader did.
/// Reads the committed log; returns the new log start, if it moved.
pub async fn trim_follower(part: &dyn ReplicatedLog) -> Result<Option<Offset>, StorageError> {
    let from = part.log_start();
    let mut last = None;
    let mut visit = |h: &BatchHeader, batch: Bytes| {
        if !h.is_control() && h.record_count == 1 {
            if let Some(start) = record::mark_start(batch) {
                last = Some(start);
            }
        }
        Ok(())
    };
    part.replay_committed(from, &mut visit).await?;
    match last {
        Some(start) if start > from => Ok(Some(part.delete_before(start).await?)),
        _ => Ok(None),
    }
}

/// How often a group-log writer tries again to append to a log paused on a full disk.
const PAUSED_RETRY_MS: u64 = 200;

/// Appends `records` as one batch to a group log (returns its append and its bytes), waiting
/// while the log's writes are paused (a full disk): the records stay in order and go in once
/// space returns, and the requests behind them wait (the queue is bounded), instead of the
/// group log failing for good. The batch is encoded again for each try (a refused append
/// consumes it). Ends with the log's error when the broker is closing.
async fn append_when_resumed(
    log: &PartitionLog,
    closing: &Cell<bool>,
    records: &[Record],
    now: TimestampMs,
) -> Result<(crate::storage::AppendInfo, u64), StorageError> {
    loop {
        let batch = record::encode_batch(records, now);
        let bytes = batch.len() as u64;
        match log.append(batch, now).await {
            Err(StorageError::Paused(_)) if !closing.get() => {
                runtime::sleep(Duration::from_millis(PAUSED_RETRY_MS)).await;
            }
            other => return other.map(|info| (info, bytes)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::io::block_on;

    use super::super::test_commit as commit;

    fn log_bytes(c: &Coordinator) -> u64 {
        let size = |l: &Rc<GroupLog>| match &l.backing {
            Backing::Local(log) => log.size_bytes(),
            Backing::Replica { part, .. } => part.size_bytes(),
        };
        c.logs.borrow().values().map(size).sum()
    }

    #[test]
    fn commits_survive_restarts_and_compaction_bounds_the_logs() {
        let dir = tempfile::tempdir().unwrap();
        let config = GroupConfig {
            log_compact_bytes_min: 128 << 10,
            ..GroupConfig::default()
        };
        let groups: Vec<String> = (0..20).map(|i| format!("group-{i}")).collect();
        let expect = |c: &Coordinator, round: i64| {
            for g in &groups {
                let got = c.fetch_offsets(g, None);
                assert_eq!(got.len(), 1, "{g}");
                let offsets: Vec<i64> = got[0]
                    .1
                    .iter()
                    .map(|(_, c)| c.as_ref().unwrap().offset.get())
                    .collect();
                assert_eq!(
                    offsets,
                    (0..10).map(|p| round + p).collect::<Vec<_>>(),
                    "{g}"
                );
            }
        };
        block_on(async {
            let c = Coordinator::new(0, 1, dir.path(), config.clone(), false);
            c.start().await.unwrap();
            let mut peak = 0;
            for round in 0..400 {
                for g in &groups {
                    let r = c.commit(commit(g, round)).await;
                    assert!(r.iter().all(|r| r.is_ok()));
                }
                peak = peak.max(log_bytes(&c));
            }
            // 400 rounds wrote ~8000 commits of 10 records; compaction kept a bound.
            assert!(peak < 2 << 20, "group logs grew to {peak} bytes");
            expect(&c, 399);
            c.abort_parked();
            c.close().await;
        });
        block_on(async {
            let c = Coordinator::new(0, 1, dir.path(), config.clone(), false);
            c.start().await.unwrap();
            expect(&c, 399);
            for g in &groups {
                c.commit(commit(g, 1000)).await;
            }
            c.abandon().await; // as kill -9 would leave it
        });
        block_on(async {
            let c = Coordinator::new(0, 1, dir.path(), config.clone(), false);
            c.start().await.unwrap();
            expect(&c, 1000);
        });
    }
}
