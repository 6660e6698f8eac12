//! Fetch (key 1): reads each requested partition on its owning shard; if less than min_bytes
//! is there, waits (long poll) until any of them gets data or max_wait_ms passes, then reads
//! again. Whole batches only, Kafka's limits: the response holds at most the request's
//! max_bytes (and the broker's `fetch_bytes_max`), partitions are filled in request order with
//! what is left, only the first batch of the first non-empty partition may exceed a limit, and
//! a partition named twice is served once. The budget also bounds what is read, not only what
//! is sent: each owner shard reads its partitions with what is left of it (`read_owned`).
//! Sessionless: session_id 0 tells clients to send full requests (KIP-227 allows it). The
//! batches are not copied into the response: each partition's are passed on as the `Bytes`
//! they were read as (`frame`).

use std::collections::HashSet;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::messages::fetch_response::{
    EpochEndOffset, FetchableTopicResponse, PartitionData,
};
use kafka_protocol::messages::{FetchRequest, FetchResponse, TopicName};
use uuid::Uuid;

use futures_lite::future;

use crate::budget::Lease;
use crate::kafka::errors::{self, ErrorCode};
use crate::kafka::fanout;
use crate::kafka::frame::{records_marker, Spliced};
use crate::kafka::handlers::join_all;
use crate::metadata::TopicMeta;
use crate::partition::{split_batches, Fetched, Partition};
use crate::runtime;
use crate::shard::route::{self, PartItem};
use crate::shard::Shard;
use crate::types::Offset;

use super::Call;

#[derive(Clone)]
struct Want {
    topic: Option<Arc<TopicMeta>>,
    unknown_code: ErrorCode,
    partition: i32,
    offset: Offset,
    max_bytes: usize,
    epochs: Epochs,
}

/// A fetched partition's epochs as the client sends them (-1: not given).
#[derive(Clone, Copy)]
struct Epochs {
    /// The leader epoch the client believes current (checked: FENCED/UNKNOWN_LEADER_EPOCH).
    current: i32,
    /// The epoch of the last batch the fetcher has (v12+): a diverging log is told where
    /// to truncate.
    last_fetched: i32,
}

/// Answers with each partition's batches from the fetch offset (spliced, not copied), its
/// high watermark and log start, or its error, once `min_bytes` are there or the wait ends.
pub async fn handle(
    s: Rc<Shard>,
    req: FetchRequest,
    call: &Call<'_>,
) -> Option<Spliced<FetchResponse>> {
    let version = call.version;
    let lease = call.lease;
    let snap = s.metadata();
    let mut shapes: Vec<((TopicName, Uuid), usize)> = Vec::new();
    let mut wants = Vec::new();
    let mut named = HashSet::new();
    for t in &req.topics {
        let (topic, unknown_code) = if version >= 13 {
            (
                snap.topic_by_id(&t.topic_id).cloned(),
                errors::UNKNOWN_TOPIC_ID,
            )
        } else {
            (
                snap.topic(&t.topic).cloned(),
                errors::UNKNOWN_TOPIC_OR_PARTITION,
            )
        };
        let before = wants.len();
        for p in &t.partitions {
            if !named.insert((t.topic.clone(), t.topic_id, p.partition)) {
                continue; // named before: served once, where it was first named
            }
            wants.push(Want {
                topic: topic.clone(),
                unknown_code,
                partition: p.partition,
                offset: Offset(p.fetch_offset),
                max_bytes: p.partition_max_bytes.max(0) as usize,
                epochs: Epochs {
                    current: p.current_leader_epoch,
                    last_fetched: p.last_fetched_epoch,
                },
            });
        }
        if wants.len() > before || t.partitions.is_empty() {
            shapes.push(((t.topic.clone(), t.topic_id), wants.len() - before));
        }
    }
    let budget = (req.max_bytes.max(0) as usize).min(s.config.fetch_bytes_max);
    let wait_ms = (req.max_wait_ms.max(0) as u64).min(s.config.fetch_wait_ms_max);
    let deadline = Instant::now() + Duration::from_millis(wait_ms);
    let min_bytes = req.min_bytes.max(0) as usize;
    let request_bytes = lease.bytes();
    let mut results = read_leased(&s, &wants, budget, lease, request_bytes, deadline).await;
    loop {
        let total: usize = results
            .iter()
            .map(|r| r.as_ref().map_or(0, |f| f.bytes()))
            .sum();
        // An error or a diverging epoch is answered at once.
        let errored = results
            .iter()
            .any(|r| r.as_ref().map_or(true, |f| f.diverging_epoch.is_some()));
        let now = Instant::now();
        if total >= min_bytes.max(1) || errored || now >= deadline || s.is_stopping() {
            break;
        }
        // Wait for each partition to grow past what this read saw (not past the fetch
        // offset: a partition holding less than min_bytes must not wake the poll at once).
        let seen: Vec<Offset> = wants
            .iter()
            .zip(&results)
            .map(|(w, r)| {
                r.as_ref()
                    .map_or(w.offset, |f| f.high_watermark.max(w.offset))
            })
            .collect();
        wait_any(&s, &wants, &seen, deadline - now).await;
        drop(std::mem::take(&mut results)); // what the last read held, before the next lease
        results = read_leased(&s, &wants, budget, lease, request_bytes, deadline).await;
    }
    Some(respond(shapes, &wants, results, budget))
}

