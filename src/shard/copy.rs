//! A follower's catch-up copy (issue 21): the batches a lagging replica needs, fetched from
//! another replica's Kafka listener as Kafka followers replicate — a Fetch naming this
//! broker as the replica, served below that replica's high watermark (committed, so the
//! same on every replica) and byte for byte as stored. Each call is one Fetch (up to
//! [`FETCH_BYTES`]) from where the follower's log ends; the host (`replica::Host`) appends
//! it and asks again, the leader first and then the others, until the range is whole.

use std::net::SocketAddr;
use std::rc::{Rc, Weak};

use bytes::{BufMut, Bytes, BytesMut};
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::{
    ApiKey, BrokerId, FetchRequest, FetchResponse, RequestHeader, ResponseHeader, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};

use super::Shard;
use crate::replica::host::CatchUpSource;
use crate::replica::{CatchUp, ReplicaError};
use crate::runtime::TcpStream;
use crate::storage::batch;
use crate::types::Offset;

/// The Fetch version asked (topics by name, replica id in the request body).
const FETCH_VERSION: i16 = 12;
/// Bytes asked per Fetch.
const FETCH_BYTES: i32 = 8 << 20;
/// Largest response accepted.
const RESPONSE_BYTES_MAX: usize = 64 << 20;
/// How long one Fetch may take before the host asks another replica.
const COPY_TIME_MAX: std::time::Duration = std::time::Duration::from_secs(30);

impl Shard {
    /// The catch-up source of partition `index` of `topic`: a Fetch from the named
    /// replica's broker, at the Kafka address the registry gives for it.
    pub(super) fn catch_up_source(&self, topic: String, index: i32) -> CatchUpSource {
        let shard: Weak<Shard> = self.this.clone();
        Rc::new(move |c: CatchUp| {
            let (shard, topic) = (shard.clone(), topic.clone());
            Box::pin(async move {
                let s = shard.upgrade().ok_or(ReplicaError::NotLeader(None))?;
                let from = c.leader.ok_or(ReplicaError::NotLeader(None))?;
                let addr = kafka_addr(&s, from)?;
                let me = s.config.node_id;
                drop(s);
                let copied = copy(addr, me, &topic, index, c);
                let late = async {
                    crate::runtime::sleep(COPY_TIME_MAX).await;
                    Err(ReplicaError::Copy(format!("{addr} did not answer in time")))
                };
                futures_lite::future::or(copied, late).await
            })
        })
    }
}

/// Broker `node`'s Kafka listener, from the installed registry.
fn kafka_addr(s: &Shard, node: u64) -> Result<SocketAddr, ReplicaError> {
    let snap = s.metadata();
    let b = i32::try_from(node)
        .ok()
        .filter(|&b| b != s.config.node_id)
        .and_then(|b| snap.cluster.as_ref()?.brokers.get(&b).cloned())
        .ok_or_else(|| ReplicaError::Copy(format!("broker {node} is not known")))?;
    let text = format!("{}:{}", b.host, b.port);
    use std::net::ToSocketAddrs;
    text.to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .ok_or_else(|| ReplicaError::Copy(format!("cannot resolve {text}")))
}

/// The batches from `c.keep` on, below `c.until`, that one Fetch from `addr` as replica
/// `me` gets (at most [`FETCH_BYTES`]).
async fn copy(
    addr: SocketAddr,
    me: i32,
    topic: &str,
    index: i32,
    c: CatchUp,
) -> Result<Vec<Bytes>, ReplicaError> {
    let mut stream = TcpStream::connect(addr)
        .await
        .map_err(|e| ReplicaError::Copy(format!("{addr}: {e}")))?;
    let frame = fetch_frame(me, topic, index, c.keep, 1)?;
    stream
        .write_all(&frame)
        .await
        .map_err(|e| ReplicaError::Copy(format!("{addr}: {e}")))?;
    let records = read_records(&mut stream, 1).await?;
    let mut out = Vec::new();
    for b in whole_batches(records) {
        let h = batch::parse_header(&b).map_err(|_| ReplicaError::NotABatch)?;
        if h.base_offset >= c.until {
            break;
        }
        if h.next_offset() > c.keep {
            out.push(b);
        }
    }
    Ok(out)
}

