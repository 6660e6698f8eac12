//! This shard's network counters for the metrics endpoint: connections open, accepted and
//! refused, and the request latency histograms (`timing`). One set per shard thread, reached
//! with [`shard_stats`]; the accept loop and the connections update it, the admin server reads
//! it on the same thread when it asks the shard for a snapshot (`snapshot`).

use std::cell::Cell;
use std::rc::Rc;

use super::timing::RequestTimes;
use crate::metrics::Buckets;

/// A shard's network counters.
#[derive(Default)]
pub struct NetStats {
    /// Request latencies by API key.
    pub times: RequestTimes,
    open: Cell<u64>,
    accepted: Cell<u64>,
    refused: Cell<u64>,
}

thread_local! {
    static STATS: Rc<NetStats> = Rc::new(NetStats::default());
}

/// This shard's (thread's) counters.
pub fn shard_stats() -> Rc<NetStats> {
    STATS.with(Rc::clone)
}

/// Counts a connection as open while it lives.
pub struct OpenConnection(Rc<NetStats>);

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.open.set(self.0.open.get().saturating_sub(1));
    }
}

impl NetStats {
    /// A connection was accepted: it counts as open until the guard is dropped.
    pub fn accepted(self: &Rc<Self>) -> OpenConnection {
        self.accepted.set(self.accepted.get() + 1);
        self.open.set(self.open.get() + 1);
        OpenConnection(self.clone())
    }

    /// A connection was refused by the connection limits.
    pub fn refused(&self) {
        self.refused.set(self.refused.get() + 1);
    }
}

/// One API key's requests on one shard.
#[derive(Clone, Debug, PartialEq)]
pub struct ApiStats {
    /// The API key.
    pub api: i16,
    /// Time from the request's arrival to its response's send.
    pub total: Buckets,
    /// The handler's own part of it.
    pub handle: Buckets,
}

/// A shard's network counters as plain data.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct NetSnapshot {
    /// Connections open now.
    pub connections_open: u64,
    /// Connections accepted since the start.
    pub connections_accepted: u64,
    /// Connections refused by the limits since the start.
    pub connections_refused: u64,
    /// Answered requests by API key.
    pub apis: Vec<ApiStats>,
}

/// This shard's counters now.
pub fn snapshot() -> NetSnapshot {
    let s = shard_stats();
    NetSnapshot {
        connections_open: s.open.get(),
        connections_accepted: s.accepted.get(),
        connections_refused: s.refused.get(),
        apis: s.times.buckets(),
    }
}
