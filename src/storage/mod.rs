//! The partition log: segmented, O_DIRECT, group-committed, crash-recoverable storage for one
//! Kafka partition. It sits at the bottom of the request path: the partition layer on the
//! owning shard calls [`PartitionLog`] to append produced batches, wait for their durability,
//! and read batches for fetches; nothing here knows about the network or the Kafka protocol
//! beyond the RecordBatch v2 header. On-disk format and durability rules: docs/storage.md.
//!
//! Pure parts ([`batch`], [`epochs`], [`index`], [`scan`], [`cache`], [`readcache`], [`state`]) run without an executor;
//! [`io`] is the one file that talks to the runtime (glommio), and [`log`] / [`recovery`] are
//! the async edge that carries out the state machine's decisions.

pub mod batch;
pub mod cache;
pub mod config;
pub mod epochs;
pub mod error;
pub mod files;
pub mod index;
pub mod io;
pub mod log;
pub mod readcache;
pub mod recovery;
pub mod scan;
pub mod state;
pub mod stats;
#[cfg(test)]
mod tests;

pub use config::{LogConfig, TimestampType};
pub use error::{BatchError, StorageError};
pub use log::{Chunk, LogSizes, PartitionLog, ReadOutcome};
pub use state::{AppendInfo, Durability};