type PartResult = Result<Fetched, (ErrorCode, Offset, Offset)>;

/// How long a read waits for memory at least, whatever the Fetch's deadline: past it, the read
/// reads nothing (the response still has every partition's offsets) and the client asks again.
/// A bounded wait, so a Fetch waiting for memory that only a later response on its own
/// connection holds (sent after this one) cannot wait for ever.
const MEMORY_WAIT_MS_MIN: u64 = 5_000;

/// `read_all` with the memory it may take leased first from the shard's budget (waiting in
/// line while the budget is spent, until `deadline` or at least MEMORY_WAIT_MS_MIN), and the
/// lease cut back to what the read holds after it. One read leases at most a quarter of the
/// budget, and reads no more than that allows.
async fn read_leased(
    s: &Rc<Shard>,
    wants: &[Want],
    budget: usize,
    lease: &Lease,
    request_bytes: usize,
    deadline: Instant,
) -> Vec<PartResult> {
    let cap = lease.limit() / 4;
    let (need, per_byte) = read_need(s, wants, budget);
    let (need, budget) = if need > cap {
        (cap, budget.min(cap / per_byte)) // each owner may read the whole budget
    } else {
        (need, budget)
    };
    let least = Instant::now() + Duration::from_millis(MEMORY_WAIT_MS_MIN);
    let wait = deadline
        .max(least)
        .saturating_duration_since(Instant::now());
    let granted = future::or(
        async {
            lease.grow_to(request_bytes + need).await;
            true
        },
        async {
            runtime::sleep(wait).await;
            false
        },
    )
    .await;
    let budget = if granted { budget } else { 0 }; // 0: offsets only
    let results = read_all(s, wants, budget).await;
    let held: usize = results
        .iter()
        .map(|r| r.as_ref().map_or(0, Fetched::bytes))
        .sum();
    lease.set(request_bytes + held);
    results
}

/// Reads every wanted partition on its owner shard (one round trip per shard), each shard
/// within `budget` bytes.
async fn read_all(s: &Rc<Shard>, wants: &[Want], budget: usize) -> Vec<PartResult> {
    let items = wants
        .iter()
        .map(|w| PartItem {
            topic: w.topic.clone(),
            index: w.partition,
            item: (w.offset, w.max_bytes, w.epochs),
        })
        .collect();
    let read = route::on_owners(s, items, move |parts| read_owned(parts, budget)).await;
    wants
        .iter()
        .zip(read)
        .map(|(w, r)| match r {
            _ if w.topic.is_none() => Err((w.unknown_code, Offset(-1), Offset(-1))),
            Ok(r) => r,
            Err(code) => Err((code, Offset(-1), Offset(-1))),
        })
        .collect()
}

