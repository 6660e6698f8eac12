//! The Kafka protocol layer: `dispatch` decodes a request frame, checks its version against the
//! one table of versions we serve, calls the handler for its API key (`handlers/`, one file per
//! key) and encodes the response. `errors` is the one place domain errors become error codes.

pub mod compression;
pub mod dispatch;
pub mod errors;
pub mod fanout;
pub mod handlers;
pub mod records;
