//! `shardlog groups reset-offsets`: moves a consumer group's committed offsets, as
//! `kafka-consumer-groups --reset-offsets` does, so an operator can replay a topic, skip a
//! poison record or jump to a point in time without writing a consumer for it.
//!
//! The group must be inactive (Empty, or unknown): a live consumer would overwrite the new
//! offsets with its next commit. The command reads the committed offsets and the log bounds
//! (ListOffsets earliest and latest, and by time for `--to-datetime`), computes each new offset
//! clamped to [log start, log end], prints them, and with `--execute` commits them
//! (OffsetCommit with generation -1 and no member id, as a standalone consumer does). The
//! planning and the date parsing are pure functions, tested without a broker.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use clap::{ArgGroup, Args};
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;

use super::groups::{self, EARLIEST, LATEST};
use super::table::{self, num};
use super::{eprint_line, kafka_error, print, topics, CliError, Conn};
use crate::client::Client;

/// OffsetCommit versions we encode (v9+ carries member epochs of the new protocol).
const OFFSET_COMMIT: (i16, i16) = (2, 8);
const GROUP_ID_NOT_FOUND: i16 = 69;
const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;

/// The reset table's columns: Kafka's four, then the offset committed before.
pub const HEADER: [&str; 5] = [
    "GROUP",
    "TOPIC",
    "PARTITION",
    "NEW-OFFSET",
    "CURRENT-OFFSET",
];

/// A (topic, partition).
pub type Key = (String, i32);

/// `--topic` values: a topic, with the partitions named after a colon (none: all of them).
pub type TopicArg = (String, Option<Vec<i32>>);

/// `shardlog groups reset-offsets`: which group, which partitions, where to, and whether to
/// commit.
#[derive(Args, Debug, Clone)]
#[command(group(ArgGroup::new("scope").required(true).args(["topics", "all_topics"])))]
#[command(group(
    ArgGroup::new("target")
        .required(true)
        .args(["to_earliest", "to_latest", "to_datetime", "to_offset", "shift_by"])
))]
pub struct ResetArgs {
    /// The consumer group whose offsets to move
    #[arg(long, value_name = "GROUP")]
    pub group: String,
    /// A topic (all its partitions) or some of its partitions: orders, orders:0,2 (repeatable)
    #[arg(long = "topic", value_name = "TOPIC[:P,...]", value_parser = parse_topic)]
    pub topics: Vec<TopicArg>,
    /// Every partition the group has committed offsets for
    #[arg(long)]
    pub all_topics: bool,
    /// To the log start offset
    #[arg(long)]
    pub to_earliest: bool,
    /// To the log end offset
    #[arg(long)]
    pub to_latest: bool,
    /// To the first record at or after this time: YYYY-MM-DDTHH:MM:SS[.sss][Z|+hh:mm]
    /// (local time without a zone); the log end offset when no record is that recent
    #[arg(long, value_name = "DATETIME", value_parser = parse_datetime_arg)]
    pub to_datetime: Option<i64>,
    /// To this offset (clamped to the log start and end)
    #[arg(long, value_name = "N")]
    pub to_offset: Option<i64>,
    /// By N records from the committed offset, back when negative (clamped to the log)
    #[arg(long, value_name = "N", allow_hyphen_values = true)]
    pub shift_by: Option<i64>,
    /// Only print the new offsets (the default)
    #[arg(long, conflicts_with = "execute")]
    pub dry_run: bool,
    /// Commit the new offsets
    #[arg(long)]
    pub execute: bool,
}

/// Where each partition's offset goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// The log start offset.
    Earliest,
    /// The log end offset.
    Latest,
    /// The first offset whose record's timestamp is at or after this (ms since the epoch).
    Time(i64),
    /// This offset.
    Offset(i64),
    /// The committed offset plus this.
    ShiftBy(i64),
}

