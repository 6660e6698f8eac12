//! DescribeTopicPartitions (key 75, KIP-966): topics and their partitions, a page at a time,
//! which Kafka 3.8's kafka-topics and admin client ask before they fall back to Metadata.
//! Answered from the connection's shard's registry copy, like Metadata: every partition is
//! led by this broker, its only replica and in-sync replica, at leader epoch 0, with no
//! eligible leader replicas (ELR is for clusters) and none offline.
//!
//! Paging follows Kafka's KRaftMetadataCache: topics in name order from the cursor's topic on
//! (that topic from the cursor's partition, every other from 0); at most
//! `response_partition_limit` partitions (and never more than [`PARTITION_LIMIT_MAX`], Kafka's
//! max.request.partition.size.limit); `next_cursor` names the first partition left out, or is
//! null when nothing is.

use std::collections::BTreeSet;
use std::rc::Rc;

use kafka_protocol::messages::describe_topic_partitions_response::{
    Cursor, DescribeTopicPartitionsResponsePartition, DescribeTopicPartitionsResponseTopic,
};
use kafka_protocol::messages::{
    BrokerId, DescribeTopicPartitionsRequest, DescribeTopicPartitionsResponse,
};

use super::{topic_name, Call};
use crate::kafka::errors::{self, ErrorCode};
use crate::metadata::{valid_topic_name, Snapshot, TopicMeta};
use crate::shard::Shard;

/// The most partitions one response describes (Kafka's max.request.partition.size.limit).
pub const PARTITION_LIMIT_MAX: i32 = 2000;

/// What Kafka without an authorizer reports a client may do to a topic: READ, WRITE, CREATE,
/// DELETE, ALTER, DESCRIBE, DESCRIBE_CONFIGS and ALTER_CONFIGS, as a bit field by ACL code.
pub const TOPIC_OPERATIONS: i32 =
    (1 << 3) | (1 << 4) | (1 << 5) | (1 << 6) | (1 << 7) | (1 << 8) | (1 << 10) | (1 << 11);

/// Answers one page of the topics asked for (all topics when none is named).
pub async fn handle(
    s: Rc<Shard>,
    req: DescribeTopicPartitionsRequest,
    _call: &Call<'_>,
) -> Option<DescribeTopicPartitionsResponse> {
    Some(page(&s.metadata(), &req, BrokerId(s.config.node_id)))
}

/// One page of the answer, from `snap` (see the module docs).
fn page(
    snap: &Snapshot,
    req: &DescribeTopicPartitionsRequest,
    node: BrokerId,
) -> DescribeTopicPartitionsResponse {
    let all = req.topics.is_empty();
    let from = req.cursor.as_ref().map_or("", |c| c.topic_name.0.as_str());
    let names: BTreeSet<&str> = if all {
        snap.topics.keys().map(String::as_str).collect()
    } else {
        req.topics.iter().map(|t| t.name.0.as_str()).collect()
    };
    let names: Vec<&str> = names.into_iter().filter(|n| *n >= from).collect();
    if !all && req.cursor.is_some() && !names.contains(&from) {
        // Kafka refuses the request: the cursor's topic must be one of those named.
        return refused(req, errors::INVALID_REQUEST);
    }
    let start_of = |name: &str| match &req.cursor {
        Some(c) if c.topic_name.0.as_str() == name => c.partition_index.max(0),
        _ => 0,
    };
    let mut remaining = req.response_partition_limit.min(PARTITION_LIMIT_MAX);
    let mut resp = DescribeTopicPartitionsResponse::default();
    for name in names {
        if remaining == 0 {
            resp.next_cursor = Some(cursor(name, 0));
            break;
        }
        if remaining < 0 {
            break;
        }
        let Some(meta) = snap.topic(name) else {
            let code = if valid_topic_name(name) {
                errors::UNKNOWN_TOPIC_OR_PARTITION
            } else {
                errors::INVALID_TOPIC
            };
            resp.topics.push(unknown_topic(name, code));
            continue;
        };
        let start = start_of(name).min(meta.partitions);
        let end = meta.partitions.min(start.saturating_add(remaining));
        resp.topics.push(describe(snap, meta, start..end, node));
        if end < meta.partitions {
            resp.next_cursor = Some(cursor(name, end));
            break;
        }
        remaining -= end - start;
    }
    resp
}

fn cursor(topic: &str, partition: i32) -> Cursor {
    Cursor::default()
        .with_topic_name(topic_name(topic))
        .with_partition_index(partition)
}

/// Every named topic with `code` and nothing else, as Kafka answers a refused request.
fn refused(
    req: &DescribeTopicPartitionsRequest,
    code: ErrorCode,
) -> DescribeTopicPartitionsResponse {
    let topics = req
        .topics
        .iter()
        .map(|t| unknown_topic(t.name.0.as_str(), code))
        .collect();
    DescribeTopicPartitionsResponse::default().with_topics(topics)
}

fn unknown_topic(name: &str, code: ErrorCode) -> DescribeTopicPartitionsResponseTopic {
    DescribeTopicPartitionsResponseTopic::default()
        .with_error_code(code.code())
        .with_name(Some(topic_name(name)))
}

