//! A shard's replicas and the I/O around them: the replica host. It keeps the replicas of
//! the partitions this shard holds a copy of (by Raft group id), ticks them on one timer,
//! hands them the messages the shard's cluster transport delivers, carries out their turns —
//! messages out through the transport, answers to the producers waiting, the write queued for
//! the replica's own writer task — and takes producers' batches for the replicas that lead
//! ([`Host::propose`]). Each replica has one writer task that performs its turns' writes in
//! order (`ReplicaStore::write`), reports them persisted and sends what waited for them, so a
//! slow disk holds up that replica only; its queue is bounded, and a replica whose queue is
//! full is not asked for more work until the writer catches up.
//!
//! A catch-up (a follower sent a leader's checkpoint) copies the leader's batches through a
//! [`CatchUpSource`] the owner supplies. Everything runs on the shard's thread; the machine
//! (`machine.rs`) stays pure and the files are `store.rs`'s.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use raft::eraftpb::Message;

use super::machine::{Answer, CatchUp, Replica, ReplicaError, Turn, Wait};
use super::store::ReplicaStore;
use crate::cluster::transport::{Endpoint, Transport};
use crate::raft::Leadership;
use crate::runtime::{self, local_channel, Task};
use crate::storage::batch::parse_header;
use crate::storage::PartitionLog;
use crate::types::Offset;

/// The timer tick: elections after 10-20 ticks without a leader (0.5-1 s).
pub const TICK: Duration = Duration::from_millis(50);
/// Turns queued for one replica's writer at most.
const WRITES_QUEUED_MAX: usize = 64;

/// Copies the batches of a catch-up, those from `keep` to `until`, from the replica on broker
/// `leader` (the host asks the leader first, then the other replicas): the whole range, or an
/// error. A source serves only batches below its own high watermark: committed, so the same
/// on every replica (a replica's log past it may be a suffix another leader replaces).
pub type CatchUpSource =
    Rc<dyn Fn(CatchUp) -> Pin<Box<dyn Future<Output = Result<Vec<Bytes>, ReplicaError>>>>>;

/// Told of each leadership change of a hosted replica: (group, who leads, in what term).
pub type OnLeadership = Rc<dyn Fn(u64, Leadership)>;

/// One hosted replica.
struct Hosted {
    replica: RefCell<Replica>,
    /// The partition log (shared with the store): its commit point follows the high
    /// watermark.
    log: PartitionLog,
    /// The shard of each other replica, by node id.
    peers: BTreeMap<u64, u32>,
    /// The writer's queue: a turn, or None to stop after the turns before it.
    writes: local_channel::LocalSender<Option<Turn>>,
    /// Producers waiting for their answer, by token.
    waiting: RefCell<HashMap<u64, local_channel::LocalSender<Answer>>>,
    next_token: Cell<u64>,
    /// Its writer stopped (a storage error) or is stopping (`remove`): the replica takes no
    /// more work.
    failed: Cell<bool>,
    writer: RefCell<Option<Task<()>>>,
}

/// The replicas of one shard.
pub struct Host {
    me: Endpoint,
    out: Rc<Transport>,
    replicas: RefCell<BTreeMap<u64, Rc<Hosted>>>,
    /// Groups that may have work: touched by a message, a proposal or a write.
    dirty: RefCell<BTreeSet<u64>>,
    wake: local_channel::LocalSender<()>,
    woken: RefCell<Option<local_channel::LocalReceiver<()>>>,
    on_leadership: RefCell<Option<OnLeadership>>,
}

impl Host {
    /// The host of shard `me`, sending through `out`.
    pub fn new(me: Endpoint, out: Rc<Transport>) -> Rc<Host> {
        let (wake, woken) = local_channel::new_bounded(1);
        Rc::new(Host {
            me,
            out,
            replicas: RefCell::new(BTreeMap::new()),
            dirty: RefCell::new(BTreeSet::new()),
            wake,
            woken: RefCell::new(Some(woken)),
            on_leadership: RefCell::new(None),
        })
    }

    /// This broker's node id.
    pub fn node(&self) -> u64 {
        self.me.node
    }

