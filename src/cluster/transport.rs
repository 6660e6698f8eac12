//! Raft messages between brokers, core to core: each shard of each broker listens on the
//! cluster port plus its shard index, and keeps one outgoing connection per remote (broker,
//! shard) it talks to. During a turn the shard queues its groups' messages by destination
//! ([`Transport::send`]); at the end of the turn [`Transport::flush`] packs each
//! destination's messages into frames (`raft::wire`) and hands them to that destination's
//! connection task through a bounded queue. Raft tolerates lost messages, so a full queue or a
//! broken connection drops frames (and the connection is redialled) rather than holding
//! memory. Incoming connections start with a handshake (magic, version, sender's node and
//! shard, the shard it wants); a peer that sends anything malformed is disconnected. Every
//! task lives on the shard's own executor: no waker crosses threads.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use raft::eraftpb::Message;

use crate::raft::wire;
use crate::runtime::{self, local_channel, Semaphore, TcpListener, TcpStream};

/// First bytes of every cluster connection.
const MAGIC: &[u8; 8] = b"SHLGCLST";
/// Handshake: magic, `u8` version, `u64` sender node, `u32` sender shard, `u32` wanted shard.
const HELLO_BYTES: usize = 8 + 1 + 8 + 4 + 4;

/// Limits and timings of a shard's transport.
#[derive(Clone, Copy, Debug)]
pub struct TransportConfig {
    /// Largest frame sent or accepted.
    pub frame_bytes_max: usize,
    /// Frames queued per destination before new ones are dropped.
    pub queue_frames_max: usize,
    /// Incoming connections served at once.
    pub connections_max: u64,
    /// Wait before redialling a peer that refused or dropped the connection.
    pub redial_ms: u64,
    /// A handshake must arrive within this.
    pub hello_timeout_ms: u64,
}

impl Default for TransportConfig {
    fn default() -> TransportConfig {
        TransportConfig {
            frame_bytes_max: 64 << 20,
            queue_frames_max: 256,
            connections_max: 256,
            redial_ms: 100,
            hello_timeout_ms: 5_000,
        }
    }
}

/// Who this shard is, on the cluster network.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Endpoint {
    /// The broker's node id.
    pub node: u64,
    /// The shard's index.
    pub shard: u32,
}

/// Messages received: (sender, [(group, message)]).
pub type Deliver = Rc<dyn Fn(Endpoint, Vec<(u64, Message)>)>;

/// A destination: (broker node id, shard index).
type Dest = (u64, u32);
/// Messages for one destination: (group, message).
type Batch = Vec<(u64, Message)>;

/// A shard's outgoing side.
pub struct Transport {
    me: Endpoint,
    config: TransportConfig,
    /// Each broker's cluster listener (its shard 0's address).
    peers: RefCell<BTreeMap<u64, SocketAddr>>,
    outbox: RefCell<BTreeMap<Dest, Batch>>,
    links: RefCell<BTreeMap<Dest, local_channel::LocalSender<Bytes>>>,
    /// Frames dropped (queue full, too large, peer unknown).
    dropped: std::cell::Cell<u64>,
}

impl Transport {
    /// The transport of shard `me`, reaching broker n's shard s at `peers[n]` + s.
    pub fn new(me: Endpoint, peers: BTreeMap<u64, SocketAddr>, config: TransportConfig) -> Self {
        Transport {
            me,
            config,
            peers: RefCell::new(peers),
            outbox: RefCell::new(BTreeMap::new()),
            links: RefCell::new(BTreeMap::new()),
            dropped: std::cell::Cell::new(0),
        }
    }

    /// Learns (or updates) broker `node`'s cluster listener: a broker that joined after
    /// this transport started, or came back at another address (its connections are then
    /// dropped and the next message dials the new one).
    pub fn add_peer(&self, node: u64, addr: SocketAddr) {
        if node == self.me.node {
            return;
        }
        let old = self.peers.borrow_mut().insert(node, addr);
        if old.is_some_and(|old| old != addr) {
            self.links.borrow_mut().retain(|(n, _), _| *n != node);
        }
    }

    /// Frames dropped so far.
    pub fn dropped(&self) -> u64 {
        self.dropped.get()
    }

    /// Queues `m` of `group` for shard `shard` of broker `m.to`, sent at the next flush.
    pub fn send(&self, shard: u32, group: u64, m: Message) {
        let key = (m.to, shard);
        self.outbox
            .borrow_mut()
            .entry(key)
            .or_default()
            .push((group, m));
    }

    /// Sends what this turn queued: one frame per destination (more if it is large).
    pub fn flush(&self) {
        let outbox = std::mem::take(&mut *self.outbox.borrow_mut());
        for ((node, shard), msgs) in outbox {
            for frame in self.frames(msgs) {
                self.enqueue(node, shard, frame);
            }
        }
    }

