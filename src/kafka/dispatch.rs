//! Request dispatch: frame → (API key, version, header) → handler → response frame.
//!
//! [`SUPPORTED`] is the one table of versions we serve (it is what ApiVersions advertises); a
//! request outside it, with an unknown key, or with a body that does not decode closes the
//! connection, as Kafka does. ApiVersions itself is special: an unsupported version gets a v0
//! response with UNSUPPORTED_VERSION and our table, so the client can pick a version.

use std::future::Future;
use std::rc::Rc;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, Encodable};

use super::frame::{self, Frame, Spliced};
use super::handlers;
use crate::budget::Lease;
use crate::shard::Shard;

/// Why a connection is being closed instead of answered.
#[derive(Debug)]
pub struct Close(pub String);

/// (API key, min version, max version) we serve. Produce is advertised from v0 because
/// librdkafka < 2.11 disables compression unless it sees Produce v0-2 in range; no client
/// sends those versions to a broker that supports v3+, and if one does it is disconnected.
pub const SUPPORTED: &[(ApiKey, i16, i16)] = &[
    (ApiKey::Produce, 0, 11),
    (ApiKey::Fetch, 4, 13),
    (ApiKey::ListOffsets, 1, 7),
    (ApiKey::Metadata, 0, 12),
    (ApiKey::ApiVersions, 0, 3),
    (ApiKey::CreateTopics, 2, 7),
    (ApiKey::DeleteTopics, 1, 6),
    (ApiKey::DeleteRecords, 0, 2),
    (ApiKey::DescribeConfigs, 1, 4),
    (ApiKey::AlterConfigs, 0, 2),
    (ApiKey::CreatePartitions, 0, 3),
    (ApiKey::IncrementalAlterConfigs, 0, 1),
    (ApiKey::DescribeCluster, 0, 1),
    (ApiKey::OffsetCommit, 2, 9),
    (ApiKey::OffsetFetch, 1, 9),
    (ApiKey::FindCoordinator, 0, 4),
    (ApiKey::JoinGroup, 0, 9),
    (ApiKey::Heartbeat, 0, 4),
    (ApiKey::LeaveGroup, 0, 5),
    (ApiKey::SyncGroup, 0, 5),
    (ApiKey::DescribeGroups, 0, 5),
    (ApiKey::ListGroups, 0, 5),
    (ApiKey::DeleteGroups, 0, 2),
    (ApiKey::OffsetDelete, 0, 0),
    (ApiKey::InitProducerId, 0, 4),
];

/// The largest API key in [`SUPPORTED`]: a request with a larger one is never answered.
pub const SERVED_KEY_MAX: i16 = {
    let (mut i, mut max) = (0, 0);
    while i < SUPPORTED.len() {
        let key = SUPPORTED[i].0 as i16;
        if key > max {
            max = key;
        }
        i += 1;
    }
    max
};

/// The versions of `api` we can actually decode: the advertised range, but never below what
/// the protocol crate decodes (Produce v0-2 are advertised only).
fn decodable(api: ApiKey, version: i16) -> bool {
    SUPPORTED
        .iter()
        .any(|&(k, lo, hi)| k == api && version >= lo && version <= hi)
        && version >= api.valid_versions().min
}

/// Peeks the API key and version, decodes the request header, and returns them with the body.
fn split_header(mut frame: Bytes) -> Result<(ApiKey, i16, RequestHeader, Bytes), Close> {
    if frame.len() < 8 {
        return Err(Close("request shorter than its header".into()));
    }
    let key = i16::from_be_bytes([frame[0], frame[1]]);
    let version = i16::from_be_bytes([frame[2], frame[3]]);
    let api = ApiKey::try_from(key).map_err(|_| Close(format!("unknown API key {key}")))?;
    let header = RequestHeader::decode(&mut frame, api.request_header_version(version))
        .map_err(|e| Close(format!("bad request header: {e}")))?;
    Ok((api, version, header, frame))
}

