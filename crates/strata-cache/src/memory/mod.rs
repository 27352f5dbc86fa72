//! [`MemoryDistributedCache`]: the in-process [`DistributedCache`] backend.
//!
//! It plays the role of `MemoryDistributedCache` in ASP.NET Core: a stand-in
//! for a shared cache in tests and single-instance deployments, with exactly
//! the semantics of the Redis backend (the conformance suite runs on both). It
//! is not the HybridCache L1, which stores typed values and is built for speed.
//!
//! The store is split by key hash into shards (`shard`), each behind its own
//! mutex: a call locks the one shard of its key, so readers never wait for
//! work on other shards. Nothing scans the store. A full cache is the steady
//! state of a busy one, so a write that takes it over its byte budget evicts
//! from its own shard, one entry at a time (the earliest expired entry, else
//! the least recently used), in short batches that let readers in between;
//! expired entries are also reclaimed a few at a time by every write of their
//! shard.

mod shard;

use std::hash::BuildHasher;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use bytes::Bytes;

use crate::distributed::{
    DistributedCache, TOMBSTONE_TTL, Version, Versioned, parse_stamp, validate_key,
};
use crate::error::{Error, ErrorKind, Result};
use crate::options::{EntryOptions, Expiration};

pub use shard::MEMORY_ENTRY_OVERHEAD;
use shard::{Place, Shard, weight};

/// Default capacity of [`MemoryDistributedCache::new`]: 64 MiB.
pub const DEFAULT_CAPACITY_BYTES: usize = 64 * 1024 * 1024;

/// Buckets of the version floors, over all shards (see `Shard::floors`).
const FLOOR_BUCKETS: usize = 4096;

/// Capacity per shard below which the cache uses fewer shards: 1 MiB. Each
/// write evicts from its own shard first, so every shard must hold enough
/// entries for its least recently used ones to be old; a cache under 2 MiB is
/// one shard, whose eviction order is exact LRU.
const MIN_SHARD_BYTES: usize = 1024 * 1024;

/// Most shards: 16. Two threads touch the same shard one time in 16; more
/// shards would spread the LRU order thinner for little gain.
const MAX_SHARDS: usize = 16;

/// Expired entries a write reclaims in its shard besides what it evicts: more
/// than one, so that the dead entries of a shard drain faster than writes can
/// create them, and few, so that a write's cost stays bounded.
const RECLAIM_PER_WRITE: usize = 2;

/// Most entries evicted under one hold of a shard's lock. A write that needs
/// room for a large value releases the lock between batches, so readers of
/// the shard wait at most one batch.
const EVICT_BATCH: usize = 32;

/// An in-process [`DistributedCache`] bounded by the total size of its keys and
/// values (plus [`MEMORY_ENTRY_OVERHEAD`] per entry). When a write takes the cache
/// over its capacity, expired entries and then the least recently used ones
/// are evicted, at O(1) or O(log n) each, so a full cache writes as fast as an
/// empty one. A removed key leaves a tombstone (its key and version, no value)
/// for [`TOMBSTONE_TTL`].
///
/// Keys are spread over up to 16 shards (one per MiB of capacity), each with
/// its own lock and its own LRU order: a cache under 2 MiB evicts in exact LRU
/// order, a larger one in LRU order per shard.
///
/// The handle is a cheap `Clone`; clones share one store.
#[derive(Clone, Debug)]
pub struct MemoryDistributedCache {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    capacity: usize,
    /// Bytes charged over all shards. Each shard's changes are added here
    /// while its lock is held; writers of different shards may overshoot the
    /// capacity together by what they are about to evict.
    used: AtomicUsize,
    // std Mutexes, not Tokio ones: never held across an await, and every
    // critical section is a few map and list operations.
    shards: Box<[Padded<Mutex<Shard>>]>,
    /// Picks a key's shard (high bits) and floor bucket (low bits).
    hasher: foldhash::fast::RandomState,
    buckets_per_shard: u64,
}

/// Keeps each shard's lock on its own cache lines, so that two threads
/// locking neighbouring shards do not slow each other down.
#[derive(Debug)]
#[repr(align(128))]
struct Padded<T>(T);

impl Default for MemoryDistributedCache {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryDistributedCache {
    /// A cache holding at most [`DEFAULT_CAPACITY_BYTES`] (64 MiB).
    #[must_use]
    pub fn new() -> Self {
        Self::with_capacity(DEFAULT_CAPACITY_BYTES)
    }

