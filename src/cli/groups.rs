//! `shardlog groups list|describe`: the `kafka-consumer-groups --list/--describe` views, so an
//! operator can see which groups exist, who consumes what, and how far behind they are.
//!
//! `delete` removes inactive groups with their offsets (DeleteGroups at each group's
//! coordinator); `reset-offsets` lives in [`super::reset`].
//!
//! `describe` asks the group's coordinator (FindCoordinator) for the members and their
//! assignments (DescribeGroups) and the committed offsets (OffsetFetch, all topics), then the
//! bootstrap broker for the log end offsets (ListOffsets, latest; in a cluster, the leaders
//! of the partitions it does not lead). One row per partition that is committed or assigned.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use bytes::{Buf, Bytes};
use clap::Subcommand;
use kafka_protocol::messages::describe_groups_response::DescribedGroup;
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, Message, StrBytes};

use super::table::{self, num};
use super::{check, eprint_line, print, CliError, Conn};
use crate::client::Client;

/// Version ranges we can encode; the highest the broker also serves is used. FindCoordinator
/// stops at 3 (v4+ batch the keys), OffsetFetch at 7 (v8+ batch the groups).
const FIND_COORDINATOR: (i16, i16) = (1, 3);
const DESCRIBE_GROUPS: (i16, i16) = (0, 6);
const LIST_GROUPS: (i16, i16) = (0, 5);
/// ListGroups answers with each group's state from this version on.
const LIST_GROUPS_WITH_STATE: i16 = 4;
const OFFSET_FETCH: (i16, i16) = (2, 7);
const LIST_OFFSETS: (i16, i16) = (1, 7);
const KEY_TYPE_GROUP: i8 = 0;
const GROUP_ID_NOT_FOUND: i16 = 69;
const DELETE_GROUPS: (i16, i16) = (0, 2);
/// ListOffsets' timestamp for the log end offset.
pub const LATEST: i64 = -1;
/// ListOffsets' timestamp for the log start offset.
pub const EARLIEST: i64 = -2;
const NON_EMPTY_GROUP: i16 = 68;

/// The describe table's columns, as `kafka-consumer-groups --describe` prints them.
pub const HEADER: [&str; 9] = [
    "GROUP",
    "TOPIC",
    "PARTITION",
    "CURRENT-OFFSET",
    "LOG-END-OFFSET",
    "LAG",
    "CONSUMER-ID",
    "HOST",
    "CLIENT-ID",
];

/// What `shardlog groups` does.
#[derive(Subcommand, Debug, Clone)]
pub enum Action {
    /// Print consumer group ids, one per line
    List {
        /// Also print each group's state; with values (e.g. --state Stable,Empty) list only
        /// groups in those states
        #[arg(long, num_args = 0.., value_delimiter = ',', value_name = "STATE")]
        state: Option<Vec<String>>,
    },
    /// Show each group's partitions: committed offset, log end offset, lag and owner
    Describe {
        /// Consumer groups to describe, one table each
        #[arg(value_name = "GROUP", required = true)]
        groups: Vec<String>,
    },
    /// Move a group's committed offsets (to the earliest or latest offset, a time, an offset,
    /// or by a number of records); the group must have no active members. Prints
    /// GROUP TOPIC PARTITION NEW-OFFSET CURRENT-OFFSET; commits only with --execute
    ResetOffsets(super::reset::ResetArgs),
    /// Delete consumer groups with their committed offsets (only groups with no active
    /// members); prints `Deleted group G.` per group
    Delete {
        /// A group to delete (repeatable)
        #[arg(long = "group", value_name = "GROUP", required = true)]
        groups: Vec<String>,
    },
}

/// Runs one `groups` action against the broker `conn` names; a `describe` of several groups
/// reports each failed group on stderr and fails with [`CliError::Partial`] at the end.
pub fn run(conn: &Conn, action: Action) -> Result<(), CliError> {
    let mut c = conn.connect()?;
    match action {
        Action::List { state } => list(&mut c, state.as_deref()),
        Action::Describe { groups } => describe_all(conn, &mut c, &groups),
        Action::ResetOffsets(args) => super::reset::run(conn, &mut c, &args),
        Action::Delete { groups } => delete_all(conn, &mut c, &groups),
    }
}

