//! The controller: shard 0's job of changing the topic registry. Every admin change (create or
//! delete topics, add partitions, alter configs) runs here one at a time: validate, build the
//! next snapshot, persist it, then install it on every shard (which opens or deletes partitions)
//! before answering. Other shards reach it through `Shard::on(0, ..)` via [`Shard::admin`].

use std::cell::{Cell, RefCell};
use std::sync::Arc;

use event_listener::Event;
use uuid::Uuid;

use super::{Shard, ShardGone};
use crate::metadata::{self, store, Snapshot, TopicConfigError, TopicConfigs, TopicMeta};
use crate::runtime::Semaphore;

/// Why an admin change was refused. `kafka/errors.rs` maps these to error codes.
#[derive(Debug, Clone, thiserror::Error)]
pub enum AdminError {
    /// CreateTopics named a topic that exists.
    #[error("topic {0} already exists")]
    TopicExists(String),
    /// The change names a topic that does not exist.
    #[error("unknown topic {0}")]
    UnknownTopic(String),
    /// CreateTopics named a topic Kafka's naming rule refuses.
    #[error("invalid topic name {0:?}")]
    InvalidTopicName(String),
    /// A client asked to create, delete, grow or reconfigure the internal topic that holds
    /// the consumer groups (`group::OFFSETS_TOPIC`), which the brokers manage themselves.
    #[error("{0} is internal: it holds the consumer groups and is managed by the brokers")]
    InternalTopic(String),
    /// A partition count outside 1..=[`PARTITIONS_MAX`], or CreatePartitions not growing the
    /// topic; says why.
    #[error("invalid partition count: {0}")]
    InvalidPartitions(String),
    /// A replication factor below 1 (-1 is the default) or above the live brokers (one on a
    /// single broker).
    #[error("replication factor {0} is not possible: 1 up to the live brokers")]
    InvalidReplicationFactor(i16),
    /// Manual replica assignments naming other brokers (not served: a replication factor is).
    #[error("{0}")]
    InvalidReplicaAssignment(String),
    /// A topic config unknown or with an invalid value.
    #[error(transparent)]
    InvalidConfig(#[from] TopicConfigError),
    /// Storing the registry or installing it on a shard failed, or a shard is gone.
    #[error("could not persist or apply the change: {0}")]
    Failed(String),
    /// The disk is full (or out of files): a change that creates partitions found less than
    /// the reserve free, or storing or installing the change ran out of room.
    #[error("the data directory's disk is full: {0}")]
    NoSpace(String),
    /// In a cluster: no metadata leader takes the change now (retriable).
    #[error("no metadata leader: {0}")]
    NotController(String),
    /// In a cluster: the change was lost in a metadata leader change or not seen committed
    /// and installed in time; it may still take effect (retriable: a retry says).
    #[error("timed out: {0}")]
    TimedOut(String),
}

impl From<ShardGone> for AdminError {
    fn from(e: ShardGone) -> Self {
        AdminError::Failed(e.to_string())
    }
}

/// A change to the registry, sent to the controller.
#[derive(Debug, Clone)]
pub enum Change {
    /// A new topic (CreateTopics, or Metadata's auto-create).
    CreateTopic {
        /// The topic's name.
        name: String,
        /// Its partition count, 1..=[`PARTITIONS_MAX`].
        partitions: i32,
        /// -1 (the default: 1), or 1 up to the live brokers ([`replicas_max`]).
        replication_factor: i16,
        /// (name, value) configs it sets; a None value is the default.
        configs: Vec<(String, Option<String>)>,
    },
    /// Removes the named topic; its partitions are closed and deleted on their owners.
    DeleteTopic(String),
    /// Grows a topic's partition count (it never shrinks).
    CreatePartitions {
        /// The topic's name.
        name: String,
        /// The new total count, more than the current one.
        count: i32,
    },
    /// Changes a topic's configs (AlterConfigs, IncrementalAlterConfigs).
    AlterConfigs {
        /// The topic's name.
        name: String,
        /// (name, value): value None removes the setting.
        changes: Vec<(String, Option<String>)>,
        /// AlterConfigs (non-incremental) replaces the whole set.
        replace: bool,
    },
}

/// Shard 0's controller state: the current registry and the lock that applies changes one
/// at a time.
pub struct Controller {
    cluster_id: String,
    lock: Semaphore,
    current: RefCell<Arc<Snapshot>>,
    /// In a cluster: the newest registry version installed on every shard, and its signal.
    installed: Cell<u64>,
    installed_changed: Event,
}

impl Controller {
    /// A controller over `snapshot`, the registry as loaded at startup.
    pub fn new(cluster_id: String, snapshot: &Arc<Snapshot>) -> Controller {
        Controller {
            cluster_id,
            lock: Semaphore::new(1),
            current: RefCell::new(snapshot.clone()),
            installed: Cell::new(snapshot.version),
            installed_changed: Event::new(),
        }
    }

