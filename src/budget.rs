//! A shard's budget for bytes in flight: the request frames it has read and not yet handled,
//! the response frames it has built and not yet sent, and what a Fetch may read before it
//! answers. A connection's reader takes a [`Lease`] for a frame's declared size before it reads
//! the frame's body, and waits while the budget is spent (Kafka's queued.max.request.bytes,
//! Redpanda's per-shard memory semaphore); the lease then follows the request through its
//! handler to the writer, resized to what is held at each step, and is returned once the
//! response has gone out. So however many connections pipeline however much, a shard holds at
//! most its budget plus the responses of requests it has already admitted.
//!
//! Waiters are served in arrival order, so a large request is not starved by small ones, and a
//! request larger than the whole budget is admitted alone (charged the whole budget) rather than
//! never. Plain Rust on one thread: the shard owns its budget and nothing here is shared.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::Rc;

use std::future::Future;
use std::task::Poll;

use event_listener::Event;
use futures_lite::future;

/// A shard's (or one connection's) limit on bytes in flight, shared through `Rc` by the leases
/// taken from it; see the module docs.
pub struct Budget {
    limit: usize,
    used: Cell<usize>,
    /// The most `used` has been since `take_peak` was last called.
    peak: Cell<usize>,
    /// Waiters in arrival order, by ticket; only the front one may take bytes.
    queue: RefCell<VecDeque<u64>>,
    next_ticket: Cell<u64>,
    /// Notified whenever bytes are returned or the queue's front changes.
    changed: Event,
}

/// Bytes taken from a budget, returned when dropped.
pub struct Lease {
    budget: Rc<Budget>,
    bytes: Cell<usize>,
    /// Other budgets that must have room before this lease grows (a connection's, say).
    gates: Vec<Rc<Budget>>,
}

/// Takes a waiter out of the queue if it is dropped before being served (a closed connection).
struct Waiting<'a> {
    budget: &'a Budget,
    ticket: u64,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.budget.queue.borrow_mut().retain(|&t| t != self.ticket);
        self.budget.changed.notify(usize::MAX);
    }
}

impl Budget {
    /// A budget of `limit` bytes (at least 1), none leased.
    pub fn new(limit: usize) -> Rc<Budget> {
        Rc::new(Budget {
            limit: limit.max(1),
            used: Cell::new(0),
            peak: Cell::new(0),
            queue: RefCell::new(VecDeque::new()),
            next_ticket: Cell::new(0),
            changed: Event::new(),
        })
    }

    /// Bytes leased now (may pass the limit by responses, see [`Lease::set`]).
    pub fn used(&self) -> usize {
        self.used.get()
    }

    /// The budget's size in bytes, as given to [`Budget::new`] (at least 1).
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// The most bytes leased at once since the last call.
    pub fn take_peak(&self) -> usize {
        self.peak.replace(self.used.get())
    }

    fn take(&self, bytes: usize) {
        self.used.set(self.used.get() + bytes);
        self.peak.set(self.peak.get().max(self.used.get()));
    }

    /// Waits, behind every earlier waiter, until `bytes` (at most the whole budget) fit.
    pub async fn acquire(self: &Rc<Self>, bytes: usize) -> Lease {
        self.acquire_gated(bytes, &[]).await
    }

    fn has_room(&self) -> bool {
        self.used.get() < self.limit
    }

    /// `acquire`, taking the bytes only at a moment when each of `gates` has room as well. A
    /// waiter whose gate is closed waits outside the line, so it holds up no one else (a
    /// connection's own gate closes while its client leaves responses unread).
    pub async fn acquire_gated(self: &Rc<Self>, bytes: usize, gates: &[Rc<Budget>]) -> Lease {
        let want = bytes.min(self.limit);
        let open = || gates.iter().all(|g| g.has_room());
        loop {
            loop {
                let changed = any_changed(gates);
                if open() {
                    break;
                }
                changed.await;
            }
            let ticket = self.next_ticket.get();
            self.next_ticket.set(ticket + 1);
            self.queue.borrow_mut().push_back(ticket);
            let _waiting = Waiting {
                budget: self,
                ticket,
            };
            while open() {
                let changed = any_changed(std::iter::once(self).chain(gates));
                let first = self.queue.borrow().front() == Some(&ticket);
                if first && open() && self.used.get() + want <= self.limit {
                    drop(_waiting); // leaves the line, waking the next waiter
                    self.take(want);
                    return Lease {
                        budget: self.clone(),
                        bytes: Cell::new(want),
                        gates: Vec::new(),
                    };
                }
                changed.await;
            }
        }
    }

