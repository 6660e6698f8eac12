//! A partition on its owning shard: the log plus the Kafka semantics around it (acks, long-poll
//! fetch, offsets by time). Handlers reach it through `Shard::on(owner, ..)`; everything here
//! runs on the owner and returns `Send` values so results can cross back to the caller's shard.

pub mod producers;
mod traffic;

pub use traffic::PartitionStats;

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};

use crate::metadata::TopicMeta;
use crate::replica::{Answer, Host, ReplicaError, Wait};
use crate::runtime::Semaphore;
use crate::storage::batch::{self, BatchBuf, Batches};
use crate::storage::{self, io, Durability, PartitionLog, StorageError};
use crate::types::{Offset, TimestampMs};
use producers::{ProducerError, ProducerStates, Verdict};

/// Idempotent producers one partition tracks; more are refused.
pub const PRODUCERS_MAX: usize = 100_000;
/// Producer state file in a partition's directory (see `producers`).
pub const PRODUCER_STATE_FILE: &str = "producer-state";
/// Largest producer-state snapshot read back (bounded by PRODUCERS_MAX entries).
const PRODUCER_STATE_BYTES_MAX: u64 = 64 << 20;
/// Idempotent batches appended between periodic producer-state snapshots...
const SNAPSHOT_EVERY_BATCHES: u64 = 10_000;
/// ...or bytes of any batches: rebuilding the state at open reads the log from the snapshot
/// on, so this bounds that read after a crash, producers or not.
const SNAPSHOT_EVERY_BYTES: u64 = 16 << 20;
/// Ticks of the replica host (50 ms) a replicated produce waits for its answer: 30 s, as
/// Kafka's default request.timeout.ms.
const PROPOSAL_TIMEOUT_TICKS: u64 = 600;
/// How long a retried batch waits for its first copy's commit (as a proposal does).
const COMMIT_WAIT: std::time::Duration = std::time::Duration::from_secs(30);
/// How long a new leader's first produce waits for its term's first entry to be applied.
const TERM_START_WAIT: std::time::Duration = std::time::Duration::from_secs(5);
/// How often those waits look at the leadership again.
const TERM_START_POLL: std::time::Duration = std::time::Duration::from_millis(100);
/// How long a snapshot waits for the batches it covers to be written before it is left for
/// the next housekeeping run.
const SNAPSHOT_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

/// The idempotent-producer state of a partition and its snapshot bookkeeping. Shared by the
/// `Partition` values a shard installs for one partition over time (config changes).
struct Producers {
    /// Each idempotent producer's epoch and last batches.
    states: RefCell<ProducerStates>,
    /// Idempotent batches appended since the last snapshot.
    since_snapshot: Cell<u64>,
    /// Bytes of all batches appended since the last snapshot.
    since_snapshot_bytes: Cell<u64>,
    /// Taken by a snapshot while it waits and writes, and by a truncation: they take turns,
    /// so no snapshot of a suffix that a truncation cut is stored after the cut.
    turn: Semaphore,
}

impl Default for Producers {
    fn default() -> Self {
        Producers {
            states: RefCell::default(),
            since_snapshot: Cell::default(),
            since_snapshot_bytes: Cell::default(),
            turn: Semaphore::new(1),
        }
    }
}

/// One partition as its owner shard serves it: the log, the idempotent-producer state, and
/// the registry entry it was opened or last renamed under. Shared as `Rc<Partition>`.
pub struct Partition {
    /// The topic's registry entry as of the shard's last metadata install.
    pub topic: Arc<TopicMeta>,
    /// The partition's index within its topic.
    pub index: i32,
    log: PartitionLog,
    producers: Rc<Producers>,
    traffic: Rc<traffic::Traffic>,
    /// Set for a replicated partition: its replica on this shard.
    replica: Option<ReplicaLink>,
}

/// A replicated partition's replica on this shard's host (issue 21): produce proposes to its
/// Raft group, and its term is the leader epoch.
#[derive(Clone)]
pub struct ReplicaLink {
    /// The shard's replica host.
    pub host: Rc<Host>,
    /// The partition's Raft group.
    pub group: u64,
    /// The term in which this replica, leading, last rebuilt the producer windows from its
    /// log (0: never): followers do not keep them, so a new leader rebuilds them first.
    windows_term: Rc<Cell<u64>>,
}

impl ReplicaLink {
    /// The link to `group`'s replica in `host`.
    pub fn new(host: Rc<Host>, group: u64) -> ReplicaLink {
        ReplicaLink {
            host,
            group,
            windows_term: Rc::default(),
        }
    }

    /// The term, if this replica leads.
    fn leading_term(&self) -> Option<u64> {
        let l = self.host.leadership(self.group)?;
        (l.leader == Some(self.host.node())).then_some(l.term)
    }
}

