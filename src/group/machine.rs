//! The pure group state machine of one shard: every group this shard coordinates, their
//! members, timers and committed offsets. Each call takes the current time and one request
//! and returns [`Effects`]: replies (to this request or to JoinGroup/SyncGroup requests parked
//! earlier) and records to persist. [`Groups::next_deadline`] says when [`Groups::tick`] must
//! run next (join, sync, session and offset-expiry timers). Nothing here does I/O or reads a
//! clock, so tests run the protocol with made-up time.
//!
//! States (Kafka's): Empty → PreparingRebalance (members join) → CompletingRebalance (the
//! leader assigns) → Stable, and back to PreparingRebalance on any membership change; a group
//! with no members is Empty. Dead groups are removed from the map at once.

use std::collections::{HashMap, HashSet};

use bytes::Bytes;
use indexmap::IndexMap;

use super::record::{Record, StoredGroup, StoredMember};
use super::*;
use crate::types::{DurationMs, TimestampMs};

/// Session deadline of a member added during a join phase until it is first answered.
const NEW_MEMBER_JOIN_TIMEOUT: DurationMs = DurationMs(300_000);

/// A group's state in Kafka's classic protocol (transitions in the module docs). Kafka's
/// Dead is not one: a dead group is removed from [`Groups`] at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// No members: a new group, one whose members all left or expired, or a simple group
    /// (offsets only). Its offsets expire after offsets.retention.minutes, and the group
    /// with the last of them.
    Empty,
    /// The join phase: members (re)send JoinGroup and are parked until all have joined or
    /// the join timer fires; Heartbeats answer REBALANCE_IN_PROGRESS to make them rejoin.
    PreparingRebalance,
    /// A new generation was answered; the coordinator waits for the leader's SyncGroup with
    /// the assignment, parking the others' (Kafka's former AwaitingSync).
    CompletingRebalance,
    /// The leader's assignment went out; members heartbeat until one joins, leaves, expires
    /// or rejoins with new metadata (or the leader rejoins), which starts a rebalance.
    Stable,
}

impl State {
    /// Kafka's name of the state, as DescribeGroups and ListGroups show it.
    pub fn name(self) -> &'static str {
        match self {
            State::Empty => "Empty",
            State::PreparingRebalance => "PreparingRebalance",
            State::CompletingRebalance => "CompletingRebalance",
            State::Stable => "Stable",
        }
    }
}

/// What a group's parked replies and persisted records amount to after one call.
#[derive(Debug, Default)]
pub struct Effects {
    /// Answers to JoinGroup and SyncGroup requests by their token: the call's own request
    /// and any parked earlier. They must go out only once `records` are written.
    pub replies: Vec<(Token, Reply)>,
    /// Records to append to the group logs, in this order (the log of each is
    /// `group_log_for(record.group())`).
    pub records: Vec<Record>,
}

impl Effects {
    fn join(&mut self, token: Token, r: JoinReply) {
        self.replies.push((token, Reply::Join(r)));
    }
    fn sync(&mut self, token: Token, r: SyncReply) {
        self.replies.push((token, Reply::Sync(r)));
    }
}

#[derive(Debug, Clone)]
pub(super) struct Member {
    pub id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout_ms: i32,
    pub rebalance_timeout_ms: i32,
    pub protocols: Vec<(String, Bytes)>,
    pub assignment: Bytes,
    pub awaiting_join: Option<Token>,
    pub awaiting_sync: Option<Token>,
    pub is_new: bool,
    pub session_deadline: Option<TimestampMs>,
}

impl Member {
    pub(super) fn metadata_for(&self, protocol: Option<&str>) -> Bytes {
        self.protocols
            .iter()
            .find(|(n, _)| Some(n.as_str()) == protocol)
            .map(|(_, m)| m.clone())
            .unwrap_or_default()
    }
    pub(super) fn refresh(&mut self, now: TimestampMs) {
        self.session_deadline = Some(now.plus(self.session_timeout_ms.into()));
    }
}

/// The join-phase timer: normal (deadline) or initial (`remaining` of the rebalance timeout
/// left to extend into while new members keep arriving, §4.3).
#[derive(Debug, Clone, Copy)]
pub(super) struct JoinTimer {
    pub deadline: TimestampMs,
    pub remaining: Option<DurationMs>,
}

/// The SyncGroup-phase timer of one generation.
#[derive(Debug, Clone, Copy)]
pub(super) struct SyncTimer {
    pub deadline: TimestampMs,
    pub generation: i32,
}

#[derive(Debug, Clone)]
pub(super) struct Group {
    pub id: String,
    pub state: State,
    pub state_since: TimestampMs,
    pub generation: i32,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub leader: Option<String>,
    pub members: IndexMap<String, Member>,
    pub static_members: HashMap<String, String>,
    /// Member ids handed out with MEMBER_ID_REQUIRED, with their deadline to rejoin.
    pub pending: HashMap<String, TimestampMs>,
    pub pending_sync: HashSet<String>,
    pub new_member_added: bool,
    pub join_timer: Option<JoinTimer>,
    pub sync_timer: Option<SyncTimer>,
    pub offsets: HashMap<(String, i32), Committed>,
    /// The last persisted group record (what a snapshot writes).
    pub stored: Option<StoredGroup>,
    /// The generation at the last invariant check (it may only rise).
    pub checked_generation: i32,
}