/// A topic with its partitions `range`, each with its leader and replica as Metadata gives
/// them (`Snapshot::partition_view`, for broker `node`).
fn describe(
    snap: &Snapshot,
    t: &TopicMeta,
    range: std::ops::Range<i32>,
    node: BrokerId,
) -> DescribeTopicPartitionsResponseTopic {
    let partitions = range
        .map(|i| {
            let v = snap.partition_view(&t.id, i, node.0);
            let ids = |v: Vec<i32>| v.into_iter().map(BrokerId).collect::<Vec<_>>();
            DescribeTopicPartitionsResponsePartition::default()
                .with_partition_index(i)
                .with_leader_id(BrokerId(v.leader.unwrap_or(-1)))
                .with_leader_epoch(v.epoch)
                .with_replica_nodes(ids(v.replicas))
                .with_isr_nodes(ids(v.isr))
                .with_eligible_leader_replicas(Some(Vec::new()))
                .with_last_known_elr(Some(Vec::new()))
                .with_offline_replicas(ids(v.offline))
        })
        .collect();
    DescribeTopicPartitionsResponseTopic::default()
        .with_name(Some(topic_name(&t.name)))
        .with_topic_id(t.id)
        .with_is_internal(t.name == crate::group::OFFSETS_TOPIC)
        .with_partitions(partitions)
        .with_topic_authorized_operations(TOPIC_OPERATIONS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::describe_topic_partitions_request::{
        Cursor as AskCursor, TopicRequest,
    };

    fn snap() -> Snapshot {
        let topic = |name: &str, partitions| TopicMeta {
            name: name.into(),
            id: uuid::Uuid::new_v4(),
            partitions,
            configs: Default::default(),
        };
        Snapshot::from_topics(1, [topic("b", 3), topic("a", 2), topic("c", 1)])
    }

    fn ask(
        topics: &[&str],
        limit: i32,
        cursor: Option<(&str, i32)>,
    ) -> DescribeTopicPartitionsRequest {
        DescribeTopicPartitionsRequest::default()
            .with_topics(
                topics
                    .iter()
                    .map(|t| TopicRequest::default().with_name(topic_name(t)))
                    .collect(),
            )
            .with_response_partition_limit(limit)
            .with_cursor(cursor.map(|(t, p)| {
                AskCursor::default()
                    .with_topic_name(topic_name(t))
                    .with_partition_index(p)
            }))
    }

    /// Each topic's name and partition indexes, and the next cursor.
    type Page = (Vec<(String, i16, Vec<i32>)>, Option<(String, i32)>);

    fn shape(r: &DescribeTopicPartitionsResponse) -> Page {
        let topics = r
            .topics
            .iter()
            .map(|t| {
                let name = t.name.as_ref().map(|n| n.0.to_string()).unwrap_or_default();
                let parts = t.partitions.iter().map(|p| p.partition_index).collect();
                (name, t.error_code, parts)
            })
            .collect();
        let next = r
            .next_cursor
            .as_ref()
            .map(|c| (c.topic_name.0.to_string(), c.partition_index));
        (topics, next)
    }

    fn t(name: &str, code: i16, parts: &[i32]) -> (String, i16, Vec<i32>) {
        (name.into(), code, parts.to_vec())
    }

    #[test]
    fn all_topics_in_name_order_within_the_limit() {
        let s = snap();
        let node = BrokerId(1);
        let got = shape(&page(&s, &ask(&[], 2000, None), node));
        let all = vec![t("a", 0, &[0, 1]), t("b", 0, &[0, 1, 2]), t("c", 0, &[0])];
        assert_eq!(got, (all, None));
        // Paged by 2: a whole, then b cut after one partition.
        let got = shape(&page(&s, &ask(&[], 3, None), node));
        assert_eq!(
            got,
            (
                vec![t("a", 0, &[0, 1]), t("b", 0, &[0])],
                Some(("b".into(), 1))
            )
        );
        let got = shape(&page(&s, &ask(&[], 3, Some(("b", 1))), node));
        assert_eq!(got, (vec![t("b", 0, &[1, 2]), t("c", 0, &[0])], None));
        // The limit reached exactly at a topic's end: the next topic is the cursor.
        let got = shape(&page(&s, &ask(&[], 2, None), node));
        assert_eq!(got, (vec![t("a", 0, &[0, 1])], Some(("b".into(), 0))));
        let one = page(&s, &ask(&["c"], 10, None), node);
        let p = &one.topics[0].partitions[0];
        assert_eq!((p.leader_id, p.leader_epoch), (node, 0));
        assert_eq!((&p.replica_nodes, &p.isr_nodes), (&vec![node], &vec![node]));
        assert_eq!(p.eligible_leader_replicas, Some(Vec::new()));
        assert_eq!(one.topics[0].topic_id, s.topic("c").unwrap().id);
    }

    #[test]
    fn named_topics_sorted_unknown_ones_flagged_and_the_cursor_checked() {
        let s = snap();
        let node = BrokerId(1);
        let got = shape(&page(
            &s,
            &ask(&["c", "nope", "a", "c", "bad/name"], 100, None),
            node,
        ));
        assert_eq!(
            got,
            (
                vec![
                    t("a", 0, &[0, 1]),
                    t("bad/name", 17, &[]),
                    t("c", 0, &[0]),
                    t("nope", 3, &[]),
                ],
                None
            )
        );
        // The cursor's topic must be among those named.
        let got = shape(&page(&s, &ask(&["a"], 100, Some(("b", 0))), node));
        assert_eq!(got, (vec![t("a", 42, &[])], None));
        // A cursor past the topic's partitions: the topic with none.
        let got = shape(&page(&s, &ask(&["a", "c"], 100, Some(("a", 5))), node));
        assert_eq!(got, (vec![t("a", 0, &[]), t("c", 0, &[0])], None));
    }
}
