//! Routing work to the shards that own it. A request's partitions go to their owner shards
//! with one mesh round trip per owner shard instead of one per partition: Produce and Fetch
//! name many partitions per request (16 in the standard benchmark), and sending each on its own
//! cost a boxed job, a reply slot and a cross-thread wake-up per partition, both ways. Here the
//! items for one shard travel together, run concurrently on that shard, and their results come
//! back in one reply, in request order. Group work goes to the group's coordinator shard,
//! producer ids come from shard 0.
//!
//! Sits between the handlers (`crate::kafka`, which map the wire to these calls and back) and
//! [`Shard::on`]. What cannot be routed is an [`Unrouted`], which the caller's error type
//! takes in (`E: From<Unrouted>`); Kafka's error codes are not known here.

use std::future::Future;
use std::rc::Rc;
use std::sync::Arc;

use uuid::Uuid;

use super::{Shard, ShardGone};
use crate::group::{Coordinator, GroupListing};
use crate::metadata::{TopicMeta, Where};
use crate::partition::Partition;
use crate::runtime::{self, join_all};
use crate::storage::StorageError;

/// Why an item was not served on its owner shard.
#[derive(Debug, Clone, Copy)]
pub enum Unrouted {
    /// The topic is unknown, the index out of range, or the owner does not have the partition.
    UnknownPartition,
    /// The owner shard is gone (shutting down).
    ShardGone(ShardGone),
    /// In a cluster: the partition is served by another broker, or its broker is dead (the
    /// client refreshes its metadata and goes to the leader, once there is one).
    NotHere,
}

/// One partition named by a request, with what the owner needs to serve it.
pub struct PartItem<I> {
    /// The topic from the caller's snapshot; None for a topic it does not know.
    pub topic: Option<Arc<TopicMeta>>,
    /// The partition index as the request gives it (not yet checked).
    pub index: i32,
    /// What the owner needs for this partition (records to append, a fetch position...).
    pub item: I,
}

/// The items one shard owns, each with its position in the request.
struct Batch<I> {
    owner: usize,
    items: Vec<(usize, Uuid, i32, I)>,
}

/// Groups items by owning shard (`locate`), in first-seen shard order, and returns the
/// positions of items not served here with why: an unknown topic or a partition out of
/// range, or (in a cluster) a partition on another broker or on none.
fn by_owner<I>(
    items: Vec<PartItem<I>>,
    locate: impl Fn(&Uuid, i32) -> Where,
) -> (Vec<Batch<I>>, Vec<(usize, Unrouted)>) {
    let mut batches: Vec<Batch<I>> = Vec::new();
    let mut unknown = Vec::new();
    for (pos, it) in items.into_iter().enumerate() {
        let Some(topic) = it
            .topic
            .filter(|t| it.index >= 0 && it.index < t.partitions)
        else {
            unknown.push((pos, Unrouted::UnknownPartition));
            continue;
        };
        let owner = match locate(&topic.id, it.index) {
            Where::Here(owner) => owner,
            Where::There(_) | Where::Nowhere => {
                unknown.push((pos, Unrouted::NotHere));
                continue;
            }
        };
        let entry = (pos, topic.id, it.index, it.item);
        match batches.iter_mut().find(|b| b.owner == owner) {
            Some(b) => b.items.push(entry),
            None => batches.push(Batch {
                owner,
                items: vec![entry],
            }),
        }
    }
    (batches, unknown)
}

/// Runs `f` for every item on the shard that owns its partition and returns the results in
/// item order. A partition the owner does not have is `Unrouted::UnknownPartition`; each
/// item of an unreachable shard is `Unrouted::ShardGone`.
pub async fn on_partitions<I, T, E, F, Fut>(
    s: &Rc<Shard>,
    items: Vec<PartItem<I>>,
    f: F,
) -> Vec<Result<T, E>>
where
    I: Send + 'static,
    T: Send + 'static,
    E: From<Unrouted> + Send + 'static,
    F: Fn(Rc<Partition>, I) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = Result<T, E>> + 'static,
{
    on_owners(s, items, move |parts| {
        let f = f.clone();
        async move {
            join_all(parts.into_iter().map(|(p, item)| {
                let f = f.clone();
                async move {
                    match p {
                        Some(p) => f(p, item).await,
                        None => Err(Unrouted::UnknownPartition.into()),
                    }
                }
            }))
            .await
        }
    })
    .await
}

/// One owner shard's items, each with its partition (`None`: the owner does not have it).
pub type Owned<I> = Vec<(Option<Rc<Partition>>, I)>;

