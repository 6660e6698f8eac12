//! Tests of the pure group machine: scenarios driven with made-up time, and tables for the
//! error matrices (§ numbers refer to docs/design/group-protocol-notes.md).

use std::collections::HashMap;

use bytes::Bytes;

use super::machine::{Effects, Groups};
use super::record::Record;
use super::*;
use crate::types::{DurationMs, Offset, TimestampMs};

const G: &str = "g";

/// A test driver: the machine plus every reply and record it produced.
struct H {
    g: Groups,
    now: i64,
    token: Token,
    replies: HashMap<Token, Reply>,
    records: Vec<Record>,
}

fn config() -> GroupConfig {
    GroupConfig {
        initial_rebalance_delay_ms: DurationMs(3000),
        ..GroupConfig::default()
    }
}

fn proto(name: &str) -> Vec<(String, Bytes)> {
    vec![(name.to_string(), Bytes::from(format!("meta-{name}")))]
}

impl H {
    fn new() -> H {
        H::with(config())
    }

    fn with(c: GroupConfig) -> H {
        H {
            g: Groups::new(c, TimestampMs(0), 7),
            now: 0,
            token: 0,
            replies: HashMap::new(),
            records: Vec::new(),
        }
    }

    fn absorb(&mut self, fx: Effects) {
        for (t, r) in fx.replies {
            assert!(
                self.replies.insert(t, r).is_none(),
                "token {t} answered twice"
            );
        }
        self.records.extend(fx.records);
    }

    /// Moves the clock to `ms`, firing every deadline on the way, as the timer task does.
    fn advance(&mut self, ms: i64) {
        loop {
            let d = self.g.next_deadline().0;
            if d > ms {
                break;
            }
            self.now = d.max(self.now);
            let fx = self.g.tick(TimestampMs(self.now));
            self.absorb(fx);
        }
        self.now = ms;
    }

    fn join_req(
        &self,
        member: &str,
        instance: Option<&str>,
        protocols: Vec<(String, Bytes)>,
    ) -> JoinRequest {
        JoinRequest {
            group: G.into(),
            member_id: member.into(),
            instance_id: instance.map(Into::into),
            client_id: "client".into(),
            client_host: "/127.0.0.1".into(),
            session_timeout_ms: 10_000,
            rebalance_timeout_ms: 20_000,
            protocol_type: "consumer".into(),
            protocols,
            require_known_member_id: true,
            supports_skip_assignment: false,
        }
    }

    fn send_join(&mut self, req: JoinRequest) -> Token {
        self.token += 1;
        let t = self.token;
        let fx = self.g.join(TimestampMs(self.now), t, req);
        self.absorb(fx);
        t
    }

    fn join(&mut self, member: &str) -> Token {
        let req = self.join_req(member, None, proto("range"));
        self.send_join(req)
    }

    /// A dynamic member's full first join: MEMBER_ID_REQUIRED, then the rejoin (parked).
    fn join_new(&mut self) -> (String, Token) {
        let t = self.join("");
        let r = self.join_reply(t);
        assert_eq!(r.error, Some(GroupError::MemberIdRequired));
        let id = r.member_id;
        (id.clone(), self.join(&id))
    }

    fn sync(&mut self, member: &str, generation: i32, assignments: Vec<(&str, &str)>) -> Token {
        self.token += 1;
        let t = self.token;
        let req = SyncRequest {
            group: G.into(),
            member_id: member.into(),
            generation,
            assignments: assignments
                .into_iter()
                .map(|(m, a)| (m.to_string(), Bytes::from(a.to_string())))
                .collect(),
            ..SyncRequest::default()
        };
        let fx = self.g.sync(TimestampMs(self.now), t, req);
        self.absorb(fx);
        t
    }

    fn heartbeat(&mut self, member: &str, generation: i32) -> Result<(), GroupError> {
        let m = MemberRef {
            member_id: member.into(),
            instance_id: None,
            generation,
        };
        self.g.heartbeat(TimestampMs(self.now), G, &m)
    }

    fn join_reply(&self, t: Token) -> JoinReply {
        match self.replies.get(&t) {
            Some(Reply::Join(r)) => r.clone(),
            other => panic!("join {t} not answered: {other:?}"),
        }
    }

    fn sync_reply(&self, t: Token) -> SyncReply {
        match self.replies.get(&t) {
            Some(Reply::Sync(r)) => r.clone(),
            other => panic!("sync {t} not answered: {other:?}"),
        }
    }

    fn answered(&self, t: Token) -> bool {
        self.replies.contains_key(&t)
    }

