//! Where new partitions go: over the live brokers, round robin from a per-topic start (so
//! many one-partition topics do not all land on the lowest broker id), and on a broker over
//! its shards by the partition's rank among the topic's partitions there (so two brokers
//! with two shards each still use all four cores for a four-partition topic; hashing the
//! partition index alone would put a broker's partitions 0 and 2 on one shard). Pure: the
//! metadata leader calls it before proposing, and the choice travels in the record.

use uuid::Uuid;

/// The broker of each partition `first..first + count` of topic `id`, drawn from `live`
/// (node ids; at least one). The same for every caller given the same live set.
pub fn brokers_for(id: &Uuid, first: i32, count: i32, live: &[i32]) -> Vec<i32> {
    assert!(!live.is_empty(), "placement needs a live broker");
    let mut live = live.to_vec();
    live.sort_unstable();
    let (a, b) = id.as_u64_pair();
    let start = (a ^ b) % live.len() as u64;
    (first..first + count)
        .map(|p| live[((start + p as u64) % live.len() as u64) as usize])
        .collect()
}

/// The shard, on its broker, of partition `p` of a topic placed as `brokers` (partition i on
/// `brokers[i]`), for a broker with `shards` shards: the partition's rank among the topic's
/// partitions on that broker, from a per-topic start.
pub fn shard_on_broker(id: &Uuid, p: i32, brokers: &[i32], shards: usize) -> usize {
    let here = brokers[p as usize];
    let rank = brokers[..p as usize].iter().filter(|&&b| b == here).count() as u64;
    let (a, b) = id.as_u64_pair();
    ((a.rotate_left(17) ^ b).wrapping_add(rank) % shards as u64) as usize
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn partitions_spread_evenly_over_brokers_and_their_shards() {
        for n_brokers in 1..=4 {
            for shards in 1..=4usize {
                let live: Vec<i32> = (1..=n_brokers).collect();
                let id = Uuid::from_u128(0xfeed_0000 + (n_brokers as u128) * 31 + shards as u128);
                let count = n_brokers * shards as i32 * 3;
                let brokers = brokers_for(&id, 0, count, &live);
                let mut per_core: BTreeMap<(i32, usize), u32> = BTreeMap::new();
                for p in 0..count {
                    let s = shard_on_broker(&id, p, &brokers, shards);
                    *per_core.entry((brokers[p as usize], s)).or_default() += 1;
                }
                assert_eq!(
                    per_core.len(),
                    n_brokers as usize * shards,
                    "every core used"
                );
                assert!(
                    per_core.values().all(|&n| n == 3),
                    "{n_brokers}x{shards}: {per_core:?}"
                );
            }
        }
    }

    #[test]
    fn growing_a_topic_keeps_old_partitions_and_continues_the_cycle() {
        let id = Uuid::from_u128(77);
        let live = [3, 1, 2];
        let all = brokers_for(&id, 0, 6, &live);
        let mut grown = brokers_for(&id, 0, 4, &live);
        grown.extend(brokers_for(&id, 4, 2, &live));
        assert_eq!(grown, all);
        assert_eq!(
            brokers_for(&id, 0, 6, &[1, 2, 3]),
            all,
            "order of the live list is irrelevant"
        );
    }
}