/// As `on_partitions`, but `g` gets all of one owner shard's items at once (in request order,
/// `None` for a partition the owner does not have) and answers each of them, in that order:
/// for handlers that share something, such as a byte budget, among a shard's partitions.
pub async fn on_owners<I, T, E, G, Fut>(
    s: &Rc<Shard>,
    items: Vec<PartItem<I>>,
    g: G,
) -> Vec<Result<T, E>>
where
    I: Send + 'static,
    T: Send + 'static,
    E: From<Unrouted> + Send + 'static,
    G: Fn(Owned<I>) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = Vec<Result<T, E>>> + 'static,
{
    let mut out: Vec<Option<Result<T, E>>> = (0..items.len()).map(|_| None).collect();
    let (batches, unknown) = by_owner(items, |id, index| s.locate(id, index));
    for (pos, why) in unknown {
        out[pos] = Some(Err(why.into()));
    }
    let tasks: Vec<_> = batches
        .into_iter()
        .map(|b| runtime::spawn(run_batch(s.clone(), b, g.clone())))
        .collect();
    for t in tasks {
        for (pos, r) in t.await {
            out[pos] = Some(r);
        }
    }
    out.into_iter()
        .map(|r| r.expect("every item answered once"))
        .collect()
}

/// One owner shard's items: shipped in one job, handed to `g` there, answered together.
async fn run_batch<I, T, E, G, Fut>(s: Rc<Shard>, b: Batch<I>, g: G) -> Vec<(usize, Result<T, E>)>
where
    I: Send + 'static,
    T: Send + 'static,
    E: From<Unrouted> + Send + 'static,
    G: Fn(Owned<I>) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = Vec<Result<T, E>>> + 'static,
{
    let positions: Vec<usize> = b.items.iter().map(|e| e.0).collect();
    let items = b.items;
    let answered = s
        .on(b.owner, move |owner| async move {
            let parts = items
                .into_iter()
                .map(|(_, id, index, item)| (owner.partition(&id, index), item))
                .collect();
            g(parts).await
        })
        .await;
    match answered {
        Ok(results) => {
            assert_eq!(results.len(), positions.len(), "one result per item");
            positions.into_iter().zip(results).collect()
        }
        Err(gone) => positions
            .into_iter()
            .map(|pos| (pos, Err(Unrouted::ShardGone(gone).into())))
            .collect(),
    }
}

/// Waits on each owner shard until any item's `wait` future finishes there, or `timeout`
/// passes; returns when the first shard answers. One job per owner shard, however many of its
/// partitions are watched. Unknown partitions are skipped (the read that follows reports them).
pub async fn wait_any<I, F, Fut>(
    s: &Rc<Shard>,
    items: Vec<PartItem<I>>,
    timeout: std::time::Duration,
    wait: F,
) where
    I: Send + 'static,
    F: Fn(Rc<Partition>, I) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = ()> + 'static,
{
    let (batches, _) = by_owner(items, |id, index| s.locate(id, index));
    let woke = Rc::new(event_listener::Event::new());
    let listener = woke.listen();
    let _tasks: Vec<_> = batches
        .into_iter()
        .map(|b| {
            let (s, woke, wait) = (s.clone(), woke.clone(), wait.clone());
            runtime::spawn(async move {
                let items = b.items;
                let _ = s
                    .on(b.owner, move |owner| async move {
                        let futs = items.into_iter().filter_map(|(_, id, index, item)| {
                            let p = owner.partition(&id, index)?;
                            Some(Box::pin(wait(p, item)))
                        });
                        first_of(futs.collect(), timeout).await;
                    })
                    .await;
                woke.notify(usize::MAX);
            })
        })
        .collect();
    futures_lite::future::or(listener, runtime::sleep(timeout)).await;
}

/// Completes when the first of `futs` does, or after `timeout` (also when `futs` is empty).
async fn first_of<Fut: Future<Output = ()>>(
    mut futs: Vec<std::pin::Pin<Box<Fut>>>,
    timeout: std::time::Duration,
) {
    // Polls every future on each wake-up: a fetch watches at most a few hundred partitions.
    let any = std::future::poll_fn(move |cx| {
        for f in futs.iter_mut() {
            if f.as_mut().poll(cx).is_ready() {
                return std::task::Poll::Ready(());
            }
        }
        std::task::Poll::Pending
    });
    futures_lite::future::or(any, runtime::sleep(timeout)).await
}

/// Runs `f` with the coordinator of shard `shard` (where a group lives: `Shard::group_home`).
pub async fn on_coordinator<T, F, Fut>(s: &Shard, shard: usize, f: F) -> Result<T, ShardGone>
where
    T: Send + 'static,
    F: FnOnce(Rc<Coordinator>) -> Fut + Send + 'static,
    Fut: Future<Output = T> + 'static,
{
    s.on(shard, move |s| f(s.groups.clone())).await
}

