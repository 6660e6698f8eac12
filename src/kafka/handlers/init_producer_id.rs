//! InitProducerId (API 22), non-transactional: gives an idempotent producer a fresh producer
//! id (epoch 0) from the controller shard's never-reused allocator, or, when a v3+ client
//! names its current id and epoch (KIP-360), the same id with the next epoch. Transactional
//! ids are refused: transactions are not supported.

use std::rc::Rc;

use kafka_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse, ProducerId};

use crate::kafka::errors;
use crate::shard::route::{self, ProducerIdError};
use crate::shard::Shard;

use super::Call;

/// Answers with a producer id and epoch for an idempotent producer (a new id, or the next
/// epoch of the id a v3+ client names), or INVALID_REQUEST for a transactional one.
pub async fn handle(
    s: Rc<Shard>,
    r: InitProducerIdRequest,
    call: &Call<'_>,
) -> Option<InitProducerIdResponse> {
    let version = call.version;
    let resp = InitProducerIdResponse::default();
    if r.transactional_id.as_ref().is_some_and(|t| !t.is_empty()) {
        return Some(resp.with_error_code(errors::INVALID_REQUEST.code()));
    }
    let (id, epoch) = (r.producer_id.0, r.producer_epoch);
    if version >= 3 && id >= 0 && (0..i16::MAX - 1).contains(&epoch) {
        return Some(
            resp.with_producer_id(ProducerId(id))
                .with_producer_epoch(epoch + 1),
        );
    }
    let allocated = route::allocate_producer_id(&s).await;
    Some(match allocated {
        Ok(Ok(id)) => resp.with_producer_id(ProducerId(id)).with_producer_epoch(0),
        Ok(Err(ProducerIdError::Storage(e))) => resp.with_error_code(errors::storage(&e).code()),
        Ok(Err(ProducerIdError::Unavailable(_))) => {
            resp.with_error_code(errors::COORDINATOR_NOT_AVAILABLE.code())
        }
        Err(gone) => resp.with_error_code(errors::shard_gone(&gone).code()),
    })
}
