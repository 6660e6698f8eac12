//! The runtime edge: one glommio executor per shard (pinned to a core when asked), the channel
//! mesh between them, signals, timers and task spawning. The rest of the broker names none of
//! glommio's types except through this module (and `storage/io.rs`), so the runtime can be
//! swapped by rewriting these two files.

use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use glommio::channels::channel_mesh::{Full, MeshBuilder, Receivers, Senders};
use glommio::{LocalExecutorBuilder, Placement, PoolPlacement};

/// Work sent to another shard: runs there, on that shard's executor, given the shard's state
/// `S` (the broker's `Shard`; this module names no type above it).
pub type Job<S> = Box<dyn FnOnce(Rc<S>) -> Pin<Box<dyn Future<Output = ()>>> + Send>;

/// A shard's sending ends of the mesh: one channel to every other shard, by shard id.
pub type MeshSenders<S> = Senders<Job<S>>;
/// A shard's receiving ends of the mesh: one stream of jobs from every other shard.
pub type MeshReceivers<S> = Receivers<Job<S>>;
/// The full mesh of job channels between shards, before a shard joins it (see
/// [`run_shards`]); joining yields that shard's senders and receivers.
pub type Mesh<S> = MeshBuilder<Job<S>, Full>;

/// How many executors to start, and how.
#[derive(Clone, Copy, Debug)]
pub struct Executors {
    /// One executor (thread) per shard.
    pub shards: usize,
    /// Pin executor i to core i (when there is such a core).
    pub pin: bool,
    /// Jobs each mesh channel (one per pair of shards, each way) holds before senders wait.
    pub mesh_channel_capacity: usize,
}

pub use glommio::sync::Semaphore;
pub use glommio::Task;

/// Spawns `fut` on this thread's executor; it is cancelled if the returned task is dropped,
/// so call `detach` on it to let it run on its own.
pub fn spawn<T: 'static>(fut: impl Future<Output = T> + 'static) -> Task<T> {
    glommio::spawn_local(fut)
}

/// Runs `f` on this executor's blocking thread (unpinned, one per shard) and waits for its
/// result without blocking the executor: for work that would otherwise hold a shard's turn
/// for long (rendering a metrics scrape, reading /proc).
pub async fn off_thread<R, F>(f: F) -> R
where
    F: FnOnce() -> R + Send + 'static,
    R: Send + 'static,
{
    glommio::executor().spawn_blocking(f).await
}

/// What this thread's executor has done since it started (the metrics endpoint reads it).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct ExecutorTotals {
    /// Seconds spent running tasks and polling I/O (not sleeping, not spinning).
    pub busy_s: f64,
    /// Tasks run.
    pub tasks: u64,
    /// io_uring submission queue entries handed to the kernel (file and socket I/O, timers).
    pub sqes: u64,
}

thread_local! {
    static TOTALS: std::cell::Cell<ExecutorTotals> = std::cell::Cell::new(ExecutorTotals::default());
}

/// This executor's totals so far. glommio hands out its statistics as deltas since they were
/// last asked for, so this adds them up; call it only on a shard's thread. (Its I/O
/// statistics are left alone: taking them builds fresh latency sketches, tens of µs; the
/// storage edge counts its own reads and writes, and the vendored glommio counts submissions.)
pub fn executor_totals() -> ExecutorTotals {
    let stats = glommio::executor().executor_stats();
    TOTALS.with(|t| {
        let mut v = t.get();
        v.busy_s += stats.total_runtime().as_secs_f64();
        v.tasks += stats.tasks_executed();
        v.sqes = glommio::sqes_submitted();
        t.set(v);
        v
    })
}

/// Runs the futures concurrently on this executor and returns their outputs in order.
pub async fn join_all<T: 'static, F>(futs: impl IntoIterator<Item = F>) -> Vec<T>
where
    F: Future<Output = T> + 'static,
{
    let tasks: Vec<Task<T>> = futs.into_iter().map(spawn).collect();
    let mut out = Vec::with_capacity(tasks.len());
    for t in tasks {
        out.push(t.await);
    }
    out
}

/// Waits `d` on this executor's timer without blocking the thread.
pub async fn sleep(d: Duration) {
    glommio::timer::sleep(d).await
}

/// Lets the other tasks that are ready run before this one goes on (at once if none is).
pub async fn yield_now() {
    glommio::executor().yield_now().await
}

/// Adds up the CPU time this thread spends in the pieces of work it is asked to time (not
/// elapsed time: a preemption by another thread, or the other tasks run between pieces, are
/// not counted).
#[derive(Debug, Default)]
pub struct CpuTimer {
    /// Seconds counted so far.
    pub spent_s: f64,
}

