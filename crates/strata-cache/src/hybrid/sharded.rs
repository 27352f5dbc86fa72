//! [`ShardedMap`]: the map under L1. A concurrent hash table with lock-free
//! reads (papaya), bounded by weight, with second-chance (CLOCK) eviction
//! kept per shard.
//!
//! Why this and not a lock per shard (used before) or quick_cache: an L1
//! hit is measured against a plain `HashMap` lookup plus an `Arc` clone (two
//! atomic read-modify-writes: the increment, and the decrement when the
//! caller drops it). A read lock costs the same two (lock and unlock), and on
//! this project's VM those were most of a hit; quick_cache adds a returned
//! `Arc` clone on top. papaya's reads take no lock and write no shared cache
//! line: a read pins the thread (a store to a thread-local slot, with
//! membarrier-based fences on Linux), probes the table, and unpins. So a
//! hit on a hot key does not bounce a lock word between cores either.
//! [`ShardedMap::read`] runs a closure on the stored value while pinned, and
//! clones only what the caller returns.
//!
//! Writes (insert, remove, eviction) of a shard are serialised by that
//! shard's mutex, which also holds its bookkeeping: every table entry of a
//! hash belongs to one shard, so the table and the books agree. A removed or
//! replaced value is dropped once no reader can still see it: papaya's
//! collector frees retired entries in batches (of
//! [`RETIRE_BATCH`] per thread), so a removed value may outlive its
//! removal by a little; it is never served again.
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
//! hasher. The table holds one entry per hash: a second key with the same
//! 64-bit hash (a collision, vanishingly rare) replaces the first, and every
//! read compares the key itself, so a collision costs a miss, never a wrong
//! value. Closures given to [`read`](ShardedMap::read) must not call back
//! into the map's writers.

use std::collections::VecDeque;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

/// Retired (removed or replaced) entries a thread collects before papaya
/// tries to free them. Smaller than papaya's default (32, or the core count)
/// so that evicted values do not linger: L1 values can be large.
const RETIRE_BATCH: usize = 8;

/// An entry of the table: the key, the value, its weight and its CLOCK bit.
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

type Table<V> = papaya::HashMap<u64, Slot<V>, BuildHasherDefault<PassThrough>>;

/// A shard's bookkeeping, under its mutex.
#[derive(Debug, Default)]
struct Books {
    /// Hashes in insertion order, with the id of their insertion.
    queue: VecDeque<(u64, u64)>,
    weight: u64,
    /// Entries of this shard in the table.
    live: usize,
    next_id: u64,
}

/// One shard's writer lock, aligned so that two shards' locks never share a
/// cache line.
#[derive(Debug, Default)]
#[repr(align(128))]
struct Shard {
    books: Mutex<Books>,
}

/// A sharded, weight-bounded map of string keys.
pub(crate) struct ShardedMap<V> {
    table: Table<V>,
    shards: Box<[Shard]>,
    hasher: foldhash::fast::RandomState,
    shard_capacity: u64,
}

impl<V> std::fmt::Debug for ShardedMap<V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShardedMap")
            .field("shards", &self.shards.len())
            .field("shard_capacity", &self.shard_capacity)
            .finish_non_exhaustive()
    }
}

/// A shard's books and the table, for one write.
struct Writer<'a, V> {
    books: MutexGuard<'a, Books>,
    table: papaya::HashMapRef<
        'a,
        u64,
        Slot<V>,
        BuildHasherDefault<PassThrough>,
        papaya::LocalGuard<'a>,
    >,
}

impl<V: Send + Sync> ShardedMap<V> {
    /// A map holding about `capacity` of weight over `shards` shards (rounded
    /// up to a power of two).
    pub(crate) fn new(capacity: u64, shards: usize) -> Self {
        let count = shards.clamp(1, 1024).next_power_of_two();
        Self {
            table: papaya::HashMap::builder()
                .hasher(BuildHasherDefault::default())
                .collector(seize::Collector::new().batch_size(RETIRE_BATCH))
                // A growing table is copied whole by the writer that grows
                // it: reads never search two tables (with incremental
                // resizing they do until writes finish the copy, and an L1
                // that stops being written stays that way).
                .resize_mode(papaya::ResizeMode::Blocking)
                .build(),
            shards: (0..count).map(|_| Shard::default()).collect(),
            hasher: foldhash::fast::RandomState::default(),
            shard_capacity: (capacity / count as u64).max(1),
        }
    }

    /// The key's hash and its shard. Bits 32 and up pick the shard: the
    /// table uses the low bits (bucket) and the top ones (tags).
    #[inline]
    fn locate(&self, key: &str) -> (u64, &Shard) {
        let hash = self.hasher.hash_one(key);
        let index = (hash >> 32) as usize & (self.shards.len() - 1);
        (hash, &self.shards[index])
    }

    /// The key's hash, and its shard's books (locked) with the table.
    fn writer(&self, key: &str) -> (u64, Writer<'_, V>) {
        let (hash, shard) = self.locate(key);
        let writer = Writer {
            books: shard.books.lock().unwrap_or_else(PoisonError::into_inner),
            table: self.table.pin(),
        };
        (hash, writer)
    }

