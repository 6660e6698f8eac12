//! DescribeLogDirs (key 35): the broker's log directories with the partitions in them and
//! their sizes, which kafka-log-dirs and the admin tools' disk views ask for. shardlog has one
//! log directory, the data dir; each partition's size is asked of its owning shard, and the
//! directory's size and usable bytes (v4) come from statvfs.

use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;
use std::sync::Arc;

use kafka_protocol::messages::describe_log_dirs_response::{
    DescribeLogDirsPartition, DescribeLogDirsResult, DescribeLogDirsTopic,
};
use kafka_protocol::messages::{DescribeLogDirsRequest, DescribeLogDirsResponse};

use super::{str_bytes, topic_name, Call};
use crate::kafka::errors::ErrorCode;
use crate::metadata::{store, Snapshot, TopicMeta};
use crate::shard::route::{self, PartItem};
use crate::shard::Shard;

/// What Kafka answers for a volume size it cannot read.
const UNKNOWN_VOLUME_BYTES: i64 = -1;

/// Answers the data dir with every partition asked for (all when the request names no
/// topics; unknown topics and partitions are left out, as Kafka leaves them), each with its
/// size on disk, offset lag 0 and is_future false.
pub async fn handle(
    s: Rc<Shard>,
    req: DescribeLogDirsRequest,
    _call: &Call<'_>,
) -> Option<DescribeLogDirsResponse> {
    let wanted = wanted(&s.metadata(), &req);
    let items: Vec<PartItem<()>> = wanted
        .iter()
        .map(|(topic, index)| PartItem {
            topic: Some(topic.clone()),
            index: *index,
            item: (),
        })
        .collect();
    let sizes = route::on_partitions(&s, items, |p, ()| async move {
        Ok::<_, ErrorCode>(p.size_bytes())
    })
    .await;
    let mut by_topic: BTreeMap<&str, Vec<DescribeLogDirsPartition>> = BTreeMap::new();
    for ((topic, index), size) in wanted.iter().zip(sizes) {
        // A partition its shard could not answer for (closing, deleted meanwhile) is left out.
        let Ok(size) = size else { continue };
        by_topic.entry(topic.name.as_str()).or_default().push(
            DescribeLogDirsPartition::default()
                .with_partition_index(*index)
                .with_partition_size(i64::try_from(size).unwrap_or(i64::MAX))
                .with_offset_lag(0)
                .with_is_future_key(false),
        );
    }
    let topics = by_topic
        .into_iter()
        .map(|(name, partitions)| {
            DescribeLogDirsTopic::default()
                .with_name(topic_name(name))
                .with_partitions(partitions)
        })
        .collect();
    let space = store::disk_space(&s.config.data_dir).ok();
    let bytes = |b: u64| i64::try_from(b).unwrap_or(i64::MAX);
    let dir = DescribeLogDirsResult::default()
        .with_log_dir(str_bytes(&s.config.data_dir.to_string_lossy()))
        .with_topics(topics)
        .with_total_bytes(space.map_or(UNKNOWN_VOLUME_BYTES, |d| bytes(d.total)))
        .with_usable_bytes(space.map_or(UNKNOWN_VOLUME_BYTES, |d| bytes(d.usable)));
    Some(DescribeLogDirsResponse::default().with_results(vec![dir]))
}

/// The partitions asked for that exist, each once, in topic name and index order.
fn wanted(snap: &Snapshot, req: &DescribeLogDirsRequest) -> Vec<(Arc<TopicMeta>, i32)> {
    let Some(asked) = &req.topics else {
        return snap
            .topics
            .values()
            .flat_map(|t| (0..t.partitions).map(move |i| (t.clone(), i)))
            .collect();
    };
    let mut set: BTreeMap<&str, BTreeSet<i32>> = BTreeMap::new();
    for t in asked {
        set.entry(t.topic.0.as_str())
            .or_default()
            .extend(t.partitions.iter().copied());
    }
    let mut out = Vec::new();
    for (name, indexes) in set {
        let Some(meta) = snap.topic(name) else {
            continue;
        };
        for i in indexes
            .into_iter()
            .filter(|i| (0..meta.partitions).contains(i))
        {
            out.push((meta.clone(), i));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::describe_log_dirs_request::DescribableLogDirTopic;

    #[test]
    fn all_partitions_or_the_existing_ones_asked_for_each_once() {
        let topic = |name: &str, partitions| TopicMeta {
            name: name.into(),
            id: uuid::Uuid::new_v4(),
            partitions,
            configs: Default::default(),
        };
        let snap = Snapshot::from_topics(1, [topic("b", 2), topic("a", 1)]);
        let names = |w: Vec<(Arc<TopicMeta>, i32)>| -> Vec<(String, i32)> {
            w.into_iter().map(|(t, i)| (t.name.clone(), i)).collect()
        };
        let all = wanted(&snap, &DescribeLogDirsRequest::default().with_topics(None));
        let expect = |v: &[(&str, i32)]| -> Vec<(String, i32)> {
            v.iter().map(|(n, i)| (n.to_string(), *i)).collect()
        };
        assert_eq!(names(all), expect(&[("a", 0), ("b", 0), ("b", 1)]));
        let ask = |name: &str, parts: &[i32]| {
            DescribableLogDirTopic::default()
                .with_topic(topic_name(name))
                .with_partitions(parts.to_vec())
        };
        let req = DescribeLogDirsRequest::default().with_topics(Some(vec![
            ask("b", &[1, 7, -1]),
            ask("nope", &[0]),
            ask("b", &[1, 0]),
        ]));
        assert_eq!(names(wanted(&snap, &req)), expect(&[("b", 0), ("b", 1)]));
    }
}
