//! One client connection: a reader that frames requests and starts each as its own task (so a
//! client's pipelined requests run concurrently), and a writer that sends their responses
//! strictly in request order. At most `inflight_requests_max` requests per connection are in
//! flight, and their bytes come out of the shard's [`Memory`]:
//!
//! - a request frame is leased on the shard's `inflight` budget for its declared size before
//!   its body is read (reads wait while the budget is spent), and a Fetch grows its lease to
//!   what it may read before reading it;
//! - a response, once built, is charged to the connection's own `unsent` share and to the
//!   shard's `unsent` budget until it has gone out. Past its share (a quarter of the budget) a
//!   connection reads no new request and its Fetches read nothing more; while the shard's
//!   `unsent` is over its limit no Fetch on the shard reads, and a connection whose client has
//!   taken nothing of a response for `SEND_STALL_MS` is closed, so clients that do not read
//!   cannot hold the shard's memory for long.
//!
//! A connection with no request being handled that completes no frame for
//! `connection_idle_ms_max` is closed, and so is one that leaves a frame's body unsent for
//! `FRAME_BODY_MS_MIN` plus `FRAME_BODY_MS_PER_MIB` per MiB it declared.

use std::cell::Cell;
use std::os::fd::{AsRawFd, RawFd};
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use event_listener::Event;
use futures_lite::{future, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::{admission, send, NetStats};
use crate::budget::{AfterBurst, Budget, Lease};
use crate::kafka::dispatch::{self, Close};
use crate::kafka::frame::Frame;
use crate::runtime::{self, local_channel, TcpStream};
use crate::shard::Shard;

/// A response send that has taken this long while the shard's unsent budget is over its
/// limit closes its connection.
const SEND_STALL_MS: u64 = 2_000;
/// How often a stalled send and the memory after a burst are checked.
const MEMORY_CHECK_MS: u64 = 100;
const BURST_PERIOD_MS: u64 = 1_000;
/// A frame's body must arrive within FRAME_BODY_MS_MIN plus FRAME_BODY_MS_PER_MIB per MiB
/// declared (at least 1 MiB/s), or the connection closes. Its lease grows as it arrives, and
/// two frames growing at once can wait on each other when the budget is spent: this deadline
/// ends that wait too.
const FRAME_BODY_MS_MIN: u64 = 10_000;
const FRAME_BODY_MS_PER_MIB: u64 = 1_000;
/// The first step of a frame's buffer and lease; each later step doubles what is held.
const FRAME_STEP_BYTES_MIN: usize = 64 << 10;

/// A shard's budgets for the bytes its connections hold (one per shard).
pub struct Memory {
    inflight: Rc<Budget>,
    unsent: Rc<Budget>,
}

impl Memory {
    /// Budgets of `bytes_max` each for requests being handled and responses not yet sent.
    pub fn new(bytes_max: usize) -> Rc<Memory> {
        Rc::new(Memory {
            inflight: Budget::new(bytes_max),
            unsent: Budget::new(bytes_max),
        })
    }

    /// Gives freed memory back to the OS once a burst (a quarter of a budget or more held) is
    /// over; runs for the shard's life.
    pub async fn return_after_bursts(self: Rc<Self>) {
        let mut after = AfterBurst::new(self.inflight.limit() / 4);
        loop {
            runtime::sleep(Duration::from_millis(BURST_PERIOD_MS)).await;
            if after.period(self.inflight.take_peak() + self.unsent.take_peak()) {
                runtime::return_freed_memory();
            }
        }
    }

    /// Resolves once a send has taken SEND_STALL_MS and the unsent budget is at its limit (its
    /// gates closed).
    async fn send_stalled(&self) {
        runtime::sleep(Duration::from_millis(SEND_STALL_MS)).await;
        while self.unsent.used() < self.unsent.limit() {
            runtime::sleep(Duration::from_millis(MEMORY_CHECK_MS)).await;
        }
    }
}

/// What the reader and the writer of one connection share.
struct Conn {
    shard: Rc<Shard>,
    memory: Rc<Memory>,
    /// The shard's network counters and request latency histograms.
    stats: Rc<NetStats>,
    /// This connection's responses built and not yet sent.
    unsent: Rc<Budget>,
    /// Requests being handled, and when a frame last arrived or went out.
    handling: Cell<usize>,
    last: Cell<Instant>,
    /// Set (and `closed_event` notified) when the writer stops.
    closed: Cell<bool>,
    closed_event: Event,
    peer: Rc<str>,
}

impl Conn {
    async fn closed(&self) {
        loop {
            let listener = self.closed_event.listen();
            if self.closed.get() {
                return;
            }
            listener.await;
        }
    }

    /// Resolves once nothing is being handled and no frame arrived or went out for `idle`. A
    /// frame left unfinished does not count as activity.
    async fn idle_for(&self, idle: Duration) {
        loop {
            let since = self.last.get().elapsed();
            if self.handling.get() == 0 && since >= idle {
                return;
            }
            let wait = idle.saturating_sub(since).max(Duration::from_millis(10));
            runtime::sleep(wait).await;
        }
    }

    /// A lease for a request of `size` bytes, once the connection and the shard have room.
    async fn lease(&self, size: usize) -> Lease {
        let gates = [self.unsent.clone(), self.memory.unsent.clone()];
        let lease = self.memory.inflight.acquire_gated(size, &gates).await;
        lease.gated_by(gates)
    }
}

/// A request's task, with what the writer needs to time it: its API key and arrival.
struct Pending {
    task: runtime::Task<Handled>,
    api: i16,
    arrived: Instant,
}

/// What a request's task leaves the writer: the response, when it was ready, and the charges
/// that hold its bytes (the connection's and the shard's) until it is sent.
type Handled = (Result<Option<Frame>, Close>, Instant, [Lease; 2]);

pub async fn serve(
    shard: Rc<Shard>,
    memory: Rc<Memory>,
    stats: Rc<NetStats>,
    stream: TcpStream,
    _admitted: admission::Admitted,
) {
    let _open = stats.accepted();
    let _ = stream.set_nodelay(true);
    let peer: Rc<str> = match stream.peer_addr() {
        Ok(a) => format!("/{}", a.ip()).into(),
        Err(_) => "".into(),
    };
    let fd = stream.as_raw_fd(); // the writer's half owns the stream, so it stays open
    let (mut rd, wr) = futures_lite::io::split(stream);
    let (tx, rx) = local_channel::new_bounded::<Pending>(shard.config.inflight_requests_max);
    let share = memory.inflight.limit() / 4;
    let conn = Rc::new(Conn {
        shard,
        memory,
        stats,
        unsent: Budget::new(share),
        handling: Cell::new(0),
        last: Cell::new(Instant::now()),
        closed: Cell::new(false),
        closed_event: Event::new(),
        peer,
    });
    let writer = runtime::spawn(write_responses(conn.clone(), fd, wr, rx));
    while let Some((frame, lease)) = next_request(&conn, &mut rd).await {
        if tx.send(start(&conn, frame, lease)).await.is_err() {
            break;
        }
    }
    drop(tx);
    writer.await;
}

/// The next request frame and its lease; None when the connection is to close (end of
/// stream, a bad frame, the writer stopped, or idle).
async fn next_request<R: AsyncRead + Unpin>(conn: &Conn, rd: &mut R) -> Option<(Bytes, Lease)> {
    let max = conn.shard.config.request_bytes_max;
    let idle = Duration::from_millis(conn.shard.config.connection_idle_ms_max);
    let read = async {
        let Some(size) = read_size(rd, max).await? else {
            return Ok(None);
        };
        let first = size.min(FRAME_STEP_BYTES_MIN);
        let lease = future::or(async { Some(conn.lease(first).await) }, async {
            conn.closed().await;
            None
        });
        let Some(lease) = lease.await else {
            return Ok(None);
        };
        // The lease grows with the bytes that arrive, and they must come in time.
        let body_ms = FRAME_BODY_MS_MIN + (size >> 20) as u64 * FRAME_BODY_MS_PER_MIB;
        let body = future::or(
            async { Some(read_body(rd, size, Some(&lease)).await) },
            async {
                runtime::sleep(Duration::from_millis(body_ms)).await;
                None
            },
        );
        match body.await {
            Some(body) => Ok(Some((body?, lease))),
            None => Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("a frame of {size} bytes not sent within {body_ms} ms"),
            )),
        }
    };
    let read = future::or(async { Some(read.await) }, async {
        future::or(conn.closed(), conn.idle_for(idle)).await;
        None
    });
    match read.await {
        Some(Ok(Some(read))) => Some(read),
        Some(Err(e)) if e.kind() == std::io::ErrorKind::InvalidData => {
            tracing::debug!(error = %e, "closing connection: bad frame");
            None
        }
        _ => None,
    }
}

