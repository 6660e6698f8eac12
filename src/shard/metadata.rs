//! Installing a newer topic registry on a shard: open the partitions it now owns, apply config
//! changes to open ones, close and delete those of deleted topics. The controller (shard 0)
//! sends each new snapshot to every shard.

use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;

use uuid::Uuid;

use super::Shard;
use crate::metadata::{Snapshot, TopicMeta, Where};
use crate::partition::Partition;
use crate::storage::{LogConfig, PartitionLog, StorageError};

impl Shard {
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
        // Partitions of deleted topics (or beyond a topic's count) are closed and deleted;
        // in a cluster, one now placed on another broker or shard is closed and kept.
        let closing: Vec<((Uuid, i32), bool)> = self
            .partitions
            .borrow()
            .keys()
            .filter_map(|&(id, p)| {
                let deleted = snap.topic_by_id(&id).is_none_or(|t| p >= t.partitions);
                let here = snap.locate(&id, p, self.shards()) == Where::Here(self.id);
                (deleted || !here).then_some(((id, p), deleted))
            })
            .collect();
        for (key, deleted) in closing {
            let part = self.partitions.borrow_mut().remove(&key);
            let Some(part) = part else { continue };
            let _ = part.close().await;
            if !deleted {
                continue;
            }
            if let Err(e) = std::fs::remove_dir_all(part.dir()) {
                // Left for the boot-time orphan sweep (metadata::store::remove_orphans).
                tracing::warn!(dir = %part.dir().display(), error = %e, "could not delete partition");
            }
        }
        for topic in snap.topics.values() {
            for index in 0..topic.partitions {
                if snap.locate(&topic.id, index, self.shards()) == Where::Here(self.id) {
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
            let changed = (p.topic.configs != topic.configs).then(|| self.log_config(topic));
            let updated = Rc::new(p.renamed(topic.clone(), changed));
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
}
