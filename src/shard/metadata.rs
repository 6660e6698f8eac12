//! Installing a newer topic registry on a shard: open the partitions it now owns, apply config
//! changes to open ones, close and delete those of deleted topics. The controller (shard 0)
//! sends each new snapshot to every shard.

use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;

use uuid::Uuid;

use super::Shard;
use crate::metadata::{Snapshot, TopicMeta, Where};
use crate::partition::Partition;
use crate::storage::{LogConfig, PartitionLog, StorageError};

impl Shard {
    /// Whether `snap` replicates partition `index` of topic `id` (a Raft group).
    fn replicated(&self, snap: &Snapshot, id: &Uuid, index: i32) -> bool {
        let c = snap.cluster.as_ref();
        c.and_then(|c| c.replica_set(id, index))
            .is_some_and(|s| s.is_replicated())
    }

    pub(super) fn partition_dir(&self, topic: &TopicMeta, index: i32) -> PathBuf {
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
        if let Some(r) = &self.replication {
            r.learn_peers(&snap);
        }
        self.close_unplaced(&snap).await;
        for topic in snap.topics.values() {
            for index in 0..topic.partitions {
                if let Some(set) = self.replica_here(&snap, &topic.id, index) {
                    self.ensure_replica(topic, index, set).await?;
                } else if snap.locate(&topic.id, index, self.shards()) == Where::Here(self.id)
                    && !self.replicated(&snap, &topic.id, index)
                {
                    self.ensure_partition(topic, index).await?;
                }
            }
        }
        Ok(())
    }

    /// Closes the partitions `snap` no longer places on this shard: those of deleted topics
    /// (or beyond a topic's count) are deleted too; in a cluster, one now placed on another
    /// broker or shard is kept on disk.
    async fn close_unplaced(&self, snap: &Snapshot) {
        let closing: Vec<((Uuid, i32), bool)> = self
            .partitions
            .borrow()
            .keys()
            .filter_map(|&(id, p)| {
                let deleted = snap.topic_by_id(&id).is_none_or(|t| p >= t.partitions);
                let here = if self.replicated(snap, &id, p) {
                    self.replica_here(snap, &id, p).is_some()
                } else {
                    snap.locate(&id, p, self.shards()) == Where::Here(self.id)
                };
                (deleted || !here).then_some(((id, p), deleted))
            })
            .collect();
        for (key, deleted) in closing {
            let part = self.partitions.borrow_mut().remove(&key);
            let Some(part) = part else { continue };
            self.remove_replica(&part).await;
            let _ = part.close().await;
            if !deleted {
                continue;
            }
            if let Err(e) = std::fs::remove_dir_all(part.dir()) {
                // Left for the boot-time orphan sweep (metadata::store::remove_orphans).
                tracing::warn!(dir = %part.dir().display(), error = %e, "could not delete partition");
            }
        }
    }

    /// A topic's log settings with the broker's own on top (`verify_reads`).
    pub(super) fn log_config(&self, topic: &TopicMeta) -> LogConfig {
        LogConfig {
            verify_reads: self.config.verify_reads,
            ..topic.configs.log_config()
        }
    }

    pub(super) async fn ensure_partition(
        &self,
        topic: &Arc<TopicMeta>,
        index: i32,
    ) -> Result<(), StorageError> {
        if let Some(p) = self.partition(&topic.id, index) {
            let changed = (p.topic.configs != topic.configs).then(|| self.log_config(topic));
            let updated = Rc::new(p.renamed(topic.clone(), changed));
            self.partitions
                .borrow_mut()
                .insert((topic.id, index), updated);
            return Ok(());
        }
        let dir = self.partition_dir(topic, index);
        claim_dir(&dir, &topic.id)?;
        let log = PartitionLog::open(&dir, self.log_config(topic)).await?;
        mark_dir(&dir, &topic.id)?;
        let part = Rc::new(Partition::open(topic.clone(), index, log).await?);
        self.partitions.borrow_mut().insert((topic.id, index), part);
        Ok(())
    }
}

/// Kafka's name for the file that ties a partition directory to its topic's id.
const TOPIC_ID_FILE: &str = "partition.metadata";

/// Clears `dir` if an earlier topic of the same name left it (one deleted while this broker
/// was down and then created again; ids are never reused, so another id means another
/// topic): its records must not reappear in the new topic. A directory without the file
/// (written before the file existed) is taken as this topic's.
pub(super) fn claim_dir(dir: &Path, id: &Uuid) -> Result<(), StorageError> {
    let held = match std::fs::read_to_string(dir.join(TOPIC_ID_FILE)) {
        Ok(text) => text
            .lines()
            .find_map(|l| l.strip_prefix("topic_id: "))
            .and_then(|v| Uuid::parse_str(v.trim()).ok()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(StorageError::io("read", dir, e)),
    };
    if held.is_some_and(|held| held != *id) {
        tracing::warn!(dir = %dir.display(), "removing the directory of an earlier topic of this name");
        std::fs::remove_dir_all(dir).map_err(|e| StorageError::io("remove", dir, e))?;
    }
    Ok(())
}

/// Writes the topic id file into a partition directory that lacks it. Not synced (so not
/// `storage::io::write_small_atomic`): a file lost in a crash is written again at the next
/// open, and creating a topic of many partitions should not pay a sync per partition.
pub(super) fn mark_dir(dir: &Path, id: &Uuid) -> Result<(), StorageError> {
    let path = dir.join(TOPIC_ID_FILE);
    if path.exists() {
        return Ok(());
    }
    let tmp = dir.join(format!("{TOPIC_ID_FILE}.tmp"));
    let text = format!("version: 0\ntopic_id: {id}\n");
    std::fs::write(&tmp, text).map_err(|e| StorageError::io("write", &tmp, e))?;
    std::fs::rename(&tmp, &path).map_err(|e| StorageError::io("rename", &path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_directory_of_an_earlier_topic_is_cleared_and_its_own_kept() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("t-0");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("00000000000000000000.log"), b"old").unwrap();
        let (old, new) = (Uuid::from_u128(1), Uuid::from_u128(2));
        claim_dir(&dir, &old).unwrap();
        mark_dir(&dir, &old).unwrap();
        claim_dir(&dir, &old).unwrap();
        assert!(
            dir.join("00000000000000000000.log").exists(),
            "its own: kept"
        );
        claim_dir(&dir, &new).unwrap();
        assert!(!dir.exists(), "an earlier topic's: removed");
    }
}