/// Why a produce failed.
#[derive(Debug, thiserror::Error)]
pub enum ProduceError {
    /// The log refused the batch or failed (bad batch, full disk, closed log...).
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The idempotent-producer checks refused the batch (sequence, epoch, too many producers).
    #[error(transparent)]
    Producer(#[from] ProducerError),
    /// The partition's replica refused the batch or could not commit it (not the leader,
    /// too few in-sync replicas, timed out).
    #[error(transparent)]
    Replica(#[from] ReplicaError),
    /// Written (or committed) but held by fewer than min.insync.replicas within the time.
    #[error("committed but held by fewer replicas than min.insync.replicas")]
    NotEnoughReplicasAfterAppend,
    /// Not committed within the time allowed.
    #[error("not committed in time")]
    TimedOut,
}

/// A request's view of the leader epoch does not match this replica's (Kafka's
/// `current_leader_epoch` check on Fetch, ListOffsets and OffsetForLeaderEpoch).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EpochError {
    /// The client knows an older epoch: its metadata is stale (FENCED_LEADER_EPOCH).
    #[error("the request's leader epoch is older than the partition's")]
    Fenced,
    /// The client knows a newer epoch than this replica does yet (UNKNOWN_LEADER_EPOCH).
    #[error("the request's leader epoch is newer than the partition's")]
    Unknown,
    /// A replicated partition's follower was asked what only its leader answers
    /// (NOT_LEADER_OR_FOLLOWER).
    #[error("this replica follows")]
    NotLeader,
}

impl EpochError {
    /// A request's `current` epoch against the replica's `mine` (-1: none to check).
    pub fn check(current: i32, mine: i32) -> Result<(), EpochError> {
        match current {
            c if c < 0 || c == mine => Ok(()),
            c if c < mine => Err(EpochError::Fenced),
            _ => Err(EpochError::Unknown),
        }
    }
}

/// What a produce to one partition returns.
#[derive(Debug)]
pub struct Appended {
    /// The offset of the request's first record (its original offset, for a retried batch).
    pub base_offset: Offset,
    /// The time the broker stamped on the batch for a LogAppendTime topic, else
    /// [`TimestampMs::NONE`].
    pub log_append_time: TimestampMs,
    /// The log start offset after the append.
    pub log_start_offset: Offset,
}

/// What a fetch from one partition returns: whole batches (as `Bytes`, ready to cross shards).
#[derive(Debug, Default)]
pub struct Fetched {
    /// Whole batches in offset order, the first holding the fetch offset.
    pub records: Vec<Bytes>,
    /// The high watermark when read.
    pub high_watermark: Offset,
    /// The log start offset when read.
    pub log_start_offset: Offset,
    /// Set instead of records when the fetcher's last fetched epoch ends before its fetch
    /// offset here (Fetch v12+): the (epoch, end offset) to truncate to.
    pub diverging_epoch: Option<(i32, i64)>,
}

impl Fetched {
    /// Bytes of all the batches together.
    pub fn bytes(&self) -> usize {
        self.records.iter().map(|b| b.len()).sum()
    }
}

impl Partition {
    /// Opens the partition over its log: rebuilds idempotent-producer state from the last
    /// snapshot and the batches after it.
    pub async fn open(
        topic: Arc<TopicMeta>,
        index: i32,
        log: PartitionLog,
    ) -> Result<Partition, StorageError> {
        let producers = Rc::new(Producers::default());
        *producers.states.borrow_mut() = load_producers(&log).await?;
        Ok(Partition {
            topic,
            index,
            log,
            producers,
            traffic: Rc::default(),
            replica: None,
        })
    }

    /// Opens a replicated partition over its log, its replica in `link`'s host: the
    /// producer windows are rebuilt when the replica leads (`produce`).
    pub fn open_replicated(
        topic: Arc<TopicMeta>,
        index: i32,
        log: PartitionLog,
        link: ReplicaLink,
    ) -> Partition {
        Partition {
            topic,
            index,
            log,
            producers: Rc::default(),
            traffic: Rc::default(),
            replica: Some(link),
        }
    }

    /// The replica link, for a replicated partition.
    pub fn replica(&self) -> Option<&ReplicaLink> {
        self.replica.as_ref()
    }