impl CpuTimer {
    /// Runs `f` and adds the thread CPU time it took.
    pub fn time<R>(&mut self, f: impl FnOnce() -> R) -> R {
        let start = thread_cpu_s();
        let r = f();
        self.spent_s += (thread_cpu_s() - start).max(0.0);
        r
    }
}

/// This thread's CPU time so far, seconds (0 if the clock cannot be read).
fn thread_cpu_s() -> f64 {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `t` is a valid, writable timespec; the call only writes it.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut t) };
    if rc == 0 {
        t.tv_sec as f64 + t.tv_nsec as f64 * 1e-9
    } else {
        0.0
    }
}

/// Runs `f` on a fresh executor per shard and waits for all of them to finish.
pub fn run_shards<S, F, Fut>(config: Executors, f: F) -> anyhow::Result<()>
where
    S: 'static,
    F: Fn(usize, Mesh<S>) -> Fut + Send + Clone + 'static,
    Fut: Future<Output = ()> + 'static,
{
    let mesh: Mesh<S> = MeshBuilder::full(config.shards, config.mesh_channel_capacity);
    let cores = core_affinity::get_core_ids().unwrap_or_default();
    let mut handles = Vec::with_capacity(config.shards);
    for id in 0..config.shards {
        let placement = match cores.get(id) {
            Some(core) if config.pin => Placement::Fixed(core.id),
            _ => Placement::Unbound,
        };
        let f = f.clone();
        let mesh = mesh.clone();
        let h = LocalExecutorBuilder::new(placement)
            .name(&format!("shard-{id}"))
            .io_memory(2 << 20)
            // Blocking work (`off_thread`, some of glommio's file operations) runs on a
            // thread of its own that is not pinned, so it does not take the shard's core.
            .blocking_thread_pool_placement(PoolPlacement::Unbound(1))
            .spawn(move || f(id, mesh))
            .map_err(|e| anyhow::anyhow!("starting shard {id}: {e}"))?;
        handles.push(h);
    }
    for h in handles {
        h.join().map_err(|e| anyhow::anyhow!("shard failed: {e}"))?;
    }
    Ok(())
}

/// Largest allocation glibc's malloc serves from its heaps rather than a fresh mmap (its
/// ceiling, `DEFAULT_MMAP_THRESHOLD_MAX` on 64-bit).
const MMAP_THRESHOLD_BYTES: i32 = 32 << 20;
/// Free memory at the top of a malloc heap kept for reuse before it is returned to the OS.
const TRIM_THRESHOLD_BYTES: i32 = 256 << 20;

/// Malloc arenas (glibc's per-thread heaps): one for the whole process.
const ARENAS_MAX: i32 = 1;

/// Makes the allocator keep and reuse the large buffers the data path frees (request frames,
/// batch copies, DMA buffers for O_DIRECT writes and reads, read-cache extents) instead of
/// mapping fresh pages for each one. With glibc's defaults every buffer above about 128 KiB
/// to 32 MiB (its threshold moves) came from a new mmap: the kernel zeroed each page on its
/// first touch, and that page-fault path was more than half of the broker's CPU when one
/// producer wrote 1 MiB batches (docs/benchmarks.md). Call once, before the shards start.
///
/// One arena for all shards: a produced batch is allocated on the shard whose connection read
/// it but freed on the partition's owner, when the read cache lets it go. With an arena per
/// thread the memory went back to the reading shard's arena, where the next frames (read on
/// the other shard) could not reuse it, so every byte produced across shards faulted in fresh
/// pages and RSS grew by the cache size again (1 GB runs with the cache full: 252,000 page
/// faults and up to 2 broker CPU-s per GiB, against 0-10,000 and 0.7-0.8 with one arena,
/// docs/benchmarks.md). Small allocations stay
/// thread-local in glibc's per-thread cache, so the arena's lock is taken only for the larger
/// ones.
pub fn keep_freed_memory() {
    // SAFETY: mallopt only changes allocator parameters; it has no memory preconditions.
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES);
        libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES);
        libc::mallopt(libc::M_ARENA_MAX, ARENAS_MAX);
    }
}

/// Returns the memory the allocator keeps free (see `keep_freed_memory`) to the OS, from every
/// heap: for after a burst, so a broker back at rest does not stay at its peak size.
pub fn return_freed_memory() {
    // SAFETY: malloc_trim only releases free pages; it has no memory preconditions.
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    unsafe {
        libc::malloc_trim(0);
    }
}

/// A flag set by SIGINT or SIGTERM; shards poll it.
pub fn shutdown_flag() -> anyhow::Result<Arc<AtomicBool>> {
    let flag = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, flag.clone())?;
    }
    Ok(flag)
}

pub use glommio::channels::local_channel;

