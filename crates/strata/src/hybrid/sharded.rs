//! [`ShardedMap`]: the map under L1. Sharded `RwLock<HashMap>`s bounded by
//! weight, with second-chance (CLOCK) eviction per shard.
//!
//! Why our own map and not quick_cache (used before): an L1 hit is measured
//! against a plain `HashMap` lookup plus an `Arc` clone, and quick_cache's
//! `get` alone cost about 1.8x that, because it returns a clone of the stored
//! value (`Arc<L1Entry>`: an increment, and a decrement when the caller
//! drops it) on top of its shard lock. [`ShardedMap::read`] instead runs a
//! closure on the stored value under the shard's read lock: a hit takes the
//! lock (one atomic add and one atomic sub) and one hash-table probe, and
//! clones only what the caller returns.
//!
//! Eviction: each shard holds at most its share of the capacity, by the
//! weight given at insertion. Inserted keys queue in FIFO order; a read sets
//! the entry's `referenced` flag (a plain store, only when it is clear); when
//! over capacity the shard pops the queue: a referenced entry has its flag
//! cleared and is queued again (its second chance), an unreferenced one is
//! evicted. Removed or replaced entries leave stale queue items behind, which
//! are skipped when popped and compacted when they outnumber live entries.
//!
//! One hash per call: the key is hashed once (foldhash); the high bits pick
//! the shard and the whole hash is the table's key, under a pass-through
//! hasher. A table holds one entry per hash: a second key with the same
//! 64-bit hash (a collision, vanishingly rare) replaces the first, and every
//! read compares the key itself, so a collision costs a miss, never a wrong
//! value.
//!
//! Why `std::sync::RwLock`: on Linux it is a futex word (a read lock is one
//! compare-and-swap, an unlock one subtraction), as cheap as parking_lot's
//! for uncontended reads, and needs no dependency. Closures given to
//! [`read`](ShardedMap::read) must not call back into the map.

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

/// A slot of the table: the key, the value, its weight and its CLOCK bit.
#[derive(Debug)]
struct Slot<V> {
    key: Box<str>,
    value: V,
    weight: u64,
    /// Set by reads, cleared by the eviction hand.
    referenced: AtomicBool,
    /// Tells this insertion of the key from a later one in the queue.
    id: u64,
}

/// Hashes a `u64` key to itself: table keys are already foldhash outputs.
#[derive(Debug, Default)]
struct PassThrough(u64);

impl Hasher for PassThrough {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only `write_u64` is used (the keys are `u64`); this keeps the
        // trait's contract for anything else.
        for &byte in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(byte);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

#[derive(Debug)]
struct Table<V> {
    map: HashMap<u64, Slot<V>, BuildHasherDefault<PassThrough>>,
    /// Hashes in insertion order, with the id of their insertion.
    queue: VecDeque<(u64, u64)>,
    weight: u64,
    next_id: u64,
}

/// One shard, aligned so that two shards' locks never share a cache line
/// (readers on different cores write their shard's lock word).
#[derive(Debug)]
#[repr(align(128))]
struct Shard<V> {
    table: RwLock<Table<V>>,
}

/// A sharded, weight-bounded map of string keys.
#[derive(Debug)]
pub(crate) struct ShardedMap<V> {
    shards: Box<[Shard<V>]>,
    hasher: foldhash::fast::RandomState,
    shard_capacity: u64,
}

impl<V> ShardedMap<V> {
    /// A map holding about `capacity` of weight over `shards` shards (rounded
    /// up to a power of two).
    pub(crate) fn new(capacity: u64, shards: usize) -> Self {
        let count = shards.clamp(1, 1024).next_power_of_two();
        let shards = (0..count)
            .map(|_| Shard {
                table: RwLock::new(Table {
                    map: HashMap::default(),
                    queue: VecDeque::new(),
                    weight: 0,
                    next_id: 0,
                }),
            })
            .collect();
        Self {
            shards,
            hasher: foldhash::fast::RandomState::default(),
            shard_capacity: (capacity / count as u64).max(1),
        }
    }