    fn state(&self) -> &'static str {
        self.g.describe(G).map_or("Dead", |d| d.state)
    }

    /// Two members joined and synced: (leader, follower, generation).
    fn stable_pair(&mut self) -> (String, String, i32) {
        let (a, ta) = self.join_new();
        let (b, tb) = self.join_new();
        // b arrived during the initial delay, which extends it once (§4.3).
        self.advance(self.now + 6000);
        let (ra, rb) = (self.join_reply(ta), self.join_reply(tb));
        assert_eq!(ra.leader, a);
        assert_eq!(ra.generation, rb.generation);
        let gen = ra.generation;
        let sb = self.sync(&b, gen, vec![]);
        let sa = self.sync(&a, gen, vec![(&a, "pa"), (&b, "pb")]);
        assert_eq!(self.sync_reply(sa).assignment, Bytes::from("pa"));
        assert_eq!(self.sync_reply(sb).assignment, Bytes::from("pb"));
        assert_eq!(self.state(), "Stable");
        (a, b, gen)
    }

    fn commit(&mut self, member: &str, generation: i32, offset: i64) -> Result<(), GroupError> {
        let req = CommitRequest {
            group: G.into(),
            member: MemberRef {
                member_id: member.into(),
                instance_id: None,
                generation,
            },
            retention_ms: None,
            group_id_not_found: false,
            offsets: vec![OffsetToCommit {
                topic: "t".into(),
                partition: 0,
                offset: Offset(offset),
                leader_epoch: 3,
                metadata: Some("m".into()),
            }],
        };
        let (mut r, fx) = self.g.commit(TimestampMs(self.now), req);
        self.absorb(fx);
        r.pop().expect("one result")
    }

    fn committed(&self) -> Option<i64> {
        let topics = Some(vec![("t".to_string(), vec![0])]);
        self.g.fetch_offsets(G, topics)[0].1[0]
            .1
            .as_ref()
            .map(|c| c.offset.get())
    }
}

#[test]
fn first_join_needs_a_member_id_then_waits_the_initial_delay() {
    let mut h = H::new();
    let (a, t) = h.join_new();
    assert!(a.starts_with("client-"), "{a}");
    assert_eq!(h.state(), "PreparingRebalance");
    h.advance(2999);
    assert!(
        !h.answered(t),
        "the initial delay holds the first rebalance"
    );
    h.advance(3000);
    let r = h.join_reply(t);
    assert_eq!(
        (r.error, r.generation, r.leader.as_str()),
        (None, 1, a.as_str())
    );
    assert_eq!(r.protocol_name.as_deref(), Some("range"));
    assert_eq!(r.members.len(), 1, "the leader gets the member list");
    assert_eq!(h.state(), "CompletingRebalance");
}

#[test]
fn members_arriving_during_the_initial_delay_extend_it_up_to_the_rebalance_timeout() {
    let mut h = H::new();
    let (_, t1) = h.join_new();
    h.advance(2000);
    let (_, t2) = h.join_new(); // arrives during the delay: extends by one delay
    h.advance(3000);
    assert!(!h.answered(t1) && !h.answered(t2));
    h.advance(5999);
    assert!(!h.answered(t1));
    h.advance(6000);
    assert_eq!(h.join_reply(t1).generation, 1);
    assert_eq!(h.join_reply(t2).generation, 1);
}

#[test]
fn leader_assigns_and_followers_wait_in_sync() {
    let mut h = H::new();
    let (a, b, gen) = h.stable_pair();
    assert_eq!(gen, 1);
    assert_eq!(h.heartbeat(&a, gen), Ok(()));
    assert_eq!(h.heartbeat(&b, gen), Ok(()));
    // A follower rejoining with the same metadata in Stable changes nothing.
    let t = h.join(&b);
    let r = h.join_reply(t);
    assert_eq!((r.generation, r.members.len()), (gen, 0));
    assert_eq!(h.state(), "Stable");
    // The leader rejoining forces a rebalance.
    let t = h.join(&a);
    assert!(!h.answered(t));
    assert_eq!(h.state(), "PreparingRebalance");
    assert_eq!(h.heartbeat(&b, gen), Err(GroupError::RebalanceInProgress));
    let tb = h.join(&b);
    assert_eq!(
        h.join_reply(tb).generation,
        gen + 1,
        "all joined: completes at once"
    );
    assert_eq!(h.join_reply(t).members.len(), 2);
}

#[test]
fn heartbeat_errors_follow_kafka() {
    let mut h = H::new();
    let (a, _, gen) = h.stable_pair();
    let cases: &[(&str, i32, Option<GroupError>)] = &[
        (&a, gen, None),
        (&a, gen + 1, Some(GroupError::IllegalGeneration)),
        ("nobody", gen, Some(GroupError::UnknownMemberId)),
    ];
    for (member, generation, want) in cases {
        assert_eq!(
            h.heartbeat(member, *generation).err(),
            *want,
            "{member} gen {generation}"
        );
    }
    assert_eq!(
        h.g.heartbeat(TimestampMs(h.now), "", &MemberRef::default()),
        Err(GroupError::InvalidGroupId)
    );
}