    /// Has `f` told of every leadership change of the hosted replicas from now on.
    pub fn on_leadership(&self, f: OnLeadership) {
        *self.on_leadership.borrow_mut() = Some(f);
    }

    /// Hosts `replica` of `group` over `store`; the other replicas live on `peers` (node id
    /// → shard); `catch_up` copies a leader's batches when the replica needs them.
    pub fn add(
        self: &Rc<Self>,
        group: u64,
        replica: Replica,
        store: ReplicaStore,
        peers: BTreeMap<u64, u32>,
        catch_up: CatchUpSource,
    ) {
        assert!(
            !self.replicas.borrow().contains_key(&group),
            "a group is removed before it is added again"
        );
        let (writes, queued) = local_channel::new_bounded(WRITES_QUEUED_MAX);
        let log = store.log().clone();
        log.set_commit(replica.high_watermark());
        let hosted = Rc::new(Hosted {
            replica: RefCell::new(replica),
            log,
            peers,
            writes,
            waiting: RefCell::new(HashMap::new()),
            next_token: Cell::new(1),
            failed: Cell::new(false),
            writer: RefCell::new(None),
        });
        let host = Rc::downgrade(self);
        let writer = write_turns(host, group, hosted.clone(), store, queued, catch_up);
        *hosted.writer.borrow_mut() = Some(runtime::spawn(writer));
        self.replicas.borrow_mut().insert(group, hosted);
        self.touch(group);
    }

    /// Stops hosting `group`: takes no more work for it, lets its writer finish the turns
    /// queued (a catch-up still retrying gives up), and answers its waiting producers
    /// NOT_LEADER_OR_FOLLOWER. The caller closes the log afterwards.
    pub async fn remove(&self, group: u64) {
        let Some(h) = self.replicas.borrow_mut().remove(&group) else {
            return;
        };
        h.failed.set(true);
        let _ = h.writes.send(None).await;
        let writer = h.writer.borrow_mut().take();
        if let Some(writer) = writer {
            writer.await;
        }
        answer_all(&h);
    }

    /// Removes every group (before the host is dropped: the writers hold only weak
    /// references to it).
    pub async fn close(&self) {
        // All stop taking work (and retrying catch-ups) at once; then each writer finishes.
        for h in self.replicas.borrow().values() {
            h.failed.set(true);
        }
        let groups: Vec<u64> = self.replicas.borrow().keys().copied().collect();
        for g in groups {
            self.remove(g).await;
        }
    }

    /// Messages the transport delivered: (group, message).
    pub fn deliver(&self, msgs: Vec<(u64, Message)>) {
        for (group, m) in msgs {
            let Some(h) = self.hosted(group) else {
                continue; // a replica this shard does not hold (yet, or any more)
            };
            // A stale or duplicated message may be refused; Raft stays consistent.
            let _ = h.replica.borrow_mut().step(m);
            self.dirty.borrow_mut().insert(group);
        }
        let _ = self.wake.try_send(());
    }

    /// On the leader of `group`: proposes `batch`; its base offset, and for acks=1 or all
    /// the answer to wait for.
    #[allow(clippy::type_complexity)]
    pub fn propose(
        &self,
        group: u64,
        batch: BytesMut,
        wait: Wait,
        timeout_ticks: u64,
    ) -> Result<(Offset, Option<local_channel::LocalReceiver<Answer>>), ReplicaError> {
        let h = self.hosted(group).ok_or(ReplicaError::NotLeader(None))?;
        if h.failed.get() {
            return Err(ReplicaError::NotLeader(None));
        }
        let token = h.next_token.get();
        h.next_token.set(token + 1);
        let base = h
            .replica
            .borrow_mut()
            .propose(token, batch, wait, timeout_ticks)?;
        let answer = (wait != Wait::Nothing).then(|| {
            let (tx, rx) = local_channel::new_bounded(1);
            h.waiting.borrow_mut().insert(token, tx);
            rx
        });
        self.touch(group);
        Ok((base, answer))
    }

    /// The high watermark of `group`'s replica here, if hosted.
    pub fn high_watermark(&self, group: u64) -> Option<Offset> {
        let h = self.hosted(group)?;
        let hw = h.replica.borrow().high_watermark();
        Some(hw)
    }

