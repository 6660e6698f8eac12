//! The group machine's invariants, asserted after every call that changes it (debug builds
//! and tests: a check walks the group's members), as `storage::state` checks the log's. Each
//! is a fact the transitions in machine.rs and offsets.rs keep, not a wish: membership
//! (members, leader, static and pending ids agree), states (what each of Empty,
//! PreparingRebalance, CompletingRebalance and Stable holds and which timers it runs), parked
//! requests (a JoinGroup waits only while members join, a SyncGroup only while the leader
//! assigns) and time (a member without a session deadline is waiting for an answer, the
//! generation only rises). A failed assertion names the group and is a bug in the machine.

use super::machine::{Group, Groups, State};
use crate::types::DurationMs;

/// Whether the invariants are checked: in debug builds and tests only.
const CHECKED: bool = cfg!(any(test, debug_assertions));

impl Groups {
    /// Asserts the invariants of every group (after a call that may touch any of them).
    pub(super) fn check_invariants(&mut self) {
        if !CHECKED {
            return;
        }
        let aborted = self.aborted;
        for (id, g) in &mut self.groups {
            assert_eq!(id, &g.id, "group {id} is filed under its id");
            g.check_invariants(aborted);
        }
    }

    /// Asserts the invariants of one group, if it (still) exists (after a call about it).
    pub(super) fn check_group(&mut self, id: &str) {
        if !CHECKED {
            return;
        }
        let aborted = self.aborted;
        if let Some(g) = self.groups.get_mut(id) {
            assert_eq!(id, g.id, "group {id} is filed under its id");
            g.check_invariants(aborted);
        }
    }
}

impl Group {
    /// Asserts this group's invariants and notes its generation for the next check.
    /// `aborted`: the shard's parked requests were answered for shutdown (`abort_parked`),
    /// so members may lack the parked request their state would otherwise imply.
    pub(super) fn check_invariants(&mut self, aborted: bool) {
        if !CHECKED {
            return;
        }
        self.check_generation();
        self.check_membership();
        self.check_state();
        self.check_parked(aborted);
    }

    /// The generation never goes back (within the life of this `Group`: a group loaded
    /// again from its record starts afresh); the sync timer is for the current generation;
    /// the persisted record is never ahead of memory.
    fn check_generation(&mut self) {
        let id = &self.id;
        let generation = self.generation;
        assert!(
            generation >= 0,
            "group {id}: negative generation {generation}"
        );
        assert!(
            generation >= self.checked_generation,
            "group {id}: generation went back from {} to {generation}",
            self.checked_generation
        );
        if let Some(timer) = self.sync_timer {
            assert_eq!(
                timer.generation, generation,
                "group {id}: the sync timer is for another generation"
            );
        }
        if let Some(stored) = &self.stored {
            assert!(
                stored.generation <= generation,
                "group {id}: the stored record is ahead of the group's generation"
            );
        }
        self.checked_generation = generation;
    }

    /// Members are filed under their ids; the leader is a member; pending ids are not
    /// members yet; members waiting to SyncGroup are members; static instance ids and the
    /// members that hold them map to each other; members share a protocol (every join is
    /// checked against the others' protocols, §3.4) and the group has a protocol type.
    fn check_membership(&self) {
        let id = &self.id;
        for (member_id, m) in &self.members {
            assert_eq!(
                member_id, &m.id,
                "group {id}: member filed under another id"
            );
            if let Some(instance) = &m.instance_id {
                assert_eq!(
                    self.static_members.get(instance),
                    Some(member_id),
                    "group {id}: member {member_id}'s instance id {instance} maps elsewhere"
                );
            }
        }
        for (instance, member_id) in &self.static_members {
            let holder = self.members.get(member_id).map(|m| m.instance_id.as_ref());
            assert_eq!(
                holder,
                Some(Some(instance)),
                "group {id}: instance id {instance} maps to {member_id}, not a member with it"
            );
        }
        if let Some(leader) = &self.leader {
            assert!(
                self.members.contains_key(leader),
                "group {id}: leader {leader} is not a member"
            );
        }
        for pending in self.pending.keys() {
            assert!(
                !self.members.contains_key(pending),
                "group {id}: pending member id {pending} is also a member"
            );
        }
        for waiting in &self.pending_sync {
            assert!(
                self.members.contains_key(waiting),
                "group {id}: {waiting} awaits a SyncGroup but is not a member"
            );
        }
        if !self.members.is_empty() {
            assert!(
                self.protocol_type.is_some(),
                "group {id}: members but no protocol type"
            );
            let common = self.members[0]
                .protocols
                .iter()
                .any(|(name, _)| self.supported_by_all(name));
            assert!(common, "group {id}: no protocol common to every member");
        }
    }