/// Every group of one shard.
pub struct Groups {
    pub(super) config: GroupConfig,
    pub(super) groups: HashMap<String, Group>,
    next_expiry_scan: TimestampMs,
    id_seed: u64,
    /// `abort_parked` ran (shutdown): the members it answered wait for nothing any more, so
    /// the invariants about parked requests are relaxed.
    pub(super) aborted: bool,
}

type JoinResult = std::result::Result<(), (GroupError, String)>;

impl Groups {
    /// `seed` makes member ids unique across restarts (pass a random value).
    pub fn new(config: GroupConfig, now: TimestampMs, seed: u64) -> Groups {
        Groups {
            next_expiry_scan: now.plus(config.offsets_retention_check_ms),
            config,
            groups: HashMap::new(),
            id_seed: seed,
            aborted: false,
        }
    }

    /// The settings the machine was made with.
    pub fn config(&self) -> &GroupConfig {
        &self.config
    }

    /// A fresh member id: `<instance id or client id>-<uuid>`, as Kafka makes them.
    fn member_id(&mut self, prefix: &str) -> String {
        let a = splitmix(&mut self.id_seed);
        let b = splitmix(&mut self.id_seed);
        let uuid =
            uuid::Builder::from_random_bytes(((u128::from(a) << 64) | u128::from(b)).to_be_bytes())
                .into_uuid();
        format!("{prefix}-{uuid}")
    }

    /// Creates an Empty group, within `groups_max`.
    pub(super) fn create(
        &mut self,
        id: &str,
        now: TimestampMs,
    ) -> std::result::Result<(), GroupError> {
        if self.groups.len() >= self.config.groups_max {
            return Err(GroupError::CoordinatorNotAvailable);
        }
        self.groups
            .insert(id.to_string(), Group::new(id.to_string(), now));
        Ok(())
    }

    /// JoinGroup (§4). The reply comes back in the effects, now or from a later call.
    pub fn join(&mut self, now: TimestampMs, token: Token, req: JoinRequest) -> Effects {
        let mut fx = Effects::default();
        let group = req.group.clone();
        if let Err((e, member_id)) = self.join_inner(now, token, req, &mut fx) {
            fx.join(token, JoinReply::failed(e, member_id));
            if self.groups.get(&group).is_some_and(Group::is_vacant) {
                self.groups.remove(&group); // created by this failed request: leave no trace
            }
        }
        self.check_group(&group);
        fx
    }

    fn join_inner(
        &mut self,
        now: TimestampMs,
        token: Token,
        req: JoinRequest,
        fx: &mut Effects,
    ) -> JoinResult {
        let echo = req.member_id.clone();
        if req.group.is_empty() {
            return Err((GroupError::InvalidGroupId, echo));
        }
        let c = &self.config;
        if req.session_timeout_ms < c.session_timeout_ms_min
            || req.session_timeout_ms > c.session_timeout_ms_max
        {
            return Err((GroupError::InvalidSessionTimeout, echo));
        }
        if !self.groups.contains_key(&req.group) {
            if !req.member_id.is_empty() {
                return Err((GroupError::UnknownMemberId, echo));
            }
            self.create(&req.group, now)
                .map_err(|e| (e, echo.clone()))?;
        }
        let new_id = req
            .member_id
            .is_empty()
            .then(|| self.member_id(req.instance_id.as_deref().unwrap_or(&req.client_id)));
        let config = self.config.clone();
        let g = self.groups.get_mut(&req.group).expect("group exists");
        if !g.accepts(&req.member_id, config.members_max) {
            return Err((GroupError::GroupMaxSizeReached, String::new()));
        }
        let result = match new_id {
            Some(id) => g.join_new(now, token, req, id, &config, fx),
            None => g.join_known(now, token, req, &config, fx),
        };
        g.try_complete_join(now, fx);
        result
    }

    /// SyncGroup (§6.3).
    pub fn sync(&mut self, now: TimestampMs, token: Token, req: SyncRequest) -> Effects {
        let mut fx = Effects::default();
        let result = if req.group.is_empty() {
            Err(GroupError::InvalidGroupId)
        } else {
            match self.groups.get_mut(&req.group) {
                None => Err(GroupError::UnknownMemberId),
                Some(g) => {
                    let result = g.sync(now, token, req, &mut fx);
                    g.check_invariants(self.aborted);
                    result
                }
            }
        };
        if let Err(e) = result {
            fx.sync(token, SyncReply::failed(e));
        }
        fx
    }

    /// Heartbeat (§6.4).
    pub fn heartbeat(
        &mut self,
        now: TimestampMs,
        group: &str,
        m: &MemberRef,
    ) -> Result<(), GroupError> {
        let result = self.heartbeat_inner(now, group, m);
        self.check_group(group);
        result
    }

    fn heartbeat_inner(
        &mut self,
        now: TimestampMs,
        group: &str,
        m: &MemberRef,
    ) -> Result<(), GroupError> {
        if group.is_empty() {
            return Err(GroupError::InvalidGroupId);
        }
        let g = self
            .groups
            .get_mut(group)
            .ok_or(GroupError::UnknownMemberId)?;
        g.validate_member(&m.member_id, m.instance_id.as_deref())?;
        if m.generation != g.generation {
            return Err(GroupError::IllegalGeneration);
        }
        let state = g.state;
        if state == State::Empty {
            return Err(GroupError::UnknownMemberId);
        }
        if let Some(member) = g.members.get_mut(&m.member_id) {
            member.refresh(now);
        }
        match state {
            State::PreparingRebalance => Err(GroupError::RebalanceInProgress),
            _ => Ok(()),
        }
    }

