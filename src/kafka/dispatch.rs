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

use super::error_counts::{self, ErrorCodes};
use super::frame::{self, Frame, Spliced};
use super::handlers;
use crate::budget::Lease;
use crate::shard::Shard;

/// Why a connection is being closed instead of answered.
#[derive(Debug)]
pub struct Close(pub String);

/// Where a request's work is done, beyond the shard its connection is on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    /// Answered from the connection's shard (its metadata copy and configuration).
    Local,
    /// Each partition's part on the shard that owns the partition (`shard::route`).
    Partitions,
    /// On the shard that coordinates the group (`handlers::on_group`).
    Group,
    /// On every shard, the answers merged (ListGroups).
    Everywhere,
    /// On the controller (shard 0): topic and config changes, producer ids.
    Controller,
}

/// One row of the API table: a key, the versions we serve, and where its work goes.
#[derive(Clone, Copy, Debug)]
pub struct Api {
    /// The API key.
    pub key: ApiKey,
    /// The oldest version we serve.
    pub min: i16,
    /// The newest version we serve (within what the protocol crate knows).
    pub max: i16,
    /// Where the request's work runs.
    pub route: Route,
}

/// The one table of the APIs we serve, from which ApiVersions' answer ([`SUPPORTED`]), the
/// dispatcher ([`handle`]) and the decoder ([`decode_request`]) are all generated: serving a
/// new API is one line here and one file in `handlers/` whose `handle(shard, request, &Call)`
/// returns `Option<Response>` (None: no answer).
macro_rules! apis {
    ($($key:ident($req:ident) $min:literal..=$max:literal, $route:ident => $module:ident;)*) => {
        /// The APIs we serve and their version ranges: what ApiVersions advertises.
        pub const SUPPORTED: &[Api] = &[
            $(Api { key: ApiKey::$key, min: $min, max: $max, route: Route::$route },)*
        ];

        /// Decodes the body as `api`'s request and runs its handler.
        async fn dispatch(
            s: Rc<Shard>,
            api: ApiKey,
            corr: i32,
            body: Bytes,
            call: &handlers::Call<'_>,
        ) -> Result<Option<Frame>, Close> {
            match api {
                $(ApiKey::$key => {
                    run(api, call.version, corr, body, |r: $req| handlers::$module::handle(s, r, call)).await
                })*
                other => Err(Close(format!("{other:?} has no handler"))),
            }
        }

        /// Decodes the body as `api`'s request, and drops it.
        fn decode_body(api: ApiKey, version: i16, mut body: Bytes) -> Result<(), Close> {
            match api {
                $(ApiKey::$key => $req::decode(&mut body, version).map(drop),)*
                other => return Err(Close(format!("{other:?} has no handler"))),
            }
            .map_err(|e| Close(e.to_string()))
        }

        /// A default request of `api` encoded at `version`, with its header (tests).
        #[cfg(test)]
        fn default_request(api: ApiKey, version: i16) -> Option<Vec<u8>> {
            match api {
                $(ApiKey::$key => Some(tests::request_frame(api, version, &$req::default())),)*
                _ => None,
            }
        }
    };
}

