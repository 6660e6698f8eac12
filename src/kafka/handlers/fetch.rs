//! Fetch (key 1): reads each requested partition on its owning shard; if less than min_bytes
//! is there, waits (long poll) until any of them gets data or max_wait_ms passes, then reads
//! again. Whole batches only; the response holds at most max_bytes, except that the first
//! non-empty partition is always returned whole (Kafka's rule). Sessionless: session_id 0
//! tells clients to send full requests (KIP-227 allows it). The batches are not copied into
//! the response: each partition's are passed on as the `Bytes` they were read as (`frame`).

use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::{FetchRequest, FetchResponse, TopicName};
use uuid::Uuid;

use crate::kafka::errors;
use crate::kafka::fanout::{self, PartItem};
use crate::kafka::frame::{records_marker, Spliced};
use crate::metadata::TopicMeta;
use crate::partition::Fetched;
use crate::shard::Shard;
use crate::types::Offset;

#[derive(Clone)]
struct Want {
    topic: Option<Arc<TopicMeta>>,
    unknown_code: i16,
    partition: i32,
    offset: Offset,
    max_bytes: usize,
}

pub async fn handle(
    s: Rc<Shard>,
    req: FetchRequest,
    version: i16,
) -> Option<Spliced<FetchResponse>> {
    let snap = s.metadata();
    let mut shapes: Vec<((TopicName, Uuid), usize)> = Vec::new();
    let mut wants = Vec::new();
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
        shapes.push(((t.topic.clone(), t.topic_id), t.partitions.len()));
        for p in &t.partitions {
            wants.push(Want {
                topic: topic.clone(),
                unknown_code,
                partition: p.partition,
                offset: Offset(p.fetch_offset),
                max_bytes: p.partition_max_bytes.max(0) as usize,
            });
        }
    }
    let wait_ms = (req.max_wait_ms.max(0) as u64).min(s.config.fetch_wait_ms_max);
    let deadline = Instant::now() + Duration::from_millis(wait_ms);
    let min_bytes = req.min_bytes.max(0) as usize;
    let mut results = read_all(&s, &wants).await;
    loop {
        let total: usize = results
            .iter()
            .map(|r| r.as_ref().map_or(0, |f| f.bytes()))
            .sum();
        let errored = results.iter().any(|r| r.is_err());
        let now = Instant::now();
        if total >= min_bytes.max(1) || errored || now >= deadline || s.stopping.get() {
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
        results = read_all(&s, &wants).await;
    }
    Some(respond(
        shapes,
        &wants,
        results,
        req.max_bytes.max(0) as usize,
    ))
}

type PartResult = Result<Fetched, (i16, Offset, Offset)>;

/// Reads every wanted partition on its owner shard (one round trip per shard).
async fn read_all(s: &Rc<Shard>, wants: &[Want]) -> Vec<PartResult> {
    let items = wants
        .iter()
        .map(|w| PartItem {
            topic: w.topic.clone(),
            index: w.partition,
            item: (w.offset, w.max_bytes),
        })
        .collect();
    let read = fanout::on_partitions(s, items, |p, (offset, max)| async move {
        let read = p.read(offset, max).await;
        Ok(read.map_err(|e| {
            (
                errors::storage(&e),
                p.log.high_watermark(),
                p.log.log_start(),
            )
        }))
    })
    .await;
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
    fanout::wait_any(s, items, timeout, move |p, offset| async move {
        p.log.wait_for_data(offset, timeout).await
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
            .with_error_code(code)
            .with_high_watermark(hw.get())
            .with_last_stable_offset(hw.get())
            .with_log_start_offset(start.get()),
        Ok(f) => {
            let n = f.bytes();
            let fits = *total == 0 || *total + n <= max;
            let records = if fits && n > 0 {
                *total += n;
                sets.push(f.records);
                records_marker()
            } else {
                Bytes::new()
            };
            base.with_high_watermark(f.high_watermark.get())
                .with_last_stable_offset(f.high_watermark.get())
                .with_log_start_offset(f.log_start_offset.get())
                .with_records(Some(records))
        }
    }
}