impl ResetArgs {
    /// The target the flags ask for (clap makes sure exactly one is given).
    pub fn target(&self) -> Target {
        if self.to_earliest {
            Target::Earliest
        } else if self.to_latest {
            Target::Latest
        } else if let Some(ms) = self.to_datetime {
            Target::Time(ms)
        } else if let Some(o) = self.to_offset {
            Target::Offset(o)
        } else {
            Target::ShiftBy(self.shift_by.unwrap_or(0))
        }
    }
}

fn parse_topic(s: &str) -> Result<TopicArg, String> {
    let (topic, parts) = match s.split_once(':') {
        None => (s, None),
        Some((t, p)) => (t, Some(p)),
    };
    if topic.is_empty() {
        return Err(format!("expected TOPIC or TOPIC:P,..., got {s:?}"));
    }
    let Some(parts) = parts else {
        return Ok((topic.to_string(), None));
    };
    let parsed: Result<Vec<i32>, String> = parts
        .split(',')
        .map(|p| match p.trim().parse::<i32>() {
            Ok(n) if n >= 0 => Ok(n),
            _ => Err(format!("{p:?} is not a partition number (in {s:?})")),
        })
        .collect();
    Ok((topic.to_string(), Some(parsed?)))
}

fn parse_datetime_arg(s: &str) -> Result<i64, String> {
    parse_datetime(s, local_offset_secs)
}

/// Milliseconds since the epoch of `YYYY-MM-DDTHH:MM:SS[.sss][Z|±hh:mm|±hhmm]`; without a
/// zone the time is local, `local_offset(naive_secs)` giving the zone's offset east of UTC.
pub fn parse_datetime(s: &str, local_offset: impl Fn(i64) -> i64) -> Result<i64, String> {
    let bad = || format!("expected YYYY-MM-DDTHH:MM:SS[.sss][Z|+hh:mm], got {s:?}");
    if s.len() < 19 || !s.is_ascii() {
        return Err(bad());
    }
    let (head, rest) = s.split_at(19);
    let b = head.as_bytes();
    if b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || b[13] != b':' || b[16] != b':' {
        return Err(bad());
    }
    let field = |r: std::ops::Range<usize>| -> Result<i64, String> {
        let f = &head[r];
        if !f.bytes().all(|c| c.is_ascii_digit()) {
            return Err(bad());
        }
        f.parse::<i64>().map_err(|_| bad())
    };
    let (y, mo, d) = (field(0..4)?, field(5..7)?, field(8..10)?);
    let (h, mi, sec) = (field(11..13)?, field(14..16)?, field(17..19)?);
    if !(1..=12).contains(&mo) || d < 1 || d > days_in_month(y, mo) || h > 23 || mi > 59 || sec > 59
    {
        return Err(bad());
    }
    let (millis, zone) = split_fraction(rest).ok_or_else(bad)?;
    let naive = days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + sec;
    let offset = match zone {
        "" => local_offset(naive),
        z => zone_offset_secs(z).ok_or_else(bad)?,
    };
    Ok((naive - offset) * 1000 + millis)
}

/// Splits `.sss` (1-9 digits, read as milliseconds) off the front of `rest`; the rest is the
/// zone. None when the fraction is malformed.
fn split_fraction(rest: &str) -> Option<(i64, &str)> {
    let Some(frac) = rest.strip_prefix('.') else {
        return Some((0, rest));
    };
    let digits = frac.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 || digits > 9 {
        return None;
    }
    let taken = digits.min(3);
    let mut ms: i64 = frac[..taken].parse().ok()?;
    for _ in taken..3 {
        ms *= 10;
    }
    Some((ms, &frac[digits..]))
}