#[test]
fn a_rebalance_answers_parked_syncs_with_rebalance_in_progress() {
    let mut h = H::new();
    let (_, ta) = h.join_new();
    let (b, tb) = h.join_new();
    h.advance(6000);
    let gen = h.join_reply(ta).generation;
    assert_eq!(h.join_reply(tb).generation, gen);
    let sb = h.sync(&b, gen, vec![]);
    assert!(!h.answered(sb), "the follower waits for the leader");
    let (_, tc) = h.join_new(); // a third member arrives before the leader syncs
    assert_eq!(
        h.sync_reply(sb).error,
        Some(GroupError::RebalanceInProgress)
    );
    assert!(!h.answered(tc));
    assert_eq!(h.state(), "PreparingRebalance");
}

#[test]
fn a_member_that_stops_heartbeating_is_removed_and_the_group_rebalances() {
    let mut h = H::new();
    let (a, b, gen) = h.stable_pair();
    // a keeps heart-beating, b goes silent (session timeout 10 s).
    let start = h.now;
    for t in (1..=9).map(|i| start + i * 1000) {
        h.advance(t);
        let _ = h.heartbeat(&a, gen);
    }
    h.advance(h.now + 1500);
    assert_eq!(h.heartbeat(&b, gen), Err(GroupError::UnknownMemberId));
    assert_eq!(h.heartbeat(&a, gen), Err(GroupError::RebalanceInProgress));
    let t = h.join(&a);
    let r = h.join_reply(t);
    assert_eq!((r.generation, r.members.len()), (gen + 1, 1));
}

#[test]
fn members_that_do_not_rejoin_are_dropped_at_the_rebalance_timeout() {
    let mut h = H::new();
    let (a, b, _) = h.stable_pair();
    let ta = h.join(&a);
    // b heart-beats (told to rejoin) but never rejoins; the rebalance timeout is 20 s.
    let start = h.now;
    for t in (1..20).map(|i| start + i * 1000) {
        h.advance(t);
        assert_eq!(h.heartbeat(&b, 1), Err(GroupError::RebalanceInProgress));
    }
    h.advance(start + 19_999);
    assert!(!h.answered(ta));
    h.advance(start + 20_000);
    let r = h.join_reply(ta);
    assert_eq!(r.members.len(), 1);
    assert_eq!(
        h.heartbeat(&b, r.generation),
        Err(GroupError::UnknownMemberId)
    );
}

#[test]
fn a_member_that_does_not_sync_in_time_is_removed() {
    let mut h = H::new();
    let (a, ta) = h.join_new();
    let (b, tb) = h.join_new();
    h.advance(6000);
    let gen = h.join_reply(ta).generation;
    let _ = h.join_reply(tb);
    let sa = h.sync(&a, gen, vec![(&a, "x"), (&b, "y")]);
    assert_eq!(h.sync_reply(sa).error, None);
    // b never syncs: after the rebalance timeout it is dropped and the group rebalances.
    for t in (1..=20).map(|i| 6000 + i * 1000) {
        h.advance(t);
        let _ = h.heartbeat(&a, gen);
    }
    assert_eq!(h.heartbeat(&a, gen), Err(GroupError::RebalanceInProgress));
    let t = h.join(&a);
    assert_eq!(h.join_reply(t).members.len(), 1);
}

#[test]
fn leaving_members_rebalance_the_group_and_the_last_one_empties_it() {
    let mut h = H::new();
    let (a, b, gen) = h.stable_pair();
    let leave = |h: &mut H, m: &str| {
        let refs = [MemberRef {
            member_id: m.into(),
            ..MemberRef::default()
        }];
        let (r, fx) = h.g.leave(TimestampMs(h.now), G, &refs);
        h.absorb(fx);
        r.unwrap().pop().unwrap()
    };
    assert_eq!(leave(&mut h, &b), Ok(()));
    assert_eq!(leave(&mut h, &b), Err(GroupError::UnknownMemberId));
    assert_eq!(h.state(), "PreparingRebalance");
    assert_eq!(leave(&mut h, &a), Ok(()));
    assert_eq!(h.state(), "Empty");
    let d = h.g.describe(G).unwrap();
    assert!(d.members.is_empty());
    let stored = h.records.iter().rev().find_map(|r| match r {
        Record::Group { value: Some(g), .. } => Some(g.generation),
        _ => None,
    });
    assert_eq!(stored, Some(gen + 1), "the empty generation is persisted");
}