/// A Fetch request frame (size prefix included) for one partition from `at`.
fn fetch_frame(
    me: i32,
    topic: &str,
    index: i32,
    at: Offset,
    corr: i32,
) -> Result<Bytes, ReplicaError> {
    let part = FetchPartition::default()
        .with_partition(index)
        .with_fetch_offset(at.get())
        .with_partition_max_bytes(FETCH_BYTES)
        .with_current_leader_epoch(-1)
        .with_log_start_offset(-1);
    let name = TopicName(StrBytes::from_string(topic.to_string()));
    let req = FetchRequest::default()
        .with_replica_id(BrokerId(me))
        .with_max_wait_ms(0)
        .with_min_bytes(1)
        .with_max_bytes(FETCH_BYTES)
        .with_session_epoch(-1)
        .with_topics(vec![FetchTopic::default()
            .with_topic(name)
            .with_partitions(vec![part])]);
    let header = RequestHeader::default()
        .with_request_api_key(ApiKey::Fetch as i16)
        .with_request_api_version(FETCH_VERSION)
        .with_correlation_id(corr)
        .with_client_id(Some(StrBytes::from_static_str("shardlog-replica")));
    let encode = |e: anyhow::Error| ReplicaError::Copy(format!("encode: {e}"));
    let mut frame = BytesMut::new();
    frame.put_i32(0);
    header
        .encode(
            &mut frame,
            ApiKey::Fetch.request_header_version(FETCH_VERSION),
        )
        .map_err(encode)?;
    req.encode(&mut frame, FETCH_VERSION).map_err(encode)?;
    let len = i32::try_from(frame.len() - 4).expect("a small request");
    frame[..4].copy_from_slice(&len.to_be_bytes());
    Ok(frame.freeze())
}

/// Reads the Fetch response to `corr` and returns its one partition's records, or the
/// partition's error.
async fn read_records(stream: &mut TcpStream, corr: i32) -> Result<Bytes, ReplicaError> {
    let io = |e: std::io::Error| ReplicaError::Copy(e.to_string());
    let mut len = [0u8; 4];
    stream.read_exact(&mut len).await.map_err(io)?;
    let len = i32::from_be_bytes(len);
    if len < 4 || len as usize > RESPONSE_BYTES_MAX {
        return Err(ReplicaError::Copy(format!("response of {len} bytes")));
    }
    let mut buf = vec![0u8; len as usize];
    stream.read_exact(&mut buf).await.map_err(io)?;
    let mut frame = Bytes::from(buf);
    let decode = |e: anyhow::Error| ReplicaError::Copy(format!("decode: {e}"));
    let header_version = ApiKey::Fetch.response_header_version(FETCH_VERSION);
    let header = ResponseHeader::decode(&mut frame, header_version).map_err(decode)?;
    if header.correlation_id != corr {
        return Err(ReplicaError::Copy("response out of order".into()));
    }
    let resp = FetchResponse::decode(&mut frame, FETCH_VERSION).map_err(decode)?;
    let part = resp
        .responses
        .into_iter()
        .flat_map(|t| t.partitions)
        .next()
        .ok_or_else(|| ReplicaError::Copy("no partition in the response".into()))?;
    if part.error_code != 0 {
        return Err(ReplicaError::Copy(format!(
            "error code {}",
            part.error_code
        )));
    }
    Ok(part.records.unwrap_or_default())
}

/// The whole batches of a Fetch response's records (a partial last one is dropped).
fn whole_batches(records: Bytes) -> Vec<Bytes> {
    let mut out = Vec::new();
    let mut at = 0;
    while let Some(size) = batch::declared_size(&records[at..]) {
        if size < batch::HEADER_BYTES || at + size > records.len() {
            break;
        }
        out.push(records.slice(at..at + size));
        at += size;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::batch::build_test_batch;
    use crate::types::TimestampMs;

    #[test]
    fn whole_batches_drop_a_partial_last_one() {
        let a = build_test_batch(2, 10, TimestampMs(1));
        let b = build_test_batch(3, 10, TimestampMs(2));
        let mut all = BytesMut::new();
        all.extend_from_slice(&a);
        all.extend_from_slice(&b);
        all.extend_from_slice(&b[..20]);
        let got = whole_batches(all.freeze());
        assert_eq!(got.len(), 2);
        assert_eq!(&got[1][..], &b[..]);
        assert!(whole_batches(Bytes::new()).is_empty());
    }
}