    /// Packs messages into frames under the size limit (`wire::pack`); a message too large
    /// alone is dropped (raft-rs sends it again).
    fn frames(&self, msgs: Batch) -> Vec<Bytes> {
        let (frames, dropped) = wire::pack(&msgs, self.config.frame_bytes_max);
        self.dropped.set(self.dropped.get() + dropped as u64);
        frames
    }

    fn enqueue(&self, node: u64, shard: u32, frame: Bytes) {
        let mut links = self.links.borrow_mut();
        let link = match links.entry((node, shard)) {
            std::collections::btree_map::Entry::Occupied(l) => l.into_mut(),
            std::collections::btree_map::Entry::Vacant(v) => {
                let Some(base) = self.peers.borrow().get(&node).copied() else {
                    self.dropped.set(self.dropped.get() + 1);
                    return;
                };
                let addr = SocketAddr::new(base.ip(), base.port() + shard as u16);
                let (tx, rx) = local_channel::new_bounded(self.config.queue_frames_max);
                let hello = hello(self.me, shard);
                runtime::spawn(dial(addr, hello, rx, self.config.redial_ms)).detach();
                v.insert(tx)
            }
        };
        if link.try_send(frame).is_err() {
            self.dropped.set(self.dropped.get() + 1);
        }
    }
}

fn hello(me: Endpoint, to_shard: u32) -> Bytes {
    let mut b = BytesMut::with_capacity(HELLO_BYTES);
    b.put_slice(MAGIC);
    b.put_u8(wire::VERSION);
    b.put_u64(me.node);
    b.put_u32(me.shard);
    b.put_u32(to_shard);
    b.freeze()
}

/// One destination's connection: dial, greet, write frames as they come; on any error wait
/// and dial again (frames queued meanwhile wait in the bounded channel).
async fn dial(
    addr: SocketAddr,
    hello: Bytes,
    frames: local_channel::LocalReceiver<Bytes>,
    redial_ms: u64,
) {
    let mut pending: Option<Bytes> = None;
    loop {
        // A dial of a local port no one listens on can connect the socket to itself (TCP
        // simultaneous open, when the kernel picks that port as the source): it would hold
        // the peer's port, so the peer could not bind it, and swallow the frames. Dropped.
        let dialed = TcpStream::connect(addr).await.ok();
        let dialed = dialed.filter(|s| s.local_addr().ok() != s.peer_addr().ok());
        if let Some(mut s) = dialed {
            let _ = s.set_nodelay(true);
            if s.write_all(&hello).await.is_ok() {
                loop {
                    let frame = match pending.take() {
                        Some(f) => f,
                        None => match frames.recv().await {
                            Some(f) => f,
                            None => return, // the transport is gone
                        },
                    };
                    if s.write_all(&frame).await.is_err() {
                        break; // the frame is lost with the connection; raft resends
                    }
                }
            }
        }
        // Keep at most the newest frame across a redial; stop once the transport dropped
        // this destination (gone, or moved to another address).
        loop {
            match futures_lite::future::poll_once(frames.recv()).await {
                Some(Some(f)) => pending = Some(f),
                Some(None) => return,
                None => break,
            }
        }
        runtime::sleep(Duration::from_millis(redial_ms)).await;
    }
}

/// Serves incoming cluster connections for shard `me` on `listener` until the task is
/// dropped, handing each frame's messages to `deliver`.
pub async fn serve(listener: TcpListener, me: Endpoint, config: TransportConfig, deliver: Deliver) {
    let slots = Rc::new(Semaphore::new(config.connections_max));
    loop {
        let Ok(permit) = slots.acquire_static_permit(1).await else {
            return;
        };
        let Ok(stream) = listener.accept().await else {
            continue;
        };
        let deliver = deliver.clone();
        runtime::spawn(async move {
            if let Err(why) = read_peer(stream, me, config, &deliver).await {
                tracing::debug!(%why, "cluster connection closed");
            }
            drop(permit);
        })
        .detach();
    }
}

/// Why an incoming connection was closed.
#[derive(Debug, thiserror::Error)]
enum PeerError {
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("bad handshake")]
    Hello,
    #[error("bad frame: {0}")]
    Frame(#[from] wire::WireError),
}

