//! A shard: one core's share of the broker. It owns the partitions `shard_for` maps to it, holds
//! a read-only copy of the topic registry, accepts its own connections (SO_REUSEPORT), and
//! reaches other shards with [`Shard::on`], which runs a closure on the target shard and brings
//! its (`Send`) result back. Shard 0 is also the controller (`controller.rs`).

pub mod controller;
pub mod producer_ids;

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::future::Future;
use std::path::PathBuf;
use std::rc::{Rc, Weak};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use uuid::Uuid;

use crate::config::Config;
use crate::group::Coordinator;
use crate::metadata::{shard_for, Snapshot, TopicMeta};
use crate::partition::Partition;
use crate::runtime::{self, Mesh, MeshSenders};

/// A job for another shard (`Shard::on`).
type Job = runtime::Job<Shard>;
use crate::storage::{LogConfig, PartitionLog, StorageError};
use crate::types::TimestampMs;

pub use controller::{AdminError, Controller};

/// A cross-shard call failed: the target shard is gone (shutting down).
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("shard {0} is unavailable")]
pub struct ShardGone(pub usize);

/// Startup state every shard needs before serving.
#[derive(Clone)]
pub struct Boot {
    pub config: Arc<Config>,
    pub cluster_id: String,
    pub snapshot: Arc<Snapshot>,
    pub shutdown: Arc<AtomicBool>,
    /// Shards that have opened their partitions and groups: none listens before all have, so
    /// the first client is never answered by a shard whose peers cannot answer yet.
    pub started: Arc<AtomicUsize>,
    /// The connection limits, shared by the shards' accept loops.
    pub admission: Arc<crate::net::Admission>,
}

pub struct Shard {
    pub id: usize,
    pub config: Arc<Config>,
    pub cluster_id: String,
    metadata: RefCell<Arc<Snapshot>>,
    partitions: RefCell<HashMap<(Uuid, i32), Rc<Partition>>>,
    senders: MeshSenders<Shard>,
    this: Weak<Shard>,
    /// Only on shard 0.
    pub controller: Option<Controller>,
    /// Only on shard 0: the producer-id allocator (InitProducerId).
    pub producer_ids: Option<producer_ids::ProducerIds>,
    /// The consumer groups this shard coordinates (`group::shard_for_group`).
    pub groups: Rc<Coordinator>,
    /// Requests being handled on this shard (drained before shutdown).
    pub inflight: Cell<usize>,
    pub stopping: Cell<bool>,
    /// Cross-shard calls made from this shard, waiting for their replies.
    replies: Replies,
    /// How long this shard's requests took, by API key (logged when it stops).
    pub request_times: crate::net::RequestTimes,
}

/// A cross-shard call's result on its way back (its type is known to the caller only).
type Reply = Box<dyn std::any::Any + Send>;

/// Hands a reply to the caller waiting for it.
type Complete = Box<dyn FnOnce(Reply)>;

/// The callers on this shard waiting for cross-shard replies, by call id. A caller that gave
/// up (its future dropped) leaves its entry until the reply comes; a target shard that stops
/// without replying leaves it until this shard stops (its drain is bounded).
#[derive(Default)]
struct Replies {
    next_id: Cell<u64>,
    waiting: RefCell<HashMap<u64, Complete>>,
}

impl Replies {
    fn expect<T: 'static>(&self) -> (u64, futures_channel::oneshot::Receiver<T>) {
        let id = self.next_id.get();
        self.next_id.set(id + 1);
        let (tx, rx) = futures_channel::oneshot::channel::<T>();
        let complete = move |reply: Reply| {
            let value = reply.downcast::<T>().expect("a reply has its call's type");
            let _ = tx.send(*value);
        };
        self.waiting.borrow_mut().insert(id, Box::new(complete));
        (id, rx)
    }

    fn deliver(&self, id: u64, reply: Reply) {
        let complete = self.waiting.borrow_mut().remove(&id);
        if let Some(complete) = complete {
            complete(reply);
        }
    }

    fn forget(&self, id: u64) {
        self.waiting.borrow_mut().remove(&id);
    }
}

impl Shard {
    pub fn shards(&self) -> usize {
        self.config.shards
    }

    pub fn metadata(&self) -> Arc<Snapshot> {
        self.metadata.borrow().clone()
    }

    fn rc(&self) -> Rc<Shard> {
        self.this.upgrade().expect("shard alive while in use")
    }

