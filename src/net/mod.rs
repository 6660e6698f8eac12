//! The network edge of a shard: its listener (every shard binds the same address with
//! SO_REUSEPORT, so the kernel spreads connections over shards with no acceptor hop), the
//! admission of connections (`admission`), and one reader and writer per connection (`conn`),
//! whose bytes in flight come out of the shard's [`Memory`]. Before any shard binds,
//! `wait_for_port` makes sure no other socket listens on the address: a killed broker's
//! SO_REUSEPORT socket lingers while its io_uring is torn down, and would take (and reset) a
//! share of new connections.

mod admission;
mod conn;
mod send;
pub mod stats;
mod timing;

pub use admission::Admission;
pub use conn::Memory;
pub use stats::NetStats;
pub use timing::RequestTimes;

use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use crate::runtime::{self, TcpListener};
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

/// Accepts connections until the shard stops (this task is dropped then). Every answered
/// request's latency goes into the shard's `stats`, which the caller logs when the shard stops.
pub async fn accept_loop(shard: Rc<Shard>, admission: Arc<Admission>, stats: Rc<NetStats>) {
    let listener = match TcpListener::bind(shard.config.listen) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(shard = shard.id, addr = %shard.config.listen, error = %e, "cannot listen");
            std::process::exit(2);
        }
    };
    tracing::info!(shard = shard.id, addr = %shard.config.listen, "listening");
    let memory = Memory::new(shard.config.inflight_bytes_max);
    runtime::spawn(memory.clone().return_after_bursts()).detach();
    loop {
        match listener.accept().await {
            Ok(stream) => {
                let ip = stream.peer_addr().map(|a| a.ip()).ok();
                let Some(admitted) = ip.and_then(|ip| admission.admit(ip)) else {
                    stats.refused();
                    tracing::debug!(peer = ?ip, "connection refused: connection limit reached");
                    continue; // dropped here: closed
                };
                let conn = conn::serve(
                    shard.clone(),
                    memory.clone(),
                    stats.clone(),
                    stream,
                    admitted,
                );
                runtime::spawn(conn).detach();
            }
            Err(e) => tracing::warn!(error = %e, "accept failed"),
        }
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