    /// Whether this shard's replica of `group` leads it.
    pub fn is_leader(&self, group: u64) -> bool {
        let h = self.hosted(group);
        h.is_some_and(|h| h.replica.borrow().is_leader())
    }

    /// On the leader of `group`: hands leadership to replica `to`.
    pub fn transfer_leader(&self, group: u64, to: u64) {
        if let Some(h) = self.hosted(group) {
            h.replica.borrow_mut().transfer_leader(to);
            self.touch(group);
        }
    }

    /// `min.insync.replicas` of `group` changed.
    pub fn set_min_insync(&self, group: u64, n: usize) {
        if let Some(h) = self.hosted(group) {
            h.replica.borrow_mut().set_min_insync(n);
        }
    }

    /// Whether this shard's replica of `group` leads and has applied its term's first entry
    /// (`Replica::term_started`).
    pub fn term_started(&self, group: u64) -> bool {
        let h = self.hosted(group);
        h.is_some_and(|h| h.replica.borrow().term_started())
    }

    /// Who leads `group` and in what term, as this shard's replica sees it.
    pub fn leadership(&self, group: u64) -> Option<Leadership> {
        let h = self.hosted(group)?;
        let l = h.replica.borrow().leadership();
        Some(l)
    }

    /// The replicas of `group` in sync (node ids), as its leader here counts them (empty on
    /// a follower; None: not hosted).
    pub fn in_sync_ids(&self, group: u64) -> Option<Vec<u64>> {
        let h = self.hosted(group)?;
        let ids = h.replica.borrow().in_sync_ids();
        Some(ids)
    }

    /// On the leader of `group`: each follower's lag behind the log end, in offsets.
    pub fn follower_lag(&self, group: u64) -> Option<Vec<(u64, i64)>> {
        let h = self.hosted(group)?;
        let lag = h.replica.borrow().follower_lag();
        Some(lag)
    }

    /// The replicas of `group` in sync, as its leader here counts them (None: not hosted).
    pub fn in_sync(&self, group: u64) -> Option<usize> {
        let h = self.hosted(group)?;
        let n = h.replica.borrow().in_sync();
        Some(n)
    }

    fn hosted(&self, group: u64) -> Option<Rc<Hosted>> {
        self.replicas.borrow().get(&group).cloned()
    }

    /// Ticks the replicas every [`TICK`] and carries out their work as it comes, until the
    /// task is dropped. Once per host.
    pub async fn run(self: Rc<Self>) {
        let woken = self.woken.borrow_mut().take().expect("a host runs once");
        let mut ticker = runtime::Ticker::new(TICK);
        loop {
            if ticker.wait_or(&woken).await {
                let all: Vec<(u64, Rc<Hosted>)> = self.all();
                for (group, h) in all {
                    h.replica.borrow_mut().tick();
                    self.dirty.borrow_mut().insert(group);
                }
            }
            self.drive();
        }
    }

    fn all(&self) -> Vec<(u64, Rc<Hosted>)> {
        let replicas = self.replicas.borrow();
        replicas.iter().map(|(g, h)| (*g, h.clone())).collect()
    }

    fn touch(&self, group: u64) {
        self.dirty.borrow_mut().insert(group);
        let _ = self.wake.try_send(());
    }

    /// Carries out the work of every replica that may have some.
    fn drive(&self) {
        let dirty = std::mem::take(&mut *self.dirty.borrow_mut());
        for group in dirty {
            let Some(h) = self.hosted(group) else {
                continue;
            };
            self.drive_one(group, &h);
        }
        self.out.flush();
    }