    /// LeaveGroup (§6.5): a group-level error, or one result per member.
    pub fn leave(
        &mut self,
        now: TimestampMs,
        group: &str,
        members: &[MemberRef],
    ) -> (Result<Vec<Result<(), GroupError>>, GroupError>, Effects) {
        let mut fx = Effects::default();
        if group.is_empty() {
            return (Err(GroupError::InvalidGroupId), fx);
        }
        let config = self.config.clone();
        let Some(g) = self.groups.get_mut(group) else {
            return (
                Ok(vec![Err(GroupError::UnknownMemberId); members.len()]),
                fx,
            );
        };
        let results = members
            .iter()
            .map(|m| g.leave_one(now, m, &config, &mut fx))
            .collect();
        g.try_complete_join(now, &mut fx);
        g.check_invariants(self.aborted);
        (Ok(results), fx)
    }

    /// The earliest time `tick` has work to do.
    pub fn next_deadline(&self) -> TimestampMs {
        let groups = self.groups.values().filter_map(Group::next_deadline).min();
        groups.map_or(self.next_expiry_scan, |d| d.min(self.next_expiry_scan))
    }

    /// Fires every timer due at `now`: join and sync phase ends, session expiries, offset
    /// expiry.
    pub fn tick(&mut self, now: TimestampMs) -> Effects {
        let mut fx = Effects::default();
        let config = self.config.clone();
        for g in self.groups.values_mut() {
            g.fire_timers(now, &config, &mut fx);
        }
        if now >= self.next_expiry_scan {
            self.next_expiry_scan = now.plus(config.offsets_retention_check_ms);
            self.expire_offsets(now, &mut fx);
        }
        self.check_invariants();
        fx
    }

    /// Applies a persisted record while loading a group log (in log order).
    pub fn replay(&mut self, now: TimestampMs, r: Record) {
        let id = r.group().to_string();
        self.replay_inner(now, r);
        self.check_group(&id);
    }

    fn replay_inner(&mut self, now: TimestampMs, r: Record) {
        match r {
            Record::Offset {
                group,
                topic,
                partition,
                value,
            } => {
                let g = self
                    .groups
                    .entry(group.clone())
                    .or_insert_with(|| Group::new(group, now));
                match value {
                    Some(c) => g.offsets.insert((topic, partition), c),
                    None => g.offsets.remove(&(topic, partition)),
                };
            }
            Record::Group { group, value: None } => {
                self.groups.remove(&group);
            }
            Record::Group {
                group,
                value: Some(stored),
            } => {
                let offsets = self
                    .groups
                    .remove(&group)
                    .map(|g| g.offsets)
                    .unwrap_or_default();
                let mut g = Group::from_stored(group.clone(), stored, now);
                g.offsets = offsets;
                self.groups.insert(group, g);
            }
        }
    }

    /// Records that recreate the current state of the groups `keep` selects: a snapshot to
    /// compact a group log with.
    pub fn snapshot(&self, keep: impl Fn(&str) -> bool) -> Vec<Record> {
        let mut out = Vec::new();
        for g in self.groups.values().filter(|g| keep(&g.id)) {
            if let Some(stored) = &g.stored {
                out.push(Record::Group {
                    group: g.id.clone(),
                    value: Some(stored.clone()),
                });
            }
            for ((topic, partition), c) in &g.offsets {
                out.push(Record::Offset {
                    group: g.id.clone(),
                    topic: topic.clone(),
                    partition: *partition,
                    value: Some(c.clone()),
                });
            }
        }
        out
    }

    /// Forgets the groups `gone` selects, as if this coordinator had never held them (in a
    /// cluster, their group log's leadership moved away): their parked JoinGroup and
    /// SyncGroup requests are answered NOT_COORDINATOR, so the members find the new
    /// coordinator, which rebuilds the groups from the replicated log. Writes nothing.
    pub fn unload(&mut self, gone: impl Fn(&str) -> bool) -> Effects {
        let mut fx = Effects::default();
        let ids: Vec<String> = self.groups.keys().filter(|g| gone(g)).cloned().collect();
        for id in ids {
            if let Some(mut g) = self.groups.remove(&id) {
                answer_parked(&mut g, GroupError::NotCoordinator, &mut fx);
            }
        }
        fx
    }

    /// Takes over every group of `loaded` (a machine a group log was replayed into, in a
    /// cluster, when this coordinator adopts the log). None of them may be here already.
    pub fn take_over(&mut self, loaded: Groups) {
        for (id, g) in loaded.groups {
            assert!(!self.groups.contains_key(&id), "group {id} loaded twice");
            self.groups.insert(id, g);
        }
        self.check_invariants();
    }

    /// Answers every parked request (shutdown): members will rejoin the next broker.
    pub fn abort_parked(&mut self) -> Effects {
        self.aborted = true;
        let mut fx = Effects::default();
        for g in self.groups.values_mut() {
            answer_parked(g, GroupError::CoordinatorNotAvailable, &mut fx);
        }
        self.check_invariants();
        fx
    }
}

