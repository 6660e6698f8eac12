//! The network edge of a shard: its listener (every shard binds the same address with
//! SO_REUSEPORT, so the kernel spreads connections over shards with no acceptor hop) and one
//! task pair per connection. The reader frames requests (size-prefixed, bounded by
//! `request_bytes_max`, buffer grown only as bytes arrive) and starts each one as its own task,
//! so a client's pipelined requests run concurrently; the writer sends their responses strictly
//! in request order (a frame in segments, see `send`). At most `inflight_requests_max` requests
//! per connection are in flight. Before any shard binds, `wait_for_port` makes sure no other
//! socket listens on the address: a killed broker's SO_REUSEPORT socket lingers while its
//! io_uring is torn down, and would take (and reset) a share of new connections.

mod admission;
mod send;
mod timing;

pub use admission::Admission;
pub use timing::RequestTimes;

use std::cell::Cell;
use std::os::fd::AsRawFd;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use event_listener::Event;
use futures_lite::{future, AsyncReadExt, AsyncWriteExt};

use crate::kafka::dispatch::{self, Close};
use crate::kafka::frame::Frame;
use crate::runtime::{self, local_channel, TcpListener, TcpStream};
use crate::shard::Shard;

/// Waits until no other socket listens on `addr` (polled every `PORT_POLL_MS`, for at most
/// `wait_ms`), so that the shards, binding together with SO_REUSEPORT, are the only listeners.
/// Listening sockets are read from /proc/net/tcp and tcp6: a bind without SO_REUSEPORT would
/// not do as the probe, since it also fails on the dead process's closing connections, which
/// stay in TIME_WAIT for a minute and take no new connections. An error if it stays taken.
pub fn wait_for_port(addr: std::net::SocketAddr, wait_ms: u64) -> std::io::Result<()> {
    const PORT_POLL_MS: u64 = 10;
    let deadline = Instant::now() + std::time::Duration::from_millis(wait_ms);
    let mut logged = false;
    while other_listener(addr) {
        if Instant::now() >= deadline {
            return Err(std::io::Error::from(std::io::ErrorKind::AddrInUse));
        }
        if !logged {
            tracing::info!(%addr, "waiting for another listener on the address to go");
            logged = true;
        }
        std::thread::sleep(std::time::Duration::from_millis(PORT_POLL_MS));
    }
    Ok(())
}

/// Whether a socket in the LISTEN state is bound to `addr` (or to the same port on the
/// unspecified address, or `addr` is unspecified), by the kernel's socket tables.
fn other_listener(addr: std::net::SocketAddr) -> bool {
    const TCP_LISTEN: &str = "0A";
    ["/proc/net/tcp", "/proc/net/tcp6"].iter().any(|table| {
        let text = std::fs::read_to_string(table).unwrap_or_default();
        text.lines().skip(1).any(|line| {
            let mut cols = line.split_whitespace().skip(1);
            let (Some(local), Some(_remote), Some(state)) = (cols.next(), cols.next(), cols.next())
            else {
                return false;
            };
            state == TCP_LISTEN && listens_on(local, addr)
        })
    })
}

/// `local` is a /proc/net/tcp address, `HEXADDR:HEXPORT` (the address in host byte order per
/// 32-bit word); true if it covers `addr`.
fn listens_on(local: &str, addr: std::net::SocketAddr) -> bool {
    let Some((host, port)) = local.split_once(':') else {
        return false;
    };
    if u16::from_str_radix(port, 16).ok() != Some(addr.port()) {
        return false;
    }
    let any = host.bytes().all(|b| b == b'0');
    match addr.ip() {
        std::net::IpAddr::V4(ip) if host.len() == 8 => {
            let theirs = u32::from_str_radix(host, 16).map(u32::to_ne_bytes);
            any || ip.is_unspecified() || theirs.ok() == Some(ip.octets())
        }
        std::net::IpAddr::V4(ip) => any || ip.is_unspecified(), // a v6 socket on the port
        std::net::IpAddr::V6(_) => true, // conservative: any listener on the port
    }
}

#[cfg(test)]
mod port_tests {
    use super::*;

    #[test]
    fn proc_net_tcp_addresses_are_matched_to_the_listen_address() {
        let at = |s: &str| s.parse::<std::net::SocketAddr>().unwrap();
        // 127.0.0.1:9092 as /proc/net/tcp prints it ("0100007F:2384" on x86).
        let local = format!("{:08X}:{:04X}", u32::from_ne_bytes([127, 0, 0, 1]), 9092);
        assert!(listens_on(&local, at("127.0.0.1:9092")));
        assert!(!listens_on(&local, at("127.0.0.1:9093")));
        assert!(!listens_on(&local, at("127.0.0.2:9092")));
        assert!(listens_on(&local, at("0.0.0.0:9092")));
        assert!(listens_on("00000000:2384", at("127.0.0.1:9092")));
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        assert!(other_listener(addr), "a live listener is seen");
        drop(l);
        assert!(!other_listener(addr), "and gone once closed");
    }
}

/// Accepts connections until the shard stops (this task is dropped then).
pub async fn accept_loop(shard: Rc<Shard>, admission: Arc<Admission>) {
    let listener = match TcpListener::bind(shard.config.listen) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(shard = shard.id, addr = %shard.config.listen, error = %e, "cannot listen");
            std::process::exit(2);
        }
    };
    tracing::info!(shard = shard.id, addr = %shard.config.listen, "listening");
    loop {
        match listener.accept().await {
            Ok(stream) => {
                let ip = stream.peer_addr().map(|a| a.ip()).ok();
                let Some(admitted) = ip.and_then(|ip| admission.admit(ip)) else {
                    tracing::debug!(peer = ?ip, "connection refused: connection limit reached");
                    continue; // dropped here: closed
                };
                runtime::spawn(serve(shard.clone(), stream, admitted)).detach();
            }
            Err(e) => tracing::warn!(error = %e, "accept failed"),
        }
    }
}