    /// A follower's cut (issue 21): the log loses every batch from `to` on
    /// (`PartitionLog::truncate_to`), and the idempotent-producer state is rebuilt as of `to`
    /// (from the snapshot if it covers no more than that, else from the log start, as at open),
    /// so the producer windows match the log again.
    pub async fn truncate_to(&self, to: Offset) -> Result<(), StorageError> {
        let _turn = self.producers.turn.acquire_permit(1).await;
        self.log.truncate_to(to).await?;
        let states = load_producers(&self.log).await?;
        *self.producers.states.borrow_mut() = states;
        Ok(())
    }
}

/// The idempotent-producer state of `log`: its snapshot, if usable, and the batches after it.
async fn load_producers(log: &PartitionLog) -> Result<ProducerStates, StorageError> {
    let path = log.dir().join(PRODUCER_STATE_FILE);
    let stored = io::read_small(&path, PRODUCER_STATE_BYTES_MAX).await?;
    let usable = stored
        .as_deref()
        .and_then(ProducerStates::decode_snapshot)
        .filter(|(o, _)| *o >= log.log_start() && *o <= log.next_offset());
    if stored.is_some() && usable.is_none() {
        // Corrupt, or past the recovered log end (a crash lost the tail it covered, or a
        // truncation cut it): it must not come back into use once the log grows past its
        // offset again.
        io::remove(&path).await?;
    }
    let (from, states) = usable.unwrap_or((log.log_start(), ProducerStates::default()));
    let states = RefCell::new(states);
    // Batches from `from` on: one that a log start inside it cuts (DeleteRecords) is not.
    log.replay(from, |h, _| {
        if h.base_offset >= from {
            states.borrow_mut().record(h, h.max_timestamp.0);
        }
        Ok(())
    })
    .await?;
    Ok(states.into_inner())
}

impl Partition {
    /// Appends every batch in a produce request's records blob (usually one batch) and waits
    /// for the durability `acks` asks for: 0 and 1 wait for the O_DIRECT write (so nothing
    /// acknowledged is lost to a process crash), -1 for the topic's flush policy. A batch an
    /// idempotent producer already wrote (a retry) is not appended again: its original
    /// offsets are answered.
    /// The records are the log's to keep: each batch goes into the log as it is, with its base
    /// offset written into its header.
    pub async fn produce(&self, records: BytesMut, acks: i16) -> Result<Appended, ProduceError> {
        if let Some(link) = &self.replica {
            return self.produce_replicated(link, records, acks, None).await;
        }
        let now = TimestampMs::now();
        let mut first: Option<(Offset, TimestampMs)> = None;
        let mut ticket = None;
        for b in split_batches_mut(records)? {
            let mut h = batch::parse_header(&b).map_err(StorageError::InvalidBatch)?;
            if let Err(e) = self.log.wait_for_room().await {
                // On a paused log (full disk) a retry of a batch appended before the pause is
                // still answered, once it is written: refusing it would tell the producer that
                // records failed which are then written.
                let retry = matches!(
                    self.producers.states.borrow().check(&h, PRODUCERS_MAX),
                    Ok(Verdict::Duplicate(_))
                );
                if !(retry && matches!(e, StorageError::Paused(_))) {
                    return Err(e.into());
                }
            }
            // No await from here to `record`: the check and the append are one step.
            let verdict = self.producers.states.borrow().check(&h, PRODUCERS_MAX)?;
            let (base, time, next) = match verdict {
                Verdict::Duplicate(m) => {
                    tracing::debug!(
                        topic = %self.topic.name,
                        partition = self.index,
                        producer = h.producer_id,
                        sequence = h.base_sequence,
                        offset = m.first_offset.0,
                        "retried batch answered with its original offsets"
                    );
                    (m.first_offset, TimestampMs::NONE, m.last_offset.plus(1))
                }
                Verdict::Append => {
                    let appended = self.producers.since_snapshot_bytes.get() + b.len() as u64;
                    self.producers.since_snapshot_bytes.set(appended);
                    let (bytes, records) = (b.len(), h.record_count);
                    let info = self.log.append_now(b, now)?;
                    self.traffic.appended(bytes, records);
                    h.base_offset = info.base_offset;
                    self.producers.states.borrow_mut().record(&h, now.0);
                    if producers::is_idempotent(&h) {
                        self.producers
                            .since_snapshot
                            .set(self.producers.since_snapshot.get() + 1);
                    }
                    (info.base_offset, info.log_append_time, info.ticket)
                }
            };
            first.get_or_insert((base, time));
            ticket = Some(ticket.map_or(next, |t: Offset| t.max(next)));
        }
        let (Some((base_offset, log_append_time)), Some(ticket)) = (first, ticket) else {
            return Err(StorageError::InvalidBatch(storage::BatchError::TooShort(
                storage::batch::HEADER_BYTES,
            ))
            .into());
        };
        let level = if acks == -1 {
            Durability::Policy
        } else {
            Durability::Written
        };
        self.log.wait(ticket, level).await?;
        Ok(Appended {
            base_offset,
            log_append_time,
            log_start_offset: self.log.log_start(),
        })
    }

    /// `produce` on a replicated partition: each batch not already written (an idempotent
    /// retry) is proposed to the replica's Raft group, which gives its offsets; the answer
    /// waits for what `acks` asks (0 nothing, 1 the leader's write, -1 commit on
    /// min.insync.replicas replicas). The producer windows are rebuilt from the log first
    /// when this replica has not led since.
    /// [`Partition::produce`] only while this replica leads in `term` (as [`Partition::leads`]
    /// gave it; 0 for a partition without replicas): the group coordinator writes a group
    /// log with the state it loaded in that term, so the batches must not go into another
    /// (NOT_LEADER_OR_FOLLOWER if the term is not this replica's now).
    pub async fn produce_in_term(
        &self,
        records: BytesMut,
        acks: i16,
        term: u64,
    ) -> Result<Appended, ProduceError> {
        match &self.replica {
            Some(link) => {
                self.produce_replicated(link, records, acks, Some(term))
                    .await
            }
            None if term == 0 => self.produce(records, acks).await,
            None => Err(ReplicaError::NotLeader(None).into()),
        }
    }