    fn drive_one(&self, group: u64, h: &Hosted) {
        while !h.failed.get() {
            if h.writes.is_full() {
                return; // the writer touches the group again when it has room
            }
            let Some(mut t) = h.replica.borrow_mut().turn() else {
                return;
            };
            for m in std::mem::take(&mut t.send) {
                self.send(group, h, m);
            }
            for (token, answer) in std::mem::take(&mut t.decided) {
                if let Some(tx) = h.waiting.borrow_mut().remove(&token) {
                    let _ = tx.try_send(answer);
                }
            }
            if let Some(hw) = t.high_watermark {
                h.log.set_commit(hw);
            }
            if let Some(l) = t.leadership {
                tracing::debug!(group, node = self.me.node, leader = ?l.leader, term = l.term,
                    "partition replica leadership");
                let told = self.on_leadership.borrow().clone();
                if let Some(f) = told {
                    f(group, l);
                }
            }
            let has_write = t.number != 0 || t.checkpoint.is_some();
            if has_write && h.writes.try_send(Some(t)).is_err() {
                unreachable!("checked for room above, on this thread");
            }
        }
    }

    fn send(&self, group: u64, h: &Hosted, m: Message) {
        match h.peers.get(&m.to) {
            Some(&shard) => self.out.send(shard, group, m),
            None => tracing::debug!(group, to = m.to, "message for a replica not in the set"),
        }
    }
}

/// Answers every producer still waiting on `h`.
fn answer_all(h: &Hosted) {
    for (_, tx) in h.waiting.borrow_mut().drain() {
        let _ = tx.try_send(Answer::NotLeader);
    }
}

/// The writer of one replica: carries out its turns' writes in order, until told to stop
/// or a write fails (then the replica leaves the host and its producers are answered).
async fn write_turns(
    host: std::rc::Weak<Host>,
    group: u64,
    h: Rc<Hosted>,
    mut store: ReplicaStore,
    queued: local_channel::LocalReceiver<Option<Turn>>,
    catch_up: CatchUpSource,
) {
    while let Some(Some(mut t)) = queued.recv().await {
        if let Err(e) = write_one(&h, &mut store, &mut t, &catch_up).await {
            if !h.failed.replace(true) {
                tracing::error!(group, error = %e, "partition replica write failed; replica stopped");
            }
            if let Some(host) = host.upgrade() {
                host.replicas.borrow_mut().remove(&group);
            }
            answer_all(&h);
            return;
        }
        let Some(host) = host.upgrade() else { return };
        for m in std::mem::take(&mut t.send_after_write) {
            host.send(group, &h, m);
        }
        host.out.flush();
        host.touch(group);
    }
}

async fn write_one(
    h: &Hosted,
    store: &mut ReplicaStore,
    t: &mut Turn,
    catch_up: &CatchUpSource,
) -> Result<(), ReplicaError> {
    if let Some(c) = t.catch_up {
        copy_until_done(h, c, catch_up, store).await?;
    }
    if t.number != 0 {
        store.write(t, Vec::new()).await?;
        h.replica.borrow_mut().persisted(t.number);
    }
    store.checkpoint(t.checkpoint.take()).await?;
    Ok(())
}

/// Copies the batches a catch-up needs, `keep` to exactly `until`, into the log, from the
/// leader that sent the checkpoint or else from any other replica (those offsets are
/// committed, so a majority holds them, and a follower catching up must not wait on a dead
/// leader: until its write is done it sends nothing, votes included). The log is cut to
/// `keep` first; each copy from a source continues where the log ends (what is appended is
/// committed and kept, so a source that fails part way costs only its last step). Asked
/// around again every second; given up when the replica is being removed.
async fn copy_until_done(
    h: &Hosted,
    c: CatchUp,
    catch_up: &CatchUpSource,
    store: &mut ReplicaStore,
) -> Result<(), ReplicaError> {
    if c.keep >= c.until {
        return Ok(()); // nothing to copy: the turn's write cuts the log to `keep` only
    }
    store.cut_for_catch_up(c.keep).await?;
    let mut sources: Vec<u64> = c.leader.into_iter().collect();
    sources.extend(h.peers.keys().filter(|p| Some(**p) != c.leader));
    loop {
        for &from in &sources {
            loop {
                if h.failed.get() {
                    return Err(ReplicaError::NotLeader(None));
                }
                let at = store.log().next_offset();
                if at >= c.until {
                    return Ok(());
                }
                let ask = CatchUp {
                    leader: Some(from),
                    keep: at,
                    until: c.until,
                };
                match catch_up(ask).await {
                    Ok(batches) if continues(&batches, at, c.until) => {
                        store.append_copied(batches).await?;
                    }
                    Ok(_) => {
                        tracing::debug!(
                            from,
                            ?at,
                            "catch-up copy served nothing usable; next source"
                        );
                        break;
                    }
                    Err(e) => {
                        tracing::debug!(from, error = %e, "catch-up copy failed; next source");
                        break;
                    }
                }
            }
        }
        tracing::warn!(until = ?c.until, "no replica could serve a catch-up; retrying");
        runtime::sleep(Duration::from_secs(1)).await;
    }
}