    /// Runs `f` on shard `target` and returns its result. Local calls run inline; remote ones
    /// travel over the bounded mesh channel (waiting when it is full), and so does the reply:
    /// it is handed to the waiting caller on this shard's own thread (`deliver`). No task's
    /// waker ever crosses threads: glommio 0.9 wakes a task from a foreign thread through a
    /// path that can double-free it (seen as `free(): double free` under acks=all load when
    /// the reply was a futures oneshot completed on the target shard).
    pub async fn on<T, F, Fut>(&self, target: usize, f: F) -> Result<T, ShardGone>
    where
        T: Send + 'static,
        F: FnOnce(Rc<Shard>) -> Fut + Send + 'static,
        Fut: Future<Output = T> + 'static,
    {
        if target == self.id {
            return Ok(f(self.rc()).await);
        }
        let (id, rx) = self.replies.expect::<T>();
        let origin = self.id;
        let job: Job = Box::new(move |s| {
            Box::pin(async move {
                let value: Reply = Box::new(f(s.clone()).await);
                let back: Job =
                    Box::new(move |home| Box::pin(async move { home.replies.deliver(id, value) }));
                // Fails only if the caller's shard is gone, and then nobody waits.
                let _ = s.senders.send_to(origin, back).await;
            })
        });
        if self.senders.send_to(target, job).await.is_err() {
            self.replies.forget(id);
            return Err(ShardGone(target));
        }
        rx.await.map_err(|_| ShardGone(target))
    }

    /// The partition, if this shard owns it and it is open.
    pub fn partition(&self, topic: &Uuid, index: i32) -> Option<Rc<Partition>> {
        self.partitions.borrow().get(&(*topic, index)).cloned()
    }

    pub fn owner_of(&self, topic: &Uuid, index: i32) -> usize {
        shard_for(topic, index, self.shards())
    }

    pub fn coordinator_of(&self, group: &str) -> usize {
        crate::group::shard_for_group(group, self.shards())
    }

    fn partition_dir(&self, topic: &TopicMeta, index: i32) -> PathBuf {
        self.config
            .data_dir
            .join(format!("{}-{}", topic.name, index))
    }

    /// Installs a newer registry snapshot: opens partitions this shard now owns, applies
    /// config changes, closes and deletes partitions of deleted topics.
    pub async fn apply_metadata(&self, snap: Arc<Snapshot>) -> Result<(), StorageError> {
        if snap.version < self.metadata.borrow().version {
            return Ok(());
        }
        let old = std::mem::replace(&mut *self.metadata.borrow_mut(), snap.clone());
        let deleted: Vec<String> = old
            .topics
            .values()
            .filter(|t| snap.topic_by_id(&t.id).is_none())
            .map(|t| t.name.clone())
            .collect();
        if !deleted.is_empty() {
            self.groups
                .forget_topics(|t| !deleted.iter().any(|d| d == t));
        }
        let gone: Vec<(Uuid, i32)> = self
            .partitions
            .borrow()
            .keys()
            .filter(|(id, p)| snap.topic_by_id(id).is_none_or(|t| *p >= t.partitions))
            .copied()
            .collect();
        for key in gone {
            let part = self.partitions.borrow_mut().remove(&key);
            if let Some(part) = part {
                let _ = part.log.close().await;
                if let Err(e) = std::fs::remove_dir_all(part.log.dir()) {
                    // Left for the boot-time orphan sweep (metadata::store::remove_orphans).
                    tracing::warn!(dir = %part.log.dir().display(), error = %e, "could not delete partition");
                }
            }
        }
        for topic in snap.topics.values() {
            for index in 0..topic.partitions {
                if self.owner_of(&topic.id, index) == self.id {
                    self.ensure_partition(topic, index).await?;
                }
            }
        }
        Ok(())
    }

    /// A topic's log settings with the broker's own on top (`verify_reads`).
    fn log_config(&self, topic: &TopicMeta) -> LogConfig {
        LogConfig {
            verify_reads: self.config.verify_reads,
            ..topic.configs.log_config()
        }
    }

    async fn ensure_partition(
        &self,
        topic: &Arc<TopicMeta>,
        index: i32,
    ) -> Result<(), StorageError> {
        if let Some(p) = self.partition(&topic.id, index) {
            if p.topic.configs != topic.configs {
                p.log.set_config(self.log_config(topic));
            }
            let updated = Rc::new(Partition {
                topic: topic.clone(),
                index,
                log: p.log.clone(),
                producers: p.producers.clone(),
            });
            self.partitions
                .borrow_mut()
                .insert((topic.id, index), updated);
            return Ok(());
        }
        let dir = self.partition_dir(topic, index);
        let log = PartitionLog::open(&dir, self.log_config(topic)).await?;
        let part = Rc::new(Partition::open(topic.clone(), index, log).await?);
        self.partitions.borrow_mut().insert((topic.id, index), part);
        Ok(())
    }

    /// Applies retention to every partition this shard owns.
    async fn enforce_retention(&self) {
        let parts: Vec<Rc<Partition>> = self.partitions.borrow().values().cloned().collect();
        let now = TimestampMs::now();
        let expiration = self.config.producer_id_expiration_ms;
        for p in parts {
            // Failures are logged by the log, once per spell.
            let _ = p.log.enforce_retention(now).await;
            if let Err(e) = p.maintain_producers(now, expiration, false).await {
                tracing::warn!(topic = %p.topic.name, partition = p.index, error = %e, "producer-state snapshot failed");
            }
        }
    }

