//! Committed offsets and the admin side of groups, as more methods of the pure machine:
//! OffsetCommit (§7.1), OffsetFetch (§7.2), expiry (§7.3), OffsetDelete, DescribeGroups,
//! ListGroups and DeleteGroups (§8). Same rules as machine.rs: time in, effects out.

use std::collections::BTreeMap;

use super::machine::{Effects, Groups, State};
use super::record::Record;
use super::*;
use crate::types::TimestampMs;

/// Per-partition outcome, in request order.
pub type PartitionResults = Vec<(String, Vec<(i32, Result<(), GroupError>)>)>;

impl Groups {
    /// OffsetCommit: one result per offset, in request order (topics the broker does not
    /// know are filtered out by the handler before).
    pub fn commit(
        &mut self,
        now: TimestampMs,
        req: CommitRequest,
    ) -> (Vec<Result<(), GroupError>>, Effects) {
        let mut fx = Effects::default();
        let n = req.offsets.len();
        if let Err(e) = self.validate_commit(now, &req) {
            return (vec![Err(e); n], fx);
        }
        let max = self.config.offset_metadata_bytes_max;
        let g = self.groups.get_mut(&req.group).expect("validated group");
        let results = req
            .offsets
            .into_iter()
            .map(|o| {
                let metadata = o.metadata.unwrap_or_default();
                if metadata.len() > max {
                    return Err(GroupError::OffsetMetadataTooLarge);
                }
                let c = Committed {
                    offset: o.offset,
                    leader_epoch: o.leader_epoch,
                    metadata,
                    commit_ms: now,
                    expire_ms: req.retention_ms.map(|r| now.plus(r)),
                };
                g.offsets.insert((o.topic.clone(), o.partition), c.clone());
                fx.records.push(Record::Offset {
                    group: req.group.clone(),
                    topic: o.topic,
                    partition: o.partition,
                    value: Some(c),
                });
                Ok(())
            })
            .collect();
        g.check_invariants(self.aborted);
        (results, fx)
    }

    /// §7.1's group-level checks; creates a "simple" group for a standalone commit.
    fn validate_commit(&mut self, now: TimestampMs, req: &CommitRequest) -> Result<(), GroupError> {
        let m = &req.member;
        let Some(g) = self.groups.get_mut(&req.group) else {
            if m.generation < 0 {
                return self.create(&req.group, now); // a "simple" group: no protocol type
            }
            return Err(if req.group_id_not_found {
                GroupError::GroupIdNotFound
            } else {
                GroupError::IllegalGeneration
            });
        };
        if m.generation < 0 && g.state == State::Empty {
            return Ok(());
        }
        if m.generation >= 0 || !m.member_id.is_empty() || m.instance_id.is_some() {
            g.validate_member(&m.member_id, m.instance_id.as_deref())?;
            if m.generation != g.generation {
                return Err(GroupError::IllegalGeneration);
            }
        } else {
            return Err(GroupError::UnknownMemberId);
        }
        if g.state == State::CompletingRebalance {
            return Err(GroupError::RebalanceInProgress);
        }
        if let Some(member) = g.members.get_mut(&m.member_id) {
            member.refresh(now);
        }
        Ok(())
    }

    /// OffsetFetch: the committed offset of each requested partition (None: nothing
    /// committed), or with `topics` None every committed offset of the group.
    pub fn fetch_offsets(&self, group: &str, topics: Option<TopicPartitions>) -> CommittedOffsets {
        let g = self.groups.get(group);
        match topics {
            Some(topics) => topics
                .into_iter()
                .map(|(t, parts)| {
                    let found = parts
                        .into_iter()
                        .map(|p| (p, g.and_then(|g| g.offsets.get(&(t.clone(), p)).cloned())))
                        .collect();
                    (t, found)
                })
                .collect(),
            None => {
                let mut by_topic: BTreeMap<String, Vec<(i32, Option<Committed>)>> = BTreeMap::new();
                for ((t, p), c) in g.into_iter().flat_map(|g| g.offsets.iter()) {
                    by_topic
                        .entry(t.clone())
                        .or_default()
                        .push((*p, Some(c.clone())));
                }
                for parts in by_topic.values_mut() {
                    parts.sort_by_key(|(p, _)| *p);
                }
                by_topic.into_iter().collect()
            }
        }
    }

    /// OffsetDelete (§8): deletes offsets of topics the group is not consuming.
    pub fn delete_offsets(
        &mut self,
        group: &str,
        topics: TopicPartitions,
    ) -> (Result<PartitionResults, GroupError>, Effects) {
        let mut fx = Effects::default();
        let Some(g) = self.groups.get_mut(group) else {
            return (Err(GroupError::GroupIdNotFound), fx);
        };
        let active = g.state != State::Empty;
        if active && g.protocol_type.as_deref() != Some("consumer") {
            return (Err(GroupError::NonEmptyGroup), fx);
        }
        let subscribed = g.subscribed_topics();
        let results = topics
            .into_iter()
            .map(|(t, parts)| {
                let busy = active && subscribed.as_ref().is_none_or(|s| s.contains(&t));
                let parts = parts
                    .into_iter()
                    .map(|p| {
                        if busy {
                            return (p, Err(GroupError::GroupSubscribedToTopic));
                        }
                        if g.offsets.remove(&(t.clone(), p)).is_some() {
                            fx.records.push(offset_tombstone(group, &t, p));
                        }
                        (p, Ok(()))
                    })
                    .collect();
                (t, parts)
            })
            .collect();
        g.check_invariants(self.aborted);
        (Ok(results), fx)
    }