    /// Runs `f` on the value of `key`, and marks the entry as recently used.
    /// Takes no lock.
    #[inline]
    pub(crate) fn read<R>(&self, key: &str, f: impl FnOnce(&V) -> R) -> Option<R> {
        let hash = self.hasher.hash_one(key);
        let table = self.table.pin();
        let slot = table.get(&hash).filter(|slot| *slot.key == *key)?;
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
        let (hash, mut w) = self.writer(key);
        if weight > self.shard_capacity {
            w.remove(hash, key);
            return;
        }
        let id = w.books.next_id;
        w.books.next_id += 1;
        let slot = Slot {
            key: Box::from(key),
            value,
            weight,
            referenced: AtomicBool::new(false),
            id,
        };
        // Replaces this key's entry, or (a hash collision) another key's.
        match w.table.insert(hash, slot) {
            Some(old) => w.books.weight -= old.weight,
            None => w.books.live += 1,
        }
        w.books.weight += weight;
        w.books.queue.push_back((hash, id));
        w.evict(self.shard_capacity);
        w.compact();
    }

    /// Removes `key`.
    pub(crate) fn remove(&self, key: &str) {
        let (hash, mut w) = self.writer(key);
        w.remove(hash, key);
    }

    /// Removes `key` if `f` says so of its value.
    pub(crate) fn remove_if(&self, key: &str, f: impl FnOnce(&V) -> bool) {
        let (hash, mut w) = self.writer(key);
        let matches = w
            .table
            .get(&hash)
            .is_some_and(|slot| *slot.key == *key && f(&slot.value));
        if matches {
            w.remove_hash(hash);
        }
    }

    /// Removes everything.
    pub(crate) fn clear(&self) {
        // Every shard's lock, in order, so that no write interleaves.
        let mut all: Vec<_> = self
            .shards
            .iter()
            .map(|s| s.books.lock().unwrap_or_else(PoisonError::into_inner))
            .collect();
        self.table.pin().clear();
        for books in &mut all {
            **books = Books::default();
        }
    }

    /// Total weight held.
    #[cfg(test)]
    pub(crate) fn weight(&self) -> u64 {
        self.books().map(|b| b.weight).sum()
    }

    /// Number of entries held.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.table.len()
    }

    #[cfg(test)]
    fn books(&self) -> impl Iterator<Item = MutexGuard<'_, Books>> {
        self.shards
            .iter()
            .map(|s| s.books.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

impl<V: Send + Sync> Writer<'_, V> {
    /// Removes the entry of `key` (not another key's entry under its hash).
    fn remove(&mut self, hash: u64, key: &str) {
        if self.table.get(&hash).is_some_and(|slot| *slot.key == *key) {
            self.remove_hash(hash);
        }
    }

    fn remove_hash(&mut self, hash: u64) {
        if let Some(old) = self.table.remove(&hash) {
            self.books.weight -= old.weight;
            self.books.live -= 1;
        }
    }

    /// Evicts until the weight fits: the CLOCK hand over the insertion queue.
    fn evict(&mut self, capacity: u64) {
        while self.books.weight > capacity {
            let Some((hash, id)) = self.books.queue.pop_front() else {
                return;
            };
            let Some(slot) = self.table.get(&hash).filter(|slot| slot.id == id) else {
                continue; // removed or replaced since: a stale queue item
            };
            if slot.referenced.swap(false, Ordering::Relaxed) {
                self.books.queue.push_back((hash, id));
            } else {
                self.remove_hash(hash);
            }
        }
    }

    /// Drops stale queue items once they outnumber the live entries.
    fn compact(&mut self) {
        if self.books.queue.len() <= 2 * self.books.live + 16 {
            return;
        }
        let table = &self.table;
        self.books
            .queue
            .retain(|(hash, id)| table.get(hash).is_some_and(|slot| slot.id == *id));
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
            let _books = map.shards[0].books.lock().unwrap();
            let table = map.table.pin();
            let old = table.get(&hash_a).unwrap();
            let slot = Slot {
                key: Box::from("b"),
                value: old.value,
                weight: old.weight,
                referenced: AtomicBool::new(false),
                id: old.id,
            };
            table.insert(hash_a, slot);
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
        let books = map.shards[0].books.lock().unwrap();
        assert!(books.queue.len() <= 2 * books.live + 17);
    }

    #[test]
    fn concurrent_writers_and_readers_agree_with_the_books() {
        let map = ShardedMap::new(4_000, 4);
        std::thread::scope(|scope| {
            for thread in 0..4_u64 {
                let map = &map;
                scope.spawn(move || {
                    for i in 0..20_000_u64 {
                        let id = (i * 7 + thread) % 97;
                        let key = format!("k{id}");
                        match i % 5 {
                            0 => map.remove(&key),
                            1 => map.remove_if(&key, |(owner, _)| *owner == id),
                            _ => map.insert(&key, (id, i), 10 + id),
                        }
                        let other = format!("k{}", (i * 13) % 97);
                        if let Some((owner, _)) = map.read(&other, |v| *v) {
                            assert_eq!(format!("k{owner}"), other, "a value under another key");
                        }
                    }
                });
            }
        });
        let table = map.table.pin();
        let (mut live, mut weight) = (0, 0);
        for books in map.books() {
            live += books.live;
            weight += books.weight;
            assert!(books.weight <= map.shard_capacity);
        }
        assert_eq!(live, table.len());
        assert_eq!(
            weight,
            table.iter().map(|(_, slot)| slot.weight).sum::<u64>()
        );
    }
}