#[test]
fn static_member_rejoining_takes_over_without_a_rebalance() {
    let mut h = H::new();
    let req = h.join_req("", Some("inst-1"), proto("range"));
    let t = h.send_join(req.clone());
    h.advance(3000);
    let r = h.join_reply(t);
    let old = r.member_id.clone();
    assert!(
        old.starts_with("inst-1-"),
        "static members skip MEMBER_ID_REQUIRED: {old}"
    );
    let s = h.sync(&old, r.generation, vec![(&old, "mine")]);
    assert_eq!(h.sync_reply(s).assignment, Bytes::from("mine"));
    // The instance restarts: same instance id, no member id.
    let t2 = h.send_join(req);
    let r2 = h.join_reply(t2);
    assert_eq!(r2.generation, r.generation, "no rebalance");
    assert_ne!(r2.member_id, old);
    assert_eq!(
        r2.leader, old,
        "a returning static leader is not told to assign again"
    );
    let s2 = h.sync(&r2.member_id, r2.generation, vec![]);
    assert_eq!(h.sync_reply(s2).assignment, Bytes::from("mine"));
    // The old incarnation is fenced.
    let stale = MemberRef {
        member_id: old,
        instance_id: Some("inst-1".into()),
        generation: r.generation,
    };
    assert_eq!(
        h.g.heartbeat(TimestampMs(h.now), G, &stale),
        Err(GroupError::FencedInstanceId)
    );
}

#[test]
fn inconsistent_protocols_are_refused() {
    let mut h = H::new();
    let (a, _, _) = h.stable_pair();
    let mut req = h.join_req("", None, proto("roundrobin"));
    req.require_known_member_id = false;
    let t = h.send_join(req);
    assert_eq!(
        h.join_reply(t).error,
        Some(GroupError::InconsistentGroupProtocol)
    );
    let mut req = h.join_req(&a, None, proto("range"));
    req.protocol_type = "connect".into();
    let t = h.send_join(req);
    assert_eq!(
        h.join_reply(t).error,
        Some(GroupError::InconsistentGroupProtocol)
    );
}

#[test]
fn protocol_selection_takes_the_most_preferred_common_protocol() {
    let mut h = H::new();
    let both = |first: &str, second: &str| {
        let mut p = proto(first);
        p.extend(proto(second));
        p
    };
    let mut r1 = h.join_req("", None, both("cooperative-sticky", "range"));
    r1.require_known_member_id = false;
    let t1 = h.send_join(r1);
    let mut r2 = h.join_req("", None, both("range", "cooperative-sticky"));
    r2.require_known_member_id = false;
    let _ = h.send_join(r2);
    let mut r3 = h.join_req("", None, both("range", "roundrobin"));
    r3.require_known_member_id = false;
    let _ = h.send_join(r3);
    h.advance(10_000);
    assert_eq!(h.join_reply(t1).protocol_name.as_deref(), Some("range"));
}

#[test]
fn session_timeouts_outside_the_bounds_are_refused() {
    let mut h = H::new();
    for ms in [5999, 1_800_001] {
        let mut req = h.join_req("", None, proto("range"));
        req.session_timeout_ms = ms;
        let t = h.send_join(req);
        assert_eq!(
            h.join_reply(t).error,
            Some(GroupError::InvalidSessionTimeout)
        );
    }
}

#[test]
fn offset_commit_validation_matrix() {
    use GroupError::*;
    // (setup, member, generation, expected)
    type Case = (&'static str, &'static str, i32, Result<(), GroupError>);
    let cases: &[Case] = &[
        ("absent", "", -1, Ok(())),
        ("absent", "m", 1, Err(IllegalGeneration)),
        ("stable", "leader", 1, Ok(())),
        ("stable", "leader", 2, Err(IllegalGeneration)),
        ("stable", "nobody", 1, Err(UnknownMemberId)),
        ("stable", "", -1, Err(UnknownMemberId)),
        ("completing", "leader", 1, Err(RebalanceInProgress)),
        ("preparing", "leader", 1, Ok(())),
    ];
    for (setup, member, generation, want) in cases {
        let mut h = H::new();
        let mut leader = String::new();
        match *setup {
            "absent" => {}
            "stable" => leader = h.stable_pair().0,
            "completing" => {
                let (a, _) = h.join_new();
                h.advance(3000);
                leader = a;
            }
            "preparing" => {
                leader = h.stable_pair().0;
                let _ = h.join(&leader);
            }
            _ => unreachable!(),
        }
        let member = if *member == "leader" {
            leader.as_str()
        } else {
            member
        };
        assert_eq!(
            h.commit(member, *generation, 10),
            *want,
            "{setup} {member} {generation}"
        );
        assert_eq!(h.committed().is_some(), want.is_ok(), "{setup}");
    }
    // v9+ tells an unknown group apart.
    let mut h = H::new();
    let req = CommitRequest {
        group: G.into(),
        member: MemberRef {
            member_id: "m".into(),
            instance_id: None,
            generation: 3,
        },
        group_id_not_found: true,
        offsets: vec![],
        ..CommitRequest::default()
    };
    let (r, _) = h.g.commit(TimestampMs(0), req);
    assert!(r.is_empty());
}