/// `Z`, `±hh:mm` or `±hhmm` as seconds east of UTC.
fn zone_offset_secs(z: &str) -> Option<i64> {
    if z == "Z" || z == "z" {
        return Some(0);
    }
    let sign = match z.as_bytes().first()? {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    let digits: String = z[1..].chars().filter(|c| *c != ':').collect();
    let well_formed = matches!(z.len(), 5 | 6) && (z.len() == 5 || &z[3..4] == ":");
    if !well_formed || digits.len() != 4 || !digits.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let h: i64 = digits[..2].parse().ok()?;
    let m: i64 = digits[2..].parse().ok()?;
    (h <= 23 && m <= 59).then_some(sign * (h * 3600 + m * 60))
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if is_leap(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days from 1970-01-01 to y-m-d (proleptic Gregorian), counted by whole years and months.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    // Whole years since 1970, then months of this year, then the day.
    let years: i64 = if y >= 1970 {
        (1970..y).map(|yy| 365 + i64::from(is_leap(yy))).sum()
    } else {
        -(y..1970)
            .map(|yy| 365 + i64::from(is_leap(yy)))
            .sum::<i64>()
    };
    let months: i64 = (1..m).map(|mm| days_in_month(y, mm)).sum();
    years + months + d - 1
}

/// The local zone's offset east of UTC at about `naive_secs`, seconds (0 when unknown).
fn local_offset_secs(naive_secs: i64) -> i64 {
    let t = naive_secs as libc::time_t;
    // SAFETY: localtime_r writes only into the tm we hand it and reads the time_t we own;
    // a zeroed tm is a valid value of that plain C struct.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    let ok = unsafe { !libc::localtime_r(&t, &mut tm).is_null() };
    if ok {
        tm.tm_gmtoff
    } else {
        0
    }
}

/// One partition's reset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    /// The topic name.
    pub topic: String,
    /// The partition index.
    pub partition: i32,
    /// The offset the group has committed now, if any.
    pub current: Option<i64>,
    /// The offset it moves to.
    pub new: i64,
}

/// What the broker told us about each partition's log.
#[derive(Debug, Clone, Default)]
pub struct LogOffsets {
    /// Log start offsets.
    pub start: HashMap<Key, i64>,
    /// Log end offsets.
    pub end: HashMap<Key, i64>,
    /// For `--to-datetime`: the first offset at or after the time, where there is one.
    pub by_time: HashMap<Key, i64>,
}

/// The new offset of each of `keys`, clamped to [log start, log end]. Fails for a partition
/// whose log bounds are unknown, or (for a shift) that has no committed offset, as Kafka does.
pub fn plan(
    target: Target,
    keys: &BTreeSet<Key>,
    committed: &BTreeMap<Key, i64>,
    log: &LogOffsets,
) -> Result<Vec<Row>, CliError> {
    keys.iter()
        .map(|k| {
            let name = || format!("{}-{}", k.0, k.1);
            let (Some(&start), Some(&end)) = (log.start.get(k), log.end.get(k)) else {
                return Err(CliError::Invalid(format!(
                    "the broker gave no log offsets for partition {}",
                    name()
                )));
            };
            let current = committed.get(k).copied();
            let wanted = match target {
                Target::Earliest => start,
                Target::Latest => end,
                Target::Time(_) => log.by_time.get(k).copied().unwrap_or(end),
                Target::Offset(o) => o,
                Target::ShiftBy(n) => current
                    .ok_or_else(|| {
                        CliError::Invalid(format!(
                            "cannot shift the offset of partition {}: the group has no \
                             committed offset there",
                            name()
                        ))
                    })?
                    .saturating_add(n),
            };
            Ok(Row {
                topic: k.0.clone(),
                partition: k.1,
                current,
                new: wanted.clamp(start, end.max(start)),
            })
        })
        .collect()
}

/// The reset table.
pub fn render(group: &str, rows: &[Row]) -> String {
    let lines: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            vec![
                group.to_string(),
                r.topic.clone(),
                r.partition.to_string(),
                r.new.to_string(),
                num(r.current),
            ]
        })
        .collect();
    table::render(&HEADER, &lines)
}