fn str_bytes(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

fn list(c: &mut Client, state: Option<&[String]>) -> Result<(), CliError> {
    let lo = if state.is_some() {
        LIST_GROUPS_WITH_STATE
    } else {
        LIST_GROUPS.0
    };
    let version = c.version(ApiKey::ListGroups, lo, LIST_GROUPS.1)?;
    let resp: ListGroupsResponse =
        c.call(ApiKey::ListGroups, version, &ListGroupsRequest::default())?;
    check(|| "listing groups".into(), resp.error_code, None)?;
    print(&list_output(&resp, state))
}

/// `groups list` output: consumer groups (protocol type "consumer", or "" for groups that only
/// commit offsets), sorted. With `state`, a GROUP/STATE table filtered to those states (any
/// state when the list is empty).
pub fn list_output(resp: &ListGroupsResponse, state: Option<&[String]>) -> String {
    let mut groups: Vec<(&str, &str)> = resp
        .groups
        .iter()
        .filter(|g| matches!(g.protocol_type.as_str(), "consumer" | ""))
        .map(|g| (g.group_id.0.as_str(), g.group_state.as_str()))
        .filter(|(_, s)| match state {
            Some(wanted) if !wanted.is_empty() => wanted.iter().any(|w| w.eq_ignore_ascii_case(s)),
            _ => true,
        })
        .collect();
    groups.sort_unstable();
    match state {
        None => groups.iter().map(|(g, _)| format!("{g}\n")).collect(),
        Some(_) => {
            let rows: Vec<Vec<String>> = groups
                .iter()
                .map(|(g, s)| vec![g.to_string(), s.to_string()])
                .collect();
            table::render(&["GROUP", "STATE"], &rows)
        }
    }
}

fn describe_all(conn: &Conn, c: &mut Client, groups: &[String]) -> Result<(), CliError> {
    let mut first = true;
    each_group(groups, |group| {
        let text = describe(conn, c, group)?;
        if !first {
            print("\n")?;
        }
        first = false;
        print(&text)
    })
}

/// Runs `f` for every group: a group's failure is reported on stderr and the rest still run
/// (`CliError::Partial` counts them at the end); a failure to print or to reach the broker
/// stops at once.
fn each_group(
    groups: &[String],
    mut f: impl FnMut(&str) -> Result<(), CliError>,
) -> Result<(), CliError> {
    let mut failed = 0;
    for group in groups {
        match f(group) {
            Ok(()) => {}
            Err(e @ (CliError::Output(_) | CliError::Client(_))) => return Err(e),
            Err(e) => {
                eprint_line(&format!("Error: {e}"));
                failed += 1;
            }
        }
    }
    if failed > 0 {
        return Err(CliError::Partial(failed));
    }
    Ok(())
}

/// A connection to `group`'s coordinator when it is not the bootstrap broker `c` is
/// connected to (None: use `c`).
pub(super) fn coordinator(
    conn: &Conn,
    c: &mut Client,
    group: &str,
) -> Result<Option<Client>, CliError> {
    let addr = find_coordinator(c, group)?;
    if addr == conn.bootstrap_server {
        return Ok(None);
    }
    Ok(Some(conn.connect_to(&addr)?))
}

/// One group's table; its state notice (empty, rebalancing) goes to stderr first.
fn describe(conn: &Conn, c: &mut Client, group: &str) -> Result<String, CliError> {
    let mut other = coordinator(conn, c, group)?;
    let coord = match other.as_mut() {
        Some(o) => o,
        None => &mut *c,
    };
    let described = describe_group(coord, group)?;
    if let Some(notice) = state_notice(&described)? {
        eprint_line(&notice);
    }
    let owners = owners(&described)?;
    let committed = committed_offsets(&offset_fetch(coord, group)?)?;
    let keys: BTreeSet<(String, i32)> = owners.keys().chain(committed.keys()).cloned().collect();
    let log_end = log_end_offsets(conn, c, &keys)?;
    let rows = build_rows(&owners, &committed, &log_end);
    Ok(render_rows(group, &rows))
}

/// The coordinator's HOST:PORT.
fn find_coordinator(c: &mut Client, group: &str) -> Result<String, CliError> {
    let version = c.version(
        ApiKey::FindCoordinator,
        FIND_COORDINATOR.0,
        FIND_COORDINATOR.1,
    )?;
    let resp: FindCoordinatorResponse = c.call(
        ApiKey::FindCoordinator,
        version,
        &find_coordinator_request(group),
    )?;
    check(
        || format!("finding the coordinator of group '{group}'"),
        resp.error_code,
        resp.error_message.as_deref(),
    )?;
    Ok(format!("{}:{}", resp.host.as_str(), resp.port))
}

fn find_coordinator_request(group: &str) -> FindCoordinatorRequest {
    FindCoordinatorRequest::default()
        .with_key(str_bytes(group))
        .with_key_type(KEY_TYPE_GROUP)
}

fn describe_groups_request(group: &str) -> DescribeGroupsRequest {
    DescribeGroupsRequest::default().with_groups(vec![GroupId(str_bytes(group))])
}

/// DescribeGroups of one group, at its coordinator `c`.
pub(super) fn describe_group(c: &mut Client, group: &str) -> Result<DescribedGroup, CliError> {
    let version = c.version(ApiKey::DescribeGroups, DESCRIBE_GROUPS.0, DESCRIBE_GROUPS.1)?;
    let resp: DescribeGroupsResponse = c.call(
        ApiKey::DescribeGroups,
        version,
        &describe_groups_request(group),
    )?;
    resp.groups
        .into_iter()
        .find(|g| g.group_id.0.as_str() == group)
        .ok_or_else(|| CliError::Broker {
            what: format!("describing group '{group}'"),
            code: -1,
            message: Some("the response does not name the group".into()),
        })
}

/// Fails for a group that does not exist (state Dead, or GROUP_ID_NOT_FOUND from v6) or an
/// error; otherwise the notice `kafka-consumer-groups` prints before the table, if any.
pub fn state_notice(g: &DescribedGroup) -> Result<Option<String>, CliError> {
    let group = g.group_id.0.as_str();
    if g.error_code == GROUP_ID_NOT_FOUND || (g.error_code == 0 && g.group_state.as_str() == "Dead")
    {
        return Err(CliError::NoSuchGroup(group.to_string()));
    }
    check(
        || format!("describing group '{group}'"),
        g.error_code,
        g.error_message.as_deref(),
    )?;
    Ok(match g.group_state.as_str() {
        "Empty" => Some(format!("Consumer group '{group}' has no active members.")),
        "PreparingRebalance" | "CompletingRebalance" | "Assigning" | "Reconciling" => {
            Some(format!("Warning: Consumer group '{group}' is rebalancing."))
        }
        _ => None,
    })
}

fn delete_all(conn: &Conn, c: &mut Client, groups: &[String]) -> Result<(), CliError> {
    each_group(groups, |group| {
        delete(conn, c, group)?;
        print(&format!("Deleted group {group}.\n"))
    })
}

/// DeleteGroups of one group at its coordinator.
fn delete(conn: &Conn, c: &mut Client, group: &str) -> Result<(), CliError> {
    let mut other = coordinator(conn, c, group)?;
    let coord = match other.as_mut() {
        Some(o) => o,
        None => &mut *c,
    };
    let version = coord.version(ApiKey::DeleteGroups, DELETE_GROUPS.0, DELETE_GROUPS.1)?;
    let resp: DeleteGroupsResponse =
        coord.call(ApiKey::DeleteGroups, version, &delete_groups_request(group))?;
    let code = resp
        .results
        .iter()
        .find(|r| r.group_id.0.as_str() == group)
        .map_or(-1, |r| r.error_code);
    delete_outcome(group, code)
}

fn delete_groups_request(group: &str) -> DeleteGroupsRequest {
    DeleteGroupsRequest::default().with_groups_names(vec![GroupId(str_bytes(group))])
}

/// A DeleteGroups result code as the command reports it: an absent group in Kafka's words, a
/// group with members with what to do about it.
pub fn delete_outcome(group: &str, code: i16) -> Result<(), CliError> {
    match code {
        GROUP_ID_NOT_FOUND => Err(CliError::NoSuchGroup(group.to_string())),
        NON_EMPTY_GROUP => Err(CliError::Broker {
            what: format!("deleting group '{group}'"),
            code,
            message: Some("the group has active members; stop its consumers first".into()),
        }),
        _ => check(|| format!("deleting group '{group}'"), code, None),
    }
}

/// Who owns a partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    /// The member id the coordinator gave the consumer.
    pub consumer_id: String,
    /// The member's address as the coordinator saw it (e.g. `/127.0.0.1`).
    pub host: String,
    /// The client id the consumer sent.
    pub client_id: String,
}

