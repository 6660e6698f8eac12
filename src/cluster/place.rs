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

/// The replica set of each partition `first..first + count` of topic `id` with `rf`
/// replicas (1 ≤ rf ≤ live brokers), drawn from `live`, preferred leader first. The leaders
/// are `brokers_for`'s brokers; the followers of a partition are the next brokers after its
/// leader with a shift that grows each time the partitions wrap around the brokers (Kafka's
/// assignment), so the copies of one broker's leaders are spread over all the others.
pub fn replicas_for(id: &Uuid, first: i32, count: i32, rf: usize, live: &[i32]) -> Vec<Vec<i32>> {
    assert!(
        (1..=live.len()).contains(&rf),
        "1 to {} replicas, not {rf}",
        live.len()
    );
    let mut live = live.to_vec();
    live.sort_unstable();
    let n = live.len() as u64;
    let (a, b) = id.as_u64_pair();
    let start = (a ^ b) % n;
    let shift0 = a.rotate_left(29) ^ b.rotate_left(7);
    (first..first + count)
        .map(|p| {
            let lead = (start + p as u64) % n;
            let mut set = vec![live[lead as usize]];
            if n > 1 {
                let shift = shift0.wrapping_add(p as u64 / n) % (n - 1);
                let follower = |j: u64| live[((lead + 1 + (shift + j) % (n - 1)) % n) as usize];
                set.extend((0..rf as u64 - 1).map(follower));
            }
            set
        })
        .collect()
}

/// The shard, on broker `replicas[p][j]`, of replica `j` of partition `p` of a topic placed
/// as `replicas`, for a broker with `shards` shards. Preferred leaders (j = 0) and followers
/// are dealt round robin over the shards separately, each from a per-topic start, so each
/// shard gets its share of the leaders (the work) and of the copies. For one replica this is
/// `shard_on_broker`.
pub fn shard_of_replica(
    id: &Uuid,
    p: i32,
    j: usize,
    replicas: &[Vec<i32>],
    shards: usize,
) -> usize {
    let here = replicas[p as usize][j];
    let earlier = &replicas[..p as usize];
    let (a, b) = id.as_u64_pair();
    let (rank, base) = if j == 0 {
        let leaders = earlier.iter().filter(|r| r[0] == here).count();
        (leaders as u64, a.rotate_left(17) ^ b)
    } else {
        let before = earlier
            .iter()
            .map(|r| r[1..].iter().filter(|&&x| x == here).count());
        let own = replicas[p as usize][1..j]
            .iter()
            .filter(|&&x| x == here)
            .count();
        (
            (before.sum::<usize>() + own) as u64,
            a.rotate_left(41) ^ b.rotate_left(3),
        )
    };
    (base.wrapping_add(rank) % shards as u64) as usize
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
    fn replica_sets_are_distinct_and_spread_leaders_and_copies_evenly() {
        for n_brokers in 1..=5 {
            let live: Vec<i32> = (1..=n_brokers).collect();
            for rf in 1..=n_brokers as usize {
                for shards in 1..=3usize {
                    let id = Uuid::from_u128(0xabc0 + n_brokers as u128 * 97 + rf as u128 * 13);
                    let count = n_brokers * shards as i32 * 4;
                    let sets = replicas_for(&id, 0, count, rf, &live);
                    let leaders: Vec<i32> = sets.iter().map(|s| s[0]).collect();
                    assert_eq!(
                        leaders,
                        brokers_for(&id, 0, count, &live),
                        "leaders as before"
                    );
                    let mut leads: BTreeMap<(i32, usize), u32> = BTreeMap::new();
                    let mut copies: BTreeMap<i32, u32> = BTreeMap::new();
                    let mut follows: BTreeMap<(i32, usize), u32> = BTreeMap::new();
                    for (p, set) in sets.iter().enumerate() {
                        assert_eq!(set.len(), rf);
                        let mut d = set.clone();
                        d.sort_unstable();
                        d.dedup();
                        assert_eq!(d.len(), rf, "distinct brokers: {set:?}");
                        for (j, b) in set.iter().enumerate() {
                            let s = shard_of_replica(&id, p as i32, j, &sets, shards);
                            assert!(s < shards);
                            if j == 0 {
                                *leads.entry((*b, s)).or_default() += 1;
                            } else {
                                *follows.entry((*b, s)).or_default() += 1;
                            }
                            *copies.entry(*b).or_default() += 1;
                        }
                    }
                    let what = format!("{n_brokers} brokers, rf {rf}, {shards} shards");
                    assert_eq!(
                        leads.len(),
                        n_brokers as usize * shards,
                        "{what}: {leads:?}"
                    );
                    assert!(leads.values().all(|&n| n == 4), "{what}: {leads:?}");
                    let each = count as u32 * rf as u32 / n_brokers as u32;
                    assert!(copies.values().all(|&n| n == each), "{what}: {copies:?}");
                    let (lo, hi) = (follows.values().min(), follows.values().max());
                    assert!(
                        hi.unwrap_or(&0) - lo.unwrap_or(&0) <= 1,
                        "{what}: {follows:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn one_replica_lands_where_it_did_before() {
        let id = Uuid::from_u128(4242);
        let live = [1, 2, 3];
        let sets = replicas_for(&id, 0, 12, 1, &live);
        let brokers = brokers_for(&id, 0, 12, &live);
        for p in 0..12 {
            assert_eq!(
                shard_of_replica(&id, p, 0, &sets, 2),
                shard_on_broker(&id, p, &brokers, 2)
            );
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
