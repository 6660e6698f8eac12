//! The wire side of routing a request's partitions (`shard::route` does the routing): the
//! partition handlers (Produce, Fetch, ListOffsets, DeleteRecords) `flatten` a request's topics
//! into one list of partition items for `shard::route`, and `regroup` cuts the results,
//! in the same order, back into the request's topics.

use std::sync::Arc;

use crate::metadata::TopicMeta;
use crate::shard::route::PartItem;

/// A request's topics flattened into partition items, with what is needed to answer them:
/// each topic's name and partition count (for `regroup`) and each item's partition index.
pub struct Flat<N, I> {
    /// Each topic's name and how many of `items` are its partitions, in request order.
    pub shapes: Vec<(N, usize)>,
    /// Each item's partition index, kept here because `items` go off to be routed.
    pub indexes: Vec<i32>,
    /// The partition items, all topics' in request order, for `shard::route`.
    pub items: Vec<PartItem<I>>,
}

/// Flattens `(topic name, partition entries)` pairs: `topic_of` resolves a name against the
/// caller's snapshot, `split` turns an entry into its partition index and the item to send.
pub fn flatten<N, P, I>(
    topics: impl IntoIterator<Item = (N, Vec<P>)>,
    topic_of: impl Fn(&N) -> Option<Arc<TopicMeta>>,
    split: impl Fn(P) -> (i32, I),
) -> Flat<N, I> {
    let mut flat = Flat {
        shapes: Vec::new(),
        indexes: Vec::new(),
        items: Vec::new(),
    };
    for (name, parts) in topics {
        let topic = topic_of(&name);
        flat.shapes.push((name, parts.len()));
        for p in parts {
            let (index, item) = split(p);
            flat.indexes.push(index);
            flat.items.push(PartItem {
                topic: topic.clone(),
                index,
                item,
            });
        }
    }
    flat
}

/// Cuts `results` (request order, flattened) back into runs of `shapes`' lengths: the
/// per-topic shape of a partition response.
pub fn regroup<N, R>(
    shapes: Vec<(N, usize)>,
    results: impl IntoIterator<Item = R>,
) -> Vec<(N, Vec<R>)> {
    let mut results = results.into_iter();
    shapes
        .into_iter()
        .map(|(name, n)| (name, results.by_ref().take(n).collect()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A request's topics flattened and the results regrouped come back in the request's
    /// shape: each topic with its own partitions' results, in order, empty topics included.
    #[test]
    fn flatten_then_regroup_keeps_the_request_shape() {
        let topics = vec![
            ("a", vec![(0, 'x'), (2, 'y')]),
            ("gone", vec![(5, 'z')]),
            ("empty", vec![]),
            ("b", vec![(1, 'w')]),
        ];
        let flat = flatten(topics, |_| None, |(index, tag)| (index, tag));
        assert_eq!(flat.indexes, [0, 2, 5, 1]);
        let tags: Vec<char> = flat.items.iter().map(|i| i.item).collect();
        assert_eq!(tags, ['x', 'y', 'z', 'w']);
        assert!(flat.items.iter().all(|i| i.topic.is_none()));
        let results = flat
            .items
            .iter()
            .map(|i| (i.index, i.item.to_ascii_uppercase()));
        let regrouped = regroup(flat.shapes, results);
        assert_eq!(
            regrouped,
            [
                ("a", vec![(0, 'X'), (2, 'Y')]),
                ("gone", vec![(5, 'Z')]),
                ("empty", vec![]),
                ("b", vec![(1, 'W')]),
            ]
        );
    }
}