/// Handles one request frame (size prefix already removed) from a client at `peer`
/// ("/1.2.3.4"), whose bytes `lease` holds on the shard's budget (Fetch grows it before it
/// reads). Ok(None): no response (acks=0).
pub async fn handle(
    shard: &Rc<Shard>,
    frame: Bytes,
    peer: &str,
    lease: &Lease,
) -> Result<Option<Frame>, Close> {
    let (api, version, header, frame) = split_header(frame)?;
    let corr = header.correlation_id;
    let ctx = handlers::Ctx {
        client_id: header.client_id.as_deref().unwrap_or_default().to_string(),
        client_host: peer.to_string(),
    };
    drop(header); // its strings are slices of the frame, which Produce wants to own (below)
    if api == ApiKey::ApiVersions && !decodable(api, version) {
        let body = handlers::api_versions::unsupported();
        return encode(ApiKey::ApiVersions, 0, corr, &body).map(|b| Some(b.into()));
    }
    if !decodable(api, version) {
        return Err(Close(format!("{api:?} v{version} is not supported")));
    }
    // Which versions real clients use: the compatibility matrix reads these from the log.
    tracing::trace!(target: "shardlog::requests", api = api as i16, version, client = %ctx.client_id, "request");
    let s = shard.clone();
    let body = frame;
    match api {
        ApiKey::ApiVersions => {
            run(api, version, corr, body, |r| {
                handlers::api_versions::handle(r)
            })
            .await
        }
        ApiKey::Metadata => {
            run(api, version, corr, body, |r| {
                handlers::metadata::handle(s, r, version)
            })
            .await
        }
        ApiKey::Produce => {
            // The frame goes along so the handler can take its record batches over without
            // a copy once the decoded request is gone (`produce::own_records`).
            let whole = body.clone();
            run(api, version, corr, body, |r| {
                handlers::produce::handle(s, r, version, whole)
            })
            .await
        }
        ApiKey::Fetch => {
            run(api, version, corr, body, |r| {
                handlers::fetch::handle(s, r, version, lease)
            })
            .await
        }
        ApiKey::ListOffsets => {
            run(api, version, corr, body, |r| {
                handlers::list_offsets::handle(s, r)
            })
            .await
        }
        ApiKey::CreateTopics => {
            run(api, version, corr, body, |r| {
                handlers::create_topics::handle(s, r)
            })
            .await
        }
        ApiKey::DeleteTopics => {
            run(api, version, corr, body, |r| {
                handlers::delete_topics::handle(s, r)
            })
            .await
        }
        ApiKey::DeleteRecords => {
            run(api, version, corr, body, |r| {
                handlers::delete_records::handle(s, r)
            })
            .await
        }
        ApiKey::DescribeConfigs => {
            run(api, version, corr, body, |r| {
                handlers::describe_configs::handle(s, r)
            })
            .await
        }
        ApiKey::AlterConfigs => {
            run(api, version, corr, body, |r| {
                handlers::alter_configs::handle(s, r)
            })
            .await
        }
        ApiKey::IncrementalAlterConfigs => {
            run(api, version, corr, body, |r| {
                handlers::incremental_alter_configs::handle(s, r)
            })
            .await
        }
        ApiKey::CreatePartitions => {
            run(api, version, corr, body, |r| {
                handlers::create_partitions::handle(s, r)
            })
            .await
        }
        ApiKey::DescribeCluster => {
            run(api, version, corr, body, |r| {
                handlers::describe_cluster::handle(s, r)
            })
            .await
        }
        ApiKey::InitProducerId => {
            run(api, version, corr, body, |r| {
                handlers::init_producer_id::handle(s, r, version)
            })
            .await
        }
        _ => handle_group_api(s, api, version, corr, body, ctx).await,
    }
}

/// The consumer-group APIs (see `group`).
async fn handle_group_api(
    s: Rc<Shard>,
    api: ApiKey,
    version: i16,
    corr: i32,
    body: Bytes,
    ctx: handlers::Ctx,
) -> Result<Option<Frame>, Close> {
    use handlers::*;
    match api {
        ApiKey::FindCoordinator => {
            run(api, version, corr, body, |r| {
                find_coordinator::handle(s, r, version)
            })
            .await
        }
        ApiKey::JoinGroup => {
            run(api, version, corr, body, |r| {
                join_group::handle(s, r, version, ctx)
            })
            .await
        }
        ApiKey::SyncGroup => {
            run(api, version, corr, body, |r| {
                sync_group::handle(s, r, version)
            })
            .await
        }
        ApiKey::Heartbeat => run(api, version, corr, body, |r| heartbeat::handle(s, r)).await,
        ApiKey::LeaveGroup => {
            run(api, version, corr, body, |r| {
                leave_group::handle(s, r, version)
            })
            .await
        }
        ApiKey::OffsetCommit => {
            run(api, version, corr, body, |r| {
                offset_commit::handle(s, r, version)
            })
            .await
        }
        ApiKey::OffsetFetch => {
            run(api, version, corr, body, |r| {
                offset_fetch::handle(s, r, version)
            })
            .await
        }
        ApiKey::DescribeGroups => {
            run(api, version, corr, body, |r| {
                describe_groups::handle(s, r, version)
            })
            .await
        }
        ApiKey::ListGroups => {
            run(api, version, corr, body, |r| {
                list_groups::handle(s, r, version)
            })
            .await
        }
        ApiKey::DeleteGroups => {
            run(api, version, corr, body, |r| delete_groups::handle(s, r)).await
        }
        ApiKey::OffsetDelete => {
            run(api, version, corr, body, |r| offset_delete::handle(s, r)).await
        }
        other => Err(Close(format!("{other:?} has no handler"))),
    }
}

