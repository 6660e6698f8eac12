//! Produce (key 0): each partition's records go to the shard that owns the partition, all
//! partitions in parallel, one mesh round trip per owner shard (`kafka::fanout`); the answer
//! waits for the durability `acks` asks for (see `Partition::produce`). acks=0 gets no
//! response at all, as in Kafka.

use std::rc::Rc;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{ProduceRequest, ProduceResponse, TopicName};
use kafka_protocol::protocol::StrBytes;

use crate::kafka::compression;
use crate::kafka::errors::{self, ErrorCode};
use crate::kafka::fanout;
use crate::metadata::TopicMeta;
use crate::shard::route::{self, PartItem};
use crate::shard::Shard;

use super::Call;

/// Largest batch, decompressed, that the record-count check and recompression will expand.
const DECOMPRESSED_BYTES_MAX: usize = 64 << 20;

/// Appends each partition's batches on its owner shard; once `acks` is met, answers each with
/// its base offset, log-append time and log start, or its error (acks=0: no answer). The
/// batches are taken over from the request body (`Call::take_frame`) without a copy.
pub async fn handle(s: Rc<Shard>, req: ProduceRequest, call: &Call<'_>) -> Option<ProduceResponse> {
    let version = call.version;
    let frame = call.take_frame();
    let acks = req.acks;
    let snap = s.metadata();
    let mut shapes = Vec::with_capacity(req.topic_data.len());
    // Per partition entry in request order: its index, and the error it was refused with here.
    let mut checked: Vec<(i32, Option<Refused>)> = Vec::new();
    let mut items = Vec::new();
    for t in req.topic_data {
        let topic = snap.topic(&t.name).cloned();
        // An owned copy: the name in the request is a slice of the frame (see own_records).
        let name = TopicName(StrBytes::from_string(t.name.to_string()));
        shapes.push(((name, t.topic_id), t.partition_data.len()));
        for pd in t.partition_data {
            let replicated = topic.as_ref().is_some_and(|t| {
                let c = snap.cluster.as_ref();
                let set = c.and_then(|c| c.replica_set(&t.id, pd.index));
                set.is_some_and(|s| s.is_replicated())
            });
            // A replicated partition's leader counts its in-sync replicas itself.
            let insync_checked = topic.as_ref().filter(|_| !replicated);
            match prepare(topic.as_ref(), insync_checked, pd.records, acks, version) {
                Ok(records) => {
                    checked.push((pd.index, None));
                    items.push(PartItem {
                        topic: topic.clone(),
                        index: pd.index,
                        item: records,
                    });
                }
                Err(code) => checked.push((pd.index, Some(code))),
            }
        }
    }
    let items = own_records(frame, items);
    let appended = route::on_partitions(&s, items, move |p, records| async move {
        let appended = p.produce(records, acks).await;
        Ok(appended.map_err(|e| (errors::produce(&e), errors::produce_message(&e))))
    })
    .await;
    let mut appended = appended.into_iter();
    let parts = checked.into_iter().map(|(index, refused)| {
        let r = match refused {
            Some(refused) => Err(refused),
            None => match appended.next().expect("one answer per item sent") {
                Ok(Ok(a)) => Ok(a),
                Ok(Err((code, message))) => Err((code, message.map(StrBytes::from_string))),
                Err(code) => Err((code, None)),
            },
        };
        match r {
            Ok(a) => PartitionProduceResponse::default()
                .with_index(index)
                .with_base_offset(a.base_offset.get())
                .with_log_append_time_ms(a.log_append_time.get())
                .with_log_start_offset(a.log_start_offset.get()),
            Err((code, message)) => fail(index, code).with_error_message(message),
        }
    });
    let responses = fanout::regroup(shapes, parts)
        .into_iter()
        .map(|((name, id), parts)| {
            TopicProduceResponse::default()
                .with_name(name)
                .with_topic_id(id)
                .with_partition_responses(parts)
        })
        .collect();
    (acks != 0).then(|| ProduceResponse::default().with_responses(responses))
}

