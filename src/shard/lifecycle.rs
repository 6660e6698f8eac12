//! A shard's life: [`Shard::start`] joins the mesh, opens what the shard owns and serves the
//! mesh; [`Shard::housekeeping`] runs periodic work until shutdown is asked;
//! [`Shard::stop`] drains the requests in flight and closes every log and group. The broker
//! (`crate::broker`) puts the network around these: it starts listening once every shard has
//! started, and stops listening before a shard stops.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::calls::{MeshCounters, Replies};
use super::{producer_ids, Boot, Controller, Shard};
use crate::group::Coordinator;
use crate::metadata::Snapshot;
use crate::partition::Partition;
use crate::runtime::{self, Mesh};
use crate::types::TimestampMs;

/// How often a stopping shard looks whether its requests in flight are done, and how many
/// times before it closes anyway.
const DRAIN_POLL_MS: u64 = 50;
const DRAIN_POLLS_MAX: usize = 100;

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
pub async fn wait_for_peers(boot: &Boot) {
    boot.started.fetch_add(1, Ordering::SeqCst);
    while boot.started.load(Ordering::SeqCst) < boot.config.shards
        && !boot.shutdown.load(Ordering::SeqCst)
    {
        runtime::sleep(Duration::from_millis(1)).await;
    }
}

/// At shutdown, after this shard's leadership hand-off: counts it, and waits (at most the
/// hand-off's own bound again) until every shard has handed off, so shard 0's metadata
/// voter, which installs the registry on every shard, outlives all the hand-offs.
pub async fn handed_off(boot: &Boot) {
    boot.handed_off.fetch_add(1, Ordering::SeqCst);
    let deadline = std::time::Instant::now() + Duration::from_secs(6);
    while boot.handed_off.load(Ordering::SeqCst) < boot.config.shards
        && std::time::Instant::now() < deadline
    {
        runtime::sleep(Duration::from_millis(10)).await;
    }
}

/// Counts a request as in flight on its shard until dropped (also when its task is
/// cancelled): a stopping shard waits for these before it closes its logs.
pub struct InFlight<'a>(&'a Shard);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.inflight.set(self.0.inflight.get() - 1);
    }
}

impl Shard {
    /// Joins the mesh, opens the partitions and groups this shard owns, and serves the jobs
    /// other shards send. Exits the process if any of it fails (see `cannot_start`).
    pub async fn start(id: usize, mesh: Mesh<Shard>, boot: &Boot) -> Rc<Shard> {
        let (senders, mut receivers) = match mesh.join().await {
            Ok(joined) => joined,
            Err(e) => cannot_start(id, "could not join the shard mesh", &e),
        };
        let config = boot.config.clone();
        crate::storage::readcache::set_budget(config.read_cache_bytes_max);
        crate::storage::files::set_open_files_max(config.segment_files_open_max);
        if let Err(e) = crate::storage::io::ensure_probed(&config.data_dir).await {
            // Not fatal: on a full disk the probe is made again, on an existing file, per
            // partition.
            tracing::warn!(shard = id, error = %e, "direct I/O probe of the data directory failed");
        }
        let controller =
            (id == 0).then(|| Controller::new(boot.cluster_id.clone(), &boot.snapshot));
        let producer_ids = if id == 0 {
            match producer_ids::ProducerIds::load(&config.data_dir) {
                Ok(p) => Some(p),
                Err(e) => cannot_start(id, "reading the producer-id block failed", &e),
            }
        } else {
            None
        };
        let replication = config.cluster.as_ref().map(|c| {
            let node = u64::try_from(config.node_id).unwrap_or(0);
            super::replicas::Replication::start(node, id, c)
                .unwrap_or_else(|e| cannot_start(id, "cannot listen for replica traffic", &e))
        });
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
            groups: Coordinator::new(
                id,
                config.shards,
                &config.data_dir,
                config.group.clone(),
                config.cluster.is_some(),
            ),
            inflight: Cell::new(0),
            stopping: Cell::new(false),
            replies: Replies::default(),
            mesh_counters: MeshCounters::new(config.shards),
            replication,
        });
        shard.report_elections();
        shard.balance_leaders();
        shard.serve_group_logs();
        if let Err(e) = shard.apply_metadata(boot.snapshot.clone()).await {
            cannot_start(id, "opening partitions failed", &e);
        }
        if let Err(e) = shard.groups.start().await {
            cannot_start(id, "loading consumer groups failed", &e);
        }
        let snap = shard.metadata();
        shard.groups.forget_topics(|t| snap.topic(t).is_some());
        for (from, rx) in receivers.streams() {
            let s = shard.clone();
            runtime::spawn(async move {
                while let Some(job) = rx.recv().await {
                    s.mesh_counters.received(from);
                    runtime::spawn(job(s.clone())).detach();
                }
            })
            .detach();
        }
        shard
    }

    /// Counts a request in flight until the guard is dropped.
    pub fn request_started(&self) -> InFlight<'_> {
        self.inflight.set(self.inflight.get() + 1);
        InFlight(self)
    }

    /// Whether the shard is stopping: long polls answer at once.
    pub fn is_stopping(&self) -> bool {
        self.stopping.get()
    }

    /// Periodic work until the shutdown flag is set: retention.
    pub async fn housekeeping(&self, shutdown: &AtomicBool) {
        let tick = Duration::from_millis(100);
        let every = (self.config.retention_check_ms / 100).max(1);
        let mut n = 0u64;
        while !shutdown.load(Ordering::Relaxed) {
            runtime::sleep(tick).await;
            n += 1;
            if n % every == 0 {
                self.enforce_retention().await;
            }
        }
    }

    /// Marks the shard stopping (long polls return), answers parked group requests, waits a
    /// bounded time for requests in flight, then closes every log and the groups. The caller
    /// has stopped accepting connections first.
    pub async fn stop(&self) {
        self.stopping.set(true);
        self.groups.abort_parked();
        for _ in 0..DRAIN_POLLS_MAX {
            if self.inflight.get() == 0 {
                break;
            }
            runtime::sleep(Duration::from_millis(DRAIN_POLL_MS)).await;
        }
        if let Some(r) = &self.replication {
            r.host.close().await; // the replicas' writes queued are done first
        }
        self.close_all().await;
        self.groups.close().await;
        tracing::info!(shard = self.id, "shard stopped");
    }

    /// Applies retention to every partition this shard owns.
    async fn enforce_retention(&self) {
        let parts: Vec<Rc<Partition>> = self.partitions.borrow().values().cloned().collect();
        let now = TimestampMs::now();
        let expiration = self.config.producer_id_expiration_ms;
        for p in parts {
            // Failures are logged by the log, once per spell.
            let _ = p.enforce_retention(now).await;
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
            if let Err(e) = p.close().await {
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
