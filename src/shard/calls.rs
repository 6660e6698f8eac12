//! Calls between shards: [`Shard::on`] runs a closure on another shard and brings its (`Send`)
//! result back over the mesh. Everything that crosses cores goes through here; `route.rs`
//! builds the per-partition and per-group calls on top of it.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::future::Future;
use std::rc::Rc;

use super::{Shard, ShardGone};
use crate::runtime;

/// A job for another shard: runs there with that shard's state.
pub(super) type Job = runtime::Job<Shard>;

/// A cross-shard call's result on its way back (its type is known to the caller only).
type Reply = Box<dyn std::any::Any + Send>;

/// Hands a reply to the caller waiting for it.
type Complete = Box<dyn FnOnce(Reply)>;

/// The callers on this shard waiting for cross-shard replies, by call id. A caller that gave
/// up (its future dropped) leaves its entry until the reply comes; a target shard that stops
/// without replying leaves it until this shard stops (its drain is bounded).
#[derive(Default)]
pub(super) struct Replies {
    next_id: Cell<u64>,
    waiting: RefCell<HashMap<u64, Complete>>,
}

impl Replies {
    fn expect<T: 'static>(&self) -> (u64, futures_channel::oneshot::Receiver<T>) {
        let id = self.next_id.get();
        self.next_id.set(id + 1);
        let (tx, rx) = futures_channel::oneshot::channel::<T>();
        let complete = move |reply: Reply| {
            let value = reply.downcast::<T>().expect("a reply has its call's type");
            let _ = tx.send(*value);
        };
        self.waiting.borrow_mut().insert(id, Box::new(complete));
        (id, rx)
    }

    fn deliver(&self, id: u64, reply: Reply) {
        let complete = self.waiting.borrow_mut().remove(&id);
        if let Some(complete) = complete {
            complete(reply);
        }
    }

    /// Calls waiting for their replies.
    pub(super) fn waiting(&self) -> usize {
        self.waiting.borrow().len()
    }

    fn forget(&self, id: u64) {
        self.waiting.borrow_mut().remove(&id);
    }
}

/// Jobs this shard put into each mesh channel and took out of each, by peer shard, counted
/// on its own thread. A channel's depth is its sender's `sent` less its receiver's `received`
/// (the metrics endpoint subtracts them, shard snapshots being taken a moment apart); a job
/// still waiting for room in a full channel already counts as sent.
pub(super) struct MeshCounters {
    sent: Vec<Cell<u64>>,
    received: Vec<Cell<u64>>,
}

impl MeshCounters {
    pub(super) fn new(shards: usize) -> MeshCounters {
        MeshCounters {
            sent: (0..shards).map(|_| Cell::new(0)).collect(),
            received: (0..shards).map(|_| Cell::new(0)).collect(),
        }
    }

    /// A job from shard `from` was taken out of its channel.
    pub(super) fn received(&self, from: usize) {
        bump(&self.received[from], 1);
    }

    /// Jobs sent to each shard, and received from each, so far.
    pub(super) fn totals(&self) -> (Vec<u64>, Vec<u64>) {
        let get = |v: &[Cell<u64>]| v.iter().map(Cell::get).collect();
        (get(&self.sent), get(&self.received))
    }
}

fn bump(c: &Cell<u64>, up: u64) {
    c.set(c.get().wrapping_add(up));
}

/// Takes back a `sent` count when a send did not go through (the target stopped, or the
/// sending future was dropped while waiting for room).
struct Sending<'a> {
    count: &'a Cell<u64>,
    done: bool,
}

impl Drop for Sending<'_> {
    fn drop(&mut self) {
        if !self.done {
            bump(self.count, u64::MAX);
        }
    }
}

impl Shard {
    /// Puts `job` into the mesh channel to shard `to`, counting it (`MeshCounters`).
    pub(super) async fn send_job(&self, to: usize, job: Job) -> Result<(), ShardGone> {
        let count = &self.mesh_counters.sent[to];
        bump(count, 1);
        let mut sending = Sending { count, done: false };
        let sent = self.senders.send_to(to, job).await;
        sending.done = sent.is_ok();
        sent.map_err(|_| ShardGone(to))
    }

    /// Runs `f` on shard `target` and returns its result. Local calls run inline; remote ones
    /// travel over the bounded mesh channel (waiting when it is full), and so does the reply:
    /// it is handed to the waiting caller on this shard's own thread (`deliver`). No task's
    /// waker ever crosses threads: glommio 0.9 wakes a task from a foreign thread through a
    /// path that can double-free it (seen as `free(): double free` under acks=all load when
    /// the reply was a futures oneshot completed on the target shard).
    pub async fn on<T, F, Fut>(&self, target: usize, f: F) -> Result<T, ShardGone>
    where
        T: Send + 'static,
        F: FnOnce(Rc<Shard>) -> Fut + Send + 'static,
        Fut: Future<Output = T> + 'static,
    {
        if target == self.id {
            return Ok(f(self.rc()).await);
        }
        let (id, rx) = self.replies.expect::<T>();
        let origin = self.id;
        let job: Job = Box::new(move |s| {
            Box::pin(async move {
                let value: Reply = Box::new(f(s.clone()).await);
                let back: Job =
                    Box::new(move |home| Box::pin(async move { home.replies.deliver(id, value) }));
                // Fails only if the caller's shard is gone, and then nobody waits.
                let _ = s.send_job(origin, back).await;
            })
        });
        if let Err(gone) = self.send_job(target, job).await {
            self.replies.forget(id);
            return Err(gone);
        }
        rx.await.map_err(|_| ShardGone(target))
    }
}