    async fn produce_replicated(
        &self,
        link: &ReplicaLink,
        records: BytesMut,
        acks: i16,
        expected_term: Option<u64>,
    ) -> Result<Appended, ProduceError> {
        let term = link.leading_term().ok_or(ReplicaError::NotLeader(None))?;
        if expected_term.is_some_and(|t| t != term) {
            return Err(ReplicaError::NotLeader(None).into());
        }
        if link.windows_term.get() != term {
            self.rebuild_windows(link, term).await?;
            // The term may have moved on while the windows were read: the batches are
            // checked against windows of the term they are proposed in, or not at all.
            if link.leading_term() != Some(term) {
                return Err(ReplicaError::NotLeader(None).into());
            }
        }
        let wait = match acks {
            0 => Wait::Nothing,
            1 => Wait::Written,
            _ => Wait::Committed,
        };
        let append_time = self.log.config().timestamp_type == storage::TimestampType::LogAppendTime;
        let now = TimestampMs::now();
        let mut first: Option<(Offset, TimestampMs)> = None;
        let mut answer = None;
        // The end of the retried batches answered with their original offsets.
        let mut repeated: Option<Offset> = None;
        for mut b in split_batches_mut(records)? {
            // What every replica must store is checked here, before it is proposed.
            let mut h = self.log.check_batch(&b)?;
            // No await from here to `record`: the check and the proposal are one step.
            let verdict = self.producers.states.borrow().check(&h, PRODUCERS_MAX)?;
            let base = match verdict {
                Verdict::Duplicate(m) => {
                    repeated = repeated.max(Some(m.last_offset.plus(1)));
                    m.first_offset
                }
                Verdict::Append => {
                    if append_time {
                        batch::set_log_append_time(&mut b, now);
                    }
                    let (bytes, records) = (b.len(), h.record_count);
                    let (base, rx) =
                        link.host
                            .propose(link.group, b, wait, PROPOSAL_TIMEOUT_TICKS)?;
                    self.traffic.appended(bytes, records);
                    h.base_offset = base;
                    self.producers.states.borrow_mut().record(&h, now.0);
                    // Entries are written and committed in order: the last one's answer
                    // stands for all.
                    answer = rx.or(answer);
                    base
                }
            };
            let time = if append_time { now } else { TimestampMs::NONE };
            first.get_or_insert((base, time));
        }
        let Some((base_offset, log_append_time)) = first else {
            return Err(StorageError::InvalidBatch(storage::BatchError::TooShort(
                storage::batch::HEADER_BYTES,
            ))
            .into());
        };
        if let (None, Some(end), false) = (&answer, repeated, acks == 0) {
            // A retry is answered once its first copy is committed, as that copy's would be,
            // and for acks=all only while min.insync.replicas are in sync (as Kafka checks).
            if acks == -1 {
                let in_sync = link.host.in_sync(link.group).unwrap_or(0);
                let required =
                    usize::try_from(self.topic.configs.min_insync_replicas()).unwrap_or(1);
                if in_sync < required {
                    return Err(ReplicaError::NotEnoughReplicas { in_sync, required }.into());
                }
            }
            self.wait_committed(link, term, end).await?;
        }
        if let Some(rx) = answer {
            match rx.recv().await {
                Some(Answer::Done) => {}
                Some(Answer::NotEnoughReplicasAfterAppend) => {
                    return Err(ProduceError::NotEnoughReplicasAfterAppend)
                }
                Some(Answer::TimedOut) => return Err(ProduceError::TimedOut),
                Some(Answer::NotLeader) | None => return Err(ReplicaError::NotLeader(None).into()),
            }
        }
        Ok(Appended {
            base_offset,
            log_append_time,
            log_start_offset: self.log.log_start(),
        })
    }

    /// Rebuilds the producer windows of a replica that leads in `term` from its log: once
    /// the term's first entry is applied (everything before it is then committed and in the
    /// log), and only while it still leads.
    async fn rebuild_windows(&self, link: &ReplicaLink, term: u64) -> Result<(), ProduceError> {
        let deadline = std::time::Instant::now() + TERM_START_WAIT;
        while !link.host.term_started(link.group) {
            if link.leading_term() != Some(term) || std::time::Instant::now() > deadline {
                return Err(ReplicaError::NotLeader(None).into());
            }
            let hw = self.log.high_watermark();
            self.log.wait_for_data(hw, TERM_START_POLL).await;
        }
        let _turn = self.producers.turn.acquire_permit(1).await;
        if link.windows_term.get() == term {
            return Ok(());
        }
        let states = load_producers(&self.log).await?;
        if link.leading_term() != Some(term) {
            return Err(ReplicaError::NotLeader(None).into());
        }
        *self.producers.states.borrow_mut() = states;
        link.windows_term.set(term);
        Ok(())
    }

    /// Waits until the log's high watermark reaches `end` while this replica leads in
    /// `term`: NOT_LEADER_OR_FOLLOWER if it stops leading, REQUEST_TIMED_OUT after the
    /// proposal timeout.
    async fn wait_committed(
        &self,
        link: &ReplicaLink,
        term: u64,
        end: Offset,
    ) -> Result<(), ProduceError> {
        let deadline = std::time::Instant::now() + COMMIT_WAIT;
        loop {
            // Still leading in `term`: its entries there cannot have been replaced.
            if link.leading_term() != Some(term) {
                return Err(ReplicaError::NotLeader(None).into());
            }
            let hw = self.log.high_watermark();
            if hw >= end {
                return Ok(());
            }
            if std::time::Instant::now() > deadline {
                return Err(ProduceError::TimedOut);
            }
            self.log.wait_for_data(hw, TERM_START_POLL).await;
        }
    }