/// The most memory a `read_all` of `wants` may take at once: each owner shard reads up to the
/// budget (the response keeps to it afterwards), at most its partitions' limits (each charged
/// as `read_owned` does), and a disk read holds its device buffer and the batches taken out of
/// it together for a moment. Also how many bytes of memory a byte of budget can cost (each
/// owner read, twice).
fn read_need(s: &Shard, wants: &[Want], budget: usize) -> (usize, usize) {
    const DISK_READ_COPIES: usize = 2;
    let mut per_owner = vec![0usize; s.shards()];
    for w in wants {
        if let Some(t) = &w.topic {
            let owner = &mut per_owner[s.owner_of(&t.id, w.partition)];
            *owner = owner.saturating_add(w.max_bytes.max(READ_CHARGE_BYTES_MIN));
        }
    }
    let need: usize = per_owner.iter().map(|&n| n.min(budget)).sum();
    let owners = per_owner.iter().filter(|&&n| n > 0).count().max(1);
    (
        need.saturating_mul(DISK_READ_COPIES),
        owners * DISK_READ_COPIES,
    )
}

/// Least a partition read is charged against the budget when reads run concurrently: a read
/// may return one batch (up to max.message.bytes, 1 MiB by default) more than it was asked
/// for, so tiny partition limits over many partitions must not start many reads at once.
const READ_CHARGE_BYTES_MIN: usize = 1 << 20;

/// One owner shard's partitions of a Fetch, read with `budget` bytes between them, in request
/// order: the leading partitions whose limits (each charged at least READ_CHARGE_BYTES_MIN)
/// fit in the budget are read concurrently; the rest one after another, each with what the
/// reads before it left, and none once it is spent (those answer their bounds only). So a
/// shard reads at most the budget plus a batch per partition read concurrently.
async fn read_owned(
    parts: route::Owned<(Offset, usize, Epochs)>,
    budget: usize,
) -> Vec<Result<PartResult, ErrorCode>> {
    let mut left = budget;
    let concurrent = parts
        .iter()
        .take_while(|(_, (_, max, _))| {
            let charge = (*max).max(READ_CHARGE_BYTES_MIN);
            let fits = charge <= left;
            left = left.saturating_sub(charge);
            fits
        })
        .count();
    let mut parts = parts.into_iter();
    let mut out = join_all(
        parts
            .by_ref()
            .take(concurrent)
            .map(|(p, (offset, max, epochs))| read_one(p, offset, max, epochs)),
    )
    .await;
    let used: usize = out.iter().map(read_bytes).sum();
    let mut left = budget.saturating_sub(used);
    for (p, (offset, max, epochs)) in parts {
        let r = read_one(p, offset, max.min(left), epochs).await;
        left = left.saturating_sub(read_bytes(&r));
        out.push(r);
    }
    out
}

async fn read_one(
    p: Option<Rc<Partition>>,
    offset: Offset,
    max: usize,
    epochs: Epochs,
) -> Result<PartResult, ErrorCode> {
    let Some(p) = p else {
        return Err(errors::UNKNOWN_TOPIC_OR_PARTITION);
    };
    if let Err(e) = p.check_leader_epoch(epochs.current) {
        return Ok(Err((e.into(), p.high_watermark(), p.log_start())));
    }
    if let Some(diverging) = p.diverging(offset, epochs.last_fetched) {
        return Ok(Ok(Fetched {
            high_watermark: p.high_watermark(),
            log_start_offset: p.log_start(),
            diverging_epoch: Some(diverging),
            ..Fetched::default()
        }));
    }
    let read = p.read(offset, max).await;
    Ok(read.map_err(|e| (errors::storage(&e), p.high_watermark(), p.log_start())))
}

fn read_bytes(r: &Result<PartResult, ErrorCode>) -> usize {
    match r {
        Ok(Ok(f)) => f.bytes(),
        _ => 0,
    }
}

/// Returns when any wanted partition's high watermark passes its `seen` offset, or after
/// `timeout`.
async fn wait_any(s: &Rc<Shard>, wants: &[Want], seen: &[Offset], timeout: Duration) {
    let items = wants
        .iter()
        .zip(seen)
        .map(|(w, &offset)| PartItem {
            topic: w.topic.clone(),
            index: w.partition,
            item: offset,
        })
        .collect();
    route::wait_any(s, items, timeout, move |p, offset| async move {
        p.wait_for_data(offset, timeout).await
    })
    .await
}