/// Runs `f` on every shard at once; its answers in shard order (`ShardGone` for a shard that
/// could not answer).
pub async fn on_every_shard<T, F>(s: &Rc<Shard>, f: F) -> Vec<Result<T, ShardGone>>
where
    T: Send + 'static,
    F: Fn(&Shard) -> T + Clone + Send + 'static,
{
    let asks = (0..s.shards()).map(|i| {
        let (s, f) = (s.clone(), f.clone());
        async move { s.on(i, move |s| async move { f(&s) }).await }
    });
    join_all(asks).await
}

/// Every group of every shard (ListGroups), with the last shard that could not answer.
pub async fn list_groups_everywhere(s: &Rc<Shard>) -> (Vec<GroupListing>, Option<ShardGone>) {
    let mut all = Vec::new();
    let mut gone = None;
    for answer in on_every_shard(s, |s| s.groups.list()).await {
        match answer {
            Ok(groups) => all.extend(groups),
            Err(e) => gone = Some(e),
        }
    }
    (all, gone)
}

/// A fresh producer id from the controller shard's never-reused allocator (InitProducerId).
pub async fn allocate_producer_id(s: &Shard) -> Result<Result<i64, ProducerIdError>, ShardGone> {
    s.on(0, |s| async move {
        let ids = s
            .producer_ids
            .as_ref()
            .expect("shard 0 allocates producer ids");
        if s.config.cluster.is_none() {
            return ids.allocate().await.map_err(ProducerIdError::Storage);
        }
        let block = || async {
            let size = super::producer_ids::PRODUCER_ID_BLOCK;
            let got = s.producer_id_block(size).await;
            got.map_err(|e| ProducerIdError::Unavailable(e.to_string()))
        };
        ids.allocate_with(block).await
    })
    .await
}

/// Why no producer id was handed out.
#[derive(Debug)]
pub enum ProducerIdError {
    /// Persisting the next block failed (a single broker).
    Storage(StorageError),
    /// In a cluster: no block could be had from the metadata log now (retriable).
    Unavailable(String),
}

impl From<StorageError> for ProducerIdError {
    fn from(e: StorageError) -> Self {
        ProducerIdError::Storage(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metadata::TopicMeta;

    fn topic(partitions: i32) -> Arc<TopicMeta> {
        Arc::new(TopicMeta {
            name: "t".into(),
            id: Uuid::new_v4(),
            partitions,
            configs: Default::default(),
        })
    }

    fn item(topic: Option<&Arc<TopicMeta>>, index: i32, tag: char) -> PartItem<char> {
        PartItem {
            topic: topic.cloned(),
            index,
            item: tag,
        }
    }

    /// Items go to their owners in first-seen owner order, each with its position in the
    /// request, in request order within an owner; unknown topics and indexes out of range are
    /// set aside by position.
    #[test]
    fn items_are_grouped_by_owner_in_first_seen_order() {
        let t = topic(4);
        let items = vec![
            item(Some(&t), 3, 'a'),
            item(None, 0, 'b'),
            item(Some(&t), 0, 'c'),
            item(Some(&t), 1, 'd'),
            item(Some(&t), 4, 'e'),
            item(Some(&t), -1, 'f'),
            item(Some(&t), 2, 'g'),
            item(Some(&t), 1, 'h'),
        ];
        // Partition i lives on shard i % 2 here, but item 'h' asks a broker where partition
        // 1 lives elsewhere; 'b', 'e' and 'f' name nothing.
        let located = std::cell::Cell::new(0);
        let (batches, unknown) = by_owner(items, |_, index| {
            located.set(located.get() + 1);
            match located.get() {
                5 => Where::There(2),
                _ => Where::Here((index % 2) as usize),
            }
        });
        let why: Vec<(usize, bool)> = unknown
            .iter()
            .map(|(pos, u)| (*pos, matches!(u, Unrouted::NotHere)))
            .collect();
        assert_eq!(why, [(1, false), (4, false), (5, false), (7, true)]);
        /// An owner and its items' (position, partition, tag).
        type Routed = (usize, Vec<(usize, i32, char)>);
        let seen: Vec<Routed> = batches
            .into_iter()
            .map(|b| {
                let items = b.items.into_iter().map(|(pos, id, i, c)| {
                    assert_eq!(id, t.id);
                    (pos, i, c)
                });
                (b.owner, items.collect())
            })
            .collect();
        assert_eq!(
            seen,
            [
                (1, vec![(0, 3, 'a'), (3, 1, 'd')]),
                (0, vec![(2, 0, 'c'), (6, 2, 'g')]),
            ]
        );
    }

    #[test]
    fn nothing_to_route_is_no_batch() {
        let (batches, unknown) = by_owner(Vec::<PartItem<()>>::new(), |_, _| Where::Here(0));
        assert!(batches.is_empty() && unknown.is_empty());
    }
}