/// Runs `reset-offsets`: checks the group is inactive, plans, prints, commits with --execute.
pub fn run(conn: &Conn, c: &mut Client, args: &ResetArgs) -> Result<(), CliError> {
    let group = args.group.as_str();
    let mut other = groups::coordinator(conn, c, group)?;
    let coord = match other.as_mut() {
        Some(o) => o,
        None => &mut *c,
    };
    ensure_inactive(coord, group)?;
    let committed = groups::committed_offsets(&groups::offset_fetch(coord, group)?)?;
    let keys = if args.all_topics {
        committed.keys().cloned().collect()
    } else {
        partitions(c, &args.topics)?
    };
    let target = args.target();
    let log = LogOffsets {
        start: groups::offsets_at(conn, c, &keys, EARLIEST)?,
        end: groups::offsets_at(conn, c, &keys, LATEST)?,
        by_time: match target {
            Target::Time(ms) => groups::offsets_at(conn, c, &keys, ms)?,
            _ => HashMap::new(),
        },
    };
    let rows = plan(target, &keys, &committed, &log)?;
    let coord = match other.as_mut() {
        Some(o) => o,
        None => &mut *c,
    };
    if args.execute {
        commit(coord, group, &rows)?;
    }
    print(&render(group, &rows))?;
    if !args.execute {
        eprint_line("Dry run: no offset was changed; add --execute to commit these offsets.");
    }
    Ok(())
}

/// Fails unless the group is Empty or unknown (Kafka: "Assignments can only be reset if the
/// group is inactive").
fn ensure_inactive(coord: &mut Client, group: &str) -> Result<(), CliError> {
    let g = groups::describe_group(coord, group)?;
    if g.error_code == GROUP_ID_NOT_FOUND {
        return Ok(());
    }
    super::check(
        || format!("describing group '{group}'"),
        g.error_code,
        g.error_message.as_deref(),
    )?;
    match g.group_state.as_str() {
        "Empty" | "Dead" | "" => Ok(()),
        state => Err(CliError::GroupActive {
            group: group.to_string(),
            state: state.to_string(),
        }),
    }
}

/// The partitions `--topic` names: those listed, or every partition of the topic (Metadata).
fn partitions(c: &mut Client, wanted: &[TopicArg]) -> Result<BTreeSet<Key>, CliError> {
    let names: Vec<String> = wanted.iter().map(|(t, _)| t.clone()).collect();
    let meta = topics::metadata(c, Some(names.as_slice()))?;
    let mut out = BTreeSet::new();
    for (topic, parts) in wanted {
        let found = meta
            .topics
            .iter()
            .find(|t| t.name.as_ref().is_some_and(|n| n.0.as_str() == topic));
        let t = match found {
            Some(t) if t.error_code == 0 => t,
            Some(t) if t.error_code != UNKNOWN_TOPIC_OR_PARTITION => {
                return Err(CliError::Invalid(format!(
                    "topic '{topic}': {}",
                    kafka_error(t.error_code, None)
                )))
            }
            _ => {
                return Err(CliError::Invalid(format!(
                    "Topic '{topic}' does not exist."
                )))
            }
        };
        let exists: BTreeSet<i32> = t.partitions.iter().map(|p| p.partition_index).collect();
        for p in parts
            .clone()
            .unwrap_or_else(|| exists.iter().copied().collect())
        {
            if !exists.contains(&p) {
                return Err(CliError::Invalid(format!(
                    "Partition {topic}-{p} does not exist."
                )));
            }
            out.insert((topic.clone(), p));
        }
    }
    Ok(out)
}