/// The assigned partitions of a "consumer" group's members (other protocol types carry
/// assignments we cannot read: none).
pub fn owners(g: &DescribedGroup) -> Result<BTreeMap<(String, i32), Owner>, CliError> {
    let mut out = BTreeMap::new();
    if g.protocol_type.as_str() != "consumer" {
        return Ok(out);
    }
    for m in &g.members {
        let assigned =
            decode_assignment(&m.member_assignment).map_err(|reason| CliError::Assignment {
                group: g.group_id.0.to_string(),
                member: m.member_id.to_string(),
                reason,
            })?;
        let owner = Owner {
            consumer_id: m.member_id.to_string(),
            host: m.client_host.to_string(),
            client_id: m.client_id.to_string(),
        };
        for (topic, partitions) in assigned {
            for p in partitions {
                out.insert((topic.clone(), p), owner.clone());
            }
        }
    }
    Ok(out)
}

/// A ConsumerProtocolAssignment: an i16 version, then the fields of that version. Versions
/// newer than the crate knows are read as its newest (they only append fields), as Kafka's
/// ConsumerProtocol does. Empty bytes (no assignment yet) mean no partitions.
pub fn decode_assignment(bytes: &Bytes) -> Result<Vec<(String, Vec<i32>)>, String> {
    if bytes.is_empty() {
        return Ok(Vec::new());
    }
    if bytes.len() < 2 {
        return Err("shorter than its version".into());
    }
    let mut buf = bytes.clone();
    let version = buf.get_i16();
    if version < 0 {
        return Err(format!("negative version {version}"));
    }
    let version = version.min(ConsumerProtocolAssignment::VERSIONS.max);
    let a = ConsumerProtocolAssignment::decode(&mut buf, version).map_err(|e| e.to_string())?;
    Ok(a.assigned_partitions
        .into_iter()
        .map(|tp| (tp.topic.0.to_string(), tp.partitions))
        .collect())
}