    /// Writes a producer-state snapshot when enough idempotent batches were appended since the
    /// last one (or always, with `force`), and forgets producers idle for `expiration_ms`.
    pub async fn maintain_producers(
        &self,
        now: TimestampMs,
        expiration_ms: i64,
        force: bool,
    ) -> Result<(), StorageError> {
        let expired = self
            .producers
            .states
            .borrow_mut()
            .expire(now.0, expiration_ms);
        if self.replica.is_some() {
            // A replica's windows are rebuilt from its log whenever it comes to lead (a
            // follower's log may be cut, which a snapshot would not see): none is stored.
            return Ok(());
        }
        let due = (self.producers.since_snapshot.get() >= SNAPSHOT_EVERY_BATCHES
            && !self.producers.states.borrow().is_empty())
            || self.producers.since_snapshot_bytes.get() >= SNAPSHOT_EVERY_BYTES;
        if !(force || due || expired > 0) {
            return Ok(());
        }
        // State and offset are taken in the same step: the snapshot covers exactly the batches
        // before `next_offset`. From here to the write, no truncation runs (`turn`).
        let _turn = self.producers.turn.acquire_permit(1).await;
        let at = self.log.next_offset();
        let bytes = self.producers.states.borrow().encode_snapshot(at);
        let counted = (
            self.producers.since_snapshot.replace(0),
            self.producers.since_snapshot_bytes.replace(0),
        );
        // Stored once those batches are on disk: a snapshot past what a crash recovers is
        // dropped at open, and the state then rebuilt from the log start. The wait is bounded,
        // so a log paused on a full disk does not hold up the shard's housekeeping.
        let level = Durability::Written;
        let paused = self.log.is_paused(); // nothing will be written for a while
        if paused || !self.log.wait_at_most(at, level, SNAPSHOT_WAIT).await? {
            let p = &self.producers;
            p.since_snapshot.set(p.since_snapshot.get() + counted.0);
            p.since_snapshot_bytes
                .set(p.since_snapshot_bytes.get() + counted.1);
            return Ok(());
        }
        io::write_small_atomic(self.log.dir(), PRODUCER_STATE_FILE, bytes).await
    }

    /// Whole batches from `offset` up to `max_bytes` (the first batch always; none when
    /// `max_bytes` is 0, which only checks the offset). The Fetch handler does the long poll,
    /// across all the partitions of a request.
    pub async fn read(&self, offset: Offset, max_bytes: usize) -> Result<Fetched, StorageError> {
        let r = self.log.read(offset, max_bytes).await?;
        let records: Vec<Bytes> = r.chunks.into_iter().map(|c| c.into_bytes()).collect();
        self.traffic.served(offset, &records);
        Ok(Fetched {
            high_watermark: r.high_watermark,
            log_start_offset: r.log_start,
            records,
            diverging_epoch: None,
        })
    }

    /// Fetch v12+'s check of a fetcher's `last_fetched_epoch` (-1: none): when that epoch
    /// ends here before `offset`, or only an older epoch is known, the fetcher's log has
    /// diverged from this one and must be cut at the (epoch, end offset) returned (Kafka's
    /// rule, KIP-595's diverging epoch).
    pub fn diverging(&self, offset: Offset, last_fetched_epoch: i32) -> Option<(i32, i64)> {
        if last_fetched_epoch < 0 {
            return None;
        }
        let (epoch, end) = self.end_offset_for_epoch(last_fetched_epoch);
        (end < offset.get() || epoch < last_fetched_epoch).then_some((epoch, end))
    }

    /// The same partition under a newer registry entry for its topic (same log, same
    /// producer state), with the log's settings changed to `config` when given.
    pub fn renamed(
        &self,
        topic: Arc<TopicMeta>,
        config: Option<crate::storage::LogConfig>,
    ) -> Partition {
        if let Some(config) = config {
            self.log.set_config(config);
        }
        Partition {
            topic,
            index: self.index,
            log: self.log.clone(),
            producers: self.producers.clone(),
            traffic: self.traffic.clone(),
            replica: self.replica.clone(),
        }
    }

    /// What the metrics endpoint shows of this partition (traffic, offsets, sizes).
    pub fn stats(&self) -> PartitionStats {
        let t = &self.traffic;
        let sizes = self.log.sizes();
        PartitionStats {
            bytes_in: t.bytes_in.get(),
            records_in: t.records_in.get(),
            bytes_out: t.bytes_out.get(),
            records_out: t.records_out.get(),
            log_start: sizes.log_start.0,
            high_watermark: sizes.high_watermark.0,
            size_bytes: sizes.size_bytes,
            segments: sizes.segments,
            tail_cache_bytes: sizes.tail_cache_bytes,
            producers: self.producers.states.borrow().len() as u64,
            in_sync_replicas: match &self.replica {
                None => 1,
                Some(link) => link.host.in_sync(link.group).unwrap_or(0) as u64,
            },
            replica_lag_max: self.replica.as_ref().map_or(0, |link| {
                let lags = link.host.follower_lag(link.group).unwrap_or_default();
                lags.into_iter().map(|(_, lag)| lag).max().unwrap_or(0)
            }),
        }
    }

    /// The leader epoch of this replica: what new batches are stamped with, and what
    /// Metadata, Fetch and ListOffsets report.
    pub fn leader_epoch(&self) -> i32 {
        match &self.replica {
            Some(link) => link
                .host
                .leadership(link.group)
                .map_or(0, |l| i32::try_from(l.term).unwrap_or(i32::MAX)),
            None => self.log.leader_epoch(),
        }
    }

