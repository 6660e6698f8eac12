//! ApiVersions (key 18): the versions we serve, straight from the dispatcher's one table.

use std::rc::Rc;

use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::{ApiVersionsRequest, ApiVersionsResponse};

use crate::kafka::dispatch::SUPPORTED;
use crate::kafka::errors;
use crate::shard::Shard;

use super::Call;

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

/// Answers with the API table's version ranges (an unsupported version gets [`unsupported`]).
pub async fn handle(
    _s: Rc<Shard>,
    _req: ApiVersionsRequest,
    _call: &Call<'_>,
) -> Option<ApiVersionsResponse> {
    Some(ApiVersionsResponse::default().with_api_keys(advertised()))
}

/// The answer to an ApiVersions version we do not serve (sent as v0).
pub fn unsupported() -> ApiVersionsResponse {
    ApiVersionsResponse::default()
        .with_error_code(errors::UNSUPPORTED_VERSION.code())
        .with_api_keys(advertised())
}