/// Commits `rows` as a standalone consumer (generation -1, no member id); each partition the
/// broker refuses is reported on stderr.
fn commit(coord: &mut Client, group: &str, rows: &[Row]) -> Result<(), CliError> {
    let version = coord.version(ApiKey::OffsetCommit, OFFSET_COMMIT.0, OFFSET_COMMIT.1)?;
    let resp: OffsetCommitResponse =
        coord.call(ApiKey::OffsetCommit, version, &commit_request(group, rows))?;
    let mut failed = 0;
    for t in &resp.topics {
        for p in t.partitions.iter().filter(|p| p.error_code != 0) {
            eprint_line(&format!(
                "Error: committing the offset of {}-{} for group '{group}': {}",
                t.name.0.as_str(),
                p.partition_index,
                kafka_error(p.error_code, None)
            ));
            failed += 1;
        }
    }
    if failed > 0 {
        return Err(CliError::Partial(failed));
    }
    Ok(())
}

fn commit_request(group: &str, rows: &[Row]) -> OffsetCommitRequest {
    let mut by_topic: BTreeMap<&str, Vec<OffsetCommitRequestPartition>> = BTreeMap::new();
    for r in rows {
        by_topic.entry(&r.topic).or_default().push(
            OffsetCommitRequestPartition::default()
                .with_partition_index(r.partition)
                .with_committed_offset(r.new),
        );
    }
    OffsetCommitRequest::default()
        .with_group_id(GroupId(StrBytes::from_string(group.to_string())))
        .with_generation_id_or_member_epoch(-1)
        .with_member_id(StrBytes::from_static_str(""))
        .with_topics(
            by_topic
                .into_iter()
                .map(|(t, parts)| {
                    OffsetCommitRequestTopic::default()
                        .with_name(TopicName(StrBytes::from_string(t.to_string())))
                        .with_partitions(parts)
                })
                .collect(),
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(_: i64) -> i64 {
        0
    }

    #[test]
    fn datetimes_parse_like_kafkas_tool() {
        // 2026-12-07T10:00:00Z = 1796637600 s (checked with `date -u -d ... +%s`).
        let base = 1_796_637_600_000;
        assert_eq!(parse_datetime("2026-12-07T10:00:00Z", utc), Ok(base));
        assert_eq!(parse_datetime("2026-12-07T10:00:00", utc), Ok(base));
        assert_eq!(
            parse_datetime("2026-12-07T10:00:00.5Z", utc),
            Ok(base + 500)
        );
        assert_eq!(
            parse_datetime("2026-12-07T10:00:00.123", utc),
            Ok(base + 123)
        );
        assert_eq!(
            parse_datetime("2026-12-07T10:00:00.123456789Z", utc),
            Ok(base + 123)
        );
        assert_eq!(parse_datetime("2026-12-07T12:00:00+02:00", utc), Ok(base));
        assert_eq!(parse_datetime("2026-12-07T05:30:00-0430", utc), Ok(base));
        // Without a zone, the local offset applies (here UTC+1).
        assert_eq!(parse_datetime("2026-12-07T11:00:00", |_| 3600), Ok(base));
        assert_eq!(parse_datetime("1970-01-01T00:00:00Z", utc), Ok(0));
        assert_eq!(
            parse_datetime("2024-02-29T00:00:00Z", utc),
            Ok(1_709_164_800_000)
        );
        assert_eq!(parse_datetime("1969-12-31T23:59:59Z", utc), Ok(-1000));
        for bad in [
            "",
            "2026-12-07",
            "2026-12-07 10:00:00",
            "2026-13-07T10:00:00",
            "2025-02-29T10:00:00",
            "2026-12-07T24:00:00",
            "2026-12-07T10:00:00.",
            "2026-12-07T10:00:00+2",
            "2026-12-07T10:00:00+25:00",
            "2026-12-07T10:00:00Zjunk",
            "2026-12-07T10:0a:00",
            "+026-12-07T10:00:00",
            "2026-12-07T10:00:00é",
        ] {
            assert!(parse_datetime(bad, utc).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn topic_flags_parse() {
        assert_eq!(parse_topic("orders"), Ok(("orders".into(), None)));
        assert_eq!(
            parse_topic("orders:0,2"),
            Ok(("orders".into(), Some(vec![0, 2])))
        );
        assert!(parse_topic("orders:").is_err());
        assert!(parse_topic("orders:-1").is_err());
        assert!(parse_topic(":0").is_err());
    }

    fn key(t: &str, p: i32) -> Key {
        (t.to_string(), p)
    }

    fn log() -> LogOffsets {
        LogOffsets {
            start: HashMap::from([(key("t", 0), 10), (key("t", 1), 0)]),
            end: HashMap::from([(key("t", 0), 50), (key("t", 1), 5)]),
            by_time: HashMap::from([(key("t", 0), 20)]),
        }
    }

    fn news(target: Target, committed: &BTreeMap<Key, i64>) -> Vec<i64> {
        let keys = BTreeSet::from([key("t", 0), key("t", 1)]);
        plan(target, &keys, committed, &log())
            .unwrap()
            .iter()
            .map(|r| r.new)
            .collect()
    }

    #[test]
    fn plans_clamp_to_the_log() {
        let committed = BTreeMap::from([(key("t", 0), 30), (key("t", 1), 4)]);
        assert_eq!(news(Target::Earliest, &committed), [10, 0]);
        assert_eq!(news(Target::Latest, &committed), [50, 5]);
        // No record that recent in partition 1: its log end, as Kafka does.
        assert_eq!(news(Target::Time(1), &committed), [20, 5]);
        assert_eq!(news(Target::Offset(3), &committed), [10, 3]);
        assert_eq!(news(Target::Offset(70), &committed), [50, 5]);
        assert_eq!(news(Target::ShiftBy(-25), &committed), [10, 0]);
        assert_eq!(news(Target::ShiftBy(5), &committed), [35, 5]);
        assert_eq!(news(Target::ShiftBy(i64::MAX), &committed), [50, 5]);
        let keys = BTreeSet::from([key("t", 0), key("t", 1)]);
        let rows = plan(Target::Latest, &keys, &committed, &log()).unwrap();
        assert_eq!(rows[0].current, Some(30));
    }

    #[test]
    fn plans_refuse_what_kafka_refuses() {
        let keys = BTreeSet::from([key("t", 0), key("t", 1)]);
        let committed = BTreeMap::from([(key("t", 0), 30)]);
        let err = plan(Target::ShiftBy(1), &keys, &committed, &log()).unwrap_err();
        assert!(err.to_string().contains("partition t-1"), "{err}");
        let rows = plan(Target::Earliest, &keys, &committed, &log()).unwrap();
        assert_eq!(rows[1].current, None);
        let unknown = BTreeSet::from([key("u", 0)]);
        assert!(plan(Target::Earliest, &unknown, &committed, &log()).is_err());
    }

    #[test]
    fn the_table_keeps_kafkas_columns_first() {
        let rows = vec![Row {
            topic: "orders".into(),
            partition: 1,
            current: None,
            new: 7,
        }];
        assert_eq!(
            render("g", &rows),
            "GROUP  TOPIC   PARTITION  NEW-OFFSET  CURRENT-OFFSET\n\
             g      orders  1          7           -\n"
        );
    }

    #[test]
    fn commits_encode_at_every_version_in_our_range() {
        use bytes::BytesMut;
        use kafka_protocol::protocol::Encodable;
        let rows = vec![
            Row {
                topic: "a".into(),
                partition: 0,
                current: None,
                new: 1,
            },
            Row {
                topic: "a".into(),
                partition: 1,
                current: Some(3),
                new: 2,
            },
        ];
        let req = commit_request("g", &rows);
        assert_eq!(req.topics.len(), 1);
        assert_eq!(req.generation_id_or_member_epoch, -1);
        for v in OFFSET_COMMIT.0..=OFFSET_COMMIT.1 {
            req.encode(&mut BytesMut::new(), v)
                .unwrap_or_else(|e| panic!("v{v}: {e}"));
        }
    }
}
