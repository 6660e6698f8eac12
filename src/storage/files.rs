//! The bound on open segment files (issue 17, case 2). A partition writes only its active
//! segment, which its log keeps open; every sealed segment is read-only and is opened when a
//! read needs it, through this per-shard table of recently used files. When the table holds
//! `open_files_max` files, opening one more closes the least recently used (a read still
//! holding it keeps it until the read ends). So however many segments the partitions of a
//! shard have, it holds about its partitions' active segments plus `open_files_max` files.
//!
//! [`Lru`] is plain Rust (unit-tested here); the table of `SegmentFile`s lives in a
//! thread-local, one per shard thread, like the read cache.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::hash::Hash;
use std::rc::Rc;

use super::io::SegmentFile;
use crate::types::Offset;

/// Sealed segment files open at once per shard, by default.
pub const OPEN_FILES_MAX_DEFAULT: usize = 1000;

/// A map with a capacity that forgets its least recently used entries.
pub struct Lru<K, V> {
    capacity: usize,
    entries: HashMap<K, (V, u64)>,
    /// Use stamp → key, oldest first.
    order: BTreeMap<u64, K>,
    clock: u64,
}

impl<K: Hash + Eq + Clone, V: Clone> Lru<K, V> {
    /// An empty map holding at most `capacity` entries (at least 1).
    pub fn new(capacity: usize) -> Self {
        Lru {
            capacity: capacity.max(1),
            entries: HashMap::new(),
            order: BTreeMap::new(),
            clock: 0,
        }
    }

    /// Entries held, at most the capacity.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no entry is held.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The value for `key`, now the most recently used.
    pub fn get(&mut self, key: &K) -> Option<V> {
        let stamp = self.tick();
        let (value, used) = self.entries.get_mut(key)?;
        self.order.remove(used);
        *used = stamp;
        self.order.insert(stamp, key.clone());
        Some(value.clone())
    }

    /// Adds (or replaces) `key`; returns what had to go to stay within the capacity.
    pub fn insert(&mut self, key: K, value: V) -> Vec<V> {
        let mut gone: Vec<V> = self.remove(&key).into_iter().collect();
        let stamp = self.tick();
        self.entries.insert(key.clone(), (value, stamp));
        self.order.insert(stamp, key);
        gone.extend(self.evict_over_capacity());
        assert_eq!(self.entries.len(), self.order.len(), "one stamp per entry");
        gone
    }

    /// Takes `key` out, returning its value if it was there.
    pub fn remove(&mut self, key: &K) -> Option<V> {
        let (value, used) = self.entries.remove(key)?;
        self.order.remove(&used);
        Some(value)
    }

    /// Removes every entry whose key matches.
    pub fn remove_where(&mut self, mut f: impl FnMut(&K) -> bool) -> usize {
        let keys: Vec<K> = self.entries.keys().filter(|k| f(k)).cloned().collect();
        keys.iter().filter(|k| self.remove(k).is_some()).count()
    }

    /// Changes the capacity (at least 1); returns the least recently used entries that no
    /// longer fit, oldest first.
    pub fn set_capacity(&mut self, capacity: usize) -> Vec<V> {
        self.capacity = capacity.max(1);
        self.evict_over_capacity()
    }

    /// Removes the least recently used entries beyond the capacity, oldest first.
    fn evict_over_capacity(&mut self) -> Vec<V> {
        let mut gone = Vec::new();
        while self.entries.len() > self.capacity {
            let (_, oldest) = self.order.pop_first().expect("an entry per stamp");
            gone.push(self.entries.remove(&oldest).expect("stamped entry").0);
        }
        gone
    }

    fn tick(&mut self) -> u64 {
        self.clock += 1;
        self.clock
    }
}

/// A sealed segment: (the log's id, the segment's base offset).
type Key = (u64, Offset);

thread_local! {
    static OPEN: RefCell<Lru<Key, Rc<SegmentFile>>> =
        RefCell::new(Lru::new(OPEN_FILES_MAX_DEFAULT));
}

/// Sets this shard's bound on open sealed segment files (at shard start).
pub fn set_open_files_max(n: usize) {
    let gone = OPEN.with(|o| o.borrow_mut().set_capacity(n));
    drop(gone);
}

/// The open file of a sealed segment, if the table has it.
pub fn get(log: u64, base: Offset) -> Option<Rc<SegmentFile>> {
    OPEN.with(|o| o.borrow_mut().get(&(log, base)))
}

/// Keeps an opened sealed segment file; the least recently used beyond the bound are closed
/// (once no read holds them).
pub fn keep(log: u64, base: Offset, file: Rc<SegmentFile>) {
    let gone = OPEN.with(|o| o.borrow_mut().insert((log, base), file));
    drop(gone); // outside the borrow: dropping a file may close it
}

/// Forgets a segment's file (deleted by retention: its space is freed once it is closed).
pub fn forget(log: u64, base: Offset) {
    let gone = OPEN.with(|o| o.borrow_mut().remove(&(log, base)));
    drop(gone);
}

/// Forgets every file of a log (closed or deleted).
pub fn forget_log(log: u64) {
    OPEN.with(|o| o.borrow_mut().remove_where(|k| k.0 == log));
}

/// Sealed segment files this shard holds open now.
pub fn open_count() -> usize {
    OPEN.with(|o| o.borrow().len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_least_recently_used_goes_first() {
        let mut lru = Lru::new(2);
        assert!(lru.insert("a", 1).is_empty());
        assert!(lru.insert("b", 2).is_empty());
        assert_eq!(lru.get(&"a"), Some(1), "a is now the most recent");
        assert_eq!(lru.insert("c", 3), vec![2], "b was the least recently used");
        assert_eq!(lru.get(&"b"), None);
        assert_eq!(lru.len(), 2);
        assert_eq!(
            lru.insert("a", 10),
            vec![1],
            "replacing gives back the old value"
        );
        assert_eq!(lru.get(&"a"), Some(10));
        assert_eq!(lru.remove(&"c"), Some(3));
        assert_eq!(lru.len(), 1);
    }

    #[test]
    fn shrinking_and_removing_by_key_keep_order_and_count() {
        let mut lru = Lru::new(10);
        for i in 0..10u64 {
            lru.insert((i % 2, i), i);
        }
        assert_eq!(lru.set_capacity(6), vec![0, 1, 2, 3], "oldest first");
        assert_eq!(lru.remove_where(|k| k.0 == 0), 3, "4, 6, 8");
        assert_eq!(lru.len(), 3);
        assert_eq!(lru.insert((9, 9), 9), Vec::<u64>::new());
        assert_eq!(
            lru.set_capacity(0),
            vec![5, 7, 9],
            "capacity is at least one"
        );
        assert_eq!(lru.len(), 1);
    }
}
