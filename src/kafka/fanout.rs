//! Fans a request's partitions out to the shards that own them, with one mesh round trip per
//! owner shard instead of one per partition. Produce and Fetch name many partitions per request
//! (16 in the standard benchmark); sending each on its own cost a boxed job, a reply slot and a
//! cross-thread wake-up per partition, both ways. Here the items for one shard travel together,
//! run concurrently on that shard, and their results come back in one reply, in request order.
//!
//! Sits between the partition handlers (Produce, Fetch, ListOffsets, DeleteRecords) and
//! `Shard::on`. The handlers flatten a request's topics into one item list, and `regroup`
//! cuts the results back into the request's topics.

use std::future::Future;
use std::rc::Rc;
use std::sync::Arc;

use uuid::Uuid;

use crate::kafka::errors;
use crate::kafka::handlers::join_all;
use crate::metadata::TopicMeta;
use crate::partition::Partition;
use crate::runtime;
use crate::shard::Shard;

/// One partition named by a request, with what the owner needs to serve it.
pub struct PartItem<I> {
    pub topic: Option<Arc<TopicMeta>>,
    pub index: i32,
    pub item: I,
}

/// The items one shard owns, each with its position in the request.
struct Batch<I> {
    owner: usize,
    items: Vec<(usize, Uuid, i32, I)>,
}

/// A request's topics flattened into partition items, with what is needed to answer them:
/// each topic's name and partition count (for `regroup`) and each item's partition index.
pub struct Flat<N, I> {
    pub shapes: Vec<(N, usize)>,
    pub indexes: Vec<i32>,
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

/// Groups items by owning shard, in first-seen shard order. Items naming an unknown topic or a
/// partition out of range are answered at once with UNKNOWN_TOPIC_OR_PARTITION.
fn by_owner<I>(s: &Shard, items: Vec<PartItem<I>>) -> (Vec<Batch<I>>, Vec<usize>) {
    let mut batches: Vec<Batch<I>> = Vec::new();
    let mut unknown = Vec::new();
    for (pos, it) in items.into_iter().enumerate() {
        let Some(topic) = it
            .topic
            .filter(|t| it.index >= 0 && it.index < t.partitions)
        else {
            unknown.push(pos);
            continue;
        };
        let owner = s.owner_of(&topic.id, it.index);
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
/// item order. A partition the owner does not have is UNKNOWN_TOPIC_OR_PARTITION; an
/// unreachable shard maps to its error code for each of its items.
pub async fn on_partitions<I, T, F, Fut>(
    s: &Rc<Shard>,
    items: Vec<PartItem<I>>,
    f: F,
) -> Vec<Result<T, i16>>
where
    I: Send + 'static,
    T: Send + 'static,
    F: Fn(Rc<Partition>, I) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = Result<T, i16>> + 'static,
{
    on_owners(s, items, move |parts| {
        let f = f.clone();
        async move {
            join_all(parts.into_iter().map(|(p, item)| {
                let f = f.clone();
                async move {
                    match p {
                        Some(p) => f(p, item).await,
                        None => Err(errors::UNKNOWN_TOPIC_OR_PARTITION),
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
pub async fn on_owners<I, T, G, Fut>(
    s: &Rc<Shard>,
    items: Vec<PartItem<I>>,
    g: G,
) -> Vec<Result<T, i16>>
where
    I: Send + 'static,
    T: Send + 'static,
    G: Fn(Owned<I>) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = Vec<Result<T, i16>>> + 'static,
{
    let mut out: Vec<Option<Result<T, i16>>> = (0..items.len()).map(|_| None).collect();
    let (batches, unknown) = by_owner(s, items);
    for pos in unknown {
        out[pos] = Some(Err(errors::UNKNOWN_TOPIC_OR_PARTITION));
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
async fn run_batch<I, T, G, Fut>(s: Rc<Shard>, b: Batch<I>, g: G) -> Vec<(usize, Result<T, i16>)>
where
    I: Send + 'static,
    T: Send + 'static,
    G: Fn(Owned<I>) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = Vec<Result<T, i16>>> + 'static,
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
            .map(|pos| (pos, Err(errors::shard_gone(&gone))))
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
    let (batches, _) = by_owner(s, items);
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