    /// Registry `version` is installed on every shard.
    pub(super) fn note_installed(&self, version: u64) {
        if version > self.installed.get() {
            self.installed.set(version);
            self.installed_changed.notify(usize::MAX);
        }
    }

    /// Waits up to `limit` for registry `version` (or a newer one) to be installed; false
    /// if it was not.
    pub(super) async fn wait_installed(&self, version: u64, limit: std::time::Duration) -> bool {
        let deadline = std::time::Instant::now() + limit;
        loop {
            let listener = self.installed_changed.listen();
            if self.installed.get() >= version {
                return true;
            }
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return false;
            }
            futures_lite::future::or(
                async {
                    listener.await;
                },
                crate::runtime::sleep(left),
            )
            .await;
        }
    }
}

/// Maximum partitions per topic (a bound on the work one request can cause).
pub const PARTITIONS_MAX: i32 = 10_000;

/// The largest replication factor a new topic may have: one on a single broker; in a
/// cluster the live brokers (issue 21: one replica per broker).
pub fn replicas_max(cur: &Snapshot) -> i16 {
    match &cur.cluster {
        None => 1,
        Some(c) => {
            let live = c.brokers.values().filter(|b| b.alive).count();
            i16::try_from(live.max(1)).unwrap_or(i16::MAX)
        }
    }
}

/// Computes the next snapshot for a change (pure).
pub fn plan(cur: &Snapshot, change: &Change) -> Result<Snapshot, AdminError> {
    match change {
        Change::CreateTopic {
            name,
            partitions,
            replication_factor,
            configs,
        } => {
            if !metadata::valid_topic_name(name) {
                return Err(AdminError::InvalidTopicName(name.clone()));
            }
            if cur.topic(name).is_some() {
                return Err(AdminError::TopicExists(name.clone()));
            }
            if !(1..=PARTITIONS_MAX).contains(partitions) {
                return Err(AdminError::InvalidPartitions(format!("{partitions}")));
            }
            if !(*replication_factor == -1 || (1..=replicas_max(cur)).contains(replication_factor))
            {
                return Err(AdminError::InvalidReplicationFactor(*replication_factor));
            }
            let mut c = TopicConfigs::default();
            for (k, v) in configs {
                c.set(k, v.as_deref())?;
            }
            Ok(cur.with_topic(TopicMeta {
                name: name.clone(),
                id: Uuid::new_v4(),
                partitions: *partitions,
                configs: c,
            }))
        }
        Change::DeleteTopic(name) => {
            cur.topic(name)
                .ok_or_else(|| AdminError::UnknownTopic(name.clone()))?;
            Ok(cur.without_topic(name))
        }
        Change::CreatePartitions { name, count } => {
            let t = cur
                .topic(name)
                .ok_or_else(|| AdminError::UnknownTopic(name.clone()))?;
            if *count <= t.partitions || *count > PARTITIONS_MAX {
                return Err(AdminError::InvalidPartitions(format!(
                    "topic has {} partitions; asked for {count}",
                    t.partitions
                )));
            }
            let mut t = (**t).clone();
            t.partitions = *count;
            Ok(cur.with_topic(t))
        }
        Change::AlterConfigs {
            name,
            changes,
            replace,
        } => {
            let t = cur
                .topic(name)
                .ok_or_else(|| AdminError::UnknownTopic(name.clone()))?;
            let mut t = (**t).clone();
            if *replace {
                t.configs = TopicConfigs::default();
            }
            for (k, v) in changes {
                t.configs.set(k, v.as_deref())?;
            }
            Ok(cur.with_topic(t))
        }
    }
}