/// A request's task, with what the writer needs to time it: its API key and arrival.
struct Pending {
    task: runtime::Task<(Result<Option<Frame>, Close>, Instant)>,
    api: i16,
    arrived: Instant,
}

/// Resolves once the connection has been idle for `idle`: no request in flight (`busy`) and
/// nothing received or sent since `last`. A frame left unfinished does not count as activity.
async fn idle_for(busy: &Cell<usize>, last: &Cell<Instant>, idle: Duration) {
    loop {
        let since = last.get().elapsed();
        if busy.get() == 0 && since >= idle {
            return;
        }
        let wait = idle.saturating_sub(since).max(Duration::from_millis(10));
        runtime::sleep(wait).await;
    }
}

async fn serve(shard: Rc<Shard>, stream: TcpStream, _admitted: admission::Admitted) {
    let _ = stream.set_nodelay(true);
    let peer: Rc<str> = match stream.peer_addr() {
        Ok(a) => format!("/{}", a.ip()).into(),
        Err(_) => "".into(),
    };
    let fd = stream.as_raw_fd(); // the writer's half owns the stream, so it stays open
    let (mut rd, mut wr) = futures_lite::io::split(stream);
    let (tx, rx) = local_channel::new_bounded::<Pending>(shard.config.inflight_requests_max);
    let closed = Rc::new((Cell::new(false), Event::new()));
    let writer_closed = closed.clone();
    // Requests in flight on this connection, and when it last received a frame or sent one.
    let activity = Rc::new((Cell::new(0usize), Cell::new(Instant::now())));
    let writer_activity = activity.clone();
    let idle = Duration::from_millis(shard.config.connection_idle_ms_max);
    let timed = shard.clone();
    let writer = runtime::spawn(async move {
        while let Some(pending) = rx.recv().await {
            let (reply, handled) = pending.task.await;
            let ok = match reply {
                Ok(Some(frame)) => send::send_frame(fd, &mut wr, &frame).await.is_ok(),
                Ok(None) => true,
                Err(Close(why)) => {
                    tracing::debug!(reason = %why, "closing connection");
                    false
                }
            };
            writer_activity.0.set(writer_activity.0.get() - 1);
            writer_activity.1.set(Instant::now());
            if !ok {
                break;
            }
            let (handle, total) = (handled - pending.arrived, pending.arrived.elapsed());
            timed.request_times.record(pending.api, handle, total);
        }
        let _ = wr.close().await;
        writer_closed.0.set(true);
        writer_closed.1.notify(usize::MAX);
    });
    let max = shard.config.request_bytes_max;
    loop {
        let listener = closed.1.listen();
        if closed.0.get() {
            break;
        }
        let read = future::or(async { Some(read_frame(&mut rd, max).await) }, async {
            future::or(listener, idle_for(&activity.0, &activity.1, idle)).await;
            None
        })
        .await;
        let frame = match read {
            Some(Ok(Some(frame))) => frame,
            Some(Err(e)) if e.kind() == std::io::ErrorKind::InvalidData => {
                tracing::debug!(error = %e, "closing connection: bad frame");
                break;
            }
            _ => break,
        };
        let (api, arrived) = (i16::from_be_bytes([frame[0], frame[1]]), Instant::now());
        activity.0.set(activity.0.get() + 1);
        activity.1.set(arrived);
        let s = shard.clone();
        let peer = peer.clone();
        let task = runtime::spawn(async move {
            let _counted = Inflight::enter(&s);
            (dispatch::handle(&s, frame, &peer).await, Instant::now())
        });
        if tx.send(Pending { task, api, arrived }).await.is_err() {
            break;
        }
    }
    drop(tx);
    writer.await;
}

/// Counts a request as in flight on its shard until dropped (also when the task is cancelled).
struct Inflight<'a>(&'a Shard);

impl<'a> Inflight<'a> {
    fn enter(s: &'a Shard) -> Self {
        s.inflight.set(s.inflight.get() + 1);
        Inflight(s)
    }
}

impl Drop for Inflight<'_> {
    fn drop(&mut self) {
        self.0.inflight.set(self.0.inflight.get() - 1);
    }
}

/// The most of a frame's declared size reserved before its bytes arrive (address space, not
/// memory: pages are touched only as bytes are read into them).
const FRAME_RESERVE_BYTES_MAX: usize = 16 << 20;

/// Reads one size-prefixed frame; Ok(None) at a clean end of stream. A size outside
/// [8, max] is an error (the connection closes). The buffer grows as bytes arrive, so a lying
/// size prefix costs at most twice the bytes actually sent.
async fn read_frame<R: futures_lite::AsyncRead + Unpin>(
    rd: &mut R,
    max: usize,
) -> std::io::Result<Option<Bytes>> {
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
    let size = size as usize;
    // Address space for the whole frame up to FRAME_RESERVE_BYTES_MAX, so the buffer is not
    // reallocated (and what arrived so far copied) as it grows; memory is only touched below.
    let mut buf = BytesMut::with_capacity(size.min(FRAME_RESERVE_BYTES_MAX));
    while buf.len() < size {
        let have = buf.len();
        let grow = (size - have).min(have.max(64 << 10));
        buf.resize(have + grow, 0);
        rd.read_exact(&mut buf[have..]).await?;
    }
    Ok(Some(buf.freeze()))
}

#[cfg(test)]
mod tests {
    use super::*;

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
