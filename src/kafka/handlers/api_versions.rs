//! ApiVersions (key 18): the versions we serve, straight from the dispatcher's one table.

use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::{ApiVersionsRequest, ApiVersionsResponse};

use crate::kafka::dispatch::SUPPORTED;
use crate::kafka::errors;

fn table() -> Vec<ApiVersion> {
    SUPPORTED
        .iter()
        .map(|&(k, lo, hi)| {
            ApiVersion::default()
                .with_api_key(k as i16)
                .with_min_version(lo)
                .with_max_version(hi)
        })
        .collect()
}

pub async fn handle(_req: ApiVersionsRequest) -> Option<ApiVersionsResponse> {
    Some(ApiVersionsResponse::default().with_api_keys(table()))
}

/// The answer to an ApiVersions version we do not serve (sent as v0).
pub fn unsupported() -> ApiVersionsResponse {
    ApiVersionsResponse::default()
        .with_error_code(errors::UNSUPPORTED_VERSION)
        .with_api_keys(table())
}
