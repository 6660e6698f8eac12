//! A partition on its owning shard: the log plus the Kafka semantics around it (acks, long-poll
//! fetch, offsets by time). Handlers reach it through `Shard::on(owner, ..)`; everything here
//! runs on the owner and returns `Send` values so results can cross back to the caller's shard.

pub mod producers;

use std::sync::Arc;

use bytes::{Bytes, BytesMut};

use crate::metadata::TopicMeta;
use crate::storage::{self, Durability, PartitionLog, StorageError};
use crate::types::{Offset, TimestampMs};

pub struct Partition {
    pub topic: Arc<TopicMeta>,
    pub index: i32,
    pub log: PartitionLog,
}

/// What a produce to one partition returns.
#[derive(Debug)]
pub struct Appended {
    pub base_offset: Offset,
    pub log_append_time: TimestampMs,
    pub log_start_offset: Offset,
}

/// What a fetch from one partition returns: whole batches (as `Bytes`, ready to cross shards).
#[derive(Debug, Default)]
pub struct Fetched {
    pub records: Vec<Bytes>,
    pub high_watermark: Offset,
    pub log_start_offset: Offset,
}

impl Fetched {
    pub fn bytes(&self) -> usize {
        self.records.iter().map(|b| b.len()).sum()
    }
}

impl Partition {
    /// Appends every batch in a produce request's records blob (usually one batch) and waits
    /// for the durability `acks` asks for: 0 and 1 wait for the O_DIRECT write (so nothing
    /// acknowledged is lost to a process crash), -1 for the topic's flush policy.
    pub async fn produce(&self, records: Bytes, acks: i16) -> Result<Appended, StorageError> {
        let now = TimestampMs::now();
        let mut first = None;
        let mut last_ticket = None;
        for batch in split_batches(records)? {
            let info = self.log.append(BytesMut::from(&batch[..]), now).await?;
            first.get_or_insert(info);
            last_ticket = Some(info.ticket);
        }
        let (Some(first), Some(ticket)) = (first, last_ticket) else {
            return Err(StorageError::InvalidBatch(storage::BatchError::TooShort(
                storage::batch::HEADER_BYTES,
            )));
        };
        let level = if acks == -1 {
            Durability::Policy
        } else {
            Durability::Written
        };
        self.log.wait(ticket, level).await?;
        Ok(Appended {
            base_offset: first.base_offset,
            log_append_time: first.log_append_time,
            log_start_offset: self.log.log_start(),
        })
    }

    /// Whole batches from `offset` up to `max_bytes` (the first batch always). The Fetch
    /// handler does the long poll, across all the partitions of a request.
    pub async fn read(&self, offset: Offset, max_bytes: usize) -> Result<Fetched, StorageError> {
        let r = self.log.read(offset, max_bytes.max(1)).await?;
        Ok(Fetched {
            high_watermark: r.high_watermark,
            log_start_offset: r.log_start,
            records: r.chunks.into_iter().map(|c| c.into_bytes()).collect(),
        })
    }

    /// ListOffsets: -2 earliest, -1 latest, -3 max timestamp, else the first offset whose
    /// timestamp is ≥ `ts` (None: no such record).
    pub async fn offset_for(&self, ts: i64) -> Result<Option<(Offset, TimestampMs)>, StorageError> {
        match ts {
            -2 => Ok(Some((self.log.log_start(), TimestampMs::NONE))),
            -1 => Ok(Some((self.log.high_watermark(), TimestampMs::NONE))),
            -3 => {
                let (t, o) = self.log.max_timestamp();
                Ok((t != TimestampMs::NONE).then_some((o, t)))
            }
            ts => {
                let found = self.log.batch_for_timestamp(TimestampMs(ts)).await?;
                Ok(found.map(|(h, chunk)| {
                    let exact = crate::kafka::records::first_record_at_or_after(&chunk, ts);
                    exact.unwrap_or((h.base_offset, h.max_timestamp))
                }))
            }
        }
    }
}

/// Splits a produce records blob into its v2 batches (by their length fields). A blob with a
/// torn trailing batch is corrupt. Zero-copy: slices of the request frame.
pub fn split_batches(mut records: Bytes) -> Result<Vec<Bytes>, StorageError> {
    let mut out = Vec::new();
    while !records.is_empty() {
        let size = storage::batch::declared_size(&records)
            .filter(|&s| s <= records.len())
            .ok_or(StorageError::InvalidBatch(storage::BatchError::TooShort(
                storage::batch::HEADER_BYTES,
            )))?;
        out.push(records.split_to(size));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::batch::build_test_batch;

    #[test]
    fn splits_concatenated_batches_and_rejects_torn() {
        let a = build_test_batch(2, 10, TimestampMs(1));
        let b = build_test_batch(1, 30, TimestampMs(2));
        let blob = Bytes::from([a.clone(), b.clone()].concat());
        let parts = split_batches(blob.clone()).unwrap();
        assert_eq!(parts.len(), 2);
        assert_eq!(&parts[1][..], &b[..]);
        assert!(split_batches(blob.slice(..blob.len() - 1)).is_err());
    }
}