    fn supported_by_all(&self, protocol: &str) -> bool {
        self.members
            .values()
            .all(|m| m.protocols.iter().any(|(n, _)| n == protocol))
    }

    /// What each state holds: an Empty group has no members and no chosen protocol;
    /// CompletingRebalance and Stable have a leader and a protocol every member supports;
    /// the join timer runs exactly while PreparingRebalance; the sync timer and the members
    /// yet to SyncGroup exist only in CompletingRebalance and Stable; a new member extends
    /// the initial delay only in the first join phase.
    fn check_state(&self) {
        let (id, state) = (&self.id, self.state.name());
        let preparing = self.state == State::PreparingRebalance;
        let syncing = matches!(self.state, State::CompletingRebalance | State::Stable);
        match self.state {
            State::Empty => {
                assert!(self.members.is_empty(), "group {id}: Empty with members");
                assert!(
                    self.protocol_name.is_none(),
                    "group {id}: Empty with a chosen protocol"
                );
            }
            State::PreparingRebalance => {}
            State::CompletingRebalance | State::Stable => {
                assert!(
                    self.leader.is_some(),
                    "group {id}: {state} without a leader"
                );
                let protocol = self.protocol_name.as_deref();
                assert!(
                    protocol.is_some_and(|p| self.supported_by_all(p)),
                    "group {id}: {state} with protocol {protocol:?} not every member's"
                );
            }
        }
        assert_eq!(
            self.join_timer.is_some(),
            preparing,
            "group {id}: {state} and the join timer disagree"
        );
        if let Some(remaining) = self.join_timer.and_then(|t| t.remaining) {
            assert!(
                remaining >= DurationMs::ZERO,
                "group {id}: negative initial delay left"
            );
        }
        assert!(
            syncing || self.sync_timer.is_none(),
            "group {id}: sync timer in {state}"
        );
        assert!(
            syncing || self.pending_sync.is_empty(),
            "group {id}: members awaiting a SyncGroup in {state}"
        );
        assert!(
            !self.new_member_added || (preparing && self.generation == 0),
            "group {id}: new member flag outside the first join phase ({state})"
        );
    }

    /// Parked requests and deadlines: a JoinGroup is parked only while PreparingRebalance,
    /// a SyncGroup only while CompletingRebalance (and its member no longer counts as
    /// awaited); in CompletingRebalance each member is awaited or parked; a new member is
    /// one whose first JoinGroup is parked in the join phase; a member without a session
    /// deadline is an old one waiting for the answer to a parked request (its deadline is
    /// re-armed then). After `abort_parked` members may have lost their parked request.
    fn check_parked(&self, aborted: bool) {
        let (id, state) = (&self.id, self.state.name());
        let preparing = self.state == State::PreparingRebalance;
        let completing = self.state == State::CompletingRebalance;
        for m in self.members.values() {
            let member = &m.id;
            let parked = m.awaiting_join.is_some() || m.awaiting_sync.is_some();
            let awaited = self.pending_sync.contains(member);
            assert!(
                m.awaiting_join.is_none() || preparing,
                "group {id}: {member}'s JoinGroup parked in {state}"
            );
            assert!(
                m.awaiting_sync.is_none() || (completing && !awaited),
                "group {id}: {member}'s SyncGroup parked in {state} (awaited: {awaited})"
            );
            assert!(
                aborted || !completing || awaited || m.awaiting_sync.is_some(),
                "group {id}: {member} neither awaited nor parked in {state}"
            );
            assert!(
                !m.is_new || (preparing && (aborted || m.awaiting_join.is_some())),
                "group {id}: new member {member} not parked in the join phase ({state})"
            );
            assert!(
                m.session_deadline.is_some() || (!m.is_new && (aborted || parked)),
                "group {id}: {member} has no session deadline and waits for nothing"
            );
        }
    }
}
