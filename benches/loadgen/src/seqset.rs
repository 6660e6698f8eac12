//! Which messages the consumers have seen, so a run can say "every acknowledged message was
//! consumed, none twice" instead of comparing two counters that a duplicate and a loss would
//! balance out. One bit per (subscription, producer, sequence number), shared by all consumer
//! threads through atomic bit operations, within a fixed memory budget.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::payload::ProducerId;

/// Memory budget for all bits of a run: 2^28 bits = 32 MiB. Sequence numbers beyond a
/// producer's share are counted as consumed but not checked for duplicates.
pub const SEQ_BITS_MAX: u64 = 1 << 28;

/// What inserting a sequence number found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    First,
    Duplicate,
    /// Beyond the tracked range (or an unknown producer): not checked.
    Untracked,
}

/// Which subscription (independent reader of the whole topic) a consumer belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SubscriptionId(pub usize);

pub struct SeqSets {
    producers: usize,
    /// Index `subscription * producers + producer`.
    per_producer: Vec<Vec<AtomicU64>>,
}

impl SeqSets {
    /// Bits for `subscriptions` × `producers` streams, each producer expected to send about
    /// `expected_msgs` messages (with headroom), all within `SEQ_BITS_MAX`.
    pub fn new(subscriptions: usize, producers: usize, expected_msgs: Option<u64>) -> SeqSets {
        let streams = subscriptions.max(1) * producers.max(1);
        let share = SEQ_BITS_MAX / streams as u64;
        let want = expected_msgs.map_or(share, |m| m.saturating_mul(5) / 4 + 4096);
        let words = want.div_ceil(64).min(share / 64) as usize;
        SeqSets {
            producers: producers.max(1),
            per_producer: (0..streams)
                .map(|_| (0..words).map(|_| AtomicU64::new(0)).collect())
                .collect(),
        }
    }

    pub fn insert(&self, sub: SubscriptionId, producer: ProducerId, seq: u64) -> Seen {
        if producer.0 as usize >= self.producers {
            return Seen::Untracked;
        }
        let stream = sub.0 * self.producers + producer.0 as usize;
        let Some(words) = self.per_producer.get(stream) else {
            return Seen::Untracked;
        };
        let Some(word) = words.get((seq / 64) as usize) else {
            return Seen::Untracked;
        };
        let bit = 1u64 << (seq % 64);
        if word.fetch_or(bit, Ordering::Relaxed) & bit == 0 {
            Seen::First
        } else {
            Seen::Duplicate
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_then_duplicate() {
        let s = SeqSets::new(1, 2, Some(100));
        let a = SubscriptionId(0);
        assert_eq!(s.insert(a, ProducerId(0), 5), Seen::First);
        assert_eq!(s.insert(a, ProducerId(1), 5), Seen::First);
        assert_eq!(s.insert(a, ProducerId(0), 5), Seen::Duplicate);
        assert_eq!(s.insert(a, ProducerId(0), 63), Seen::First);
        assert_eq!(s.insert(a, ProducerId(0), 64), Seen::First);
        assert_eq!(s.insert(a, ProducerId(2), 0), Seen::Untracked);
        assert_eq!(s.insert(a, ProducerId(0), 10_000_000), Seen::Untracked);
    }

    #[test]
    fn subscriptions_are_tracked_apart() {
        let s = SeqSets::new(2, 2, Some(100));
        let (a, b) = (SubscriptionId(0), SubscriptionId(1));
        assert_eq!(s.insert(a, ProducerId(1), 7), Seen::First);
        assert_eq!(s.insert(b, ProducerId(1), 7), Seen::First);
        assert_eq!(s.insert(b, ProducerId(1), 7), Seen::Duplicate);
        assert_eq!(s.insert(a, ProducerId(0), 7), Seen::First);
        assert_eq!(
            s.insert(SubscriptionId(2), ProducerId(0), 7),
            Seen::Untracked
        );
    }

    #[test]
    fn stays_within_budget() {
        let s = SeqSets::new(3, 4, None);
        let bits: usize = s.per_producer.iter().map(|w| w.len() * 64).sum();
        assert!(bits as u64 <= SEQ_BITS_MAX);
        let t = SeqSets::new(1, 1, Some(u64::MAX));
        assert!(t.per_producer[0].len() as u64 * 64 <= SEQ_BITS_MAX);
    }

    #[test]
    fn concurrent_inserts_count_each_once() {
        let s = std::sync::Arc::new(SeqSets::new(1, 1, Some(10_000)));
        let firsts: usize = (0..4)
            .map(|_| {
                let s = s.clone();
                std::thread::spawn(move || {
                    (0..10_000)
                        .filter(|&q| s.insert(SubscriptionId(0), ProducerId(0), q) == Seen::First)
                        .count()
                })
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|t| t.join().unwrap())
            .sum();
        assert_eq!(firsts, 10_000);
    }
}
