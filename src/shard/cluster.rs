//! Shard 0's bridge to the metadata log, in a cluster. Admin changes (create and delete
//! topics, add partitions, alter configs, auto-create) are validated here against the
//! installed registry, turned into a metadata record — the topic's id and the broker of each
//! new partition chosen here, over the live brokers — and submitted to the metadata voter
//! (`cluster::edge::submit`, which forwards to the leader when this broker does not lead);
//! the request is answered once the record is committed and the registry that holds it is
//! installed on every shard of this broker. Every registry the metadata log's image gives
//! is installed by one task, newest first, so installs never overlap.
//!
//! Sits where `controller.rs` sits for a single broker: handlers → `Shard::admin` → here.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use super::controller::{plan, AdminError, Change};
use super::Shard;
use crate::cluster::edge::{self, Install, SubmitError};
use crate::cluster::image::ApplyError;
use crate::cluster::{place, MetaRecord};
use crate::metadata::{Snapshot, TopicMeta};
use crate::runtime::{self, local_channel};

/// How long an admin request waits for this broker to install the registry that holds its
/// committed change.
const INSTALL_WAIT: Duration = Duration::from_secs(5);

/// Every way a proposal fails is NOT_CONTROLLER, which clients retry after refreshing
/// their metadata: a lost proposal may still commit later, but REQUEST_TIMED_OUT would not do
/// for it (librdkafka reports it from CreateTopics as success when the caller does not wait
/// for the operation, and the topic might never exist). REQUEST_TIMED_OUT is kept for a
/// change that did commit but is not installed here in time.
impl From<SubmitError> for AdminError {
    fn from(e: SubmitError) -> Self {
        AdminError::NotController(e.to_string())
    }
}

impl Shard {
    /// The function the cluster edge hands each new registry to: it keeps the newest and
    /// wakes one installer task (spawned here, on shard 0), which installs it on every shard
    /// and then records its version as installed.
    pub fn installer(self: &Rc<Self>) -> Install {
        let (tx, rx) = local_channel::new_bounded::<()>(1);
        let latest: Rc<RefCell<Option<Arc<Snapshot>>>> = Rc::default();
        let (me, newest) = (self.clone(), latest.clone());
        runtime::spawn(async move {
            while rx.recv().await.is_some() {
                let Some(snap) = newest.borrow_mut().take() else {
                    continue;
                };
                let version = snap.version;
                if let Err(e) = me.broadcast(snap).await {
                    tracing::warn!(error = %e, version, "could not install the registry everywhere");
                }
                me.controller().note_installed(version);
            }
        })
        .detach();
        Rc::new(move |snap| {
            *latest.borrow_mut() = Some(snap);
            let _ = tx.try_send(());
        })
    }

    /// A change through the metadata log: validated against the installed registry,
    /// committed, installed here; `validate_only` stops after validating.
    pub(super) async fn cluster_apply(
        &self,
        change: Change,
        validate_only: bool,
    ) -> Result<Arc<Snapshot>, AdminError> {
        let cur = self.metadata();
        let next = plan(&cur, &change)?;
        if validate_only {
            return Ok(Arc::new(next));
        }
        let record = to_record(&cur, &next, &change)?;
        let committed = edge::submit(record).await?;
        committed.result.map_err(|e| refused(&change, e))?;
        let ctl = self.controller();
        if !ctl.wait_installed(committed.applied, INSTALL_WAIT).await {
            return Err(AdminError::TimedOut(format!(
                "committed at {} but not installed here in time",
                committed.applied
            )));
        }
        Ok(self.metadata())
    }

    /// A block of producer ids from the metadata log: (first, one past the last).
    pub(super) async fn producer_id_block(&self, size: i64) -> Result<(i64, i64), AdminError> {
        for _ in 0..8 {
            let from = edge::producer_ids_until().ok_or(SubmitError::NotMember)?;
            let record = MetaRecord::ProducerIds {
                broker: self.config.node_id,
                from,
                until: from + size,
            };
            match edge::submit(record).await?.result {
                Ok(()) => return Ok((from, from + size)),
                Err(ApplyError::ProducerIds(_)) => continue, // another broker took it first
                Err(e) => return Err(AdminError::Failed(e.to_string())),
            }
        }
        Err(AdminError::NotController(
            "producer-id blocks contended; try again".into(),
        ))
    }
}