    /// A cache holding at most `capacity_bytes` of keys, values and per-entry
    /// overhead ([`MEMORY_ENTRY_OVERHEAD`] bytes an entry).
    #[must_use]
    pub fn with_capacity(capacity_bytes: usize) -> Self {
        let shards = (capacity_bytes / MIN_SHARD_BYTES).clamp(1, MAX_SHARDS);
        // A power of two, so a shard is picked with a mask.
        let shards = 1 << shards.ilog2();
        let buckets = FLOOR_BUCKETS / shards;
        Self {
            inner: Arc::new(Inner {
                capacity: capacity_bytes,
                used: AtomicUsize::new(0),
                shards: (0..shards)
                    .map(|_| Padded(Mutex::new(Shard::new(buckets))))
                    .collect(),
                hasher: foldhash::fast::RandomState::default(),
                buckets_per_shard: buckets as u64,
            }),
        }
    }

    /// The configured capacity in bytes.
    pub fn capacity(&self) -> usize {
        self.inner.capacity
    }

    /// Bytes currently charged (keys, values, tombstones and overhead), expired
    /// entries not yet reclaimed included.
    pub fn used_bytes(&self) -> usize {
        self.inner.used.load(Ordering::Relaxed)
    }

    /// Number of entries held, tombstones and expired entries not yet
    /// reclaimed included.
    pub fn len(&self) -> usize {
        (0..self.inner.shards.len())
            .map(|n| self.inner.lock(n).len())
            .sum()
    }

    /// True when no entry is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Reads `key` and slides it; `refresh` is the same without the value.
    fn touch(&self, key: &str) -> Result<Versioned> {
        validate_key(key)?;
        let place = self.inner.place(key);
        let now = SystemTime::now();
        let (read, freed) = self.inner.lock(place.shard).touch(key, place, now);
        self.inner.release(freed);
        Ok(read)
    }

    /// Writes `key` with `value` (`None`: a tombstone) under `expiration`
    /// resolved at `now`, if its version is still `expected` (when given).
    fn write(
        &self,
        key: &str,
        value: Option<Bytes>,
        expiration: Expiration,
        now: SystemTime,
        expected: Option<&Version>,
    ) -> Result<bool> {
        let weight = weight(key, value.as_ref());
        let capacity = self.inner.capacity;
        if weight > capacity {
            let error = Error::new(
                ErrorKind::PayloadTooLarge,
                format!(
                    "the entry for {key:?} takes {weight} bytes, more than the whole cache \
                     capacity of {capacity} bytes: raise the capacity or store less"
                ),
            );
            return self.fail_write(key, expected, error);
        }
        let place = self.inner.place(key);
        let mut shard = self.inner.lock(place.shard);
        if let Some(expected) = expected {
            let (version, freed) = shard.version(key, place, now);
            self.inner.release(freed);
            if version != *expected {
                return Ok(false);
            }
        }
        self.inner.put(shard, key, value, expiration, place, now);
        Ok(true)
    }

    /// A write of `key` failed with `error` (its value too large, its options
    /// invalid): whatever the key held must not be served in place of the
    /// value the caller meant to store, so it is removed, as a removal does
    /// (a tombstone), when the write would have landed: always for `set`,
    /// for a version-checked write only if the version is still `expected`.
    /// Returns `error`.
    fn fail_write<T>(&self, key: &str, expected: Option<&Version>, error: Error) -> Result<T> {
        let place = self.inner.place(key);
        let now = SystemTime::now();
        let mut shard = self.inner.lock(place.shard);
        if let Some(expected) = expected {
            let (version, freed) = shard.version(key, place, now);
            self.inner.release(freed);
            if expected.is_expired() || version != *expected {
                return Err(error);
            }
        }
        if weight(key, None) <= self.inner.capacity {
            self.inner.put(shard, key, None, tombstone(now), place, now);
        } else {
            // Not even the key fits: forget the entry, which raises its floor.
            self.inner.release(shard.forget_key(key));
        }
        Err(error)
    }
}

/// The expiration of a tombstone written at `now`.
fn tombstone(now: SystemTime) -> Expiration {
    Expiration::from_parts(now.checked_add(TOMBSTONE_TTL), None)
}

impl Inner {
    fn lock(&self, shard: usize) -> MutexGuard<'_, Shard> {
        // A panic while holding the lock cannot leave the shard inconsistent in
        // a way that matters to a cache, so a poisoned lock is used as is.
        self.shards[shard]
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn place(&self, key: &str) -> Place {
        let hash = self.hasher.hash_one(key);
        // Both results are below their modulus (a usize shard count, a bucket
        // count that fits u32), so the casts are lossless.
        #[allow(clippy::cast_possible_truncation)]
        let place = Place {
            shard: ((hash >> 32) % self.shards.len() as u64) as usize,
            bucket: (hash % self.buckets_per_shard) as u32,
        };
        place
    }

