//! In a cluster, where consumer groups live (issue 21): group log `i` is partition `i` of the
//! replicated internal topic `__consumer_offsets` ([`OFFSETS_TOPIC`]), created at the first
//! FindCoordinator with `offsets_topic_replication_factor` replicas, and a group's
//! coordinator is that partition's leader. This file answers where a group's coordinator is
//! ([`Shard::group_home`]: FindCoordinator and the group handlers), creates the topic, and
//! keeps each shard's coordinator serving exactly the group logs whose leader replica it
//! holds: a log is adopted (replayed, then served) when its replica here starts leading a
//! term, and released when leadership moves or its writes stop committing. Followers of a
//! group log move their log start to the last snapshot their leader marked
//! (`group::coordinator::trim_follower`), so every replica's copy stays compacted.
//!
//! A single broker keeps its own group logs (`group::coordinator`, `shard_for_group`).

use std::rc::Rc;
use std::time::Duration;

use super::controller::{AdminError, Change};
use super::Shard;
use crate::group::coordinator::{LogFuture, ReplicatedLog};
use crate::group::{group_log_for, shard_for_group, LogState, GROUP_LOGS, OFFSETS_TOPIC};
use crate::metadata::Where;
use crate::partition::Partition;
use crate::runtime;
use crate::storage::batch::BatchHeader;
use crate::storage::StorageError;
use crate::types::{Offset, TimestampMs};

/// How often a shard compares the group logs it serves with the leaders it holds.
const TEND_INTERVAL: Duration = Duration::from_millis(100);

/// Every how many tending rounds followers look whether their group logs need trimming.
const TRIM_CHECK_ROUNDS: u64 = 100;

/// The largest batch a replicated group log takes.
const REPLICATED_BATCH_BYTES_MAX: usize = 16 << 20;

/// Most replicas the group logs get by default (Kafka's offsets.topic.replication.factor).
const OFFSETS_REPLICAS_DEFAULT_MAX: usize = 3;

/// Where a group's coordinator is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GroupHome {
    /// On this broker, on this shard.
    Here(usize),
    /// On another broker (NOT_COORDINATOR; FindCoordinator names it).
    Broker(i32),
    /// Nowhere now: the group logs' topic does not exist yet, or the group's log has no live
    /// leader (COORDINATOR_NOT_AVAILABLE).
    Nowhere,
}

impl Shard {
    /// Where `group`'s coordinator is: on a single broker the shard of its group log; in a
    /// cluster the leader of its partition of the group logs' topic, as the registry says.
    pub fn group_home(&self, group: &str) -> GroupHome {
        let snap = self.metadata();
        let Some(c) = snap.cluster.as_ref() else {
            return GroupHome::Here(shard_for_group(group, self.shards()));
        };
        let Some(topic) = snap.topic(OFFSETS_TOPIC) else {
            return GroupHome::Nowhere;
        };
        let index = group_log_for(group) as i32;
        match c.leader(&topic.id, index) {
            Some(b) if b == c.me => match self.locate(&topic.id, index) {
                Where::Here(shard) => GroupHome::Here(shard),
                _ => GroupHome::Nowhere,
            },
            Some(b) => GroupHome::Broker(b),
            None => GroupHome::Nowhere,
        }
    }