    /// The key's hash and its shard. Bits 32 and up pick the shard: the
    /// table uses the low bits (bucket) and the top seven (control bytes).
    #[inline]
    fn locate(&self, key: &str) -> (u64, &Shard<V>) {
        let hash = self.hasher.hash_one(key);
        let index = (hash >> 32) as usize & (self.shards.len() - 1);
        (hash, &self.shards[index])
    }

    fn write_table(&self, key: &str) -> (u64, RwLockWriteGuard<'_, Table<V>>) {
        let (hash, shard) = self.locate(key);
        let table = shard.table.write().unwrap_or_else(PoisonError::into_inner);
        (hash, table)
    }

    /// Runs `f` on the value of `key` under the shard's read lock, and marks
    /// the entry as recently used.
    #[inline]
    pub(crate) fn read<R>(&self, key: &str, f: impl FnOnce(&V) -> R) -> Option<R> {
        let (hash, shard) = self.locate(key);
        let table: RwLockReadGuard<'_, Table<V>> =
            shard.table.read().unwrap_or_else(PoisonError::into_inner);
        let slot = table.map.get(&hash).filter(|slot| *slot.key == *key)?;
        // A store only when the flag is clear: a hot entry's cache line is
        // not written on every hit.
        if !slot.referenced.load(Ordering::Relaxed) {
            slot.referenced.store(true, Ordering::Relaxed);
        }
        Some(f(&slot.value))
    }

    /// Inserts or replaces. A value heavier than a shard's capacity is not
    /// kept (and the old value goes).
    pub(crate) fn insert(&self, key: &str, value: V, weight: u64) {
        let (hash, mut table) = self.write_table(key);
        if weight > self.shard_capacity {
            table.remove(hash, key);
            return;
        }
        let id = table.next_id;
        table.next_id += 1;
        let slot = Slot {
            key: Box::from(key),
            value,
            weight,
            referenced: AtomicBool::new(false),
            id,
        };
        // Replaces this key's entry, or (a hash collision) another key's.
        if let Some(old) = table.map.insert(hash, slot) {
            table.weight -= old.weight;
        }
        table.weight += weight;
        table.queue.push_back((hash, id));
        table.evict(self.shard_capacity);
        table.compact();
    }

    /// Removes `key`.
    pub(crate) fn remove(&self, key: &str) {
        let (hash, mut table) = self.write_table(key);
        table.remove(hash, key);
    }

    /// Removes `key` if `f` says so of its value.
    pub(crate) fn remove_if(&self, key: &str, f: impl FnOnce(&V) -> bool) {
        let (hash, mut table) = self.write_table(key);
        let matches = table
            .map
            .get(&hash)
            .is_some_and(|slot| *slot.key == *key && f(&slot.value));
        if matches {
            table.remove(hash, key);
        }
    }

    /// Removes everything.
    pub(crate) fn clear(&self) {
        for shard in &self.shards {
            let mut table = shard.table.write().unwrap_or_else(PoisonError::into_inner);
            table.map.clear();
            table.queue.clear();
            table.weight = 0;
        }
    }

    /// Total weight held.
    #[cfg(test)]
    pub(crate) fn weight(&self) -> u64 {
        self.tables().map(|t| t.weight).sum()
    }

    /// Number of entries held.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.tables().map(|t| t.map.len()).sum()
    }

    #[cfg(test)]
    fn tables(&self) -> impl Iterator<Item = RwLockReadGuard<'_, Table<V>>> {
        self.shards
            .iter()
            .map(|s| s.table.read().unwrap_or_else(PoisonError::into_inner))
    }
}