/// Starts handling one request as its own task.
fn start(conn: &Rc<Conn>, frame: Bytes, lease: Lease) -> Pending {
    let (api, arrived) = (i16::from_be_bytes([frame[0], frame[1]]), Instant::now());
    conn.handling.set(conn.handling.get() + 1);
    conn.last.set(arrived);
    let conn = conn.clone();
    let task = runtime::spawn(async move {
        let _counted = conn.shard.request_started();
        let reply = dispatch::handle(&conn.shard, frame, &conn.peer, &lease).await;
        // The request's bytes are gone now (or owned by the log, which bounds them itself);
        // the response's are held until sent.
        let len = reply
            .as_ref()
            .map_or(0, |r| r.as_ref().map_or(0, Frame::len));
        let held = [conn.unsent.charge(len), conn.memory.unsent.charge(len)];
        drop(lease);
        (reply, Instant::now(), held)
    });
    Pending { task, api, arrived }
}

/// The writer: sends each response in request order, until a send fails or a request asks
/// for the connection to close; then tells the reader.
async fn write_responses<W: AsyncWrite + Unpin>(
    conn: Rc<Conn>,
    fd: RawFd,
    mut wr: W,
    rx: local_channel::LocalReceiver<Pending>,
) {
    while let Some(pending) = rx.recv().await {
        let (reply, handled, held) = pending.task.await;
        conn.handling.set(conn.handling.get() - 1);
        let ok = match reply {
            Ok(Some(frame)) => send_or_shed(&conn, fd, &mut wr, &frame).await,
            Ok(None) => true,
            Err(Close(why)) => {
                tracing::debug!(reason = %why, "closing connection");
                false
            }
        };
        drop(held); // sent, or never will be
        conn.last.set(Instant::now());
        if !ok {
            break;
        }
        let (handle, total) = (handled - pending.arrived, pending.arrived.elapsed());
        conn.stats.times.record(pending.api, handle, total);
    }
    let _ = wr.close().await;
    conn.closed.set(true);
    conn.closed_event.notify(usize::MAX);
}

