//! shardlog: a Kafka-compatible, thread-per-core event-streaming broker.
//!
//! The request path reads top to bottom: socket → frame → dispatch → handler → (mesh to the
//! owning shard) → partition → storage → back. This crate map says where each step lives:
//!
//! - [`types`]: newtypes for offsets, timestamps and sizes shared by every layer.
//! - [`config`]: broker settings (flags, env, TOML) with documented defaults.
//! - [`metadata`]: the topic registry, its durable store, and partition placement.
//! - [`runtime`]: one glommio executor per shard, the channel mesh, signals (runtime edge).
//! - [`net`]: per-shard listener (SO_REUSEPORT) and pipelined connections.
//! - [`budget`]: each shard's budget for bytes in flight, leased by requests as they go.
//! - [`kafka`]: dispatch (the one version table), one handler per API key, error codes.
//! - [`metrics`]: the Prometheus text format and latency buckets (pure).
//! - [`admin`]: the admin HTTP listener on shard 0: `/metrics` and the `/v1` status API.
//! - [`broker`]: a shard's life with the network around it (start, listen, stop).
//! - [`shard`]: a core's state, cross-shard calls (`Shard::on`), routing to owner shards, the
//!   controller on shard 0.
//! - [`partition`]: a partition on its owner: acks, long-poll fetch, offsets by time.
//! - [`group`]: consumer groups (join, sync, heartbeat, committed offsets), each run by its
//!   coordinator on the shard that owns the group's log.
//! - [`storage`]: the partition log (segments, indexes, group commit, recovery, retention).
//!   It is the bottom of the stack: everything above calls it, it calls only the OS.
//!
//! Beside the broker, on the other end of the wire:
//!
//! - [`client`]: a tiny blocking Kafka client (one connection, request in, response out).
//! - [`cli`]: the admin subcommands (`shardlog topics ...`, `shardlog groups ...`, `shardlog
//!   cluster info`) built on it.
//! - [`tune`]: `shardlog tune`, the host settings the broker depends on, checked and applied.
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

pub mod admin;
pub mod broker;
pub mod budget;
pub mod cli;
pub mod client;
pub mod cluster;
pub mod config;
pub mod group;
pub mod kafka;
pub mod metadata;
pub mod metrics;
pub mod net;
pub mod partition;
pub mod raft;
pub mod replica;
pub mod runtime;
pub mod shard;
pub mod storage;
pub mod tune;
pub mod types;