impl Shard {
    /// Applies a registry change through the controller (shard 0) and returns the snapshot
    /// that holds it, once every shard has installed it. `validate_only` plans without applying.
    /// The group logs' internal topic is not a client's to create, delete, grow or
    /// reconfigure (its retention, say, would delete committed offsets).
    pub async fn admin(
        &self,
        change: Change,
        validate_only: bool,
    ) -> Result<Arc<Snapshot>, AdminError> {
        let internal = match &change {
            Change::CreateTopic { name, .. }
            | Change::DeleteTopic(name)
            | Change::CreatePartitions { name, .. } => name == crate::group::OFFSETS_TOPIC,
            Change::AlterConfigs { name, .. } => name == crate::group::OFFSETS_TOPIC,
        };
        if internal {
            return Err(AdminError::InternalTopic(
                crate::group::OFFSETS_TOPIC.into(),
            ));
        }
        self.admin_internal(change, validate_only).await
    }

    /// [`Shard::admin`] for the broker's own changes (the group logs' topic).
    pub(super) async fn admin_internal(
        &self,
        change: Change,
        validate_only: bool,
    ) -> Result<Arc<Snapshot>, AdminError> {
        self.on(0, move |s| async move {
            s.controller_apply(change, validate_only).await
        })
        .await?
    }

    async fn controller_apply(
        &self,
        change: Change,
        validate_only: bool,
    ) -> Result<Arc<Snapshot>, AdminError> {
        if self.config.cluster.is_some() {
            return self.cluster_apply(change, validate_only).await;
        }
        let ctl = self.controller();
        let _permit = ctl
            .lock
            .acquire_permit(1)
            .await
            .map_err(|e| AdminError::Failed(e.to_string()))?;
        let cur = ctl.current.borrow().clone();
        let next = Arc::new(plan(&cur, &change)?);
        if validate_only {
            return Ok(next);
        }
        let data_dir = &self.config.data_dir;
        // Deleting a topic frees space and AlterConfigs is how retention is lowered to free
        // it: both may use the reserve. Only changes that create partitions need room.
        let frees = matches!(change, Change::DeleteTopic(_) | Change::AlterConfigs { .. });
        let creates = matches!(
            change,
            Change::CreateTopic { .. } | Change::CreatePartitions { .. }
        );
        if creates {
            check_room(data_dir)?;
        }
        self.persist(&next, frees)?;
        *ctl.current.borrow_mut() = next.clone();
        if let Err(e) = self.broadcast(next.clone()).await {
            if creates {
                self.roll_back(cur).await;
            }
            return Err(e);
        }
        if let Err(e) = store::keep_reserve(data_dir) {
            tracing::warn!(error = %e, "cannot keep the disk space reserve");
        }
        Ok(next)
    }

    /// Writes `snap` as the registry; `frees`: the change frees space, so on a full disk the
    /// reserve may be given up for it.
    fn persist(&self, snap: &Snapshot, frees: bool) -> Result<(), AdminError> {
        let ctl = self.controller.as_ref().expect("shard 0 is the controller");
        let stored = store::StoredRegistry {
            version: snap.version,
            cluster_id: ctl.cluster_id.clone(),
            topics: snap.topics.values().map(|t| (**t).clone()).collect(),
        };
        let dir = &self.config.data_dir;
        let saved = if frees {
            store::save_using_reserve(dir, &stored)
        } else {
            store::save(dir, &stored)
        };
        saved.map_err(|e| match store::is_no_space(&e) {
            true => AdminError::NoSpace(e.to_string()),
            false => AdminError::Failed(e.to_string()),
        })
    }