/// Whether `batches` continue a log ending at `at`, one after another, and end at or
/// before `until` (an empty copy continues nothing).
fn continues(batches: &[Bytes], at: Offset, until: Offset) -> bool {
    let mut next = at;
    for b in batches {
        match parse_header(b) {
            Ok(h) if h.base_offset == next && h.next_offset() <= until => next = h.next_offset(),
            _ => return false,
        }
    }
    next > at
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use super::*;
    use crate::cluster::transport::{serve, Deliver, TransportConfig};
    use crate::replica::ReplicaConfig;
    use crate::storage::batch::build_test_batch;
    use crate::storage::io::block_on;
    use crate::types::TimestampMs;

    const GROUP: u64 = 7;
    const VOTERS: [u64; 3] = [1, 2, 3];

    type Logs = Rc<RefCell<BTreeMap<u64, PartitionLog>>>;

    thread_local! {
        static COPIES: Cell<u64> = const { Cell::new(0) };
    }

    type Hosts = Rc<RefCell<BTreeMap<u64, Rc<Host>>>>;

    /// A copy source reading another replica's log directly (the brokers share a process
    /// here), below that replica's high watermark.
    fn source(logs: &Logs, hosts: &Hosts) -> CatchUpSource {
        let (logs, hosts) = (logs.clone(), hosts.clone());
        Rc::new(move |c: CatchUp| {
            let (logs, hosts) = (logs.clone(), hosts.clone());
            Box::pin(async move {
                COPIES.with(|n| n.set(n.get() + 1));
                let leader = c.leader.ok_or(ReplicaError::NotLeader(None))?;
                let host = hosts.borrow().get(&leader).cloned();
                let hw = host.and_then(|h| h.high_watermark(GROUP));
                if hw.is_none_or(|hw| hw < c.until) {
                    return Err(ReplicaError::NotLeader(None));
                }
                let log = logs.borrow().get(&leader).cloned();
                let log = log.ok_or(ReplicaError::NotLeader(None))?;
                let mut out = Vec::new();
                // A few batches per call, as a Fetch of bounded size serves them.
                log.replay(c.keep, |h, b| {
                    if h.base_offset < c.until && out.len() < 5 {
                        out.push(b);
                    }
                    Ok(())
                })
                .await?;
                Ok(out)
            })
        })
    }

    /// Opens broker `id`'s replica from `dir` into `host`.
    async fn add(host: &Rc<Host>, id: u64, dir: &std::path::Path, logs: &Logs, hosts: &Hosts) {
        let log = PartitionLog::open(dir, Default::default()).await.unwrap();
        logs.borrow_mut().insert(id, log.clone());
        let (store, rebuilt) = ReplicaStore::open(log, dir, &VOTERS).await.unwrap();
        let config = ReplicaConfig {
            min_insync: 2,
            held_entries_max: 8,
            ..ReplicaConfig::new(id)
        };
        let replica = Replica::new(&config, rebuilt.raft_log, rebuilt.checkpoint).unwrap();
        let peers = VOTERS.iter().map(|&v| (v, 0)).collect();
        host.add(GROUP, replica, store, peers, source(logs, hosts));
    }

    async fn leader(hosts: &[Rc<Host>]) -> usize {
        for _ in 0..1200 {
            if let Some(i) = hosts.iter().position(|h| h.is_leader(GROUP)) {
                return i;
            }
            runtime::sleep(Duration::from_millis(25)).await;
        }
        panic!("no leader in 30 s");
    }

    /// Proposes `n` batches on host `i` with acks=all; every one is answered Done.
    async fn produce(host: &Host, n: usize) {
        let mut answers = Vec::new();
        for _ in 0..n {
            let b = build_test_batch(2, 64, TimestampMs::now());
            let (_, rx) = host
                .propose(GROUP, BytesMut::from(&b[..]), Wait::Committed, 400)
                .unwrap();
            answers.push(rx.expect("acks=all waits"));
        }
        for rx in answers {
            assert_eq!(rx.recv().await, Some(Answer::Done));
        }
    }

    async fn same_logs(logs: &Logs) -> bool {
        let mut all = Vec::new();
        let all_logs: Vec<PartitionLog> = logs.borrow().values().cloned().collect();
        for log in all_logs {
            let mut batches = Vec::new();
            log.replay(Offset(0), |_, b| {
                batches.push(b);
                Ok(())
            })
            .await
            .unwrap();
            all.push(batches);
        }
        all.windows(2).all(|w| w[0] == w[1])
    }

    /// Three brokers' hosts over the real cluster transport (loopback TCP), each with a
    /// replica on a real log: a leader is elected, acks=all batches are answered once
    /// committed, a replica crashed and restarted while the others go on rebuilds from its
    /// files and is caught up, and the three logs end byte-identical.
    #[test]
    fn hosts_replicate_over_the_transport_through_a_replica_restart() {
        block_on(async {
            let listeners: Vec<_> = VOTERS
                .iter()
                .map(|_| runtime::listen_exclusive("127.0.0.1:0".parse().unwrap()).unwrap())
                .collect();
            let addrs: BTreeMap<u64, SocketAddr> = VOTERS
                .iter()
                .zip(&listeners)
                .map(|(&id, l)| (id, l.local_addr().unwrap()))
                .collect();
            let dirs: Vec<_> = VOTERS
                .iter()
                .map(|_| tempfile::tempdir().unwrap())
                .collect();
            let logs: Logs = Rc::default();
            let by_id: Hosts = Rc::default();
            let (mut hosts, mut tasks) = (Vec::new(), Vec::new());
            for (&id, listener) in VOTERS.iter().zip(listeners) {
                let me = Endpoint { node: id, shard: 0 };
                let config = TransportConfig::default();
                let out = Rc::new(Transport::new(me, addrs.clone(), config));
                let host = Host::new(me, out);
                let h = host.clone();
                let deliver: Deliver = Rc::new(move |_, msgs| h.deliver(msgs));
                tasks.push(runtime::spawn(serve(listener, me, config, deliver)));
                tasks.push(runtime::spawn(host.clone().run()));
                by_id.borrow_mut().insert(id, host.clone());
                add(&host, id, dirs[hosts.len()].path(), &logs, &by_id).await;
                hosts.push(host);
            }
            let first = leader(&hosts).await;
            produce(&hosts[first], 30).await;
            // A follower's replica crashes, the others go on past what it holds in memory.
            let down = (first + 1) % 3;
            hosts[down].remove(GROUP).await;
            let log = logs.borrow_mut().remove(&(down as u64 + 1)).unwrap();
            log.close().await.unwrap();
            let now = leader(&hosts).await;
            produce(&hosts[now], 40).await;
            add(
                &hosts[down],
                down as u64 + 1,
                dirs[down].path(),
                &logs,
                &by_id,
            )
            .await;
            let now = leader(&hosts).await;
            produce(&hosts[now], 10).await;
            let mut converged = false;
            for _ in 0..1200 {
                if same_logs(&logs).await {
                    converged = true;
                    break;
                }
                runtime::sleep(Duration::from_millis(25)).await;
            }
            assert!(converged, "the restarted replica caught up");
            assert!(COPIES.with(Cell::get) > 0, "from the leader's checkpoint");
            let end = logs.borrow()[&1].next_offset();
            assert!(
                end >= Offset(160),
                "80 batches of 2 records and the no-ops: {end:?}"
            );
            for h in &hosts {
                h.close().await;
            }
            by_id.borrow_mut().clear();
            drop(tasks);
            let all_logs: Vec<PartitionLog> = logs.borrow().values().cloned().collect();
            for log in all_logs {
                log.close().await.unwrap();
            }
        });
    }
}