fn respond(
    shapes: Vec<((TopicName, Uuid), usize)>,
    wants: &[Want],
    results: Vec<PartResult>,
    max: usize,
) -> Spliced<FetchResponse> {
    let mut total = 0usize;
    let mut sets = Vec::new();
    let parts: Vec<PartitionData> = wants
        .iter()
        .zip(results)
        .map(|(w, r)| partition_data(w, r, &mut total, max, &mut sets))
        .collect();
    let responses = fanout::regroup(shapes, parts)
        .into_iter()
        .map(|((name, id), parts)| {
            FetchableTopicResponse::default()
                .with_topic(name)
                .with_topic_id(id)
                .with_partitions(parts)
        })
        .collect();
    Spliced {
        body: FetchResponse::default().with_responses(responses),
        sets,
    }
}

/// A partition's part of the response. Its batches, if they fit, are pushed on `sets` and
/// the `records` field gets the marker the encoder replaces with them (in partition order).
fn partition_data(
    w: &Want,
    r: PartResult,
    total: &mut usize,
    max: usize,
    sets: &mut Vec<Vec<Bytes>>,
) -> PartitionData {
    let base = PartitionData::default().with_partition_index(w.partition);
    match r {
        Err((code, hw, start)) => base
            .with_error_code(code.code())
            .with_high_watermark(hw.get())
            .with_last_stable_offset(hw.get())
            .with_log_start_offset(start.get()),
        Ok(f) => {
            let records = if *total == 0 {
                f.records // the first non-empty partition: whole, whatever its size
            } else {
                let room = w.max_bytes.min(max.saturating_sub(*total));
                whole_batches_within(f.records, room)
            };
            let n: usize = records.iter().map(|b| b.len()).sum();
            let records = if n > 0 {
                *total += n;
                sets.push(records);
                records_marker()
            } else {
                Bytes::new()
            };
            let base = match f.diverging_epoch {
                Some((epoch, end)) => base.with_diverging_epoch(
                    EpochEndOffset::default()
                        .with_epoch(epoch)
                        .with_end_offset(end),
                ),
                None => base,
            };
            base.with_high_watermark(f.high_watermark.get())
                .with_last_stable_offset(f.high_watermark.get())
                .with_log_start_offset(f.log_start_offset.get())
                .with_records(Some(records))
        }
    }
}

/// The leading whole batches of `records` that fit in `room` bytes.
fn whole_batches_within(records: Vec<Bytes>, mut room: usize) -> Vec<Bytes> {
    let mut out = Vec::new();
    for run in records {
        if run.len() <= room {
            room -= run.len();
            out.push(run);
            continue;
        }
        // A run of several batches (a cached extent): keep the batches that fit.
        for b in split_batches(run).unwrap_or_default() {
            if b.len() > room {
                return out;
            }
            room -= b.len();
            out.push(b);
        }
        return out;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::batch::build_test_batch;
    use crate::types::TimestampMs;

    fn batch(value_bytes: usize) -> Bytes {
        Bytes::from(build_test_batch(1, value_bytes, TimestampMs(1)))
    }

    #[test]
    fn whole_batches_within_cuts_runs_at_batch_boundaries() {
        let (a, b, c) = (batch(100), batch(200), batch(300));
        let run = Bytes::from([a.clone(), b.clone()].concat());
        let sets = vec![run.clone(), c.clone()];
        let lens = |v: &[Bytes]| v.iter().map(|x| x.len()).collect::<Vec<_>>();
        // Everything fits: the runs pass through as they are.
        let all = whole_batches_within(sets.clone(), usize::MAX);
        assert_eq!(lens(&all), vec![run.len(), c.len()]);
        // Room for the first batch and part of the second: the run is cut after the first.
        let cut = whole_batches_within(sets.clone(), a.len() + b.len() - 1);
        assert_eq!(lens(&cut), vec![a.len()]);
        // Room for the run and part of the last: the last is left out.
        let two = whole_batches_within(sets.clone(), run.len() + c.len() - 1);
        assert_eq!(lens(&two), vec![run.len()]);
        // Less than a batch: nothing.
        assert!(whole_batches_within(sets, a.len() - 1).is_empty());
    }
}