    /// In a cluster, creates the group logs' topic if the registry has none (asked once at a
    /// time per shard). Fails while fewer brokers are alive than its replication factor.
    pub async fn ensure_offsets_topic(&self) -> Result<(), AdminError> {
        let Some(cluster) = &self.config.cluster else {
            return Ok(());
        };
        let Some(repl) = self.replication.as_ref() else {
            return Ok(());
        };
        if self.metadata().topic(OFFSETS_TOPIC).is_some() || repl.offsets_topic_asked.get() {
            return Ok(());
        }
        let default = cluster.voters.len().min(OFFSETS_REPLICAS_DEFAULT_MAX);
        let replicas = self
            .config
            .offsets_topic_replication_factor
            .unwrap_or(i16::try_from(default).unwrap_or(1));
        let segment_bytes = (self.config.group.log_compact_bytes_min / 2).max(1 << 20);
        let change = Change::CreateTopic {
            name: OFFSETS_TOPIC.to_string(),
            partitions: GROUP_LOGS as i32,
            replication_factor: replicas,
            configs: vec![
                ("retention.ms".into(), Some("-1".into())),
                ("retention.bytes".into(), Some("-1".into())),
                ("segment.bytes".into(), Some(segment_bytes.to_string())),
                // A group's record holds every member's assignment: allow large batches, yet
                // well inside one cluster transport frame (64 MiB), which carries entries.
                (
                    "max.message.bytes".into(),
                    Some(REPLICATED_BATCH_BYTES_MAX.to_string()),
                ),
            ],
        };
        repl.offsets_topic_asked.set(true);
        let created = self.admin_internal(change, false).await;
        if let Some(r) = self.replication.as_ref() {
            r.offsets_topic_asked.set(false);
        }
        match created {
            Ok(_) => {
                tracing::info!(replicas, "created the group logs' topic {OFFSETS_TOPIC}");
                Ok(())
            }
            Err(AdminError::TopicExists(_)) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// In a cluster, starts the task that keeps this shard's coordinator serving the group
    /// logs whose leader replica is here ([`Shard::tend_group_logs`], every
    /// [`TEND_INTERVAL`]).
    pub(super) fn serve_group_logs(self: &Rc<Self>) {
        let Some(repl) = self.replication.as_ref() else {
            return;
        };
        let shard = Rc::downgrade(self);
        let task = runtime::spawn(async move {
            for round in 1.. {
                runtime::sleep(TEND_INTERVAL).await;
                let Some(s) = shard.upgrade() else { return };
                if s.stopping.get() {
                    return;
                }
                s.tend_group_logs();
                if round % TRIM_CHECK_ROUNDS == 0 {
                    s.trim_followers();
                }
            }
        });
        *repl.group_logs.borrow_mut() = Some(task);
    }

    /// One round: adopts each group log whose replica here leads a started term and is not
    /// served in that term; releases each served (or loading) log whose replica here no
    /// longer leads, leads another term, or whose writer stopped (adopted again next round
    /// if it still leads).
    fn tend_group_logs(self: &Rc<Self>) {
        let snap = self.metadata();
        let topic = snap.topic(OFFSETS_TOPIC).map(|t| t.id);
        for index in 0..GROUP_LOGS {
            let part = topic.and_then(|id| self.partition(&id, index as i32));
            let leads = part.and_then(|p| p.leads().map(|term| (p, term)));
            let state = self.groups.log_state(index);
            match (leads, state) {
                (None, LogState::Idle) => {}
                (Some((part, term)), LogState::Idle) => {
                    // No forget_topics here: this broker's registry may be older than the log
                    // (just restarted), and tombstones for topics it does not know yet would
                    // be replicated. Deletions installed from now on drop their offsets.
                    let groups = self.groups.clone();
                    let part = part as Rc<dyn ReplicatedLog>;
                    runtime::spawn(async move { groups.adopt(index, part, term).await }).detach();
                }
                (Some((_, term)), LogState::Loading { term: t })
                | (
                    Some((_, term)),
                    LogState::Serving {
                        term: t,
                        failed: false,
                    },
                ) if t == term => {}
                _ => self.groups.release(index),
            }
        }
    }
}

impl Shard {
    /// On the group-log partitions this shard follows: those grown past the coordinator's
    /// compaction threshold (and twice their size after the last trim) get their log start
    /// moved to the last snapshot their leader marked, one partition after the other, by
    /// one task at a time.
    fn trim_followers(self: &Rc<Self>) {
        let Some(repl) = self.replication.as_ref() else {
            return;
        };
        if repl.trimming.get() {
            return;
        }
        let Some(topic) = self.metadata().topic(OFFSETS_TOPIC).map(|t| t.id) else {
            return;
        };
        let min = self.config.group.log_compact_bytes_min;
        let due: Vec<(usize, Rc<crate::partition::Partition>)> = (0..GROUP_LOGS)
            .filter_map(|i| Some((i, self.partition(&topic, i as i32)?)))
            .filter(|(i, p)| {
                let last = repl.trimmed_bytes.borrow().get(i).copied().unwrap_or(0);
                p.leads().is_none() && p.size_bytes() > min.max(2 * last)
            })
            .collect();
        if due.is_empty() {
            return;
        }
        repl.trimming.set(true);
        let s = self.clone();
        runtime::spawn(async move {
            for (index, part) in due {
                match crate::group::coordinator::trim_follower(part.as_ref()).await {
                    Ok(start) => {
                        if let Some(start) = start {
                            tracing::info!(log = index, start = start.get(), "trimmed group log");
                        }
                        if let Some(r) = s.replication.as_ref() {
                            r.trimmed_bytes
                                .borrow_mut()
                                .insert(index, part.size_bytes());
                        }
                    }
                    Err(e) => tracing::warn!(log = index, error = %e, "group log not trimmed"),
                }
            }
            if let Some(r) = s.replication.as_ref() {
                r.trimming.set(false);
            }
        })
        .detach();
    }
}

/// A group log's partition as the coordinator uses it (`group::coordinator::ReplicatedLog`).
impl ReplicatedLog for Partition {
    fn leads(&self) -> Option<u64> {
        Partition::leads(self)
    }

    fn log_start(&self) -> Offset {
        Partition::log_start(self)
    }

    fn high_watermark(&self) -> Offset {
        Partition::high_watermark(self)
    }

    fn size_bytes(&self) -> u64 {
        Partition::size_bytes(self)
    }

    fn dir(&self) -> &std::path::Path {
        Partition::dir(self)
    }

    fn replay_committed<'a>(
        &'a self,
        from: Offset,
        visit: &'a mut dyn FnMut(&BatchHeader, bytes::Bytes) -> Result<(), StorageError>,
    ) -> LogFuture<'a, Result<(), StorageError>> {
        Box::pin(Partition::replay_committed(self, from, visit))
    }

