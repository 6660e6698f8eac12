//! The cluster's metadata as a replicated state machine: the records the metadata Raft group
//! (shard 0 of every voter, `crate::raft`) commits, and the image they build — brokers with
//! their addresses, shard counts and liveness, topics with their configs and the broker of
//! each partition, the next producer-id block. Pure: records in, image out; the image's
//! topics become the `metadata::Snapshot` every shard installs. Placement (which broker and
//! shard a new partition goes to) is here too, as a pure function of the live brokers.
//! docs/architecture.md §18 says where it sits in an admin request's path.

pub mod edge;
pub mod image;
pub mod node;
pub mod place;
pub mod transport;

pub use image::{Broker, ClusterImage, MetaRecord};