/// Where one partition's records are: a range (start, length) of the frame, or a buffer of
/// their own.
type Source = Result<(usize, usize), BytesMut>;

/// Turns each item's records into a `BytesMut` the log can take as it is (it writes the base
/// offset into each batch's header). Records that are slices of the request `frame` are taken
/// over without a copy when nothing else holds the frame: the decoded request is gone by now,
/// so the frame is then unique, and it is cut into one disjoint `BytesMut` per item. Otherwise
/// (or for records not in the frame, such as recompressed ones, which are unique already
/// unless shared) each is copied, as it was before this existed.
fn own_records(frame: Bytes, items: Vec<PartItem<Bytes>>) -> Vec<PartItem<BytesMut>> {
    let (base, end) = (
        frame.as_ptr() as usize,
        frame.as_ptr() as usize + frame.len(),
    );
    // Each item's records: a range of the frame (its slice dropped here), or a buffer of its own.
    let sources: Vec<(PartItem<()>, Source)> = items
        .into_iter()
        .map(|it| {
            let (at, len) = (it.item.as_ptr() as usize, it.item.len());
            let source = if at >= base && at + len <= end {
                Ok((at - base, len))
            } else {
                Err(BytesMut::from(it.item))
            };
            let shell = PartItem {
                topic: it.topic,
                index: it.index,
                item: (),
            };
            (shell, source)
        })
        .collect();
    let ranges: Vec<(usize, usize)> = sources
        .iter()
        .filter_map(|(_, source)| source.as_ref().ok().copied())
        .collect();
    let mut parts = cut(frame, &ranges).into_iter();
    sources
        .into_iter()
        .map(|(shell, source)| PartItem {
            topic: shell.topic,
            index: shell.index,
            item: match source {
                Ok(_) => parts.next().expect("one part per range"),
                Err(own) => own,
            },
        })
        .collect()
}

/// The `ranges` of `frame` as `BytesMut`s, in order: disjoint views of the frame itself when it
/// is unique and the ranges ascend (as the decoder meets them), copies otherwise.
fn cut(frame: Bytes, ranges: &[(usize, usize)]) -> Vec<BytesMut> {
    let ascending = ranges
        .iter()
        .try_fold(0usize, |at, &(start, len)| {
            (start >= at).then_some(start + len)
        })
        .is_some();
    let frame = if ascending {
        frame.try_into_mut()
    } else {
        Err(frame)
    };
    match frame {
        Ok(mut whole) => {
            let mut at = 0;
            ranges
                .iter()
                .map(|&(start, len)| {
                    let _ = whole.split_to(start - at);
                    at = start + len;
                    whole.split_to(len)
                })
                .collect()
        }
        Err(frame) => ranges
            .iter()
            .map(|&(start, len)| BytesMut::from(&frame[start..start + len]))
            .collect(),
    }
}

fn fail(index: i32, code: ErrorCode) -> PartitionProduceResponse {
    PartitionProduceResponse::default()
        .with_index(index)
        .with_error_code(code.code())
        .with_base_offset(-1)
        .with_log_append_time_ms(-1)
        .with_log_start_offset(-1)
}

/// Why a partition's records were refused before they reached the owner: the error code and
/// the message for the response (v8+).
type Refused = (ErrorCode, Option<StrBytes>);