    fn release(&self, freed: usize) {
        if freed > 0 {
            self.used.fetch_sub(freed, Ordering::Relaxed);
        }
    }

    fn over_capacity(&self) -> bool {
        self.used.load(Ordering::Relaxed) > self.capacity
    }

    /// Stores the entry in its locked shard, then brings the cache back within
    /// its capacity.
    fn put(
        &self,
        mut shard: MutexGuard<'_, Shard>,
        key: &str,
        value: Option<Bytes>,
        expiration: Expiration,
        place: Place,
        now: SystemTime,
    ) {
        let added = weight(key, value.as_ref());
        let replaced = shard.insert(key, value, expiration, place, now);
        self.used.fetch_add(added, Ordering::Relaxed);
        self.release(replaced);
        self.release(shard.reclaim_expired(now, RECLAIM_PER_WRITE));
        self.make_room(shard, place.shard, now);
    }

    /// Evicts until the cache is within its capacity: from the writer's own
    /// shard first (keeping the entry it just wrote), then from the others in
    /// turn.
    fn make_room(&self, shard: MutexGuard<'_, Shard>, home: usize, now: SystemTime) {
        let mut guard = Some(shard);
        let count = self.shards.len();
        for step in 0..count {
            let n = (home + step) % count;
            let keep_newest = step == 0;
            loop {
                if !self.over_capacity() {
                    return;
                }
                let mut shard = guard.take().unwrap_or_else(|| self.lock(n));
                let mut evicted = 0;
                while evicted < EVICT_BATCH && self.over_capacity() {
                    let freed = shard.evict_one(now, keep_newest);
                    if freed == 0 {
                        break;
                    }
                    self.release(freed);
                    evicted += 1;
                }
                // Unlocked between batches, so readers of the shard get in.
                drop(shard);
                if evicted < EVICT_BATCH {
                    break;
                }
            }
        }
    }
}

#[async_trait]
impl DistributedCache for MemoryDistributedCache {
    async fn get(&self, key: &str) -> Result<Option<Bytes>> {
        Ok(self.touch(key)?.value)
    }

    async fn set(&self, key: &str, value: Bytes, options: &EntryOptions) -> Result<()> {
        validate_key(key)?;
        let now = SystemTime::now();
        let expiration = match options.resolve(now) {
            Ok(expiration) => expiration,
            Err(error) => return self.fail_write(key, None, error),
        };
        self.write(key, Some(value), expiration, now, None)
            .map(drop)
    }

    async fn refresh(&self, key: &str) -> Result<()> {
        self.touch(key).map(drop)
    }

    async fn remove(&self, key: &str) -> Result<()> {
        validate_key(key)?;
        let now = SystemTime::now();
        self.write(key, None, tombstone(now), now, None).map(drop)
    }

    async fn get_many(&self, keys: &[&str]) -> Result<Vec<Option<Bytes>>> {
        keys.iter().map(|key| Ok(self.touch(key)?.value)).collect()
    }

    async fn get_versioned(&self, key: &str) -> Result<Versioned> {
        self.touch(key)
    }

    async fn set_if_version(
        &self,
        key: &str,
        value: Bytes,
        options: &EntryOptions,
        expected: &Version,
    ) -> Result<bool> {
        validate_key(key)?;
        let now = SystemTime::now();
        let expiration = match options.resolve(now) {
            Ok(expiration) => expiration,
            Err(error) => return self.fail_write(key, Some(expected), error),
        };
        if expected.is_expired() {
            return Ok(false);
        }
        self.write(key, Some(value), expiration, now, Some(expected))
    }

