//! DescribeClientQuotas (key 48): the client quotas matching a filter. shardlog enforces no
//! quotas yet, so a valid filter matches no entry; the filter is still checked as Kafka checks
//! it, so a tool learns of a malformed one. Answered from the connection's shard.

use std::rc::Rc;

use kafka_protocol::messages::describe_client_quotas_request::ComponentData;
use kafka_protocol::messages::{DescribeClientQuotasRequest, DescribeClientQuotasResponse};

use super::{str_bytes, Call};
use crate::kafka::errors::{self, ErrorCode};
use crate::shard::Shard;

/// The entity types Kafka knows.
const ENTITY_TYPES: [&str; 3] = ["user", "client-id", "ip"];
const MATCH_EXACT: i8 = 0;
const MATCH_DEFAULT: i8 = 1;
const MATCH_SPECIFIED: i8 = 2;

/// Answers no entries for a valid filter; a malformed one gets the error Kafka gives it.
pub async fn handle(
    _s: Rc<Shard>,
    req: DescribeClientQuotasRequest,
    _call: &Call<'_>,
) -> Option<DescribeClientQuotasResponse> {
    let resp = DescribeClientQuotasResponse::default();
    Some(match check_filter(&req.components) {
        Ok(()) => resp.with_entries(Some(Vec::new())),
        Err((code, message)) => resp
            .with_error_code(code.code())
            .with_error_message(Some(str_bytes(&message)))
            .with_entries(None),
    })
}

/// Kafka's checks of a quota filter: known entity types, each at most once, a match string
/// exactly for exact matches, and no `ip` component beside `user` or `client-id`.
fn check_filter(components: &[ComponentData]) -> Result<(), (ErrorCode, String)> {
    let invalid = |m: String| Err((errors::INVALID_REQUEST, m));
    let mut seen: Vec<&str> = Vec::with_capacity(components.len());
    for c in components {
        let entity = c.entity_type.as_str();
        if entity.is_empty() {
            return invalid("Invalid empty entity type.".into());
        }
        if seen.contains(&entity) {
            return invalid(format!(
                "Entity type {entity} cannot appear more than once in the filter."
            ));
        }
        if !ENTITY_TYPES.contains(&entity) {
            return Err((
                errors::UNSUPPORTED_VERSION,
                format!("Unsupported entity type {entity}"),
            ));
        }
        match (c.match_type, c._match.is_some()) {
            (MATCH_EXACT, false) => {
                return invalid(
                    "Request specified MATCH_TYPE_EXACT, but set match string to null.".into(),
                )
            }
            (MATCH_DEFAULT | MATCH_SPECIFIED, true) => {
                return invalid(format!(
                    "Request specified match type {}, but also specified a match string.",
                    c.match_type
                ))
            }
            (MATCH_EXACT | MATCH_DEFAULT | MATCH_SPECIFIED, _) => {}
            (other, _) => {
                return Err((
                    errors::UNSUPPORTED_VERSION,
                    format!("Unsupported match type {other}"),
                ))
            }
        }
        seen.push(entity);
    }
    if seen.contains(&"ip") && (seen.contains(&"user") || seen.contains(&"client-id")) {
        return invalid(
            "Invalid entity filter component combination, IP filter component should not be \
             used with user or clientId filter component."
                .into(),
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn component(entity: &str, match_type: i8, m: Option<&str>) -> ComponentData {
        ComponentData::default()
            .with_entity_type(str_bytes(entity))
            .with_match_type(match_type)
            .with_match(m.map(str_bytes))
    }

    #[test]
    fn filters_are_checked_as_kafka_checks_them() {
        assert!(check_filter(&[]).is_ok());
        assert!(check_filter(&[
            component("user", MATCH_EXACT, Some("alice")),
            component("client-id", MATCH_SPECIFIED, None),
        ])
        .is_ok());
        let code = |c: &[ComponentData]| check_filter(c).unwrap_err().0;
        assert_eq!(
            code(&[component("", 0, Some("x"))]),
            errors::INVALID_REQUEST
        );
        assert_eq!(
            code(&[component("user", 2, None), component("user", 1, None)]),
            errors::INVALID_REQUEST
        );
        assert_eq!(
            code(&[component("group", 2, None)]),
            errors::UNSUPPORTED_VERSION
        );
        assert_eq!(code(&[component("user", 0, None)]), errors::INVALID_REQUEST);
        assert_eq!(
            code(&[component("user", 1, Some("x"))]),
            errors::INVALID_REQUEST
        );
        assert_eq!(
            code(&[component("user", 7, None)]),
            errors::UNSUPPORTED_VERSION
        );
        assert_eq!(
            code(&[component("ip", 2, None), component("user", 2, None)]),
            errors::INVALID_REQUEST
        );
    }
}