impl<V> Table<V> {
    /// Removes the entry of `key` (not another key's entry under its hash).
    fn remove(&mut self, hash: u64, key: &str) {
        if self.map.get(&hash).is_some_and(|slot| *slot.key == *key) {
            self.remove_hash(hash);
        }
    }

    fn remove_hash(&mut self, hash: u64) {
        if let Some(old) = self.map.remove(&hash) {
            self.weight -= old.weight;
        }
    }

    /// Evicts until the weight fits: the CLOCK hand over the insertion queue.
    fn evict(&mut self, capacity: u64) {
        while self.weight > capacity {
            let Some((hash, id)) = self.queue.pop_front() else {
                return;
            };
            let Some(slot) = self.map.get(&hash).filter(|slot| slot.id == id) else {
                continue; // removed or replaced since: a stale queue item
            };
            if slot.referenced.swap(false, Ordering::Relaxed) {
                self.queue.push_back((hash, id));
            } else {
                self.remove_hash(hash);
            }
        }
    }

    /// Drops stale queue items once they outnumber the live entries.
    fn compact(&mut self) {
        if self.queue.len() <= 2 * self.map.len() + 16 {
            return;
        }
        let map = &self.map;
        self.queue
            .retain(|(hash, id)| map.get(hash).is_some_and(|slot| slot.id == *id));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_inserts_and_removals() {
        let map = ShardedMap::new(1000, 4);
        map.insert("a", 1, 10);
        map.insert("b", 2, 10);
        assert_eq!(map.read("a", |v| *v), Some(1));
        map.insert("a", 3, 20);
        assert_eq!(map.read("a", |v| *v), Some(3));
        assert_eq!(map.weight(), 30);
        map.remove_if("a", |v| *v == 1);
        assert_eq!(map.len(), 2, "not the value asked for: kept");
        map.remove_if("a", |v| *v == 3);
        map.remove("b");
        assert_eq!((map.len(), map.weight()), (0, 0));
        assert_eq!(map.read("a", |v| *v), None);
        map.insert("c", 1, 1);
        map.clear();
        assert_eq!((map.len(), map.weight()), (0, 0));
    }

    #[test]
    fn is_bounded_by_weight_and_keeps_what_is_read() {
        let map = ShardedMap::new(100, 1);
        map.insert("hot", 0, 10);
        for i in 0..1000 {
            assert_eq!(map.read("hot", |v| *v), Some(0), "round {i}");
            map.insert(&format!("k{i}"), i, 10);
            assert!(map.weight() <= 100);
        }
        assert_eq!(map.len(), 10);
        map.insert("heavy", 0, 101);
        assert_eq!(map.read("heavy", |v| *v), None, "heavier than a shard");
    }

    #[test]
    fn a_hash_collision_is_a_miss_never_a_wrong_value() {
        let map = ShardedMap::new(1000, 1);
        map.insert("a", 1, 1);
        // Put "b" under the hash of "a", as a collision would.
        let hash_a = map.hasher.hash_one("a");
        {
            let mut table = map.shards[0].table.write().unwrap();
            let mut slot = table.map.remove(&hash_a).unwrap();
            slot.key = Box::from("b");
            table.map.insert(hash_a, slot);
        }
        assert_eq!(map.read("a", |v| *v), None);
        map.remove("a");
        assert_eq!(map.len(), 1, "removing a does not remove b's entry");
        map.remove_if("a", |_| true);
        assert_eq!(map.len(), 1);
        map.insert("a", 2, 1);
        assert_eq!(
            map.read("a", |v| *v),
            Some(2),
            "a replaces the colliding entry"
        );
        assert_eq!(map.weight(), 1);
    }

    #[test]
    fn stale_queue_items_are_compacted() {
        let map = ShardedMap::new(1_000_000, 1);
        for i in 0..10_000 {
            map.insert("same", i, 1);
        }
        let table = map.shards[0].table.read().unwrap();
        assert!(table.queue.len() <= 2 * table.map.len() + 17);
    }
}