    fn append_in_term(
        &self,
        batch: bytes::BytesMut,
        term: u64,
    ) -> LogFuture<'_, Result<Offset, String>> {
        Box::pin(async move {
            let appended = self.produce_in_term(batch, -1, term).await;
            appended.map(|a| a.base_offset).map_err(|e| e.to_string())
        })
    }

    fn delete_before(&self, before: Offset) -> LogFuture<'_, Result<Offset, StorageError>> {
        Box::pin(self.delete_records(before, TimestampMs::now()))
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::rc::Rc;

    use super::*;
    use crate::group::coordinator::{group_log_config, trim_follower};
    use crate::group::record::{self, Record};
    use crate::group::{test_commit as commit, Coordinator, GroupConfig, GroupError};
    use crate::storage::io::block_on;
    use crate::storage::PartitionLog;

    /// Partition `index` of the group logs' topic over a fresh plain log under `dir` (a
    /// partition without replicas leads in term 0).
    async fn group_partition(dir: &Path, index: usize, config: &GroupConfig) -> Rc<Partition> {
        let topic = std::sync::Arc::new(crate::metadata::TopicMeta {
            name: OFFSETS_TOPIC.into(),
            id: uuid::Uuid::new_v4(),
            partitions: GROUP_LOGS as i32,
            configs: Default::default(),
        });
        let log = PartitionLog::open(dir, group_log_config(config))
            .await
            .unwrap();
        let part = Partition::open(topic, index as i32, log).await.unwrap();
        Rc::new(part)
    }

    #[test]
    fn an_adopted_log_is_compacted_with_marks_released_and_taken_over_with_every_commit() {
        let dir = tempfile::tempdir().unwrap();
        let config = GroupConfig {
            log_compact_bytes_min: 64 << 10,
            ..GroupConfig::default()
        };
        let g = "group-a";
        let index = group_log_for(g);
        let last = |c: &Coordinator| {
            let got = c.fetch_offsets(g, None);
            got[0].1[9].1.as_ref().map(|c| c.offset.get())
        };
        block_on(async {
            let part = group_partition(&dir.path().join("p"), index, &config).await;
            let c = Coordinator::new(0, 1, dir.path(), config.clone(), true);
            c.start().await.unwrap();
            assert_eq!(c.serving(g), Err(GroupError::NotCoordinator));
            c.adopt(index, part.clone() as Rc<dyn ReplicatedLog>, 0)
                .await;
            assert_eq!(c.serving(g), Ok(()));
            for round in 0..300 {
                let r = c.commit(commit(g, round)).await;
                assert!(r.iter().all(|r| r.is_ok()), "{r:?}");
            }
            assert!(
                part.log_start() > Offset(0),
                "compacted: the log start moved"
            );
            let start = trim_follower(part.as_ref()).await.unwrap();
            assert!(
                start.is_none_or(|s| s <= part.log_start()),
                "the last mark names the leader's log start"
            );
            c.release(index);
            assert_eq!(c.serving(g), Err(GroupError::NotCoordinator));
            assert_eq!(
                c.commit(commit(g, 999)).await[0],
                Err(GroupError::NotCoordinator)
            );

            // The next coordinator reads the same log and finds every acknowledged commit.
            let next = Coordinator::new(0, 1, dir.path(), config.clone(), true);
            next.start().await.unwrap();
            next.adopt(index, part.clone() as Rc<dyn ReplicatedLog>, 0)
                .await;
            assert_eq!(last(&next), Some(299 + 9));
            // A stale term is not adopted.
            next.release(index);
            next.adopt(index, part.clone() as Rc<dyn ReplicatedLog>, 7)
                .await;
            assert_eq!(next.log_state(index), LogState::Idle);
        });
    }

    #[test]
    fn a_follower_moves_its_log_start_to_the_last_marked_snapshot() {
        let dir = tempfile::tempdir().unwrap();
        let config = GroupConfig::default();
        block_on(async {
            let part = group_partition(dir.path(), 0, &config).await;
            let state = |g: &str| {
                let r = Record::Group {
                    group: g.into(),
                    value: None,
                };
                record::encode_batch(&[r], TimestampMs(1))
            };
            let now = TimestampMs(1);
            for g in ["a", "b", "c"] {
                part.produce(state(g), -1).await.unwrap();
            }
            assert_eq!(
                trim_follower(part.as_ref()).await.unwrap(),
                None,
                "no mark yet"
            );
            let snapshot = part.produce(state("d"), -1).await.unwrap().base_offset;
            part.produce(record::encode_mark(snapshot, now), -1)
                .await
                .unwrap();
            part.produce(state("e"), -1).await.unwrap();
            assert_eq!(trim_follower(part.as_ref()).await.unwrap(), Some(snapshot));
            assert_eq!(part.log_start(), snapshot);
            assert_eq!(
                trim_follower(part.as_ref()).await.unwrap(),
                None,
                "done once"
            );
        });
    }
}