    /// For the requests only a leader answers (ListOffsets, OffsetForLeaderEpoch,
    /// DeleteRecords): refuses on a replicated partition's follower, then checks
    /// `current` as `check_leader_epoch` does.
    pub fn check_leader(&self, current: i32) -> Result<(), EpochError> {
        if let Some(link) = &self.replica {
            if link.leading_term().is_none() {
                return Err(EpochError::NotLeader);
            }
        }
        self.check_leader_epoch(current)
    }

    /// Checks a request's `current_leader_epoch` (-1: the client does not know one, so
    /// nothing to check) against this replica's.
    pub fn check_leader_epoch(&self, current: i32) -> Result<(), EpochError> {
        EpochError::check(current, self.leader_epoch())
    }

    /// OffsetForLeaderEpoch: the latest epoch at or below `requested` and the offset where
    /// it ends here (Kafka's rules, `storage::epochs`).
    pub fn end_offset_for_epoch(&self, requested: i32) -> (i32, i64) {
        self.log.end_offset_for_epoch(requested)
    }

    /// Hands `visit` each batch from `from` up to the high watermark, in order, as
    /// `PartitionLog::replay` does (a replica's reads end at its commit point): the group
    /// coordinator reads a group log it takes over this way.
    pub async fn replay_committed(
        &self,
        from: Offset,
        visit: impl FnMut(&batch::BatchHeader, Bytes) -> Result<(), StorageError>,
    ) -> Result<(), StorageError> {
        self.log.replay(from, visit).await
    }

    /// The term this replica leads in, once the term's first entry is committed (so the
    /// whole log up to the high watermark is final); 0 for a partition with no replicas
    /// (it always leads); None while another replica leads or none does.
    pub fn leads(&self) -> Option<u64> {
        let Some(link) = &self.replica else {
            return Some(0);
        };
        link.leading_term()
            .filter(|_| link.host.term_started(link.group))
    }

    /// The epoch of the batch holding `offset`, if the log still has it.
    pub fn epoch_at(&self, offset: Offset) -> Option<i32> {
        self.log.epoch_at(offset)
    }

    /// The high watermark: the end of what consumers may read.
    pub fn high_watermark(&self) -> Offset {
        self.log.high_watermark()
    }

    /// The log start offset: the first offset still kept.
    pub fn log_start(&self) -> Offset {
        self.log.log_start()
    }

    /// Resolves once the high watermark passes `seen`, or after `timeout` (a Fetch's long poll).
    pub async fn wait_for_data(&self, seen: Offset, timeout: std::time::Duration) {
        self.log.wait_for_data(seen, timeout).await
    }

    /// DeleteRecords: moves the log start up to `before` (at most the high watermark) and
    /// returns the new log start.
    pub async fn delete_records(
        &self,
        before: Offset,
        now: TimestampMs,
    ) -> Result<Offset, StorageError> {
        self.log.delete_records(before, now).await
    }

    /// Deletes what retention says is expired.
    pub async fn enforce_retention(&self, now: TimestampMs) -> Result<(), StorageError> {
        self.log.enforce_retention(now).await
    }

    /// Closes the log (flushed, indexes and the clean-shutdown marker written).
    pub async fn close(&self) -> Result<(), StorageError> {
        self.log.close().await
    }

    /// The partition's directory.
    pub fn dir(&self) -> &std::path::Path {
        self.log.dir()
    }

    /// Bytes of the partition's segments (DescribeLogDirs), batches not yet written included.
    pub fn size_bytes(&self) -> u64 {
        self.log.size_bytes()
    }

    /// The idempotent producers this partition tracks (DescribeProducers), by producer id: at
    /// most [`PRODUCERS_MAX`].
    pub fn producers(&self) -> Vec<producers::ProducerSummary> {
        self.producers.states.borrow().summaries()
    }

    /// ListOffsets: -2 earliest, -1 latest, -3 max timestamp, else the first offset whose
    /// timestamp is ≥ `ts` (None: no such record). For -3 and a timestamp, storage finds the
    /// batch and `find` the record in it ([`RecordFinder`]); where it finds none, the answer is
    /// the batch's base offset and max timestamp.
    pub async fn offset_for(
        &self,
        ts: i64,
        find: RecordFinder,
    ) -> Result<Option<(Offset, TimestampMs)>, StorageError> {
        match ts {
            -2 => Ok(Some((self.log.log_start(), TimestampMs::NONE))),
            -1 => Ok(Some((self.log.high_watermark(), TimestampMs::NONE))),
            -3 => {
                let (t, base) = self.log.max_timestamp();
                if t == TimestampMs::NONE {
                    return Ok(None);
                }
                if self.replica.is_some() && base >= self.log.high_watermark() {
                    return Ok(None); // the newest timestamp is not committed yet
                }
                let exact = self.batch_at(base).await?.and_then(|b| find(&b, t.0));
                Ok(Some(exact.unwrap_or((base, t))))
            }
            ts => {
                let found = self.log.batch_for_timestamp(TimestampMs(ts)).await?;
                let hw = self.log.high_watermark();
                // Only what consumers may read: a replicated log's uncommitted batches not.
                let found = found.filter(|(h, _)| h.base_offset < hw);
                Ok(found.map(|(h, chunk)| {
                    let exact = find(&chunk, ts);
                    exact.unwrap_or((h.base_offset, h.max_timestamp))
                }))
            }
        }
    }