/// Decodes a request frame as `handle` would, without handling it: the fuzzing entry point
/// (tests/fuzz) and its proptest twin. Never panics, whatever the bytes.
pub fn decode_request(frame: Bytes) -> Result<ApiKey, Close> {
    let (api, v, _, frame) = split_header(frame)?;
    if !decodable(api, v) {
        return Err(Close("unsupported version".into()));
    }
    fn body<T: Decodable>(mut b: Bytes, v: i16) -> Result<(), Close> {
        T::decode(&mut b, v)
            .map(|_| ())
            .map_err(|e| Close(e.to_string()))
    }
    match api {
        ApiKey::Produce => {
            let mut b = frame.clone();
            let req = ProduceRequest::decode(&mut b, v).map_err(|e| Close(e.to_string()))?;
            for records in req
                .topic_data
                .iter()
                .flat_map(|t| t.partition_data.iter())
                .filter_map(|p| p.records.clone())
            {
                if let Ok(batches) = crate::partition::split_batches(records.clone()) {
                    for b in batches {
                        let _ = crate::storage::batch::validate(&b, true);
                    }
                }
                let _ = super::compression::recompress(
                    records,
                    kafka_protocol::records::Compression::None,
                    1 << 20,
                );
            }
            Ok(())
        }
        ApiKey::Fetch => body::<FetchRequest>(frame, v),
        ApiKey::ListOffsets => body::<ListOffsetsRequest>(frame, v),
        ApiKey::Metadata => body::<MetadataRequest>(frame, v),
        ApiKey::ApiVersions => body::<ApiVersionsRequest>(frame, v),
        ApiKey::CreateTopics => body::<CreateTopicsRequest>(frame, v),
        ApiKey::DeleteTopics => body::<DeleteTopicsRequest>(frame, v),
        ApiKey::DeleteRecords => body::<DeleteRecordsRequest>(frame, v),
        ApiKey::DescribeConfigs => body::<DescribeConfigsRequest>(frame, v),
        ApiKey::AlterConfigs => body::<AlterConfigsRequest>(frame, v),
        ApiKey::CreatePartitions => body::<CreatePartitionsRequest>(frame, v),
        ApiKey::IncrementalAlterConfigs => body::<IncrementalAlterConfigsRequest>(frame, v),
        ApiKey::DescribeCluster => body::<DescribeClusterRequest>(frame, v),
        ApiKey::OffsetCommit => body::<OffsetCommitRequest>(frame, v),
        ApiKey::OffsetFetch => body::<OffsetFetchRequest>(frame, v),
        ApiKey::FindCoordinator => body::<FindCoordinatorRequest>(frame, v),
        ApiKey::JoinGroup => body::<JoinGroupRequest>(frame, v),
        ApiKey::Heartbeat => body::<HeartbeatRequest>(frame, v),
        ApiKey::LeaveGroup => body::<LeaveGroupRequest>(frame, v),
        ApiKey::SyncGroup => body::<SyncGroupRequest>(frame, v),
        ApiKey::DescribeGroups => body::<DescribeGroupsRequest>(frame, v),
        ApiKey::ListGroups => body::<ListGroupsRequest>(frame, v),
        ApiKey::DeleteGroups => body::<DeleteGroupsRequest>(frame, v),
        ApiKey::OffsetDelete => body::<OffsetDeleteRequest>(frame, v),
        ApiKey::InitProducerId => body::<InitProducerIdRequest>(frame, v),
        _ => Err(Close("no handler".into())),
    }?;
    Ok(api)
}

/// Decodes the body, runs the handler, encodes its response (None: the handler sends none).
async fn run<Req, Resp, F, Fut>(
    api: ApiKey,
    version: i16,
    corr: i32,
    mut body: Bytes,
    f: F,
) -> Result<Option<Frame>, Close>
where
    Req: Decodable,
    Resp: Reply,
    F: FnOnce(Req) -> Fut,
    Fut: Future<Output = Option<Resp>>,
{
    let req = Req::decode(&mut body, version)
        .map_err(|e| Close(format!("cannot decode {api:?} v{version}: {e}")))?;
    drop(body); // a handle on the frame, held no longer than needed
    match f(req).await {
        None => Ok(None),
        Some(resp) => resp.into_frame(api, version, corr).map(Some),
    }
}

