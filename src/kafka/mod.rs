//! The Kafka protocol layer: `dispatch` decodes a request frame, checks its version against the
//! one table of versions we serve, calls the handler for its API key (`handlers/`, one file per
//! key) and encodes the response (`frame`: in segments, so fetched records are not copied).
//! `errors` is the one place domain errors become error codes; `broker_configs` is the broker's
//! settings under Kafka's config names.

pub mod broker_configs;
pub mod compression;
pub mod dispatch;
pub mod error_counts;
pub mod errors;
pub mod fanout;
pub mod frame;
pub mod handlers;