#[test]
fn oversized_offset_metadata_is_refused_per_partition() {
    let mut h = H::new();
    let req = CommitRequest {
        group: G.into(),
        member: MemberRef {
            generation: -1,
            ..MemberRef::default()
        },
        offsets: vec![OffsetToCommit {
            topic: "t".into(),
            partition: 0,
            offset: Offset(1),
            leader_epoch: -1,
            metadata: Some("x".repeat(4097)),
        }],
        ..CommitRequest::default()
    };
    let (r, fx) = h.g.commit(TimestampMs(0), req);
    assert_eq!(r, vec![Err(GroupError::OffsetMetadataTooLarge)]);
    assert!(fx.records.is_empty());
}

#[test]
fn delete_group_and_offset_delete_by_state() {
    let mut h = H::new();
    let (_, _, gen) = h.stable_pair();
    let (a, _) = {
        let d = h.g.describe(G).unwrap();
        (d.members[0].member_id.clone(), ())
    };
    assert_eq!(h.commit(&a, gen, 5), Ok(()));
    assert_eq!(h.g.delete_group(G).0, Err(GroupError::NonEmptyGroup));
    // Subscriptions are not parseable here (fake metadata): treated as every topic.
    let (r, _) = h.g.delete_offsets(G, vec![("t".into(), vec![0])]);
    assert_eq!(
        r.unwrap()[0].1[0].1,
        Err(GroupError::GroupSubscribedToTopic)
    );
    assert_eq!(h.g.delete_group("nope").0, Err(GroupError::GroupIdNotFound));
    // A standalone (simple) group is Empty: both deletions work.
    let mut h = H::new();
    assert_eq!(h.commit("", -1, 7), Ok(()));
    let (r, fx) = h.g.delete_offsets(G, vec![("t".into(), vec![0])]);
    assert_eq!(r.unwrap()[0].1[0].1, Ok(()));
    assert_eq!(fx.records.len(), 1);
    assert_eq!(h.committed(), None);
    assert_eq!(h.g.delete_group(G).0, Ok(()));
    assert_eq!(h.state(), "Dead");
}

#[test]
fn fetch_offsets_of_unknown_groups_and_partitions_is_empty_not_an_error() {
    let h = H::new();
    let got =
        h.g.fetch_offsets("nobody", Some(vec![("t".into(), vec![0, 1])]));
    assert_eq!(got, vec![("t".to_string(), vec![(0, None), (1, None)])]);
    assert!(h.g.fetch_offsets("nobody", None).is_empty());
}

#[test]
fn offsets_of_empty_groups_expire_after_retention() {
    let mut c = config();
    c.offsets_retention_ms = DurationMs(60_000);
    c.offsets_retention_check_ms = DurationMs(1000);
    let mut h = H::with(c);
    assert_eq!(h.commit("", -1, 7), Ok(()));
    h.advance(59_000);
    assert_eq!(h.committed(), Some(7));
    h.advance(61_000);
    assert_eq!(h.committed(), None);
    assert_eq!(
        h.state(),
        "Dead",
        "an empty group without offsets goes away"
    );
    assert!(matches!(
        h.records.last(),
        Some(Record::Group { value: None, .. })
    ));
}

#[test]
fn replaying_the_records_rebuilds_groups_and_offsets() {
    let mut h = H::new();
    let (a, b, gen) = h.stable_pair();
    assert_eq!(h.commit(&a, gen, 42), Ok(()));
    let mut fresh = Groups::new(config(), TimestampMs(h.now), 9);
    for r in h.records.clone() {
        fresh.replay(TimestampMs(h.now), r);
    }
    assert_eq!(fresh.describe(G), h.g.describe(G));
    assert_eq!(fresh.fetch_offsets(G, None), h.g.fetch_offsets(G, None));
    // Members keep their generation across the restart.
    let m = MemberRef {
        member_id: b.clone(),
        instance_id: None,
        generation: gen,
    };
    assert_eq!(fresh.heartbeat(TimestampMs(h.now), G, &m), Ok(()));
    // And a snapshot of the live state replays to the same.
    let mut again = Groups::new(config(), TimestampMs(h.now), 11);
    for r in fresh.snapshot(|_| true) {
        again.replay(TimestampMs(h.now), r);
    }
    assert_eq!(again.describe(G), h.g.describe(G));
    assert_eq!(again.fetch_offsets(G, None), h.g.fetch_offsets(G, None));
}