    async fn close_all(&self) {
        let parts: Vec<Rc<Partition>> = self
            .partitions
            .borrow_mut()
            .drain()
            .map(|(_, p)| p)
            .collect();
        let expiration = self.config.producer_id_expiration_ms;
        for p in parts {
            if let Err(e) = p.log.close().await {
                tracing::error!(topic = %p.topic.name, partition = p.index, error = %e, "close failed");
                continue;
            }
            if let Err(e) = p
                .maintain_producers(TimestampMs::now(), expiration, true)
                .await
            {
                tracing::error!(topic = %p.topic.name, partition = p.index, error = %e, "producer-state snapshot failed");
            }
        }
    }
}

/// A shard's whole life: join the mesh, open owned partitions, serve until shutdown, close.
/// A shard that cannot open what it owns stops the whole process, with the reason: a broker
/// with one shard missing would answer some partitions and groups and not others. Nothing has
/// been acknowledged yet (no shard listens before all have started), and what is on disk is
/// recovered at the next start.
fn cannot_start(id: usize, what: &str, e: &dyn std::fmt::Display) -> ! {
    tracing::error!(shard = id, error = %e, "{what}; shardlog cannot start");
    eprintln!("shardlog: shard {id}: {what}: {e}");
    std::process::exit(2);
}

/// Counts this shard as started and waits until every shard is (or shutdown is asked).
async fn wait_for_peers(boot: &Boot) {
    boot.started.fetch_add(1, Ordering::SeqCst);
    while boot.started.load(Ordering::SeqCst) < boot.config.shards
        && !boot.shutdown.load(Ordering::SeqCst)
    {
        runtime::sleep(Duration::from_millis(1)).await;
    }
}

pub async fn run(id: usize, mesh: Mesh<Shard>, boot: Boot) {
    let (senders, mut receivers) = match mesh.join().await {
        Ok(joined) => joined,
        Err(e) => cannot_start(id, "could not join the shard mesh", &e),
    };
    let config = boot.config.clone();
    crate::storage::readcache::set_budget(config.read_cache_bytes_max);
    crate::storage::files::set_open_files_max(config.segment_files_open_max);
    if let Err(e) = crate::storage::io::ensure_probed(&config.data_dir).await {
        // Not fatal: on a full disk the probe is made again, on an existing file, per partition.
        tracing::warn!(shard = id, error = %e, "direct I/O probe of the data directory failed");
    }
    let controller = (id == 0).then(|| Controller::new(boot.cluster_id.clone(), &boot.snapshot));
    let producer_ids = if id == 0 {
        match producer_ids::ProducerIds::load(&config.data_dir) {
            Ok(p) => Some(p),
            Err(e) => cannot_start(id, "reading the producer-id block failed", &e),
        }
    } else {
        None
    };
    let shard = Rc::new_cyclic(|this| Shard {
        id,
        config: config.clone(),
        cluster_id: boot.cluster_id.clone(),
        metadata: RefCell::new(Arc::new(Snapshot::default())),
        partitions: RefCell::new(HashMap::new()),
        senders,
        this: this.clone(),
        controller,
        producer_ids,
        groups: Coordinator::new(id, config.shards, &config.data_dir, config.group.clone()),
        inflight: Cell::new(0),
        stopping: Cell::new(false),
        replies: Replies::default(),
        request_times: Default::default(),
    });
    if let Err(e) = shard.apply_metadata(boot.snapshot.clone()).await {
        cannot_start(id, "opening partitions failed", &e);
    }
    if let Err(e) = shard.groups.start().await {
        cannot_start(id, "loading consumer groups failed", &e);
    }
    let snap = shard.metadata();
    shard.groups.forget_topics(|t| snap.topic(t).is_some());
    for (_, rx) in receivers.streams() {
        let s = shard.clone();
        runtime::spawn(async move {
            while let Some(job) = rx.recv().await {
                runtime::spawn(job(s.clone())).detach();
            }
        })
        .detach();
    }
    wait_for_peers(&boot).await;
    // Kept (not detached): dropping the task cancels the accept loop at shutdown.
    let listener = runtime::spawn(crate::net::accept_loop(
        shard.clone(),
        boot.admission.clone(),
    ));
    housekeeping(&shard, &boot.shutdown).await;
    shard.stopping.set(true);
    drop(listener);
    shard.groups.abort_parked();
    for _ in 0..100 {
        if shard.inflight.get() == 0 {
            break;
        }
        runtime::sleep(Duration::from_millis(50)).await;
    }
    shard.close_all().await;
    shard.groups.close().await;
    shard.request_times.log(id);
    tracing::info!(shard = id, "shard stopped");
}

/// Periodic work until the shutdown flag is set: retention.
async fn housekeeping(shard: &Shard, shutdown: &AtomicBool) {
    let tick = Duration::from_millis(100);
    let every = (shard.config.retention_check_ms / 100).max(1);
    let mut n = 0u64;
    while !shutdown.load(Ordering::Relaxed) {
        runtime::sleep(tick).await;
        n += 1;
        if n % every == 0 {
            shard.enforce_retention().await;
        }
    }
}
