//! The record payload the producers write and the consumers read back. Its first bytes carry
//! the run id, the producer, the sequence number and the send time, so a consumer can measure
//! end-to-end latency from the payload alone (Kafka's record timestamp has only millisecond
//! resolution and may be rewritten by the broker) and count every message exactly once.

/// Bytes of the header at the start of every payload; workloads need messages at least this big.
pub const HEADER_BYTES: usize = 32;

const MAGIC: u32 = 0x534c_4231; // "SLB1"

/// Identifies one run, so records left from another run (or another tool) are not counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RunId(pub u64);

impl RunId {
    /// A run id that differs between runs (std's randomly keyed hasher over the clock and pid).
    pub fn random() -> RunId {
        use std::hash::{BuildHasher, Hasher};
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or_default(),
        );
        h.write_u32(std::process::id());
        RunId(h.finish())
    }
}

/// Index of a producer thread within a run (0-based).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ProducerId(pub u32);

/// The fields a consumer reads back from a payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub run: RunId,
    pub producer: ProducerId,
    pub seq: u64,
    /// Send time in nanoseconds since the run's clock origin (intended time at a fixed rate).
    pub send_ns: u64,
}

impl Header {
    /// Reads the header, or `None` for a payload this run did not write.
    pub fn decode(payload: &[u8], run: RunId) -> Option<Header> {
        if payload.len() < HEADER_BYTES {
            return None;
        }
        let u32_at = |i: usize| u32::from_le_bytes(payload[i..i + 4].try_into().unwrap());
        let u64_at = |i: usize| u64::from_le_bytes(payload[i..i + 8].try_into().unwrap());
        if u32_at(0) != MAGIC || u64_at(8) != run.0 {
            return None;
        }
        Some(Header {
            run,
            producer: ProducerId(u32_at(4)),
            seq: u64_at(16),
            send_ns: u64_at(24),
        })
    }
}

/// One producer's reusable payload buffer: filled once with pseudo-random bytes (so compression
/// gains nothing from the filler), then only the header changes per message.
pub struct PayloadBuf {
    bytes: Vec<u8>,
}

impl PayloadBuf {
    pub fn new(size_bytes: usize, run: RunId, producer: ProducerId) -> PayloadBuf {
        assert!(size_bytes >= HEADER_BYTES);
        let mut bytes = vec![0u8; size_bytes];
        let mut state = run.0 ^ (u64::from(producer.0) << 32) ^ 0x9e37_79b9_7f4a_7c15;
        for chunk in bytes[HEADER_BYTES..].chunks_mut(8) {
            let r = splitmix64(&mut state).to_le_bytes();
            chunk.copy_from_slice(&r[..chunk.len()]);
        }
        bytes[0..4].copy_from_slice(&MAGIC.to_le_bytes());
        bytes[4..8].copy_from_slice(&producer.0.to_le_bytes());
        bytes[8..16].copy_from_slice(&run.0.to_le_bytes());
        PayloadBuf { bytes }
    }

    /// Stamps the sequence number and send time, and returns the payload to send.
    pub fn stamp(&mut self, seq: u64, send_ns: u64) -> &[u8] {
        self.bytes[16..24].copy_from_slice(&seq.to_le_bytes());
        self.bytes[24..32].copy_from_slice(&send_ns.to_le_bytes());
        &self.bytes
    }
}

/// The record key of message `seq` in a keyed workload: 8 well-mixed bytes, so the default
/// partitioner spreads keys evenly over the partitions.
pub fn key_for(producer: ProducerId, seq: u64) -> [u8; 8] {
    let mut state = (u64::from(producer.0) << 48) ^ seq;
    splitmix64(&mut state).to_le_bytes()
}

/// SplitMix64 step: a tiny, well-known mixing function; enough for filler bytes and keys.
fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trips() {
        let run = RunId(0xdead_beef_1234);
        let mut buf = PayloadBuf::new(100, run, ProducerId(7));
        let bytes = buf.stamp(42, 123_456_789).to_vec();
        assert_eq!(bytes.len(), 100);
        let h = Header::decode(&bytes, run).unwrap();
        assert_eq!(h.producer, ProducerId(7));
        assert_eq!((h.seq, h.send_ns), (42, 123_456_789));
        let again = buf.stamp(43, 5).to_vec();
        assert_eq!(Header::decode(&again, run).unwrap().seq, 43);
        assert_eq!(bytes[HEADER_BYTES..], again[HEADER_BYTES..]);
    }

    #[test]
    fn foreign_payloads_are_rejected() {
        let mut buf = PayloadBuf::new(HEADER_BYTES, RunId(1), ProducerId(0));
        let bytes = buf.stamp(0, 0).to_vec();
        assert!(Header::decode(&bytes, RunId(2)).is_none());
        assert!(Header::decode(&bytes[..HEADER_BYTES - 1], RunId(1)).is_none());
        assert!(Header::decode(b"hello world, not a bench record!", RunId(1)).is_none());
    }

    #[test]
    fn filler_is_not_trivially_compressible_and_keys_differ() {
        let mut buf = PayloadBuf::new(4096, RunId(3), ProducerId(1));
        let bytes = buf.stamp(0, 0);
        let zeros = bytes.iter().filter(|b| **b == 0).count();
        assert!(zeros < 100, "{zeros} zero bytes");
        let keys: std::collections::HashSet<_> =
            (0..1000).map(|s| key_for(ProducerId(0), s)).collect();
        assert_eq!(keys.len(), 1000);
        assert_ne!(key_for(ProducerId(0), 1), key_for(ProducerId(1), 1));
    }

    #[test]
    fn run_ids_differ() {
        assert_ne!(RunId::random(), RunId::random());
    }
}