#[test]
fn a_deleted_group_stays_deleted_after_replay() {
    let mut h = H::new();
    assert_eq!(h.commit("", -1, 1), Ok(()));
    let (r, fx) = h.g.delete_group(G);
    assert_eq!(r, Ok(()));
    h.absorb(fx);
    let mut fresh = Groups::new(config(), TimestampMs(0), 1);
    for r in h.records.clone() {
        fresh.replay(TimestampMs(0), r);
    }
    assert!(fresh.describe(G).is_none());
}

#[test]
fn every_parked_request_is_answered_on_shutdown() {
    let mut h = H::new();
    let (_, t) = h.join_new();
    let fx = h.g.abort_parked();
    h.absorb(fx);
    assert_eq!(
        h.join_reply(t).error,
        Some(GroupError::CoordinatorNotAvailable)
    );
}

#[test]
fn pending_member_ids_expire_and_do_not_block_the_join() {
    let mut h = H::new();
    let (a, b, gen) = h.stable_pair();
    let t = h.join(""); // MEMBER_ID_REQUIRED, never rejoins
    assert_eq!(h.join_reply(t).error, Some(GroupError::MemberIdRequired));
    let ta = h.join(&a);
    let tb = h.join(&b);
    assert!(!h.answered(ta), "waits for the pending member");
    h.advance(h.now + 10_000); // its session timeout
    assert_eq!(h.join_reply(ta).generation, gen + 1);
    assert_eq!(h.join_reply(tb).generation, gen + 1);
}

#[test]
fn a_refused_first_join_leaves_no_group_behind() {
    let mut h = H::new();
    let mut req = h.join_req("", None, proto("range"));
    req.protocols.clear(); // no protocols: inconsistent
    let t = h.send_join(req);
    assert_eq!(
        h.join_reply(t).error,
        Some(GroupError::InconsistentGroupProtocol)
    );
    assert!(h.g.describe(G).is_none());
    assert!(h.g.list().is_empty());
}

#[test]
fn a_pending_member_id_cannot_become_static() {
    let mut h = H::new();
    let t = h.join("");
    let id = h.join_reply(t).member_id;
    let req = h.join_req(&id, Some("inst"), proto("range"));
    let t = h.send_join(req);
    assert_eq!(h.join_reply(t).error, Some(GroupError::UnknownMemberId));
}

/// The panic message of `f`, which must panic.
fn panic_message(f: impl FnOnce()) -> String {
    let payload = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f))
        .expect_err("expected a failed invariant");
    match payload.downcast::<String>() {
        Ok(s) => *s,
        Err(p) => p
            .downcast::<&str>()
            .map_or_else(|_| String::new(), |s| s.to_string()),
    }
}

#[test]
fn check_invariants_catches_broken_states() {
    use super::machine::{Group, State};
    type Corrupt = fn(&mut Group);
    fn follower(g: &mut Group) -> &mut super::machine::Member {
        let leader = g.leader.clone();
        g.members
            .values_mut()
            .find(|m| Some(&m.id) != leader.as_ref())
            .expect("a follower")
    }
    let cases: &[(&str, Corrupt)] = &[
        ("leader ghost is not a member", |g| {
            g.leader = Some("ghost".into())
        }),
        ("generation went back", |g| g.generation -= 1),
        ("SyncGroup parked in Stable", |g| {
            follower(g).awaiting_sync = Some(99)
        }),
        ("JoinGroup parked in Stable", |g| {
            follower(g).awaiting_join = Some(99)
        }),
        ("Empty with members", |g| g.state = State::Empty),
        ("Stable and the join timer disagree", |g| {
            g.join_timer = Some(super::machine::JoinTimer {
                deadline: TimestampMs(0),
                remaining: None,
            })
        }),
        ("instance id i maps to ghost", |g| {
            g.static_members.insert("i".into(), "ghost".into());
        }),
        ("maps elsewhere", |g| {
            follower(g).instance_id = Some("i".into())
        }),
        ("is also a member", |g| {
            let id = follower(g).id.clone();
            g.pending.insert(id, TimestampMs(0));
        }),
        ("no session deadline and waits for nothing", |g| {
            follower(g).session_deadline = None
        }),
        ("no protocol common to every member", |g| {
            follower(g).protocols = proto("other")
        }),
        ("not every member's", |g| {
            g.protocol_name = Some("other".into())
        }),
        ("awaits a SyncGroup but is not a member", |g| {
            g.pending_sync.insert("ghost".into());
        }),
    ];
    for (want, corrupt) in cases {
        let mut h = H::new();
        h.stable_pair();
        h.g.check_invariants(); // sound as the machine left it
        corrupt(h.g.groups.get_mut(G).expect("the group"));
        let message = panic_message(|| h.g.check_invariants());
        assert!(message.contains(want), "want {want:?}, got {message:?}");
    }
}