async fn read_peer(
    mut s: TcpStream,
    me: Endpoint,
    config: TransportConfig,
    deliver: &Deliver,
) -> Result<(), PeerError> {
    // A failure to set the timeout leaves the connection to the connection bound.
    let _ = s.set_read_timeout(Some(Duration::from_millis(config.hello_timeout_ms)));
    let mut h = [0u8; HELLO_BYTES];
    s.read_exact(&mut h).await?;
    let (magic, rest) = h.split_at(8);
    let from = Endpoint {
        node: u64::from_be_bytes(rest[1..9].try_into().expect("8 bytes")),
        shard: u32::from_be_bytes(rest[9..13].try_into().expect("4 bytes")),
    };
    let wanted = u32::from_be_bytes(rest[13..17].try_into().expect("4 bytes"));
    if magic != MAGIC || rest[0] != wire::VERSION || wanted != me.shard {
        return Err(PeerError::Hello);
    }
    let _ = s.set_read_timeout(None);
    loop {
        let mut prefix = [0u8; 4];
        s.read_exact(&mut prefix).await?;
        let len = wire::frame_len(prefix, config.frame_bytes_max)?;
        // The buffer grows with the bytes that arrive, not with what the prefix announces.
        let mut body = Vec::new();
        (&mut s).take(len as u64).read_to_end(&mut body).await?;
        if body.len() != len {
            return Err(PeerError::Frame(wire::WireError::Length));
        }
        deliver(from, wire::decode(Bytes::from(body))?);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::io::block_on;

    fn heartbeat(from: u64, to: u64, term: u64) -> Message {
        let mut m = Message::default();
        m.set_msg_type(raft::eraftpb::MessageType::MsgHeartbeat);
        (m.from, m.to, m.term) = (from, to, term);
        m
    }

    #[test]
    fn a_turns_messages_are_packed_into_frames_under_the_limit() {
        let config = TransportConfig {
            frame_bytes_max: 600,
            ..TransportConfig::default()
        };
        let t = Transport::new(Endpoint { node: 1, shard: 0 }, BTreeMap::new(), config);
        let with_data = |bytes: usize| {
            let mut m = heartbeat(1, 2, 1);
            m.set_msg_type(raft::eraftpb::MessageType::MsgAppend);
            let e = raft::eraftpb::Entry {
                data: vec![7; bytes].into(),
                ..Default::default()
            };
            m.entries.push(e);
            m
        };
        let msgs = vec![
            (1, with_data(100)),
            (2, with_data(100)),
            (3, with_data(1000)),
            (4, with_data(10)),
        ];
        let frames = t.frames(msgs);
        assert!(frames.iter().all(|f| f.len() - 4 <= 600));
        let groups: Vec<u64> = frames
            .iter()
            .flat_map(|f| wire::decode(f.slice(4..)).unwrap())
            .map(|(g, _)| g)
            .collect();
        assert_eq!(groups, vec![1, 2, 4], "in order, the oversized one dropped");
        assert_eq!((frames.len(), t.dropped()), (2, 1));
    }

    #[test]
    fn frames_reach_the_shard_they_name_and_a_garbage_peer_is_cut_off() {
        block_on(async {
            let listener = runtime::listen_exclusive("127.0.0.1:0".parse().unwrap()).unwrap();
            let base = listener.local_addr().unwrap();
            let got: Rc<RefCell<Vec<(Endpoint, u64, u64)>>> = Rc::default();
            let sink = got.clone();
            let deliver: Deliver = Rc::new(move |from, msgs| {
                for (group, m) in msgs {
                    sink.borrow_mut().push((from, group, m.term));
                }
            });
            let me = Endpoint { node: 2, shard: 0 };
            let config = TransportConfig::default();
            let server = runtime::spawn(serve(listener, me, config, deliver));

            // A peer sending garbage after a good handshake is disconnected.
            let mut bad = TcpStream::connect(base).await.unwrap();
            bad.write_all(&hello(Endpoint { node: 9, shard: 0 }, 0))
                .await
                .unwrap();
            bad.write_all(&[0, 0, 0, 3, 7, 7, 7]).await.unwrap();
            let mut buf = [0u8; 1];
            assert_eq!(
                bad.read(&mut buf).await.unwrap_or(0),
                0,
                "closed by the broker"
            );

            let peers = BTreeMap::from([(2, base)]);
            let t = Transport::new(Endpoint { node: 1, shard: 0 }, peers, config);
            for term in 1..=3 {
                t.send(0, 40 + term, heartbeat(1, 2, term));
            }
            t.send(0, 50, heartbeat(1, 7, 1)); // an unknown broker: dropped
            t.flush();
            for _ in 0..200 {
                if got.borrow().len() == 3 {
                    break;
                }
                runtime::sleep(Duration::from_millis(5)).await;
            }
            let from = Endpoint { node: 1, shard: 0 };
            let want = vec![(from, 41, 1), (from, 42, 2), (from, 43, 3)];
            assert_eq!(*got.borrow(), want, "one frame, in order, tagged");
            assert_eq!(t.dropped(), 1);
            drop(server);
        });
    }
}