    /// A change that some shard could not apply (a partition it could not create, on a full
    /// disk) is undone: the previous registry is stored and installed again, so a failed
    /// CreateTopics leaves no topic behind. Best effort; what fails is logged.
    async fn roll_back(&self, prev: Arc<Snapshot>) {
        let ctl = self.controller.as_ref().expect("shard 0 is the controller");
        let undo = Arc::new(Snapshot {
            version: ctl.current.borrow().version + 1,
            ..(*prev).clone()
        });
        let restored = match self.persist(&undo, true) {
            Ok(()) => self.broadcast(undo.clone()).await,
            Err(e) => Err(e),
        };
        match restored {
            Ok(()) => *ctl.current.borrow_mut() = undo,
            Err(e) => tracing::error!(error = %e, "cannot undo a registry change that failed"),
        }
    }
}

/// A change that creates partitions needs room for their directories and first blocks: on a
/// disk with less than the reserve free it is refused before anything is stored.
fn check_room(data_dir: &std::path::Path) -> Result<(), AdminError> {
    let free = store::free_bytes(data_dir).map_err(|e| AdminError::Failed(e.to_string()))?;
    if free < store::RESERVE_BYTES {
        return Err(AdminError::NoSpace(format!(
            "{free} bytes free, less than the {} needed to create partitions",
            store::RESERVE_BYTES
        )));
    }
    Ok(())
}

impl Shard {
    /// Shard 0's controller state.
    pub(super) fn controller(&self) -> &Controller {
        self.controller.as_ref().expect("shard 0 is the controller")
    }

    /// Installs `snap` on every shard and waits for all of them.
    pub(super) async fn broadcast(&self, snap: Arc<Snapshot>) -> Result<(), AdminError> {
        let mut tasks = Vec::with_capacity(self.shards());
        for target in 0..self.shards() {
            let snap = snap.clone();
            let me = self.rc();
            tasks.push(crate::runtime::spawn(async move {
                me.on(target, move |s| async move {
                    s.apply_metadata(snap)
                        .await
                        .map_err(|e| match e.is_exhaustion() {
                            true => AdminError::NoSpace(e.to_string()),
                            false => AdminError::Failed(e.to_string()),
                        })
                })
                .await
            }));
        }
        // Every shard's answer is awaited, failures or not: an undo must not race a shard
        // still applying the change.
        let mut first_error = None;
        for t in tasks {
            let done = t.await.map_err(|e| AdminError::Failed(e.to_string()));
            if let Err(e) = done.and_then(|applied| applied) {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn create(name: &str, partitions: i32) -> Change {
        Change::CreateTopic {
            name: name.into(),
            partitions,
            replication_factor: -1,
            configs: vec![("retention.ms".into(), Some("1000".into()))],
        }
    }

    #[test]
    fn plans_changes_and_refuses_bad_ones() {
        let s = plan(&Snapshot::default(), &create("orders", 3)).unwrap();
        assert_eq!(s.topic("orders").unwrap().partitions, 3);
        assert!(matches!(
            plan(&s, &create("orders", 3)),
            Err(AdminError::TopicExists(_))
        ));
        assert!(matches!(
            plan(&s, &create("a/b", 3)),
            Err(AdminError::InvalidTopicName(_))
        ));
        assert!(matches!(
            plan(&s, &create("x", 0)),
            Err(AdminError::InvalidPartitions(_))
        ));
        let grow = Change::CreatePartitions {
            name: "orders".into(),
            count: 5,
        };
        let s2 = plan(&s, &grow).unwrap();
        assert_eq!(s2.topic("orders").unwrap().partitions, 5);
        assert_eq!(
            s2.topic("orders").unwrap().id,
            s.topic("orders").unwrap().id
        );
        assert!(plan(&s2, &grow).is_err(), "cannot shrink or keep");
        let alter = Change::AlterConfigs {
            name: "orders".into(),
            changes: vec![("nope".into(), Some("1".into()))],
            replace: false,
        };
        assert!(matches!(
            plan(&s2, &alter),
            Err(AdminError::InvalidConfig(_))
        ));
        let s3 = plan(&s2, &Change::DeleteTopic("orders".into())).unwrap();
        assert!(s3.topic("orders").is_none());
    }
}