#[test]
fn a_shutdown_relaxes_only_the_parked_request_invariants() {
    let mut h = H::new();
    let (_, ta) = h.join_new();
    let (b, tb) = h.join_new();
    h.advance(6000);
    let gen = h.join_reply(ta).generation;
    let _ = h.join_reply(tb);
    let sb = h.sync(&b, gen, vec![]);
    assert_eq!(h.state(), "CompletingRebalance");
    // The follower's SyncGroup is answered for shutdown: it is no longer awaited nor parked.
    let fx = h.g.abort_parked();
    h.absorb(fx);
    assert_eq!(
        h.sync_reply(sb).error,
        Some(GroupError::CoordinatorNotAvailable)
    );
    // Calls still served while connections drain keep being checked.
    let refs = [MemberRef {
        member_id: b.clone(),
        ..MemberRef::default()
    }];
    let (r, fx) = h.g.leave(TimestampMs(h.now), G, &refs);
    h.absorb(fx);
    assert_eq!(r, Ok(vec![Ok(())]));
    assert_eq!(h.state(), "PreparingRebalance");
    let g = h.g.groups.get_mut(G).expect("the group");
    g.leader = Some("ghost".into());
    let message = panic_message(|| h.g.check_invariants());
    assert!(message.contains("is not a member"), "{message}");
}

/// One call of a random client population (random_calls_keep_the_invariants). Members are
/// picked by index among the ids the clients were given, so some are gone or fenced.
#[derive(Debug, Clone)]
enum Op {
    JoinNew {
        instance: Option<u8>,
        known_required: bool,
        protocols: u8,
    },
    Rejoin {
        member: usize,
        protocols: u8,
    },
    Sync {
        member: usize,
        assign: bool,
        stale: bool,
    },
    /// The leader of the newest generation assigns.
    LeaderSyncs,
    Heartbeat {
        member: usize,
        stale: bool,
    },
    /// Every known member heart-beats, and those told to rejoin do.
    Everyone,
    Leave {
        member: usize,
    },
    LeaveStatic {
        instance: u8,
    },
    Commit {
        member: usize,
    },
    Advance {
        ms: i64,
    },
    /// Replays the records so far into a fresh machine, then a snapshot of it into another.
    Replay,
    Abort,
}

fn op() -> impl proptest::strategy::Strategy<Value = Op> {
    use proptest::prelude::*;
    let join_new = (proptest::option::of(0u8..3), any::<bool>(), 0u8..3).prop_map(
        |(instance, known_required, protocols)| Op::JoinNew {
            instance,
            known_required,
            protocols,
        },
    );
    prop_oneof![
        40 => join_new,
        40 => (0usize..8, 0u8..3).prop_map(|(member, protocols)| Op::Rejoin { member, protocols }),
        40 => (0usize..8, any::<bool>(), proptest::bool::weighted(0.1))
            .prop_map(|(member, assign, stale)| Op::Sync { member, assign, stale }),
        20 => Just(Op::LeaderSyncs),
        30 => (0usize..8, proptest::bool::weighted(0.1))
            .prop_map(|(member, stale)| Op::Heartbeat { member, stale }),
        30 => Just(Op::Everyone),
        10 => (0usize..8).prop_map(|member| Op::Leave { member }),
        10 => (0u8..3).prop_map(|instance| Op::LeaveStatic { instance }),
        10 => (0usize..8).prop_map(|member| Op::Commit { member }),
        40 => prop_oneof![4 => 0i64..4000, 1 => 0i64..25_000].prop_map(|ms| Op::Advance { ms }),
        15 => Just(Op::Replay),
        1 => Just(Op::Abort),
    ]
}

/// What the random clients know: the member ids handed out, the newest generation and its
/// leader.
#[derive(Default)]
struct Clients {
    ids: Vec<String>,
    generation: i32,
    leader: String,
}

impl Clients {
    fn member(&self, i: usize) -> Option<String> {
        self.ids.get(i % self.ids.len().max(1)).cloned()
    }

    /// An assignment for every known member.
    fn assignments(&self) -> Vec<(&str, &str)> {
        self.ids.iter().map(|m| (m.as_str(), "a")).collect()
    }

    fn learn(&mut self, replies: &HashMap<Token, Reply>) {
        for r in replies.values() {
            let Reply::Join(j) = r else { continue };
            if !j.member_id.is_empty() && !self.ids.contains(&j.member_id) {
                self.ids.push(j.member_id.clone());
            }
            if j.error.is_none() && j.generation >= self.generation {
                self.generation = j.generation;
                self.leader = j.leader.clone();
            }
        }
    }
}