/// Every committed offset of `group`, from its coordinator `c`.
pub(super) fn offset_fetch(c: &mut Client, group: &str) -> Result<OffsetFetchResponse, CliError> {
    let version = c.version(ApiKey::OffsetFetch, OFFSET_FETCH.0, OFFSET_FETCH.1)?;
    Ok(c.call(ApiKey::OffsetFetch, version, &offset_fetch_request(group))?)
}

/// Every committed offset of the group (topics null).
fn offset_fetch_request(group: &str) -> OffsetFetchRequest {
    OffsetFetchRequest::default()
        .with_group_id(GroupId(str_bytes(group)))
        .with_topics(None)
}

/// Committed offsets by (topic, partition); "no offset" (-1) and failed partitions are left out.
pub fn committed_offsets(
    resp: &OffsetFetchResponse,
) -> Result<BTreeMap<(String, i32), i64>, CliError> {
    check(
        || "fetching committed offsets".into(),
        resp.error_code,
        None,
    )?;
    Ok(resp
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions
                .iter()
                .filter(|p| p.error_code == 0 && p.committed_offset >= 0)
                .map(|p| {
                    (
                        (t.name.0.to_string(), p.partition_index),
                        p.committed_offset,
                    )
                })
        })
        .collect())
}

/// Latest offsets of `keys` (ListOffsets, timestamp -1); partitions that fail are left out.
fn log_end_offsets(
    conn: &Conn,
    c: &mut Client,
    keys: &BTreeSet<(String, i32)>,
) -> Result<HashMap<(String, i32), i64>, CliError> {
    offsets_at(conn, c, keys, LATEST)
}