// Produce is advertised from v0 because librdkafka < 2.11 disables compression unless it sees
// Produce v0-2 in range; no client sends those versions to a broker that supports v3+, and if
// one does it is disconnected (see `decodable`).
apis! {
    Produce(ProduceRequest) 0..=11, Partitions => produce;
    Fetch(FetchRequest) 4..=13, Partitions => fetch;
    ListOffsets(ListOffsetsRequest) 1..=7, Partitions => list_offsets;
    Metadata(MetadataRequest) 0..=12, Local => metadata;
    ApiVersions(ApiVersionsRequest) 0..=3, Local => api_versions;
    CreateTopics(CreateTopicsRequest) 2..=7, Controller => create_topics;
    DeleteTopics(DeleteTopicsRequest) 1..=6, Controller => delete_topics;
    DeleteRecords(DeleteRecordsRequest) 0..=2, Partitions => delete_records;
    DescribeConfigs(DescribeConfigsRequest) 1..=4, Local => describe_configs;
    AlterConfigs(AlterConfigsRequest) 0..=2, Controller => alter_configs;
    CreatePartitions(CreatePartitionsRequest) 0..=3, Controller => create_partitions;
    IncrementalAlterConfigs(IncrementalAlterConfigsRequest) 0..=1, Controller => incremental_alter_configs;
    DescribeLogDirs(DescribeLogDirsRequest) 1..=4, Partitions => describe_log_dirs;
    ListPartitionReassignments(ListPartitionReassignmentsRequest) 0..=0, Local => list_partition_reassignments;
    DescribeClientQuotas(DescribeClientQuotasRequest) 0..=1, Local => describe_client_quotas;
    DescribeCluster(DescribeClusterRequest) 0..=1, Local => describe_cluster;
    DescribeProducers(DescribeProducersRequest) 0..=0, Partitions => describe_producers;
    DescribeTopicPartitions(DescribeTopicPartitionsRequest) 0..=0, Local => describe_topic_partitions;
    OffsetForLeaderEpoch(OffsetForLeaderEpochRequest) 2..=4, Partitions => offset_for_leader_epoch;
    OffsetCommit(OffsetCommitRequest) 2..=9, Group => offset_commit;
    OffsetFetch(OffsetFetchRequest) 1..=9, Group => offset_fetch;
    FindCoordinator(FindCoordinatorRequest) 0..=4, Local => find_coordinator;
    JoinGroup(JoinGroupRequest) 0..=9, Group => join_group;
    Heartbeat(HeartbeatRequest) 0..=4, Group => heartbeat;
    LeaveGroup(LeaveGroupRequest) 0..=5, Group => leave_group;
    SyncGroup(SyncGroupRequest) 0..=5, Group => sync_group;
    DescribeGroups(DescribeGroupsRequest) 0..=5, Group => describe_groups;
    ListGroups(ListGroupsRequest) 0..=5, Everywhere => list_groups;
    DeleteGroups(DeleteGroupsRequest) 0..=2, Group => delete_groups;
    OffsetDelete(OffsetDeleteRequest) 0..=0, Group => offset_delete;
    InitProducerId(InitProducerIdRequest) 0..=4, Controller => init_producer_id;
}