/// A timer of fixed ticks that a wake-up can cut short, for the loops that tick Raft
/// groups and carry out their work as it comes (the metadata voter, a shard's replicas).
pub struct Ticker {
    every: Duration,
    next: std::time::Instant,
}

impl Ticker {
    /// Ticks every `every`, the first one `every` from now.
    pub fn new(every: Duration) -> Ticker {
        Ticker {
            every,
            next: std::time::Instant::now() + every,
        }
    }

    /// Waits for the next tick or a message on `woken`, whichever comes first; true if a
    /// tick is due. Ticks missed while the thread was busy are not made up in a burst.
    pub async fn wait_or(&mut self, woken: &local_channel::LocalReceiver<()>) -> bool {
        let now = std::time::Instant::now();
        futures_lite::future::or(sleep(self.next.saturating_duration_since(now)), async {
            let _ = woken.recv().await;
        })
        .await;
        let now = std::time::Instant::now();
        if now < self.next {
            return false;
        }
        self.next = (self.next + self.every).max(now);
        true
    }
}
pub use glommio::net::{TcpListener, TcpStream};

/// A listener on `addr` that no other socket may share: unlike `TcpListener::bind` (which
/// sets SO_REUSEPORT, as the Kafka listeners want), a second process binding the same address
/// fails, so two brokers never split one admin port between them.
pub fn listen_exclusive(addr: std::net::SocketAddr) -> std::io::Result<TcpListener> {
    use std::os::fd::{FromRawFd, IntoRawFd};
    let std_listener = std::net::TcpListener::bind(addr)?;
    std_listener.set_nonblocking(true)?;
    // SAFETY: the descriptor is a listening TCP socket we own; ownership moves to glommio.
    Ok(unsafe { TcpListener::from_raw_fd(std_listener.into_raw_fd()) })
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;
    use std::time::Duration;

    use glommio::channels::shared_channel;
    use glommio::{LocalExecutorBuilder, Placement};

    const ROUND_TRIPS: u64 = 20_000;

    /// The patched park path (vendor/glommio/PATCHED.md): two executors ping-pong over shared
    /// channels, so each message finds its receiver parked or about to park. A lost wake-up
    /// leaves both waiting forever; the watchdog turns that into a failure, not a hung run.
    #[test]
    fn cross_executor_wakeups_are_not_lost() {
        let (ping_tx, ping_rx) = shared_channel::new_bounded::<u64>(1);
        let (pong_tx, pong_rx) = shared_channel::new_bounded::<u64>(1);
        let (done_tx, done_rx) = mpsc::channel::<u64>();
        let echo = LocalExecutorBuilder::new(Placement::Unbound)
            .spawn(move || async move {
                let rx = ping_rx.connect().await;
                let tx = pong_tx.connect().await;
                while let Some(n) = rx.recv().await {
                    tx.send(n + 1).await.expect("pong receiver gone");
                }
            })
            .expect("echo executor");
        let caller = LocalExecutorBuilder::new(Placement::Unbound)
            .spawn(move || async move {
                let tx = ping_tx.connect().await;
                let rx = pong_rx.connect().await;
                let mut sum = 0;
                for n in 0..ROUND_TRIPS {
                    tx.send(n).await.expect("ping receiver gone");
                    sum += rx.recv().await.expect("echo stopped") - n;
                }
                done_tx.send(sum).expect("test thread gone");
            })
            .expect("caller executor");
        let sum = done_rx.recv_timeout(Duration::from_secs(120));
        assert_eq!(sum, Ok(ROUND_TRIPS), "a cross-executor wake-up was lost");
        caller.join().expect("caller");
        echo.join().expect("echo");
    }

    /// The patched preempt timer (vendor/glommio/PATCHED.md) is kept across passes until it
    /// fires: a task that spins until `need_preempt` must still see it, again and again, after
    /// yielding and after sleeping on a timer (the sleep path cancels it and uses a user timer).
    #[test]
    fn a_spinning_task_is_still_told_to_yield() {
        let (done_tx, done_rx) = mpsc::channel::<u32>();
        let ex = LocalExecutorBuilder::new(Placement::Unbound)
            .preempt_timer(Duration::from_millis(5))
            .spawn(move || async move {
                let mut preempted = 0;
                for round in 0..20 {
                    while !glommio::executor().need_preempt() {
                        std::hint::spin_loop();
                    }
                    preempted += 1;
                    glommio::yield_if_needed().await;
                    if round % 2 == 0 {
                        glommio::timer::sleep(Duration::from_millis(1)).await;
                    }
                }
                done_tx.send(preempted).expect("test thread gone");
            })
            .expect("executor");
        let preempted = done_rx.recv_timeout(Duration::from_secs(120));
        assert_eq!(preempted, Ok(20), "a preempt timer never fired");
        ex.join().expect("executor");
    }
}