    /// The batch whose base offset is `base`, read from the log; None if it is no longer
    /// there (below the log start) or not yet readable (above the high watermark).
    async fn batch_at(&self, base: Offset) -> Result<Option<Bytes>, StorageError> {
        let read = match self.log.read(base.max(self.log.log_start()), 1).await {
            Ok(r) => r,
            Err(StorageError::OffsetOutOfRange { .. }) => return Ok(None),
            Err(e) => return Err(e),
        };
        let Some(chunk) = read.chunks.into_iter().next() else {
            return Ok(None);
        };
        let first = split_batches(chunk.into_bytes())?.into_iter().next();
        Ok(first.filter(|b| batch::parse_header(b).is_ok_and(|h| h.base_offset == base)))
    }
}

/// Finds, in the batch at the start of its bytes, the offset and timestamp of the first record
/// whose timestamp is ≥ the one given (None: none, or it cannot tell). The Kafka layer gives
/// one that reads compressed batches (`kafka::compression::first_record_at_or_after`).
pub type RecordFinder = fn(&[u8], i64) -> Option<(Offset, TimestampMs)>;

/// Splits a produce records blob into its v2 batches (by their length fields). A blob with a
/// torn trailing batch is corrupt. Zero-copy: slices of the request frame.
pub fn split_batches(records: Bytes) -> Result<Vec<Bytes>, StorageError> {
    split_by_length(records)
}

/// `split_batches` for records the caller owns: disjoint `BytesMut` views, no copy.
pub fn split_batches_mut(records: BytesMut) -> Result<Vec<BytesMut>, StorageError> {
    split_by_length(records)
}

fn split_by_length<B: BatchBuf>(records: B) -> Result<Vec<B>, StorageError> {
    Batches::new(records)
        .map(|walked| {
            walked.map(|(_, b)| b).map_err(|_| {
                StorageError::InvalidBatch(storage::BatchError::TooShort(batch::HEADER_BYTES))
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::batch::build_test_batch;

    #[test]
    fn a_request_s_leader_epoch_is_fenced_unknown_or_unchecked() {
        assert_eq!(EpochError::check(-1, 4), Ok(()));
        assert_eq!(EpochError::check(4, 4), Ok(()));
        assert_eq!(EpochError::check(3, 4), Err(EpochError::Fenced));
        assert_eq!(EpochError::check(5, 4), Err(EpochError::Unknown));
    }

    #[test]
    fn splits_concatenated_batches_and_rejects_torn() {
        let a = build_test_batch(2, 10, TimestampMs(1));
        let b = build_test_batch(1, 30, TimestampMs(2));
        let blob = Bytes::from([a.clone(), b.clone()].concat());
        let parts = split_batches(blob.clone()).unwrap();
        assert_eq!(parts.len(), 2);
        assert_eq!(&parts[1][..], &b[..]);
        assert!(split_batches(blob.slice(..blob.len() - 1)).is_err());
    }

    /// Partition 0 of `topic` over a log in `dir` with the default settings.
    async fn open_default(dir: &std::path::Path, topic: Arc<TopicMeta>) -> Partition {
        let log = PartitionLog::open(dir, Default::default()).await.unwrap();
        Partition::open(topic, 0, log).await.unwrap()
    }

    fn one_partition_topic() -> Arc<TopicMeta> {
        Arc::new(TopicMeta {
            name: "t".into(),
            id: uuid::Uuid::new_v4(),
            partitions: 1,
            configs: Default::default(),
        })
    }

    fn idempotent(producer: i64, seq: i32) -> BytesMut {
        let mut b = build_test_batch(1, 8, TimestampMs(1));
        batch::set_producer(&mut b, producer, 0, seq);
        BytesMut::from(&b[..])
    }

    #[test]
    fn a_snapshot_past_the_log_end_is_dropped_not_kept_for_later() {
        let dir = tempfile::tempdir().unwrap();
        let topic = one_partition_topic();
        let open = |topic: Arc<TopicMeta>| open_default(dir.path(), topic);
        io::block_on(async {
            let p = open(topic.clone()).await;
            p.produce(idempotent(7, 0), -1).await.unwrap();
            // A snapshot claiming a phantom producer at an offset the log has not reached, as
            // a crash that lost the tail leaves it.
            let mut phantom = ProducerStates::default();
            let mut h = batch::parse_header(&idempotent(9, 0)).unwrap();
            h.base_offset = Offset(5);
            phantom.record(&h, 1);
            let bytes = phantom.encode_snapshot(Offset(6));
            io::write_small_atomic(p.log.dir(), PRODUCER_STATE_FILE, bytes)
                .await
                .unwrap();
            p.log.abandon().await;
            let p = open(topic.clone()).await;
            assert!(
                p.producers.states.borrow().get(7).is_some(),
                "rebuilt from the log"
            );
            assert!(p.producers.states.borrow().get(9).is_none());
            assert!(
                !p.log.dir().join(PRODUCER_STATE_FILE).exists(),
                "stale snapshot removed"
            );
            for seq in 1..10 {
                p.produce(idempotent(7, seq), -1).await.unwrap();
            }
            p.log.abandon().await;
            // Past offset 6 now: the stale snapshot would have been taken for true.
            let p = open(topic).await;
            assert!(p.producers.states.borrow().get(9).is_none());
            assert_eq!(p.producers.states.borrow().len(), 1);
        });
    }

    /// Issue 21: a follower's truncation rebuilds the producer windows as of the cut, and
    /// drops a snapshot that covers the cut suffix: a batch that was cut is appended again,
    /// not answered as a duplicate, and a reopen after the log grows back does not take the
    /// old snapshot for true.
    #[test]
    fn a_truncation_rebuilds_producer_windows_as_of_the_cut() {
        let dir = tempfile::tempdir().unwrap();
        let topic = one_partition_topic();
        io::block_on(async {
            let p = open_default(dir.path(), topic.clone()).await;
            for seq in 0..5 {
                p.produce(idempotent(7, seq), 1).await.unwrap(); // offsets 0..=4
            }
            p.maintain_producers(TimestampMs(1), i64::MAX, true)
                .await
                .unwrap();
            let snapshot = p.log.dir().join(PRODUCER_STATE_FILE);
            assert!(snapshot.exists());
            p.truncate_to(Offset(3)).await.unwrap();
            assert!(!snapshot.exists(), "it covered offsets 3 and 4");
            let again = p.produce(idempotent(7, 3), 1).await.unwrap();
            assert_eq!(
                again.base_offset,
                Offset(3),
                "appended again, not a duplicate"
            );
            let retry = p.produce(idempotent(7, 2), 1).await.unwrap();
            assert_eq!(
                retry.base_offset,
                Offset(2),
                "a kept batch is still a duplicate"
            );
            p.produce(idempotent(7, 4), 1).await.unwrap();
            p.produce(idempotent(7, 5), 1).await.unwrap();
            p.log.close().await.unwrap();
            let p = open_default(dir.path(), topic).await;
            let retry = p.produce(idempotent(7, 5), 1).await.unwrap();
            assert_eq!(retry.base_offset, Offset(5));
            assert_eq!(p.log.next_offset(), Offset(6));
            p.log.close().await.unwrap();
        });
    }

    /// Producer state is rebuilt at open from the log start when there is no snapshot. A log
    /// start inside a batch of 1 MiB or more (DeleteRecords) used to end that rebuild at its
    /// first read, which held that batch alone: the producers after it were forgotten, and
    /// their retries appended twice.
    #[test]
    fn producers_after_a_large_batch_cut_by_the_log_start_are_rebuilt() {
        let dir = tempfile::tempdir().unwrap();
        let topic = one_partition_topic();
        let config = storage::LogConfig {
            message_bytes_max: 4 << 20,
            ..Default::default()
        };
        io::block_on(async {
            let log = PartitionLog::open(dir.path(), config.clone())
                .await
                .unwrap();
            let p = Partition::open(topic.clone(), 0, log).await.unwrap();
            let large = build_test_batch(2, 600 << 10, TimestampMs(1)); // offsets 0 and 1
            p.produce(BytesMut::from(&large[..]), 1).await.unwrap();
            for seq in 0..2 {
                p.produce(idempotent(7, seq), 1).await.unwrap(); // offsets 2 and 3
            }
            p.log
                .delete_records(Offset(1), TimestampMs::now())
                .await
                .unwrap();
            p.log.close().await.unwrap();
            let log = PartitionLog::open(dir.path(), config).await.unwrap();
            assert_eq!(log.log_start(), Offset(1));
            let p = Partition::open(topic, 0, log).await.unwrap();
            assert!(p.producers.states.borrow().get(7).is_some(), "rebuilt");
            let retry = p.produce(idempotent(7, 1), 1).await.unwrap();
            assert_eq!(retry.base_offset, Offset(3), "answered, not appended again");
            assert_eq!(p.log.next_offset(), Offset(4));
            p.log.close().await.unwrap();
        });
    }

    /// Issue 17, case 9: producer state is rebuilt at open by reading the log from the last
    /// snapshot on, and snapshots came only every 10,000 idempotent batches: after a crash, a
    /// log written by plain producers was read from its start. Now 16 MiB of any batches
    /// make a snapshot due too.
    #[test]
    fn plain_batches_make_a_producer_snapshot_due_by_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let topic = one_partition_topic();
        io::block_on(async {
            let p = open_default(dir.path(), topic).await;
            let plain = build_test_batch(1, 512 << 10, TimestampMs(1));
            for _ in 0..40 {
                p.produce(BytesMut::from(&plain[..]), 1).await.unwrap();
            }
            p.maintain_producers(TimestampMs(1), i64::MAX, false)
                .await
                .unwrap();
            let path = p.log.dir().join(PRODUCER_STATE_FILE);
            let stored = io::read_small(&path, PRODUCER_STATE_BYTES_MAX)
                .await
                .unwrap();
            let (at, _) = ProducerStates::decode_snapshot(&stored.expect("a snapshot")).unwrap();
            assert_eq!(at, p.log.next_offset(), "covers the log so far");
            p.log.close().await.unwrap();
        });
    }
}
