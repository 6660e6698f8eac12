//! Admission of connections: at most `connections_max` open at once over all shards, and at
//! most `connections_per_ip_max` from one client address (Kafka's max.connections and
//! max.connections.per.ip). The count is shared by the shards, but it is touched only when a
//! connection is accepted and when it closes, never per request, so the data path stays
//! unshared. A connection over a limit is closed as soon as it is accepted.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

/// The connection counts and limits shared by every shard's accept loop (behind a mutex).
pub struct Admission {
    total_max: usize,
    per_ip_max: usize,
    open: Mutex<Open>,
}

#[derive(Default)]
struct Open {
    total: usize,
    per_ip: HashMap<IpAddr, usize>,
}

/// An admitted connection; counted until dropped.
pub struct Admitted {
    admission: Arc<Admission>,
    ip: IpAddr,
}

impl Admission {
    /// Limits of `total_max` connections in all and `per_ip_max` from one address.
    pub fn new(total_max: usize, per_ip_max: usize) -> Arc<Admission> {
        Arc::new(Admission {
            total_max,
            per_ip_max,
            open: Mutex::new(Open::default()),
        })
    }

    /// Counts a connection from `ip`, or None if that would pass a limit.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Option<Admitted> {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let from_ip = open.per_ip.get(&ip).copied().unwrap_or(0);
        if open.total >= self.total_max || from_ip >= self.per_ip_max {
            return None;
        }
        open.total += 1;
        open.per_ip.insert(ip, from_ip + 1);
        Some(Admitted {
            admission: self.clone(),
            ip,
        })
    }

    /// Connections open now (for tests and, later, metrics).
    pub fn open(&self) -> usize {
        self.open.lock().unwrap_or_else(|p| p.into_inner()).total
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        let mut open = self
            .admission
            .open
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        assert!(open.total > 0, "an admitted connection was counted");
        open.total -= 1;
        match open.per_ip.get_mut(&self.ip) {
            Some(n) if *n > 1 => *n -= 1,
            _ => {
                open.per_ip.remove(&self.ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_hold_in_total_and_per_address_and_free_on_close() {
        let a = Admission::new(3, 2);
        let (x, y): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        let x1 = a.admit(x).unwrap();
        let _x2 = a.admit(x).unwrap();
        assert!(a.admit(x).is_none(), "per address");
        let _y1 = a.admit(y).unwrap();
        assert!(a.admit(y).is_none(), "in total");
        assert_eq!(a.open(), 3);
        drop(x1);
        assert!(a.admit(x).is_some(), "a closed connection frees its place");
        assert_eq!(a.open(), 2, "the admitted one was dropped at once");
    }
}