    /// Takes `bytes` now, without waiting, for memory that already exists (a response just
    /// built): the budget may pass its limit until the lease is returned; acquirers wait.
    pub fn charge(self: &Rc<Self>, bytes: usize) -> Lease {
        self.take(bytes);
        Lease {
            budget: self.clone(),
            bytes: Cell::new(bytes),
            gates: Vec::new(),
        }
    }

    fn give_back(&self, bytes: usize) {
        assert!(bytes <= self.used.get(), "a lease returns what it took");
        self.used.set(self.used.get() - bytes);
        self.changed.notify(usize::MAX);
    }
}

impl Lease {
    /// Bytes this lease holds now, returned to its budget when it is dropped.
    pub fn bytes(&self) -> usize {
        self.bytes.get()
    }

    /// The whole budget this lease is taken from.
    pub fn limit(&self) -> usize {
        self.budget.limit
    }

    /// The lease will also wait for each of `gates` to have room before it grows.
    pub fn gated_by(mut self, gates: impl IntoIterator<Item = Rc<Budget>>) -> Lease {
        self.gates.extend(gates);
        self
    }

    /// Makes the lease hold `bytes` now, without waiting: for memory that already exists (a
    /// response just built), so the budget may pass its limit until the lease is returned;
    /// readers wait meanwhile.
    pub fn set(&self, bytes: usize) {
        let held = self.bytes.get();
        if bytes < held {
            self.budget.give_back(held - bytes);
        } else {
            self.budget.take(bytes - held);
        }
        self.bytes.set(bytes);
    }

    /// Takes `bytes` more (as far as the whole budget), waiting in line and for the gates,
    /// while holding what it has: for a frame whose buffer grows as its bytes arrive. Two
    /// such waits can hold each other up; the caller bounds them in time.
    pub async fn grow_by(&self, bytes: usize) {
        let room = self.budget.limit.saturating_sub(self.bytes.get());
        let more = self
            .budget
            .acquire_gated(bytes.min(room), &self.gates)
            .await;
        self.bytes.set(self.bytes.get() + more.bytes.replace(0));
    }

    /// Makes the lease hold `bytes` (at most the whole budget) before memory is allocated for
    /// them, waiting in line as a new request would, and until its gates have room.
    /// What it held is returned first, so a lease never waits while it holds bytes (two
    /// growing leases cannot wait on each other).
    pub async fn grow_to(&self, bytes: usize) {
        self.set(0);
        let more = self.budget.acquire_gated(bytes, &self.gates).await;
        self.bytes.set(more.bytes.replace(0));
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        let held = self.bytes.replace(0);
        if held > 0 {
            self.budget.give_back(held);
        }
    }
}

/// Decides when to give freed memory back to the OS: once after a burst, when a period whose
/// peak use passed `burst_bytes` is followed by a quiet one (peak below a quarter of it). The
/// allocator keeps freed buffers for reuse while traffic is steady (`runtime::keep_freed_memory`).
pub struct AfterBurst {
    burst_bytes: usize,
    seen: bool,
}

impl AfterBurst {
    /// A tracker for which a period with a peak of `burst_bytes` or more counts as a burst.
    pub fn new(burst_bytes: usize) -> AfterBurst {
        AfterBurst {
            burst_bytes,
            seen: false,
        }
    }

    /// Called once a period with that period's peak; true when memory should be returned now.
    pub fn period(&mut self, peak: usize) -> bool {
        if peak >= self.burst_bytes {
            self.seen = true;
            return false;
        }
        let quiet = peak < self.burst_bytes / 4;
        let trim = self.seen && quiet;
        if trim {
            self.seen = false;
        }
        trim
    }
}