/// The metadata record for `change`, given the registry before (`cur`) and as planned
/// (`next`): every choice (topic id, partitions' brokers, the resulting configs) made here.
fn to_record(cur: &Snapshot, next: &Snapshot, change: &Change) -> Result<MetaRecord, AdminError> {
    let planned = |name: &str| -> Result<Arc<TopicMeta>, AdminError> {
        next.topic(name)
            .cloned()
            .ok_or_else(|| AdminError::UnknownTopic(name.into()))
    };
    Ok(match change {
        Change::CreateTopic {
            name,
            replication_factor,
            ..
        } => {
            let topic = planned(name)?;
            let rf = usize::try_from(*replication_factor).unwrap_or(1).max(1);
            let sets = place::replicas_for(&topic.id, 0, topic.partitions, rf, &live(cur)?);
            let (brokers, followers) = split_sets(sets);
            MetaRecord::CreateTopic {
                topic: (*topic).clone(),
                brokers,
                followers,
            }
        }
        Change::DeleteTopic(name) => MetaRecord::DeleteTopic { name: name.clone() },
        Change::CreatePartitions { name, count } => {
            let topic = planned(name)?;
            let c = cur.cluster.as_ref().expect("a cluster registry");
            let mut sets: Vec<Vec<i32>> = (0..*count)
                .map_while(|p| match c.replica_set(&topic.id, p) {
                    Some(set) => Some(set.brokers()),
                    None => c.replica(&topic.id, p).map(|b| vec![b]),
                })
                .collect();
            let old = sets.len() as i32;
            let rf = sets.first().map_or(1, Vec::len);
            let live = live(cur)?;
            if rf > live.len() {
                let rf = i16::try_from(rf).unwrap_or(i16::MAX);
                return Err(AdminError::InvalidReplicationFactor(rf));
            }
            sets.extend(place::replicas_for(&topic.id, old, *count - old, rf, &live));
            let (brokers, followers) = split_sets(sets);
            MetaRecord::CreatePartitions {
                name: name.clone(),
                brokers,
                followers,
            }
        }
        Change::AlterConfigs { name, .. } => MetaRecord::SetConfigs {
            name: name.clone(),
            configs: planned(name)?.configs.clone(),
        },
    })
}

/// Replica sets as a record holds them: the preferred leaders, and the others of each set
/// (none at all for one replica).
fn split_sets(sets: Vec<Vec<i32>>) -> (Vec<i32>, Vec<Vec<i32>>) {
    let brokers = sets.iter().map(|s| s[0]).collect();
    let followers = if sets.iter().all(|s| s.len() == 1) {
        Vec::new()
    } else {
        sets.into_iter().map(|s| s[1..].to_vec()).collect()
    };
    (brokers, followers)
}

/// The live brokers new partitions may go to.
fn live(cur: &Snapshot) -> Result<Vec<i32>, AdminError> {
    let c = cur.cluster.as_ref().expect("a cluster registry");
    let live: Vec<i32> = c
        .brokers
        .iter()
        .filter(|(_, b)| b.alive)
        .map(|(id, _)| *id)
        .collect();
    if live.is_empty() {
        return Err(AdminError::NotController(
            "no live broker is registered yet".into(),
        ));
    }
    Ok(live)
}

/// The admin error for a committed record that changed nothing (another change got there
/// first: the topic was created or deleted meanwhile).
fn refused(change: &Change, e: ApplyError) -> AdminError {
    let name = match change {
        Change::CreateTopic { name, .. }
        | Change::DeleteTopic(name)
        | Change::CreatePartitions { name, .. }
        | Change::AlterConfigs { name, .. } => name.clone(),
    };
    match (change, &e) {
        (Change::CreateTopic { .. }, ApplyError::Topic(_, "exists")) => {
            AdminError::TopicExists(name)
        }
        (_, ApplyError::Topic(_, "unknown")) => AdminError::UnknownTopic(name),
        (Change::CreatePartitions { .. }, ApplyError::Partitions(..)) => {
            AdminError::InvalidPartitions(e.to_string())
        }
        _ => AdminError::Failed(e.to_string()),
    }
}
