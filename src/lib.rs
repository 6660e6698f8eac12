//! shardlog: a Kafka-compatible, thread-per-core event-streaming broker.
//!
//! The request path reads top to bottom: socket → frame → dispatch → handler → (mesh to the
//! owning shard) → partition → storage → back. This crate map says where each step lives:
//!
//! - [`types`]: newtypes for offsets, timestamps and sizes shared by every layer.
//! - [`storage`]: the partition log (segments, indexes, group commit, recovery, retention).
//!   It is the bottom of the stack: everything above calls it, it calls only the OS.
#![deny(unsafe_op_in_unsafe_fn)]

pub mod storage;
pub mod types;