fn protocols(p: u8) -> Vec<(String, Bytes)> {
    match p {
        0 => proto("range"),
        1 => {
            let mut both = proto("range");
            both.extend(proto("roundrobin"));
            both
        }
        _ => proto("roundrobin"),
    }
}

impl H {
    /// Runs one random call; the machine checks its invariants after each.
    fn run(&mut self, op: Op, c: &mut Clients) {
        match op {
            Op::JoinNew {
                instance,
                known_required,
                protocols: p,
            } => {
                let instance = instance.map(|i| format!("inst-{i}"));
                let mut req = self.join_req("", instance.as_deref(), protocols(p));
                req.require_known_member_id = known_required;
                self.send_join(req);
            }
            Op::Rejoin {
                member,
                protocols: p,
            } => {
                if let Some(id) = c.member(member) {
                    self.send_join(self.join_req(&id, None, protocols(p)));
                }
            }
            Op::Sync {
                member,
                assign,
                stale,
            } => {
                if let Some(id) = c.member(member) {
                    let given = if assign { c.assignments() } else { vec![] };
                    self.sync(&id, c.generation - i32::from(stale), given);
                }
            }
            Op::LeaderSyncs => {
                self.sync(&c.leader, c.generation, c.assignments());
            }
            Op::Heartbeat { member, stale } => {
                if let Some(id) = c.member(member) {
                    let _ = self.heartbeat(&id, c.generation - i32::from(stale));
                }
            }
            op => self.run_more(op, c),
        }
        c.learn(&self.replies);
    }

    fn run_more(&mut self, op: Op, c: &Clients) {
        let leave = |h: &mut H, member_id: String, instance_id: Option<String>| {
            let refs = [MemberRef {
                member_id,
                instance_id,
                generation: -1,
            }];
            let (_, fx) = h.g.leave(TimestampMs(h.now), G, &refs);
            h.absorb(fx);
        };
        match op {
            Op::Everyone => {
                for id in &c.ids {
                    if self.heartbeat(id, c.generation) == Err(GroupError::RebalanceInProgress) {
                        self.send_join(self.join_req(id, None, protocols(0)));
                    }
                }
            }
            Op::Leave { member } => {
                if let Some(id) = c.member(member) {
                    leave(self, id, None);
                }
            }
            Op::LeaveStatic { instance } => {
                leave(self, String::new(), Some(format!("inst-{instance}")))
            }
            Op::Commit { member } => {
                let _ = self.commit(&c.member(member).unwrap_or_default(), c.generation, 1);
            }
            Op::Advance { ms } => self.advance(self.now + ms),
            Op::Replay => {
                let now = TimestampMs(self.now);
                let mut fresh = Groups::new(config(), now, 3);
                for r in self.records.clone() {
                    fresh.replay(now, r);
                }
                let mut again = Groups::new(config(), now, 5);
                for r in fresh.snapshot(|_| true) {
                    again.replay(now, r);
                }
            }
            Op::Abort => {
                let fx = self.g.abort_parked();
                self.absorb(fx);
            }
            _ => unreachable!("handled by run"),
        }
    }
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig { cases: 1024, ..Default::default() })]
    /// Random calls from a small population of dynamic and static members, with time passing:
    /// the machine asserts its invariants after every one, and once left alone long enough it
    /// has answered every request it parked.
    #[test]
    fn random_calls_keep_the_invariants(ops in proptest::collection::vec(op(), 1..150)) {
        let mut h = H::new();
        let mut clients = Clients::default();
        for op in ops {
            h.run(op, &mut clients);
        }
        h.advance(h.now + 3_600_000);
        for t in 1..=h.token {
            proptest::prop_assert!(h.answered(t), "token {} still parked", t);
        }
    }
}

#[test]
fn unloading_a_log_answers_parked_requests_not_coordinator_and_its_records_rebuild_the_group() {
    // In a cluster the group log's leadership moves: this coordinator forgets the group, and
    // the next one rebuilds it from the replicated records.
    let mut h = H::new();
    let (a, _b, gen) = h.stable_pair();
    assert_eq!(h.commit(&a, gen, 5), Ok(()));
    let (_c, parked) = h.join_new();
    assert!(
        !h.answered(parked),
        "a new member's join waits for the others"
    );
    let fx = h.g.unload(|g| g == G);
    h.absorb(fx);
    assert_eq!(h.join_reply(parked).error, Some(GroupError::NotCoordinator));
    assert_eq!(h.state(), "Dead");
    assert_eq!(h.committed(), None);

    let mut next = H::new();
    for r in h.records.clone() {
        next.g.replay(TimestampMs(h.now), r);
    }
    assert_eq!(next.state(), "Stable");
    assert_eq!(next.committed(), Some(5));
    assert_eq!(
        next.heartbeat(&a, gen),
        Ok(()),
        "members carry on at their generation"
    );
}