/// The largest API key in [`SUPPORTED`]: a request with a larger one is never answered.
pub const SERVED_KEY_MAX: i16 = {
    let (mut i, mut max) = (0, 0);
    while i < SUPPORTED.len() {
        let key = SUPPORTED[i].key as i16;
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
        .any(|a| a.key == api && version >= a.min && version <= a.max)
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
    let (api, version, header, body) = split_header(frame)?;
    let corr = header.correlation_id;
    let client_id = header.client_id.as_deref().unwrap_or_default().to_string();
    drop(header); // its strings are slices of the frame, which Produce wants to own (below)
    if api == ApiKey::ApiVersions && !decodable(api, version) {
        let body = handlers::api_versions::unsupported();
        return encode(ApiKey::ApiVersions, 0, corr, &body).map(|b| Some(b.into()));
    }
    if !decodable(api, version) {
        return Err(Close(format!("{api:?} v{version} is not supported")));
    }
    // Which versions real clients use: the compatibility matrix reads these from the log.
    tracing::trace!(target: "shardlog::requests", api = api as i16, version, client = %client_id, "request");
    // Produce takes its record batches over from the body without a copy once the decoded
    // request is gone (`produce::own_records`); other handlers get no handle on it.
    let whole = (api == ApiKey::Produce).then(|| body.clone());
    let call = handlers::Call::new(version, client_id, peer, lease, whole);
    dispatch(shard.clone(), api, corr, body, &call).await
}

/// Decodes a request frame as `handle` would, without handling it: the fuzzing entry point
/// (tests/fuzz) and its proptest twin. Never panics, whatever the bytes. A Produce request's
/// record batches are also split, validated and decompressed, as the produce path would.
pub fn decode_request(frame: Bytes) -> Result<ApiKey, Close> {
    let (api, v, _, frame) = split_header(frame)?;
    if !decodable(api, v) {
        return Err(Close("unsupported version".into()));
    }
    if api == ApiKey::Produce {
        exercise_records(frame.clone(), v)?;
    }
    decode_body(api, v, frame)?;
    Ok(api)
}

/// What the produce path does to a request's record sets before appending them.
fn exercise_records(mut body: Bytes, version: i16) -> Result<(), Close> {
    let req = ProduceRequest::decode(&mut body, version).map_err(|e| Close(e.to_string()))?;
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
    Resp: Reply + ErrorCodes,
    F: FnOnce(Req) -> Fut,
    Fut: Future<Output = Option<Resp>>,
{
    let req = Req::decode(&mut body, version)
        .map_err(|e| Close(format!("cannot decode {api:?} v{version}: {e}")))?;
    drop(body); // a handle on the frame, held no longer than needed
    match f(req).await {
        None => Ok(None),
        Some(resp) => {
            error_counts::count(api, &resp);
            resp.into_frame(api, version, corr).map(Some)
        }
    }
}

/// What a handler answers with, made into the frame the connection writer sends.
pub trait Reply {
    /// Encodes the response, under a header carrying `corr`, as `api`'s response at
    /// `version`; an encoding failure closes the connection.
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

impl<R: ErrorCodes> ErrorCodes for Spliced<R> {
    fn error_codes(&self, f: &mut dyn FnMut(i16)) {
        self.body.error_codes(f)
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
        let keys = SUPPORTED.iter().map(|a| a.key as i16);
        assert!(keys.clone().all(|k| k <= SERVED_KEY_MAX));
        assert!(keys.clone().any(|k| k == SERVED_KEY_MAX));
        assert_eq!(SERVED_KEY_MAX, ApiKey::DescribeTopicPartitions as i16);
    }

    /// A request frame (without size prefix): header and body.
    pub(super) fn request_frame<R: Encodable>(api: ApiKey, v: i16, r: &R) -> Vec<u8> {
        let h = RequestHeader::default()
            .with_request_api_key(api as i16)
            .with_request_api_version(v)
            .with_correlation_id(1);
        let mut b = BytesMut::new();
        h.encode(&mut b, api.request_header_version(v)).unwrap();
        r.encode(&mut b, v).unwrap();
        b.to_vec()
    }

    #[test]
    fn every_served_key_is_in_the_table_once_within_the_protocol_crates_range() {
        for (i, a) in SUPPORTED.iter().enumerate() {
            assert!(a.min <= a.max, "{:?}", a.key);
            assert!(a.max <= a.key.valid_versions().max, "{:?}", a.key);
            assert!(
                SUPPORTED[i + 1..].iter().all(|b| b.key != a.key),
                "{:?} twice",
                a.key
            );
        }
    }

    /// Every version the table serves decodes through the generated decoder (the dispatcher's
    /// match is generated from the same rows); the first version below and above does not.
    #[test]
    fn every_served_version_decodes_and_no_other() {
        for a in SUPPORTED {
            let lo = a.min.max(a.key.valid_versions().min);
            for v in lo..=a.max {
                let frame = default_request(a.key, v).expect("a row has a request type");
                let got = decode_request(Bytes::from(frame));
                assert_eq!(got.ok(), Some(a.key), "{:?} v{v}", a.key);
            }
            // One version above the table (the body as at the top version: a request is
            // refused on its header's version before its body is looked at).
            let mut above = default_request(a.key, a.max).unwrap();
            above[2..4].copy_from_slice(&(a.max + 1).to_be_bytes());
            assert!(decode_request(Bytes::from(above)).is_err(), "{:?}", a.key);
        }
        let unserved = ApiKey::SaslHandshake;
        assert!(SUPPORTED.iter().all(|a| a.key != unserved));
        assert!(default_request(unserved, 1).is_none());
    }

    #[test]
    fn api_versions_advertises_the_table() {
        let advertised = handlers::api_versions::advertised();
        assert_eq!(advertised.len(), SUPPORTED.len());
        for (got, a) in advertised.iter().zip(SUPPORTED) {
            assert_eq!(
                (got.api_key, got.min_version, got.max_version),
                (a.key as i16, a.min, a.max)
            );
        }
    }

    /// Valid request frames (without size prefix) to mutate.
    fn seeds() -> Vec<Vec<u8>> {
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
            request_frame(ApiKey::Produce, 9, &produce),
            request_frame(
                ApiKey::Metadata,
                12,
                &MetadataRequest::default().with_topics(None),
            ),
            request_frame(ApiKey::Fetch, 13, &FetchRequest::default()),
            request_frame(ApiKey::CreateTopics, 7, &CreateTopicsRequest::default()),
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