/// Checks one partition's part of the request here, on the connection's shard (each batch's
/// record count against its records), and recompresses it if the topic has its own
/// compression.type, so the owner's core only appends.
fn prepare(
    topic: Option<&Arc<TopicMeta>>,
    insync_checked: Option<&Arc<TopicMeta>>,
    records: Option<Bytes>,
    acks: i16,
    version: i16,
) -> Result<Bytes, Refused> {
    if !matches!(acks, -1..=1) {
        return Err((errors::INVALID_REQUIRED_ACKS, None));
    }
    if topic.is_some_and(|t| t.name == crate::group::OFFSETS_TOPIC) {
        // Kafka's rule: clients do not append to internal topics.
        let why = "cannot append to the internal topic that holds the consumer groups";
        return Err((errors::INVALID_TOPIC, Some(StrBytes::from_static_str(why))));
    }
    if let (-1, Some(t)) = (acks, insync_checked) {
        check_min_insync(t)?;
    }
    let Some(records) = records.filter(|r| !r.is_empty()) else {
        return Err((errors::CORRUPT_MESSAGE, None));
    };
    let refuse = |e: compression::CompressionError| {
        let code = errors::compression(&e, version);
        (code, Some(StrBytes::from_string(e.to_string())))
    };
    compression::check_record_counts(&records, DECOMPRESSED_BYTES_MAX).map_err(refuse)?;
    let codec = topic.and_then(|t| compression::target(t.configs.compression()));
    let records = match codec {
        None => records,
        Some(codec) => {
            compression::recompress(records, codec, DECOMPRESSED_BYTES_MAX).map_err(refuse)?
        }
    };
    Ok(records)
}

/// Kafka's rule for acks=all: refused, before anything is appended, while the partition has
/// fewer in-sync replicas than the topic's min.insync.replicas. Every partition has one
/// replica, its leader, unless it is replicated (then its leader checks: `replica::Replica`),
/// so the in-sync set is 1.
fn check_min_insync(t: &TopicMeta) -> Result<(), Refused> {
    let (in_sync, min) = (1, t.configs.min_insync_replicas());
    if in_sync >= min {
        return Ok(());
    }
    let message = format!(
        "the {in_sync} in-sync replica of a partition of {} is fewer than its \
         min.insync.replicas {min}",
        t.name
    );
    Err((
        errors::NOT_ENOUGH_REPLICAS,
        Some(StrBytes::from_string(message)),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn items(frame: &Bytes, ranges: &[(usize, usize)]) -> Vec<PartItem<Bytes>> {
        ranges
            .iter()
            .map(|&(at, len)| PartItem {
                topic: None,
                index: at as i32,
                item: frame.slice(at..at + len),
            })
            .collect()
    }

    #[test]
    fn records_of_a_unique_frame_are_taken_over_and_others_copied() {
        let frame = Bytes::from((0..=255u8).cycle().take(4096).collect::<Vec<u8>>());
        let ranges = [(10, 100), (200, 50), (1000, 3000)];
        let original: Vec<usize> = ranges
            .iter()
            .map(|r| frame.as_ptr() as usize + r.0)
            .collect();
        let mut its = items(&frame, &ranges);
        let recompressed = Bytes::from(vec![7u8; 30]);
        its.insert(
            1,
            PartItem {
                topic: None,
                index: -1,
                item: recompressed,
            },
        );
        let owned = own_records(frame.clone(), its);
        let expect = |(at, len): (usize, usize)| -> Vec<u8> {
            (0..=255u8).cycle().skip(at).take(len).collect()
        };
        assert_eq!(
            owned[1].item[..],
            [7u8; 30][..],
            "an item outside the frame, in its place"
        );
        let inside: Vec<&PartItem<BytesMut>> = owned.iter().filter(|i| i.index >= 0).collect();
        for ((it, &r), &ptr) in inside.iter().zip(&ranges).zip(&original) {
            assert_eq!(it.item[..], expect(r)[..]);
            assert_ne!(
                it.item.as_ptr() as usize,
                ptr,
                "copied: the test still holds the frame"
            );
        }
        drop(owned);
        // Now the handler's handle is the only one: no copies.
        let (ptr, its) = (frame.as_ptr() as usize, items(&frame, &ranges));
        let owned = own_records(frame, its);
        for ((it, &r), base) in owned.iter().zip(&ranges).zip(std::iter::repeat(ptr)) {
            assert_eq!(it.item[..], expect(r)[..]);
            assert_eq!(
                it.item.as_ptr() as usize,
                base + r.0,
                "the frame's own bytes"
            );
        }
    }
}