/// Sends a response; false if the connection must close: the send failed, or the client has
/// not taken it for SEND_STALL_MS while the shard's memory for responses is spent.
async fn send_or_shed<W: AsyncWrite + Unpin>(
    conn: &Conn,
    fd: RawFd,
    wr: &mut W,
    frame: &Frame,
) -> bool {
    let sent = async { Some(send::send_frame(fd, wr, frame).await.is_ok()) };
    let stalled = async {
        conn.memory.send_stalled().await;
        None
    };
    future::or(sent, stalled).await.unwrap_or_else(|| {
        tracing::debug!(peer = %conn.peer, "closing connection: its client takes no responses while memory is short");
        false
    })
}

/// The most of a frame's declared size reserved before its bytes arrive (address space, not
/// memory: pages are touched only as bytes are read into them).
const FRAME_RESERVE_BYTES_MAX: usize = 16 << 20;

/// Reads a frame's size prefix; Ok(None) at a clean end of stream. A size outside [8, max] is
/// an error (the connection closes).
async fn read_size<R: AsyncRead + Unpin>(rd: &mut R, max: usize) -> std::io::Result<Option<usize>> {
    let mut len = [0u8; 4];
    match rd.read_exact(&mut len).await {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let size = i32::from_be_bytes(len);
    if size < 8 || size as usize > max {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("frame size {size} outside [8, {max}]"),
        ));
    }
    Ok(Some(size as usize))
}

/// Reads a frame's `size` bytes after its prefix. The buffer grows as bytes arrive (and
/// `lease` with it, before each step), so a lying size prefix costs at most twice the bytes
/// actually sent, in memory and in the budget.
async fn read_body<R: AsyncRead + Unpin>(
    rd: &mut R,
    size: usize,
    lease: Option<&Lease>,
) -> std::io::Result<Bytes> {
    // Address space for the whole frame up to FRAME_RESERVE_BYTES_MAX, so the buffer is not
    // reallocated (and what arrived so far copied) as it grows; memory is only touched below.
    let mut buf = BytesMut::with_capacity(size.min(FRAME_RESERVE_BYTES_MAX));
    while buf.len() < size {
        let have = buf.len();
        let grow = (size - have).min(have.max(FRAME_STEP_BYTES_MIN));
        if let Some(lease) = lease {
            lease
                .grow_by((have + grow).saturating_sub(lease.bytes()))
                .await;
        }
        buf.resize(have + grow, 0);
        rd.read_exact(&mut buf[have..]).await?;
    }
    Ok(buf.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn read_frame(rd: &mut &[u8], max: usize) -> std::io::Result<Option<Bytes>> {
        match read_size(rd, max).await? {
            Some(size) => Ok(Some(read_body(rd, size, None).await?)),
            None => Ok(None),
        }
    }

    #[test]
    fn frames_are_bounded() {
        futures_lite::future::block_on(async {
            let mut ok: &[u8] = &[0, 0, 0, 8, 1, 2, 3, 4, 5, 6, 7, 8];
            assert_eq!(read_frame(&mut ok, 100).await.unwrap().unwrap().len(), 8);
            let mut empty: &[u8] = &[];
            assert!(read_frame(&mut empty, 100).await.unwrap().is_none());
            let mut big: &[u8] = &[0x7f, 0xff, 0xff, 0xff, 1];
            assert!(read_frame(&mut big, 100).await.is_err());
            let mut neg: &[u8] = &[0xff, 0xff, 0xff, 0xff];
            assert!(read_frame(&mut neg, 100).await.is_err());
            let mut short: &[u8] = &[0, 0, 0, 50, 1, 2];
            assert!(
                read_frame(&mut short, 100).await.is_err(),
                "truncated frame"
            );
        });
    }
}