    /// DescribeGroups: None for a group this shard does not have.
    pub fn describe(&self, group: &str) -> Option<GroupSummary> {
        let g = self.groups.get(group)?;
        let stable = g.state == State::Stable;
        let protocol = g.protocol_name.as_deref();
        let members = g
            .members
            .values()
            .map(|m| MemberSummary {
                member_id: m.id.clone(),
                instance_id: m.instance_id.clone(),
                client_id: m.client_id.clone(),
                client_host: m.client_host.clone(),
                metadata: if stable {
                    m.metadata_for(protocol)
                } else {
                    Default::default()
                },
                assignment: if stable {
                    m.assignment.clone()
                } else {
                    Default::default()
                },
            })
            .collect();
        Some(GroupSummary {
            group: g.id.clone(),
            state: g.state.name(),
            protocol_type: g.protocol_type.clone().unwrap_or_default(),
            protocol_data: if stable {
                protocol.unwrap_or_default().to_string()
            } else {
                String::new()
            },
            members,
        })
    }

    /// ListGroups: every group, sorted by id.
    pub fn list(&self) -> Vec<GroupListing> {
        let mut out: Vec<GroupListing> = self
            .groups
            .values()
            .map(|g| GroupListing {
                group: g.id.clone(),
                protocol_type: g.protocol_type.clone().unwrap_or_default(),
                state: g.state.name(),
            })
            .collect();
        out.sort_by(|a, b| a.group.cmp(&b.group));
        out
    }

    /// Every group with its committed offsets, for the metrics endpoint: one walk, unsorted
    /// (the admin server sorts off the shard's thread).
    pub fn stats(&self) -> Vec<GroupStats> {
        let group = |g: &super::machine::Group| GroupStats {
            group: g.id.clone(),
            state: g.state.name(),
            protocol_type: g.protocol_type.clone().unwrap_or_default(),
            members: g.members.len(),
            committed: g
                .offsets
                .iter()
                .map(|((t, p), c)| (t.clone(), *p, c.offset.0))
                .collect(),
        };
        self.groups.values().map(group).collect()
    }

    /// DeleteGroups for one group: only an Empty group goes, with its offsets.
    pub fn delete_group(&mut self, group: &str) -> (Result<(), GroupError>, Effects) {
        let mut fx = Effects::default();
        let result = match self.groups.get(group) {
            None => Err(GroupError::GroupIdNotFound),
            Some(g) if g.state != State::Empty => Err(GroupError::NonEmptyGroup),
            Some(_) => {
                self.groups.remove(group);
                fx.records.push(Record::Group {
                    group: group.to_string(),
                    value: None,
                });
                Ok(())
            }
        };
        self.check_group(group);
        (result, fx)
    }

    /// Drops the offsets of topics that no longer exist.
    pub fn forget_topics(&mut self, exists: impl Fn(&str) -> bool) -> Effects {
        let mut fx = Effects::default();
        for g in self.groups.values_mut() {
            let gone: Vec<(String, i32)> = g
                .offsets
                .keys()
                .filter(|(t, _)| !exists(t))
                .cloned()
                .collect();
            for (t, p) in gone {
                g.offsets.remove(&(t.clone(), p));
                fx.records.push(offset_tombstone(&g.id, &t, p));
            }
        }
        self.check_invariants();
        fx
    }

    /// §7.3: expire offsets, then drop Empty groups left with none.
    pub(super) fn expire_offsets(&mut self, now: TimestampMs, fx: &mut Effects) {
        let retention = self.config.offsets_retention_ms;
        let mut dead = Vec::new();
        for g in self.groups.values_mut() {
            let subscribed = g.subscribed_topics();
            let empty_for = (g.state == State::Empty).then(|| now.since(g.state_since));
            let expired: Vec<(String, i32)> = g
                .offsets
                .iter()
                .filter(|((t, _), c)| {
                    if let Some(at) = c.expire_ms {
                        return at <= now;
                    }
                    match (&g.protocol_type, empty_for) {
                        (Some(_), Some(age)) => age >= retention,
                        (None, _) => now.since(c.commit_ms) >= retention,
                        (Some(pt), None) if pt == "consumer" && g.state == State::Stable => {
                            subscribed.as_ref().is_some_and(|s| {
                                !s.contains(t) && now.since(c.commit_ms) >= retention
                            })
                        }
                        _ => false,
                    }
                })
                .map(|(k, _)| k.clone())
                .collect();
            for (t, p) in expired {
                g.offsets.remove(&(t.clone(), p));
                fx.records.push(offset_tombstone(&g.id, &t, p));
            }
            if g.state == State::Empty && g.offsets.is_empty() && g.pending.is_empty() {
                dead.push(g.id.clone());
            }
        }
        for id in dead {
            self.groups.remove(&id);
            fx.records.push(Record::Group {
                group: id,
                value: None,
            });
        }
    }
}

fn offset_tombstone(group: &str, topic: &str, partition: i32) -> Record {
    Record::Offset {
        group: group.to_string(),
        topic: topic.to_string(),
        partition,
        value: None,
    }
}