/// Resolves once any of `budgets` changes (bytes returned, or its line moved); listening
/// starts when this is called, so a change between the call and the await is not missed.
fn any_changed<'a>(budgets: impl IntoIterator<Item = &'a Rc<Budget>>) -> impl Future<Output = ()> {
    let mut listeners: Vec<_> = budgets
        .into_iter()
        .map(|b| Box::pin(b.changed.listen()))
        .collect();
    future::poll_fn(move |cx| {
        let ready = listeners.iter_mut().any(|l| l.as_mut().poll(cx).is_ready());
        if ready {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_lite::future::{block_on, poll_once};

    #[test]
    fn memory_is_returned_once_after_a_burst_not_during_steady_load() {
        let mut t = AfterBurst::new(100);
        assert!(!t.period(10), "no burst yet");
        assert!(!t.period(500), "during the burst");
        assert!(!t.period(400), "still busy");
        assert!(!t.period(30), "not quiet enough");
        assert!(t.period(5), "quiet after the burst");
        assert!(!t.period(5), "once");
        let b = Budget::new(100);
        drop(block_on(b.acquire(70)));
        assert_eq!(b.take_peak(), 70);
        assert_eq!(b.take_peak(), 0);
    }

    #[test]
    fn leases_wait_in_order_until_their_bytes_fit() {
        block_on(async {
            let b = Budget::new(100);
            let first = b.acquire(60).await;
            let mut big = Box::pin(b.acquire(50));
            assert!(poll_once(&mut big).await.is_none(), "50 more do not fit");
            let mut small = Box::pin(b.acquire(10));
            assert!(
                poll_once(&mut small).await.is_none(),
                "a small one waits behind the big one"
            );
            drop(first);
            let big = poll_once(&mut big).await.expect("fits once returned");
            let small = poll_once(&mut small).await.expect("then the small one");
            assert_eq!(b.used(), 60);
            drop((big, small));
            assert_eq!(b.used(), 0);
        });
    }

    #[test]
    fn a_gated_lease_grows_only_once_its_gate_has_room() {
        block_on(async {
            let (shard, conn) = (Budget::new(100), Budget::new(10));
            let lease = shard.acquire(5).await.gated_by([conn.clone()]);
            let unsent = conn.charge(30); // a response bigger than the connection's share
            let mut grow = Box::pin(lease.grow_to(50));
            assert!(poll_once(&mut grow).await.is_none(), "waits for the gate");
            drop(unsent); // sent
            assert!(poll_once(&mut grow).await.is_some());
            drop(grow);
            assert_eq!((shard.used(), conn.used()), (50, 0));
        });
    }

    #[test]
    fn a_closed_gate_holds_up_only_its_own_waiter() {
        block_on(async {
            let (shard, conn) = (Budget::new(100), Budget::new(10));
            let unread = conn.charge(10); // this connection's client reads nothing
            let gates = [conn.clone()];
            let mut gated = Box::pin(shard.acquire_gated(5, &gates));
            assert!(poll_once(&mut gated).await.is_none());
            let other = poll_once(Box::pin(shard.acquire(5))).await;
            assert!(other.is_some(), "another connection is not held up");
            drop(unread);
            assert!(
                poll_once(&mut gated).await.is_some(),
                "and it goes once read"
            );
        });
    }

    #[test]
    fn a_growing_frame_takes_at_most_the_whole_budget() {
        block_on(async {
            let b = Budget::new(100);
            let frame = b.acquire(10).await;
            frame.grow_by(50).await;
            assert_eq!(frame.bytes(), 60);
            frame.grow_by(500).await; // a frame larger than the budget: all of it, no more
            assert_eq!((frame.bytes(), b.used()), (100, 100));
            let mut other = Box::pin(b.acquire(1));
            assert!(poll_once(&mut other).await.is_none());
            drop(frame);
            assert!(poll_once(&mut other).await.is_some());
        });
    }

    #[test]
    fn an_oversized_request_goes_alone_and_responses_may_pass_the_limit() {
        block_on(async {
            let b = Budget::new(100);
            let huge = b.acquire(1000).await;
            assert_eq!(huge.bytes(), 100, "charged the whole budget");
            let mut next = Box::pin(b.acquire(1));
            assert!(poll_once(&mut next).await.is_none());
            huge.set(300); // its response is bigger
            assert_eq!(b.used(), 300);
            assert!(
                poll_once(&mut next).await.is_none(),
                "readers wait meanwhile"
            );
            drop(huge);
            assert!(poll_once(&mut next).await.is_some());
        });
    }

    #[test]
    fn a_dropped_waiter_leaves_the_line_and_growing_returns_first() {
        block_on(async {
            let b = Budget::new(100);
            let held = b.acquire(90).await;
            let mut gone = Box::pin(b.acquire(50));
            assert!(poll_once(&mut gone).await.is_none());
            drop(gone); // its connection closed while it waited
            let other = b.acquire(10).await; // not stuck behind it
            let mut grow = Box::pin(other.grow_to(20));
            assert!(poll_once(&mut grow).await.is_none(), "100 - 90 < 20");
            drop(held);
            assert!(poll_once(&mut grow).await.is_some());
            drop(grow);
            assert_eq!(other.bytes(), 20);
            assert_eq!(b.used(), 20);
        });
    }
}
