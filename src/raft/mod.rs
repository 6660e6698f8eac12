//! Consensus for the cluster: tikv's raft-rs (crate `raft`), kept behind this module so the
//! rest of the broker sees groups that take ticks, messages and proposals and give back
//! messages to send, writes to make durable, committed entries and leadership changes
//! ([`Group`], [`Work`]). raft-rs is sans I/O (no tasks, timers or threads), so a group lives
//! in the state of the shard that owns it, like the storage and group-coordinator state
//! machines; transport and persistence are the owner's edges. docs/architecture.md, "The
//! cluster", says where it sits.

pub mod disk;
pub mod group;
pub mod log;
#[cfg(test)]
pub(crate) mod sim;
pub mod wire;

pub use group::{FollowerProgress, Group, GroupConfig, Leadership, Work, Write};
pub use log::RaftLog;
pub use raft::eraftpb::{Entry, HardState, Message, MessageType};

/// Why a group refused a call.
#[derive(Debug, thiserror::Error)]
pub enum RaftError {
    /// A proposal reached a node that does not lead the group; the leader it knows, if any.
    #[error("not the leader (leader: {0:?})")]
    NotLeader(Option<u64>),
    /// raft-rs refused the call (a message for another group member, a proposal dropped
    /// during a leader transfer or over the uncommitted bound, a bad configuration).
    #[error("raft: {0}")]
    Raft(String),
}

impl From<raft::Error> for RaftError {
    fn from(e: raft::Error) -> Self {
        RaftError::Raft(e.to_string())
    }
}

/// raft-rs logs through slog; this drain hands its records to `tracing` (raft-rs's info
/// lines, such as elections, at debug: one broker runs many groups).
struct TracingDrain;

impl slog::Drain for TracingDrain {
    type Ok = ();
    type Err = slog::Never;

    fn log(&self, r: &slog::Record<'_>, _: &slog::OwnedKVList) -> Result<(), slog::Never> {
        match r.level() {
            slog::Level::Critical | slog::Level::Error => tracing::error!("raft: {}", r.msg()),
            slog::Level::Warning => tracing::warn!("raft: {}", r.msg()),
            slog::Level::Info | slog::Level::Debug => tracing::debug!("raft: {}", r.msg()),
            slog::Level::Trace => tracing::trace!("raft: {}", r.msg()),
        }
        Ok(())
    }
}

/// The logger groups are built with.
pub fn logger() -> slog::Logger {
    slog::Logger::root(TracingDrain, slog::o!())
}