/// The offsets ListOffsets answers for `keys` at `timestamp` ([`LATEST`], [`EARLIEST`], or
/// milliseconds: the first record at or after it); partitions that fail or have no such
/// record are left out. Asked of the bootstrap broker first; in a cluster, the partitions it
/// does not lead (NOT_LEADER_OR_FOLLOWER) are asked of their leaders, as Metadata names them.
pub(super) fn offsets_at(
    conn: &Conn,
    c: &mut Client,
    keys: &BTreeSet<(String, i32)>,
    timestamp: i64,
) -> Result<HashMap<(String, i32), i64>, CliError> {
    if keys.is_empty() {
        return Ok(HashMap::new());
    }
    let resp = list_offsets(c, keys, timestamp)?;
    let mut out = latest_offsets(&resp);
    let elsewhere: BTreeSet<(String, i32)> = resp
        .topics
        .iter()
        .flat_map(|t| {
            let led_elsewhere = t.partitions.iter().filter(|p| p.error_code == NOT_LEADER);
            led_elsewhere.map(|p| (t.name.0.to_string(), p.partition_index))
        })
        .collect();
    for (addr, part) in by_leader(c, &elsewhere)? {
        let mut other = conn.connect_to(&addr)?;
        out.extend(latest_offsets(&list_offsets(&mut other, &part, timestamp)?));
    }
    Ok(out)
}

/// NOT_LEADER_OR_FOLLOWER: a cluster's broker asked for a partition another one leads.
const NOT_LEADER: i16 = 6;

fn list_offsets(
    c: &mut Client,
    keys: &BTreeSet<(String, i32)>,
    timestamp: i64,
) -> Result<ListOffsetsResponse, CliError> {
    let version = c.version(ApiKey::ListOffsets, LIST_OFFSETS.0, LIST_OFFSETS.1)?;
    let req = list_offsets_request(keys, timestamp);
    Ok(c.call(ApiKey::ListOffsets, version, &req)?)
}

/// `keys` grouped by their leader's address ("host:port"), as Metadata at `c` gives them;
/// partitions without a leader are left out.
fn by_leader(
    c: &mut Client,
    keys: &BTreeSet<(String, i32)>,
) -> Result<BTreeMap<String, BTreeSet<(String, i32)>>, CliError> {
    let mut out: BTreeMap<String, BTreeSet<(String, i32)>> = BTreeMap::new();
    if keys.is_empty() {
        return Ok(out);
    }
    let topics: Vec<String> = keys
        .iter()
        .map(|k| k.0.clone())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let meta = super::topics::metadata(c, Some(&topics))?;
    let addrs: HashMap<i32, String> = meta
        .brokers
        .iter()
        .map(|b| (b.node_id.0, format!("{}:{}", b.host.as_str(), b.port)))
        .collect();
    for t in &meta.topics {
        let name = t.name.as_ref().map_or("", |n| n.0.as_str());
        for p in &t.partitions {
            let key = (name.to_string(), p.partition_index);
            if let (true, Some(addr)) = (keys.contains(&key), addrs.get(&p.leader_id.0)) {
                out.entry(addr.clone()).or_default().insert(key);
            }
        }
    }
    Ok(out)
}

/// The offset at `timestamp` of each of `keys`, as a consumer asks (replica -1).
fn list_offsets_request(keys: &BTreeSet<(String, i32)>, timestamp: i64) -> ListOffsetsRequest {
    let mut by_topic: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
    for (t, p) in keys {
        by_topic.entry(t).or_default().push(*p);
    }
    let topics = by_topic
        .into_iter()
        .map(|(t, parts)| {
            ListOffsetsTopic::default()
                .with_name(TopicName(str_bytes(t)))
                .with_partitions(
                    parts
                        .into_iter()
                        .map(|p| {
                            ListOffsetsPartition::default()
                                .with_partition_index(p)
                                .with_timestamp(timestamp)
                        })
                        .collect(),
                )
        })
        .collect();
    ListOffsetsRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_topics(topics)
}

/// The offsets of a ListOffsets response by (topic, partition), errors left out.
pub fn latest_offsets(resp: &ListOffsetsResponse) -> HashMap<(String, i32), i64> {
    resp.topics
        .iter()
        .flat_map(|t| {
            t.partitions
                .iter()
                .filter(|p| p.error_code == 0 && p.offset >= 0)
                .map(|p| ((t.name.0.to_string(), p.partition_index), p.offset))
        })
        .collect()
}

/// One line of the describe table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    /// The topic name.
    pub topic: String,
    /// The partition index within the topic.
    pub partition: i32,
    /// The group's committed offset, if it has one.
    pub current: Option<i64>,
    /// The partition's log end offset, if ListOffsets answered for it.
    pub log_end: Option<i64>,
    /// The member the partition is assigned to, if any.
    pub owner: Option<Owner>,
}

impl Row {
    /// Log end − committed; unknown when either is.
    pub fn lag(&self) -> Option<i64> {
        Some(self.log_end? - self.current?)
    }
}