    async fn next_stamp(&self, key: &str, options: &EntryOptions) -> Result<u64> {
        validate_key(key)?;
        let now = SystemTime::now();
        let expiration = options.resolve(now)?;
        let clock_us = now
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX));
        let inner = &self.inner;
        let place = inner.place(key);
        let mut shard = inner.lock(place.shard);
        let (read, freed) = shard.touch(key, place, now);
        inner.release(freed);
        let current = match read.value {
            None => 0,
            Some(bytes) => parse_stamp(&bytes).ok_or_else(|| {
                Error::new(
                    ErrorKind::Serialization,
                    format!("the entry {key:?} holds a value that is not a stamp: use another key"),
                )
            })?,
        };
        let stamp = current.saturating_add(1).max(clock_us);
        let value = Bytes::from(stamp.to_string());
        inner.put(shard, key, Some(value), expiration, place, now);
        Ok(stamp)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// Audits every shard and checks the cache's books against them.
    fn audit(cache: &MemoryDistributedCache) -> usize {
        let charged: usize = (0..cache.inner.shards.len())
            .map(|n| cache.inner.lock(n).audit())
            .sum();
        assert_eq!(cache.used_bytes(), charged, "the byte count drifted");
        charged
    }

    fn bytes(n: usize) -> Bytes {
        Bytes::from(vec![7u8; n])
    }

    #[tokio::test]
    async fn evicts_least_recently_used_to_stay_within_capacity() {
        let one = weight("k0", Some(&bytes(100)));
        let cache = MemoryDistributedCache::with_capacity(3 * one);
        let options = EntryOptions::new();
        for i in 0..3 {
            cache
                .set(&format!("k{i}"), bytes(100), &options)
                .await
                .unwrap();
        }
        // Touch k0 so that k1 is now the least recently used.
        assert!(cache.get("k0").await.unwrap().is_some());
        cache.set("k3", bytes(100), &options).await.unwrap();
        assert!(cache.get("k1").await.unwrap().is_none());
        for key in ["k0", "k2", "k3"] {
            assert!(cache.get(key).await.unwrap().is_some(), "{key}");
        }
        assert_eq!(cache.used_bytes(), 3 * one);
        assert_eq!(cache.len(), 3);
    }

    #[tokio::test]
    async fn overwrite_and_remove_keep_the_byte_count_exact() {
        let cache = MemoryDistributedCache::with_capacity(10_000);
        let options = EntryOptions::new();
        cache.set("a", bytes(500), &options).await.unwrap();
        cache.set("a", bytes(10), &options).await.unwrap();
        assert_eq!(cache.used_bytes(), weight("a", Some(&bytes(10))));
        cache.remove("a").await.unwrap();
        assert_eq!(cache.used_bytes(), weight("a", None), "a tombstone");
        assert_eq!(cache.len(), 1);
    }