/// What a handler answers with, made into the frame the connection writer sends.
pub trait Reply {
    fn into_frame(self, api: ApiKey, version: i16, corr: i32) -> Result<Frame, Close>;
}

/// A message encoded whole, into one buffer.
impl<R: Encodable> Reply for R {
    fn into_frame(self, api: ApiKey, version: i16, corr: i32) -> Result<Frame, Close> {
        encode(api, version, corr, &self).map(Frame::from)
    }
}

/// A message whose record sets go out as the buffers they are (Fetch; see `frame`).
impl<R: Encodable> Reply for Spliced<R> {
    fn into_frame(self, api: ApiKey, version: i16, corr: i32) -> Result<Frame, Close> {
        let hv = api.response_header_version(version);
        let header = ResponseHeader::default().with_correlation_id(corr);
        frame::encode_spliced(&header, hv, version, self)
            .map_err(|e| Close(format!("cannot encode {api:?} v{version} response: {e}")))
    }
}

/// Encodes a whole response frame: size, header (v0/v1 by API and version), body.
pub fn encode<R: Encodable>(
    api: ApiKey,
    version: i16,
    corr: i32,
    body: &R,
) -> Result<Bytes, Close> {
    let hv = api.response_header_version(version);
    let header = ResponseHeader::default().with_correlation_id(corr);
    let err = |e: anyhow::Error| Close(format!("cannot encode {api:?} v{version} response: {e}"));
    let size = header.compute_size(hv).map_err(err)? + body.compute_size(version).map_err(err)?;
    let mut buf = BytesMut::with_capacity(4 + size);
    buf.put_i32(size as i32);
    header.encode(&mut buf, hv).map_err(err)?;
    body.encode(&mut buf, version).map_err(err)?;
    debug_assert_eq!(buf.len(), 4 + size);
    Ok(buf.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn the_largest_served_key_is_in_the_table() {
        let keys = SUPPORTED.iter().map(|&(k, _, _)| k as i16);
        assert!(keys.clone().all(|k| k <= SERVED_KEY_MAX));
        assert!(keys.clone().any(|k| k == SERVED_KEY_MAX));
        assert_eq!(SERVED_KEY_MAX, ApiKey::DescribeCluster as i16);
    }

    /// Valid request frames (without size prefix) to mutate.
    fn seeds() -> Vec<Vec<u8>> {
        fn frame<R: Encodable>(api: ApiKey, v: i16, r: &R) -> Vec<u8> {
            let h = RequestHeader::default()
                .with_request_api_key(api as i16)
                .with_request_api_version(v)
                .with_correlation_id(1);
            let mut b = BytesMut::new();
            h.encode(&mut b, api.request_header_version(v)).unwrap();
            r.encode(&mut b, v).unwrap();
            b.to_vec()
        }
        use kafka_protocol::messages::produce_request::*;
        let batch = Bytes::from(crate::storage::batch::build_test_batch(
            3,
            20,
            crate::types::TimestampMs(1),
        ));
        let produce = ProduceRequest::default()
            .with_acks(-1)
            .with_topic_data(vec![TopicProduceData::default()
                .with_name(TopicName(
                    kafka_protocol::protocol::StrBytes::from_static_str("t"),
                ))
                .with_partition_data(vec![
                    PartitionProduceData::default().with_records(Some(batch))
                ])]);
        vec![
            frame(ApiKey::Produce, 9, &produce),
            frame(
                ApiKey::Metadata,
                12,
                &MetadataRequest::default().with_topics(None),
            ),
            frame(ApiKey::Fetch, 13, &FetchRequest::default()),
            frame(ApiKey::CreateTopics, 7, &CreateTopicsRequest::default()),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 3000, ..ProptestConfig::default() })]
        #[test]
        fn random_frames_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
            let _ = decode_request(Bytes::from(bytes));
        }

        #[test]
        fn mutated_valid_frames_never_panic(
            which in 0usize..4,
            flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
            cut in any::<prop::sample::Index>(),
        ) {
            let mut f = seeds()[which].clone();
            for (at, x) in flips {
                let i = at.index(f.len());
                f[i] ^= x;
            }
            let len = cut.index(f.len() + 1);
            f.truncate(len.max(f.len() / 2));
            let _ = decode_request(Bytes::from(f));
        }
    }

    #[test]
    fn seeds_decode() {
        for s in seeds() {
            assert!(decode_request(Bytes::from(s)).is_ok());
        }
    }
}