/// Answers every parked JoinGroup and SyncGroup of `g`'s members with `error`.
fn answer_parked(g: &mut Group, error: GroupError, fx: &mut Effects) {
    for m in g.members.values_mut() {
        if let Some(t) = m.awaiting_join.take() {
            fx.join(t, JoinReply::failed(error, m.id.clone()));
        }
        if let Some(t) = m.awaiting_sync.take() {
            fx.sync(t, SyncReply::failed(error));
        }
    }
}

/// The topic list at the start of every ConsumerProtocolSubscription version:
/// i16 version, i32 count, then i16-length strings.
fn subscription_topics(b: &[u8]) -> Option<Vec<String>> {
    let count = i32::from_be_bytes(b.get(2..6)?.try_into().ok()?);
    let mut at = 6;
    let mut out = Vec::new();
    for _ in 0..count.max(0) {
        let len = i16::from_be_bytes(b.get(at..at + 2)?.try_into().ok()?);
        let len = usize::try_from(len).ok()?;
        out.push(String::from_utf8(b.get(at + 2..at + 2 + len)?.to_vec()).ok()?);
        at += 2 + len;
    }
    Some(out)
}

fn splitmix(s: &mut u64) -> u64 {
    *s = s.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *s;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl Group {
    fn new(id: String, now: TimestampMs) -> Group {
        Group {
            id,
            state: State::Empty,
            state_since: now,
            generation: 0,
            protocol_type: None,
            protocol_name: None,
            leader: None,
            members: IndexMap::new(),
            static_members: HashMap::new(),
            pending: HashMap::new(),
            pending_sync: HashSet::new(),
            new_member_added: false,
            join_timer: None,
            sync_timer: None,
            offsets: HashMap::new(),
            stored: None,
            checked_generation: 0,
        }
    }

    /// A group as loaded from its record: Stable with its members if it had any (they keep
    /// heart-beating at their generation across a broker restart), else Empty.
    fn from_stored(id: String, s: StoredGroup, now: TimestampMs) -> Group {
        let mut g = Group::new(id, s.state_since_ms);
        g.generation = s.generation;
        g.protocol_type = s.protocol_type.clone();
        g.protocol_name = s.protocol_name.clone();
        g.leader = s.leader.clone();
        for m in &s.members {
            let member = Member {
                id: m.member_id.clone(),
                instance_id: m.instance_id.clone(),
                client_id: m.client_id.clone(),
                client_host: m.client_host.clone(),
                session_timeout_ms: m.session_timeout_ms,
                rebalance_timeout_ms: m.rebalance_timeout_ms,
                protocols: vec![(
                    s.protocol_name.clone().unwrap_or_default(),
                    m.metadata.clone(),
                )],
                assignment: m.assignment.clone(),
                awaiting_join: None,
                awaiting_sync: None,
                is_new: false,
                session_deadline: Some(now.plus(m.session_timeout_ms.into())),
            };
            if let Some(i) = &m.instance_id {
                g.static_members.insert(i.clone(), m.member_id.clone());
            }
            g.members.insert(m.member_id.clone(), member);
        }
        if !g.members.is_empty() {
            g.state = State::Stable;
        }
        g.stored = Some(s);
        g
    }

    /// The record of this group as it stands (called when it reaches a stable point).
    fn store(&mut self, fx: &mut Effects) {
        let protocol = self.protocol_name.clone();
        let stored = StoredGroup {
            protocol_type: self.protocol_type.clone(),
            generation: self.generation,
            protocol_name: protocol.clone(),
            leader: self.leader.clone(),
            state_since_ms: self.state_since,
            members: self
                .members
                .values()
                .map(|m| StoredMember {
                    member_id: m.id.clone(),
                    instance_id: m.instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    session_timeout_ms: m.session_timeout_ms,
                    rebalance_timeout_ms: m.rebalance_timeout_ms,
                    metadata: m.metadata_for(protocol.as_deref()),
                    assignment: m.assignment.clone(),
                })
                .collect(),
        };
        self.stored = Some(stored.clone());
        fx.records.push(Record::Group {
            group: self.id.clone(),
            value: Some(stored),
        });
    }

    /// Topics the members subscribe to (ConsumerProtocolSubscription in their metadata for
    /// the chosen protocol); None when unknown, which callers treat as "every topic".
    pub(super) fn subscribed_topics(&self) -> Option<HashSet<String>> {
        if self.protocol_type.as_deref() != Some("consumer") || self.members.is_empty() {
            return None;
        }
        let protocol = self.protocol_name.as_deref()?;
        let mut all = HashSet::new();
        for m in self.members.values() {
            all.extend(subscription_topics(&m.metadata_for(Some(protocol)))?);
        }
        Some(all)
    }

    /// A group with nothing in it: no members, pending ids, offsets or stored record.
    fn is_vacant(&self) -> bool {
        self.state == State::Empty
            && self.members.is_empty()
            && self.pending.is_empty()
            && self.offsets.is_empty()
            && self.stored.is_none()
    }

    fn transition(&mut self, to: State, now: TimestampMs) {
        self.state = to;
        self.state_since = now;
    }

    /// The longest rebalance timeout of the members: how long a join or sync phase lasts.
    pub(super) fn rebalance_timeout(&self) -> DurationMs {
        self.members
            .values()
            .map(|m| DurationMs::from(m.rebalance_timeout_ms))
            .max()
            .unwrap_or(DurationMs::ZERO)
    }

    fn all_joined(&self) -> bool {
        self.pending.is_empty() && self.members.values().all(|m| m.awaiting_join.is_some())
    }

    /// §3.2: the member id (and instance id, if given) name a current member.
    pub(super) fn validate_member(
        &self,
        member_id: &str,
        instance_id: Option<&str>,
    ) -> Result<(), GroupError> {
        if let Some(i) = instance_id {
            match self.static_members.get(i) {
                Some(known) if known != member_id => return Err(GroupError::FencedInstanceId),
                Some(_) => {}
                None => return Err(GroupError::UnknownMemberId),
            }
        }
        if self.members.contains_key(member_id) {
            Ok(())
        } else {
            Err(GroupError::UnknownMemberId)
        }
    }

    /// §3.4: could a member with these protocols join?
    fn supports(&self, protocol_type: &str, protocols: &[(String, Bytes)]) -> bool {
        if self.members.is_empty() {
            return !protocol_type.is_empty() && !protocols.is_empty();
        }
        Some(protocol_type) == self.protocol_type.as_deref()
            && protocols.iter().any(|(name, _)| {
                self.members
                    .values()
                    .all(|m| m.protocols.iter().any(|(n, _)| n == name))
            })
    }

    /// §4.1.4: room for this member?
    fn accepts(&self, member_id: &str, max: usize) -> bool {
        let known = self.members.get(member_id);
        match self.state {
            State::Empty => true,
            State::PreparingRebalance => {
                known.is_some_and(|m| m.awaiting_join.is_some())
                    || self
                        .members
                        .values()
                        .filter(|m| m.awaiting_join.is_some())
                        .count()
                        < max
            }
            _ => known.is_some() || self.members.len() < max,
        }
    }

    /// A request with no member id (§4.1.5).
    fn join_new(
        &mut self,
        now: TimestampMs,
        token: Token,
        req: JoinRequest,
        id: String,
        config: &GroupConfig,
        fx: &mut Effects,
    ) -> JoinResult {
        if !self.supports(&req.protocol_type, &req.protocols) {
            return Err((GroupError::InconsistentGroupProtocol, String::new()));
        }
        let known = req
            .instance_id
            .as_ref()
            .and_then(|i| self.static_members.get(i))
            .cloned();
        match (&req.instance_id, known) {
            (Some(_), Some(old)) => self.replace_static(now, token, req, old, id, config, fx),
            (None, _) if req.require_known_member_id => {
                let deadline = now.plus(req.session_timeout_ms.into());
                self.pending.insert(id.clone(), deadline);
                Err((GroupError::MemberIdRequired, id))
            }
            _ => {
                self.add_member(now, token, req, id, config, fx);
                Ok(())
            }
        }
    }

    /// A request with a member id (§4.1.6).
    fn join_known(
        &mut self,
        now: TimestampMs,
        token: Token,
        req: JoinRequest,
        config: &GroupConfig,
        fx: &mut Effects,
    ) -> JoinResult {
        let id = req.member_id.clone();
        if !self.supports(&req.protocol_type, &req.protocols) {
            return Err((GroupError::InconsistentGroupProtocol, id));
        }
        if self.pending.contains_key(&id) {
            if req.instance_id.is_some() {
                // Pending ids are handed to dynamic members only (§4.1.6).
                return Err((GroupError::UnknownMemberId, id));
            }
            self.add_member(now, token, req, id, config, fx);
            return Ok(());
        }
        self.validate_member(&id, req.instance_id.as_deref())
            .map_err(|e| (e, id.clone()))?;
        let member = &self.members[&id];
        let same = member.protocols == req.protocols;
        let is_leader = self.leader.as_deref() == Some(id.as_str());
        match self.state {
            State::Empty => Err((GroupError::UnknownMemberId, id)),
            State::PreparingRebalance => {
                self.update_and_park(now, token, &req, fx);
                Ok(())
            }
            State::CompletingRebalance if same => {
                let reply = self.join_reply(&id, is_leader, false);
                fx.join(token, reply);
                Ok(())
            }
            State::Stable if same && !is_leader => {
                let reply = self.join_reply(&id, false, false);
                fx.join(token, reply);
                Ok(())
            }
            State::CompletingRebalance | State::Stable => {
                self.update_and_park(now, token, &req, fx);
                self.prepare_rebalance(now, config, fx);
                Ok(())
            }
        }
    }

    /// The JoinGroup answer for `id` at the current generation.
    fn join_reply(&self, id: &str, with_members: bool, skip_assignment: bool) -> JoinReply {
        let protocol = self.protocol_name.as_deref();
        let members = if with_members {
            self.members
                .values()
                .map(|m| JoinedMember {
                    member_id: m.id.clone(),
                    instance_id: m.instance_id.clone(),
                    metadata: m.metadata_for(protocol),
                })
                .collect()
        } else {
            Vec::new()
        };
        JoinReply {
            error: None,
            generation: self.generation,
            protocol_type: self.protocol_type.clone(),
            protocol_name: self.protocol_name.clone(),
            leader: self.leader.clone().unwrap_or_default(),
            member_id: id.to_string(),
            members,
            skip_assignment,
        }
    }

    fn update_and_park(
        &mut self,
        now: TimestampMs,
        token: Token,
        req: &JoinRequest,
        fx: &mut Effects,
    ) {
        let m = self
            .members
            .get_mut(&req.member_id)
            .expect("validated member");
        m.protocols = req.protocols.clone();
        m.session_timeout_ms = req.session_timeout_ms;
        m.rebalance_timeout_ms = req.rebalance_timeout_ms;
        m.refresh(now);
        if let Some(old) = m.awaiting_join.replace(token) {
            fx.join(
                old,
                JoinReply::failed(GroupError::RebalanceInProgress, m.id.clone()),
            );
        }
    }

    /// §4.2: a new member, parked until the join phase completes.
    fn add_member(
        &mut self,
        now: TimestampMs,
        token: Token,
        req: JoinRequest,
        id: String,
        config: &GroupConfig,
        fx: &mut Effects,
    ) {
        if self.state == State::PreparingRebalance && self.generation == 0 {
            self.new_member_added = true;
        }
        if self.members.is_empty() {
            self.protocol_type = Some(req.protocol_type.clone());
        }
        if self.leader.is_none() {
            self.leader = Some(id.clone());
        }
        if let Some(i) = &req.instance_id {
            self.static_members.insert(i.clone(), id.clone());
        }
        self.pending.remove(&id);
        let member = Member {
            id: id.clone(),
            instance_id: req.instance_id,
            client_id: req.client_id,
            client_host: req.client_host,
            session_timeout_ms: req.session_timeout_ms,
            rebalance_timeout_ms: req.rebalance_timeout_ms,
            protocols: req.protocols,
            assignment: Bytes::new(),
            awaiting_join: Some(token),
            awaiting_sync: None,
            is_new: true,
            session_deadline: Some(now.plus(NEW_MEMBER_JOIN_TIMEOUT)),
        };
        self.members.insert(id, member);
        if self.state != State::PreparingRebalance {
            self.prepare_rebalance(now, config, fx);
        }
    }

    /// §5: a known group.instance.id joins with no member id: the new request takes over the
    /// old member (which is fenced), keeping its assignment.
    #[allow(clippy::too_many_arguments)]
    fn replace_static(
        &mut self,
        now: TimestampMs,
        token: Token,
        req: JoinRequest,
        old: String,
        id: String,
        config: &GroupConfig,
        fx: &mut Effects,
    ) -> JoinResult {
        let old_leader = self.leader.clone();
        let mut m = self
            .members
            .shift_remove(&old)
            .expect("static member exists");
        if let Some(t) = m.awaiting_join.take() {
            fx.join(
                t,
                JoinReply::failed(GroupError::FencedInstanceId, old.clone()),
            );
        }
        if let Some(t) = m.awaiting_sync.take() {
            fx.sync(t, SyncReply::failed(GroupError::FencedInstanceId));
        }
        m.id = id.clone();
        m.protocols = req.protocols.clone();
        m.session_timeout_ms = req.session_timeout_ms;
        m.rebalance_timeout_ms = req.rebalance_timeout_ms;
        m.client_id = req.client_id.clone();
        m.client_host = req.client_host.clone();
        m.awaiting_join = Some(token);
        m.refresh(now);
        self.members.insert(id.clone(), m);
        if self.pending_sync.remove(&old) {
            self.pending_sync.insert(id.clone());
        }
        if self.leader.as_deref() == Some(old.as_str()) {
            self.leader = Some(id.clone());
        }
        let iid = req.instance_id.clone().expect("static member");
        self.static_members.insert(iid, id.clone());
        match self.state {
            State::PreparingRebalance => {}
            State::CompletingRebalance => self.prepare_rebalance(now, config, fx),
            State::Stable if self.select_protocol() == self.protocol_name => {
                let m = self.members.get_mut(&id).expect("just inserted");
                m.awaiting_join = None;
                let mut reply = self.join_reply(&id, false, false);
                let is_leader = self.leader.as_deref() == Some(id.as_str());
                if req.supports_skip_assignment && is_leader {
                    reply = self.join_reply(&id, true, true);
                } else if !req.supports_skip_assignment {
                    reply.leader = old_leader.unwrap_or_default();
                }
                self.store(fx);
                fx.join(token, reply);
            }
            State::Stable | State::Empty => self.prepare_rebalance(now, config, fx),
        }
        Ok(())
    }

    /// §4.2: start (or restart) a join phase.
    fn prepare_rebalance(&mut self, now: TimestampMs, config: &GroupConfig, fx: &mut Effects) {
        if self.state == State::CompletingRebalance {
            for m in self.members.values_mut() {
                if let Some(t) = m.awaiting_sync.take() {
                    fx.sync(t, SyncReply::failed(GroupError::RebalanceInProgress));
                    m.refresh(now);
                }
                m.assignment = Bytes::new();
            }
        }
        self.pending_sync.clear();
        self.sync_timer = None;
        let timeout = self.rebalance_timeout();
        self.join_timer = Some(if self.state == State::Empty {
            let delay = config.initial_rebalance_delay_ms;
            JoinTimer {
                deadline: now.plus(delay),
                remaining: Some(timeout.minus(delay)),
            }
        } else {
            JoinTimer {
                deadline: now.plus(timeout),
                remaining: None,
            }
        });
        self.transition(State::PreparingRebalance, now);
    }

    /// §4.3: complete the join phase early when everyone has joined (normal timer only).
    fn try_complete_join(&mut self, now: TimestampMs, fx: &mut Effects) {
        if self.state != State::PreparingRebalance {
            return;
        }
        let initial = self.join_timer.is_some_and(|t| t.remaining.is_some());
        if !initial && self.all_joined() {
            self.complete_join(now, fx);
        }
    }

    /// §4.3: the join timer fired.
    fn join_timer_fired(&mut self, now: TimestampMs, config: &GroupConfig, fx: &mut Effects) {
        let Some(timer) = self.join_timer else { return };
        if let Some(remaining) = timer.remaining {
            if self.new_member_added && remaining > DurationMs::ZERO {
                self.new_member_added = false;
                let delay = config.initial_rebalance_delay_ms.min(remaining);
                self.join_timer = Some(JoinTimer {
                    deadline: now.plus(delay),
                    remaining: Some(remaining.minus(delay)),
                });
                return;
            }
        }
        self.complete_join(now, fx);
    }

    /// §4.3: end of the join phase: drop who did not rejoin, pick the protocol, answer every
    /// parked JoinGroup (the leader with the member list) and wait for the SyncGroups.
    fn complete_join(&mut self, now: TimestampMs, fx: &mut Effects) {
        self.join_timer = None;
        let gone: Vec<String> = self
            .members
            .values()
            .filter(|m| m.awaiting_join.is_none() && m.instance_id.is_none())
            .map(|m| m.id.clone())
            .collect();
        for id in gone {
            self.remove_member(&id, fx);
        }
        let leader_joined = self.leader.as_ref().is_some_and(|l| {
            self.members
                .get(l)
                .is_some_and(|m| m.awaiting_join.is_some())
        });
        if !leader_joined {
            self.leader = self
                .members
                .values()
                .find(|m| m.awaiting_join.is_some())
                .map(|m| m.id.clone());
        }
        if self.leader.is_none() && !self.members.is_empty() {
            // Only absent static members remain: wait another round for them; each can
            // still expire.
            for m in self.members.values_mut() {
                if m.session_deadline.is_none() {
                    m.refresh(now);
                }
            }
            self.join_timer = Some(JoinTimer {
                deadline: now.plus(self.rebalance_timeout()),
                remaining: None,
            });
            return;
        }
        self.generation += 1;
        self.new_member_added = false;
        if self.members.is_empty() {
            self.protocol_name = None;
            self.transition(State::Empty, now);
            self.store(fx);
            return;
        }
        self.protocol_name = self.select_protocol();
        self.transition(State::CompletingRebalance, now);
        let leader = self.leader.clone().expect("leader chosen");
        let ids: Vec<String> = self.members.keys().cloned().collect();
        for id in ids {
            let reply = self.join_reply(&id, id == leader, false);
            let m = self.members.get_mut(&id).expect("member");
            if let Some(t) = m.awaiting_join.take() {
                fx.join(t, reply);
            }
            m.refresh(now);
            m.is_new = false;
            self.pending_sync.insert(id);
        }
        self.sync_timer = Some(SyncTimer {
            deadline: now.plus(self.rebalance_timeout()),
            generation: self.generation,
        });
    }

    /// The protocol every member supports that most members prefer (ties: the leader's
    /// order of preference).
    fn select_protocol(&self) -> Option<String> {
        let supported = |name: &str| {
            self.members
                .values()
                .all(|m| m.protocols.iter().any(|(n, _)| n == name))
        };
        let mut votes: IndexMap<&str, usize> = IndexMap::new();
        let leader = self.leader.as_ref().and_then(|l| self.members.get(l));
        for (name, _) in leader.into_iter().flat_map(|m| m.protocols.iter()) {
            if supported(name) {
                votes.insert(name, 0);
            }
        }
        for m in self.members.values() {
            if let Some((name, _)) = m.protocols.iter().find(|(n, _)| supported(n)) {
                *votes.entry(name).or_insert(0) += 1;
            }
        }
        let best = votes.values().copied().max()?;
        votes
            .into_iter()
            .find(|(_, v)| *v == best)
            .map(|(n, _)| n.to_string())
    }

    /// Removes a member, answering its parked requests with UNKNOWN_MEMBER_ID.
    fn remove_member(&mut self, id: &str, fx: &mut Effects) {
        let Some(mut m) = self.members.shift_remove(id) else {
            return;
        };
        if let Some(t) = m.awaiting_join.take() {
            fx.join(
                t,
                JoinReply::failed(GroupError::UnknownMemberId, String::new()),
            );
        }
        if let Some(t) = m.awaiting_sync.take() {
            fx.sync(t, SyncReply::failed(GroupError::UnknownMemberId));
        }
        if let Some(i) = &m.instance_id {
            self.static_members.remove(i);
        }
        self.pending_sync.remove(id);
        if self.leader.as_deref() == Some(id) {
            self.leader = self.members.keys().next().cloned();
        }
    }

    /// §6.2: remove a member and start a rebalance (or finish the running join phase).
    fn remove_and_rebalance(
        &mut self,
        now: TimestampMs,
        id: &str,
        config: &GroupConfig,
        fx: &mut Effects,
    ) {
        self.remove_member(id, fx);
        match self.state {
            State::Stable | State::CompletingRebalance => self.prepare_rebalance(now, config, fx),
            State::PreparingRebalance => self.try_complete_join(now, fx),
            State::Empty => {}
        }
    }

    fn leave_one(
        &mut self,
        now: TimestampMs,
        m: &MemberRef,
        config: &GroupConfig,
        fx: &mut Effects,
    ) -> Result<(), GroupError> {
        if m.member_id.is_empty() {
            let id = m
                .instance_id
                .as_ref()
                .and_then(|i| self.static_members.get(i))
                .cloned()
                .ok_or(GroupError::UnknownMemberId)?;
            self.remove_and_rebalance(now, &id, config, fx);
            return Ok(());
        }
        if self.pending.remove(&m.member_id).is_some() {
            return Ok(());
        }
        self.validate_member(&m.member_id, m.instance_id.as_deref())?;
        self.remove_and_rebalance(now, &m.member_id, config, fx);
        Ok(())
    }

    fn sync(
        &mut self,
        now: TimestampMs,
        token: Token,
        req: SyncRequest,
        fx: &mut Effects,
    ) -> Result<(), GroupError> {
        self.validate_member(&req.member_id, req.instance_id.as_deref())?;
        if req.generation != self.generation {
            return Err(GroupError::IllegalGeneration);
        }
        let mismatch =
            |given: &Option<String>, ours: &Option<String>| given.is_some() && given != ours;
        if mismatch(&req.protocol_type, &self.protocol_type)
            || mismatch(&req.protocol_name, &self.protocol_name)
        {
            return Err(GroupError::InconsistentGroupProtocol);
        }
        match self.state {
            State::Empty => Err(GroupError::UnknownMemberId),
            State::PreparingRebalance => Err(GroupError::RebalanceInProgress),
            State::Stable => {
                self.pending_sync.remove(&req.member_id);
                let reply = self.sync_reply(&req.member_id);
                self.members
                    .get_mut(&req.member_id)
                    .expect("validated")
                    .refresh(now);
                fx.sync(token, reply);
                Ok(())
            }
            State::CompletingRebalance => {
                self.pending_sync.remove(&req.member_id);
                let m = self.members.get_mut(&req.member_id).expect("validated");
                if let Some(old) = m.awaiting_sync.replace(token) {
                    fx.sync(old, SyncReply::failed(GroupError::RebalanceInProgress));
                }
                if self.leader.as_deref() == Some(req.member_id.as_str()) {
                    self.assign(now, req.assignments, fx);
                }
                Ok(())
            }
        }
    }

    fn sync_reply(&self, id: &str) -> SyncReply {
        SyncReply {
            error: None,
            protocol_type: self.protocol_type.clone(),
            protocol_name: self.protocol_name.clone(),
            assignment: self.members[id].assignment.clone(),
        }
    }

    /// The leader's SyncGroup: store the assignment, answer every parked SyncGroup, Stable.
    fn assign(&mut self, now: TimestampMs, assignments: Vec<(String, Bytes)>, fx: &mut Effects) {
        let mut given: HashMap<String, Bytes> = assignments.into_iter().collect();
        for m in self.members.values_mut() {
            m.assignment = given.remove(&m.id).unwrap_or_default();
        }
        self.transition(State::Stable, now);
        self.store(fx);
        let ids: Vec<String> = self.members.keys().cloned().collect();
        for id in ids {
            let reply = self.sync_reply(&id);
            let m = self.members.get_mut(&id).expect("member");
            if let Some(t) = m.awaiting_sync.take() {
                m.refresh(now);
                fx.sync(t, reply);
            }
        }
    }

    fn next_deadline(&self) -> Option<TimestampMs> {
        let members = self.members.values().filter_map(|m| m.session_deadline);
        let pending = self.pending.values().copied();
        let timers = self
            .join_timer
            .map(|t| t.deadline)
            .into_iter()
            .chain(self.sync_timer.map(|t| t.deadline));
        members.chain(pending).chain(timers).min()
    }

    fn fire_timers(&mut self, now: TimestampMs, config: &GroupConfig, fx: &mut Effects) {
        let expired: Vec<String> = self
            .pending
            .iter()
            .filter(|(_, d)| **d <= now)
            .map(|(id, _)| id.clone())
            .collect();
        for id in expired {
            self.pending.remove(&id);
            self.try_complete_join(now, fx);
        }
        let due: Vec<String> = self
            .members
            .values()
            .filter(|m| m.session_deadline.is_some_and(|d| d <= now))
            .map(|m| m.id.clone())
            .collect();
        for id in due {
            let Some(m) = self.members.get_mut(&id) else {
                continue;
            };
            if m.session_deadline.is_none_or(|d| d > now) {
                continue; // answered (and refreshed) by an earlier removal's rebalance
            }
            if !m.is_new && (m.awaiting_join.is_some() || m.awaiting_sync.is_some()) {
                m.session_deadline = None; // re-armed when its parked request is answered
                continue;
            }
            tracing::info!(group = %self.id, member = %id, "session expired");
            self.remove_and_rebalance(now, &id, config, fx);
        }
        if self.join_timer.is_some_and(|t| t.deadline <= now) {
            self.join_timer_fired(now, config, fx);
        }
        if let Some(timer) = self.sync_timer {
            if timer.deadline <= now {
                self.sync_timer = None;
                self.sync_expired(now, timer.generation, config, fx);
            }
        }
    }

    /// §4.3: members that did not SyncGroup in time are removed, and the group rebalances.
    fn sync_expired(
        &mut self,
        now: TimestampMs,
        generation: i32,
        config: &GroupConfig,
        fx: &mut Effects,
    ) {
        let in_sync = matches!(self.state, State::CompletingRebalance | State::Stable);
        if generation != self.generation || !in_sync || self.pending_sync.is_empty() {
            return;
        }
        let late: Vec<String> = self.pending_sync.drain().collect();
        for id in late {
            self.remove_member(&id, fx);
        }
        self.prepare_rebalance(now, config, fx);
        self.try_complete_join(now, fx);
    }
}