    #[tokio::test]
    async fn a_value_larger_than_the_cache_is_rejected() {
        let cache = MemoryDistributedCache::with_capacity(1_000);
        let err = cache
            .set("big", bytes(2_000), &EntryOptions::new())
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::PayloadTooLarge);
        assert!(err.message().contains("raise the capacity"), "{err}");
    }

    #[tokio::test]
    async fn expired_entries_are_evicted_before_live_ones() {
        let cap = weight("live", Some(&bytes(100))) + weight("dies", Some(&bytes(100)));
        let cache = MemoryDistributedCache::with_capacity(cap);
        cache
            .set("live", bytes(100), &EntryOptions::new())
            .await
            .unwrap();
        let short =
            EntryOptions::new().with_relative_expiration(std::time::Duration::from_millis(20));
        cache.set("dies", bytes(100), &short).await.unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(40)).await;
        cache
            .set("new", bytes(100), &EntryOptions::new())
            .await
            .unwrap();
        assert!(cache.get("live").await.unwrap().is_some());
        assert!(cache.get("new").await.unwrap().is_some());
    }

    #[tokio::test]
    async fn a_forgotten_entry_raises_its_floor_so_older_reads_cannot_write_back() {
        let one = weight("k0", Some(&bytes(100)));
        let cache = MemoryDistributedCache::with_capacity(2 * one);
        let options = EntryOptions::new();
        let before = cache.get_versioned("k0").await.unwrap().version;
        assert!(before.as_absent().is_some());
        cache.set("k0", bytes(100), &options).await.unwrap();
        // Two more entries evict k0: the cache forgets it was ever written.
        cache.set("k1", bytes(100), &options).await.unwrap();
        cache.set("k2", bytes(100), &options).await.unwrap();
        assert_eq!(cache.get("k0").await.unwrap(), None);
        let stored = cache
            .set_if_version("k0", bytes(1), &options, &before)
            .await
            .unwrap();
        assert!(
            !stored,
            "a read from before the evicted write must not land"
        );
        let now = cache.get_versioned("k0").await.unwrap().version;
        assert!(
            cache
                .set_if_version("k0", bytes(1), &options, &now)
                .await
                .unwrap()
        );
    }

    #[tokio::test]
    async fn writes_reclaim_expired_entries_before_the_cache_is_full() {
        let cache = MemoryDistributedCache::with_capacity(1_000_000);
        let brief = EntryOptions::new().with_relative_expiration(Duration::from_millis(20));
        for i in 0..50 {
            cache
                .set(&format!("dies{i}"), bytes(100), &brief)
                .await
                .unwrap();
        }
        tokio::time::sleep(Duration::from_millis(40)).await;
        for i in 0..25 {
            cache
                .set(&format!("new{i:02}"), bytes(100), &EntryOptions::new())
                .await
                .unwrap();
        }
        assert_eq!(cache.len(), 25, "expired entries were left to pile up");
        assert_eq!(audit(&cache), 25 * weight("new00", Some(&bytes(100))));
    }

    #[test]
    fn a_large_cache_spreads_over_shards_and_a_small_one_is_exact_lru() {
        assert_eq!(MemoryDistributedCache::new().inner.shards.len(), MAX_SHARDS);
        let four = MemoryDistributedCache::with_capacity(4 * MIN_SHARD_BYTES + 1);
        assert_eq!(four.inner.shards.len(), 4);
        let small = MemoryDistributedCache::with_capacity(2 * MIN_SHARD_BYTES - 1);
        assert_eq!(small.inner.shards.len(), 1);
    }

    /// A value that needs more room than its own shard holds evicts from the
    /// other shards.
    #[tokio::test]
    async fn a_large_value_evicts_from_other_shards_too() {
        let cache = MemoryDistributedCache::with_capacity(4 * MIN_SHARD_BYTES);
        let options = EntryOptions::new();
        for i in 0..4_000 {
            cache
                .set(&format!("k{i}"), bytes(1_000), &options)
                .await
                .unwrap();
        }
        assert!(cache.used_bytes() > 3 * MIN_SHARD_BYTES);
        let big = bytes(3 * MIN_SHARD_BYTES);
        cache.set("big", big.clone(), &options).await.unwrap();
        assert_eq!(cache.get("big").await.unwrap(), Some(big));
        assert!(cache.used_bytes() <= cache.capacity());
        audit(&cache);
    }

    /// Writers, readers and removers on every shard at once, at capacity:
    /// the books stay exact and the cache within its capacity.
    #[test]
    fn concurrent_writers_at_capacity_keep_the_books_exact() {
        let cache = MemoryDistributedCache::with_capacity(4 * MIN_SHARD_BYTES);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        std::thread::scope(|scope| {
            for thread in 0..4u64 {
                let cache = cache.clone();
                let runtime = &runtime;
                scope.spawn(move || {
                    let brief =
                        EntryOptions::new().with_sliding_expiration(Duration::from_millis(5));
                    let mut state = thread + 1;
                    for _ in 0..20_000 {
                        // xorshift: a different key, size and operation each time
                        state ^= state << 13;
                        state ^= state >> 7;
                        state ^= state << 17;
                        let key = format!("k{}", state % 30_000);
                        let size = usize::try_from(state % 2_000).unwrap();
                        let call = async {
                            match state % 8 {
                                0 => cache.remove(&key).await.unwrap(),
                                1 | 2 => drop(cache.get(&key).await.unwrap()),
                                3 => cache.set(&key, bytes(size), &brief).await.unwrap(),
                                _ => cache
                                    .set(&key, bytes(size), &EntryOptions::new())
                                    .await
                                    .unwrap(),
                            }
                        };
                        runtime.block_on(call);
                    }
                });
            }
        });
        let charged = audit(&cache);
        assert!(charged <= cache.capacity(), "{charged} over the capacity");
        assert!(
            charged > cache.capacity() / 2,
            "evicted far too much: {charged}"
        );
    }
}
