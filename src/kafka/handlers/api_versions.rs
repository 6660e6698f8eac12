//! ApiVersions (key 18): the versions we serve, straight from the dispatcher's one table, and
//! (v3+) the feature levels Kafka's `kafka-features describe` prints.

use std::rc::Rc;

use kafka_protocol::messages::api_versions_response::{
    ApiVersion, FinalizedFeatureKey, SupportedFeatureKey,
};
use kafka_protocol::messages::{ApiVersionsRequest, ApiVersionsResponse};

use crate::kafka::dispatch::SUPPORTED;
use crate::kafka::errors;
use crate::shard::Shard;

use super::{str_bytes, Call};

/// The one feature we report: `metadata.version`, Kafka's inter-broker protocol level.
pub const METADATA_VERSION: &str = "metadata.version";
/// The oldest `metadata.version` level Kafka 3.8 supports (3.0-IV1).
pub const METADATA_VERSION_MIN: i16 = 1;
/// The level we report as supported and finalized: Kafka 3.8's 3.8-IV0. shardlog has no
/// metadata log and no inter-broker protocol to version; the level says which Kafka release's
/// APIs it answers like, so that tools gating on it (kafka-features, admin clients) see a 3.8
/// broker. It is fixed: UpdateFeatures is not served, so nothing can change it.
pub const METADATA_VERSION_LEVEL: i16 = 20;
/// The epoch of the finalized features: they never change, so it stays 0.
pub const FINALIZED_FEATURES_EPOCH: i64 = 0;

/// Every row of the API table, as ApiVersions lists it.
pub fn advertised() -> Vec<ApiVersion> {
    SUPPORTED
        .iter()
        .map(|a| {
            ApiVersion::default()
                .with_api_key(a.key as i16)
                .with_min_version(a.min)
                .with_max_version(a.max)
        })
        .collect()
}

/// Answers with the API table's version ranges and, from v3 (tagged fields, ignored before),
/// `metadata.version` supported from [`METADATA_VERSION_MIN`] to [`METADATA_VERSION_LEVEL`]
/// and finalized at [`METADATA_VERSION_LEVEL`]. (An unsupported version gets [`unsupported`].)
pub async fn handle(
    _s: Rc<Shard>,
    _req: ApiVersionsRequest,
    _call: &Call<'_>,
) -> Option<ApiVersionsResponse> {
    let supported = SupportedFeatureKey::default()
        .with_name(str_bytes(METADATA_VERSION))
        .with_min_version(METADATA_VERSION_MIN)
        .with_max_version(METADATA_VERSION_LEVEL);
    let finalized = FinalizedFeatureKey::default()
        .with_name(str_bytes(METADATA_VERSION))
        .with_min_version_level(METADATA_VERSION_LEVEL)
        .with_max_version_level(METADATA_VERSION_LEVEL);
    Some(
        ApiVersionsResponse::default()
            .with_api_keys(advertised())
            .with_supported_features(vec![supported])
            .with_finalized_features_epoch(FINALIZED_FEATURES_EPOCH)
            .with_finalized_features(vec![finalized]),
    )
}

/// The answer to an ApiVersions version we do not serve (sent as v0).
pub fn unsupported() -> ApiVersionsResponse {
    ApiVersionsResponse::default()
        .with_error_code(errors::UNSUPPORTED_VERSION.code())
        .with_api_keys(advertised())
}