/// Rows for every partition that is assigned or committed, sorted by topic, partition.
pub fn build_rows(
    owners: &BTreeMap<(String, i32), Owner>,
    committed: &BTreeMap<(String, i32), i64>,
    log_end: &HashMap<(String, i32), i64>,
) -> Vec<Row> {
    let keys: BTreeSet<&(String, i32)> = owners.keys().chain(committed.keys()).collect();
    keys.into_iter()
        .map(|k| Row {
            topic: k.0.clone(),
            partition: k.1,
            current: committed.get(k).copied(),
            log_end: log_end.get(k).copied(),
            owner: owners.get(k).cloned(),
        })
        .collect()
}

/// The table for one group: the header, then one line per row.
pub fn render_rows(group: &str, rows: &[Row]) -> String {
    let lines: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            let owner =
                |f: fn(&Owner) -> &str| r.owner.as_ref().map_or_else(String::new, |o| f(o).into());
            vec![
                group.to_string(),
                r.topic.clone(),
                r.partition.to_string(),
                num(r.current),
                num(r.log_end),
                num(r.lag()),
                owner(|o| &o.consumer_id),
                owner(|o| &o.host),
                owner(|o| &o.client_id),
            ]
        })
        .collect();
    table::render(&HEADER, &lines)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::{BufMut, BytesMut};
    use kafka_protocol::messages::consumer_protocol_assignment::TopicPartition;
    use kafka_protocol::messages::describe_groups_response::DescribedGroupMember;
    use kafka_protocol::messages::list_groups_response::ListedGroup;
    use kafka_protocol::messages::list_offsets_response::{
        ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
    };
    use kafka_protocol::messages::offset_fetch_response::{
        OffsetFetchResponsePartition, OffsetFetchResponseTopic,
    };
    use kafka_protocol::protocol::Encodable;

    fn assignment(version: i16, parts: &[(&str, &[i32])], trailer: &[u8]) -> Bytes {
        let a = ConsumerProtocolAssignment::default().with_assigned_partitions(
            parts
                .iter()
                .map(|(t, p)| {
                    TopicPartition::default()
                        .with_topic(TopicName(str_bytes(t)))
                        .with_partitions(p.to_vec())
                })
                .collect(),
        );
        let mut buf = BytesMut::new();
        buf.put_i16(version);
        a.encode(&mut buf, version.min(3)).unwrap();
        buf.put_slice(trailer);
        buf.freeze()
    }

    fn member(id: &str, client: &str, assigned: Bytes) -> DescribedGroupMember {
        DescribedGroupMember::default()
            .with_member_id(str_bytes(id))
            .with_client_id(str_bytes(client))
            .with_client_host(str_bytes("/127.0.0.1"))
            .with_member_assignment(assigned)
    }

    fn group(state: &str, members: Vec<DescribedGroupMember>) -> DescribedGroup {
        DescribedGroup::default()
            .with_group_id(GroupId(str_bytes("g")))
            .with_group_state(str_bytes(state))
            .with_protocol_type(str_bytes("consumer"))
            .with_members(members)
    }

    #[test]
    fn assignments_decode_at_their_own_version_capped_at_ours() {
        let parts: &[(&str, &[i32])] = &[("orders", &[0, 2]), ("audit", &[1])];
        let want = vec![
            ("orders".to_string(), vec![0, 2]),
            ("audit".to_string(), vec![1]),
        ];
        assert_eq!(decode_assignment(&assignment(0, parts, b"")).unwrap(), want);
        assert_eq!(decode_assignment(&assignment(3, parts, b"")).unwrap(), want);
        // A newer version appends fields we do not know: read as our newest, rest ignored.
        let future = assignment(7, parts, &[0, 0, 0, 9]);
        assert_eq!(decode_assignment(&future).unwrap(), want);
        assert_eq!(decode_assignment(&Bytes::new()).unwrap(), vec![]);
        assert!(decode_assignment(&Bytes::from_static(&[0])).is_err());
        assert!(decode_assignment(&Bytes::from_static(&[0xff, 0xff, 0, 0])).is_err());
        assert!(decode_assignment(&Bytes::from_static(&[0, 0, 0, 0, 0, 9])).is_err());
    }

    #[test]
    fn owners_come_from_consumer_assignments_only() {
        let g = group(
            "Stable",
            vec![
                member("m1", "c1", assignment(1, &[("t", &[1, 0])], b"")),
                member("m2", "c2", Bytes::new()),
            ],
        );
        let o = owners(&g).unwrap();
        assert_eq!(o.len(), 2);
        assert_eq!(o[&("t".to_string(), 0)].consumer_id, "m1");
        assert_eq!(o[&("t".to_string(), 1)].client_id, "c1");
        let connect = g.clone().with_protocol_type(str_bytes("connect"));
        assert!(owners(&connect).unwrap().is_empty());
        let bad = group("Stable", vec![member("m3", "c3", Bytes::from_static(&[0]))]);
        let err = owners(&bad).unwrap_err().to_string();
        assert!(err.contains("member m3"), "{err}");
    }

    #[test]
    fn group_states_give_kafkas_notices() {
        assert_eq!(
            state_notice(&group("Empty", vec![])).unwrap().unwrap(),
            "Consumer group 'g' has no active members."
        );
        assert!(state_notice(&group("Stable", vec![])).unwrap().is_none());
        assert!(state_notice(&group("PreparingRebalance", vec![]))
            .unwrap()
            .unwrap()
            .contains("rebalancing"));
        let dead = state_notice(&group("Dead", vec![])).unwrap_err();
        assert_eq!(dead.to_string(), "Consumer group 'g' does not exist.");
        let v6 = group("", vec![]).with_error_code(GROUP_ID_NOT_FOUND);
        assert!(matches!(state_notice(&v6), Err(CliError::NoSuchGroup(_))));
        let other = group("", vec![]).with_error_code(16);
        assert_eq!(
            state_notice(&other).unwrap_err().to_string(),
            "describing group 'g': NOT_COORDINATOR"
        );
    }

    fn key(t: &str, p: i32) -> (String, i32) {
        (t.to_string(), p)
    }

    #[test]
    fn committed_and_latest_offsets_skip_unknowns() {
        let fetched =
            OffsetFetchResponse::default().with_topics(vec![OffsetFetchResponseTopic::default()
                .with_name(TopicName(str_bytes("t")))
                .with_partitions(vec![
                    OffsetFetchResponsePartition::default()
                        .with_partition_index(0)
                        .with_committed_offset(5),
                    OffsetFetchResponsePartition::default()
                        .with_partition_index(1)
                        .with_committed_offset(-1),
                    OffsetFetchResponsePartition::default()
                        .with_partition_index(2)
                        .with_committed_offset(3)
                        .with_error_code(3),
                ])]);
        let c = committed_offsets(&fetched).unwrap();
        assert_eq!(c.into_iter().collect::<Vec<_>>(), vec![(key("t", 0), 5)]);
        assert!(committed_offsets(&fetched.clone().with_error_code(16)).is_err());
        let listed =
            ListOffsetsResponse::default().with_topics(vec![ListOffsetsTopicResponse::default()
                .with_name(TopicName(str_bytes("t")))
                .with_partitions(vec![
                    ListOffsetsPartitionResponse::default()
                        .with_partition_index(0)
                        .with_offset(9),
                    ListOffsetsPartitionResponse::default()
                        .with_partition_index(1)
                        .with_offset(-1)
                        .with_error_code(3),
                ])]);
        let l = latest_offsets(&listed);
        assert_eq!(l.len(), 1);
        assert_eq!(l[&key("t", 0)], 9);
    }

    #[test]
    fn rows_join_owners_offsets_and_lag() {
        let owner = Owner {
            consumer_id: "m1".into(),
            host: "/127.0.0.1".into(),
            client_id: "app".into(),
        };
        let owners = BTreeMap::from([(key("b", 0), owner.clone()), (key("a", 1), owner.clone())]);
        let committed = BTreeMap::from([(key("a", 1), 7), (key("a", 10), 2), (key("b", 0), 4)]);
        let log_end = HashMap::from([(key("a", 1), 10), (key("a", 10), 2), (key("b", 0), 3)]);
        let rows = build_rows(&owners, &committed, &log_end);
        let got: Vec<_> = rows
            .iter()
            .map(|r| (r.topic.as_str(), r.partition, r.lag()))
            .collect();
        // Sorted by topic, then partition as a number; a committed offset past the log end
        // (the log was truncated) shows a negative lag, as Kafka does.
        assert_eq!(
            got,
            [("a", 1, Some(3)), ("a", 10, Some(0)), ("b", 0, Some(-1))]
        );
        assert_eq!(rows[1].owner, None);
        let uncommitted = build_rows(&owners, &BTreeMap::new(), &log_end);
        assert_eq!((uncommitted[0].current, uncommitted[0].lag()), (None, None));
        let no_end = build_rows(&BTreeMap::new(), &committed, &HashMap::new());
        assert_eq!((no_end[0].current, no_end[0].lag()), (Some(7), None));
    }

    #[test]
    fn describe_table_is_kafka_shaped() {
        let rows = vec![
            Row {
                topic: "orders".into(),
                partition: 0,
                current: Some(5),
                log_end: Some(8),
                owner: Some(Owner {
                    consumer_id: "c-1".into(),
                    host: "/10.0.0.1".into(),
                    client_id: "app".into(),
                }),
            },
            Row {
                topic: "orders".into(),
                partition: 1,
                current: None,
                log_end: Some(4),
                owner: None,
            },
        ];
        let out = render_rows("g", &rows);
        let lines: Vec<Vec<&str>> = out
            .lines()
            .map(|l| l.split_whitespace().collect())
            .collect();
        assert_eq!(lines[0], HEADER);
        assert_eq!(
            lines[1],
            ["g", "orders", "0", "5", "8", "3", "c-1", "/10.0.0.1", "app"]
        );
        assert_eq!(lines[2], ["g", "orders", "1", "-", "4", "-", "-", "-", "-"]);
        assert_eq!(render_rows("g", &[]).lines().count(), 1);
    }

    /// Each request encodes at every version we may pick (fields a version lacks stay default).
    #[test]
    fn requests_encode_at_every_version_in_our_ranges() {
        fn each<R: Encodable>(req: &R, (lo, hi): (i16, i16)) {
            for v in lo..=hi {
                req.encode(&mut BytesMut::new(), v)
                    .unwrap_or_else(|e| panic!("v{v}: {e}"));
            }
        }
        each(&find_coordinator_request("g"), FIND_COORDINATOR);
        each(&describe_groups_request("g"), DESCRIBE_GROUPS);
        each(&offset_fetch_request("g"), OFFSET_FETCH);
        each(&ListGroupsRequest::default(), LIST_GROUPS);
        let keys = BTreeSet::from([key("t", 0), key("t", 1), key("u", 0)]);
        let req = list_offsets_request(&keys, EARLIEST);
        assert_eq!(req.topics.len(), 2);
        each(&req, LIST_OFFSETS);
        each(&delete_groups_request("g"), DELETE_GROUPS);
    }

    #[test]
    fn delete_outcomes_name_the_group() {
        assert!(delete_outcome("g", 0).is_ok());
        assert_eq!(
            delete_outcome("g", GROUP_ID_NOT_FOUND)
                .unwrap_err()
                .to_string(),
            "Consumer group 'g' does not exist."
        );
        assert_eq!(
            delete_outcome("g", NON_EMPTY_GROUP)
                .unwrap_err()
                .to_string(),
            "deleting group 'g': NON_EMPTY_GROUP: the group has active members; stop its \
             consumers first"
        );
        assert_eq!(
            delete_outcome("g", 16).unwrap_err().to_string(),
            "deleting group 'g': NOT_COORDINATOR"
        );
    }

    #[test]
    fn list_filters_to_consumer_groups_and_states() {
        let g = |id: &str, proto: &str, state: &str| {
            ListedGroup::default()
                .with_group_id(GroupId(str_bytes(id)))
                .with_protocol_type(str_bytes(proto))
                .with_group_state(str_bytes(state))
        };
        let resp = ListGroupsResponse::default().with_groups(vec![
            g("zeta", "consumer", "Stable"),
            g("connect-x", "connect", "Stable"),
            g("alpha", "", "Empty"),
        ]);
        assert_eq!(list_output(&resp, None), "alpha\nzeta\n");
        assert_eq!(
            list_output(&resp, Some(&[])),
            "GROUP  STATE\nalpha  Empty\nzeta   Stable\n"
        );
        assert_eq!(
            list_output(&resp, Some(&["stable".to_string()])),
            "GROUP  STATE\nzeta   Stable\n"
        );
        assert_eq!(list_output(&ListGroupsResponse::default(), None), "");
    }
}
