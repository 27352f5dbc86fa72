//! [`MemoryDistributedCache`]: the in-process [`DistributedCache`] backend.
//!
//! It plays the role of `MemoryDistributedCache` in ASP.NET Core: a stand-in
//! for a shared cache in tests and single-instance deployments, with exactly
//! the semantics of the Redis backend (the conformance suite runs on both). It
//! is not the HybridCache L1, which stores typed values and is built for speed.

use std::collections::{BTreeMap, HashMap};
use std::hash::BuildHasher;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use bytes::Bytes;

use crate::distributed::{
    DistributedCache, TOMBSTONE_TTL, Version, Versioned, parse_stamp, validate_key,
};
use crate::error::{Error, ErrorKind, Result};
use crate::options::{EntryOptions, Expiration};

/// Default capacity of [`MemoryDistributedCache::new`]: 64 MiB.
pub const DEFAULT_CAPACITY_BYTES: usize = 64 * 1024 * 1024;

/// Bytes charged per entry on top of its key and value: the map slot, the
/// recency index and the entry header. An estimate, so that a flood of empty
/// values is bounded too.
const ENTRY_OVERHEAD: usize = 96;

/// Buckets of the version floors (see [`State::floors`]).
const FLOOR_BUCKETS: usize = 4096;

/// An in-process [`DistributedCache`] bounded by the total size of its keys and
/// values. When a write would exceed the capacity, expired entries and then the
/// least recently used ones are evicted. A removed key leaves a tombstone (its
/// key and version, no value) for [`TOMBSTONE_TTL`].
///
/// The handle is a cheap `Clone`; clones share one store.
#[derive(Clone, Debug)]
pub struct MemoryDistributedCache {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    capacity: usize,
    // A std Mutex, not a Tokio one: it is never held across an await, and every
    // critical section is a few map operations.
    state: Mutex<State>,
    /// Picks a key's floor bucket.
    hasher: foldhash::fast::RandomState,
}

#[derive(Debug)]
struct State {
    entries: HashMap<Arc<str>, Entry>,
    /// Recency index: `stamp -> key`, oldest first. Each entry's `stamp` is its key here.
    recency: BTreeMap<u64, Arc<str>>,
    next_stamp: u64,
    used: usize,
    /// The last version token given out; tokens only grow.
    last_version: u64,
    /// Per bucket of keys, the newest version of an entry or tombstone the
    /// cache forgot (evicted or expired). A read of an absent key returns its
    /// bucket's floor, and a version-checked write expecting "absent" lands
    /// only if the floor did not move: a forgotten removal or write can never
    /// let an older read's value back in. Sharing a floor between the keys of
    /// a bucket costs at worst a refused write-back, never a stale one.
    floors: Box<[u64]>,
}

#[derive(Debug)]
struct Entry {
    /// `None` for a tombstone.
    value: Option<Bytes>,
    expiration: Expiration,
    /// When the entry expires, as of its last touch; `None` never.
    deadline: Option<SystemTime>,
    stamp: u64,
    version: u64,
}

impl Entry {
    fn weight(key: &str, value: Option<&Bytes>) -> usize {
        key.len() + value.map_or(0, Bytes::len) + ENTRY_OVERHEAD
    }

    fn is_expired(&self, now: SystemTime) -> bool {
        self.deadline.is_some_and(|d| d <= now)
    }
}

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
    /// overhead (about 96 bytes an entry).
    #[must_use]
    pub fn with_capacity(capacity_bytes: usize) -> Self {
        Self {
            inner: Arc::new(Inner {
                capacity: capacity_bytes,
                state: Mutex::new(State {
                    entries: HashMap::new(),
                    recency: BTreeMap::new(),
                    next_stamp: 0,
                    used: 0,
                    last_version: 0,
                    floors: vec![0; FLOOR_BUCKETS].into_boxed_slice(),
                }),
                hasher: foldhash::fast::RandomState::default(),
            }),
        }
    }

    /// The configured capacity in bytes.
    pub fn capacity(&self) -> usize {
        self.inner.capacity
    }

    /// Bytes currently charged (keys, values, tombstones and overhead), expired
    /// entries not yet evicted included.
    pub fn used_bytes(&self) -> usize {
        self.inner.lock().used
    }

    /// Number of entries held, tombstones and expired entries not yet evicted
    /// included.
    pub fn len(&self) -> usize {
        self.inner.lock().entries.len()
    }

    /// True when no entry is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Reads `key` and slides it; `refresh` is the same without the value.
    fn touch(&self, key: &str) -> Result<Versioned> {
        validate_key(key)?;
        let bucket = self.inner.bucket(key);
        let now = SystemTime::now();
        let mut state = self.inner.lock();
        Ok(state.touch(key, bucket, now))
    }

    /// Writes `key` with `value` (`None`: a tombstone) under `expiration`.
    fn write(
        &self,
        key: &str,
        value: Option<Bytes>,
        expiration: Expiration,
        expected: Option<&Version>,
    ) -> Result<bool> {
        let weight = Entry::weight(key, value.as_ref());
        let capacity = self.inner.capacity;
        if weight > capacity {
            return Err(Error::new(
                ErrorKind::PayloadTooLarge,
                format!(
                    "the entry for {key:?} takes {weight} bytes, more than the whole cache \
                     capacity of {capacity} bytes: raise the capacity or store less"
                ),
            ));
        }
        let bucket = self.inner.bucket(key);
        let now = SystemTime::now();
        let mut state = self.inner.lock();
        if let Some(expected) = expected
            && state.touch_version(key, bucket, now) != *expected
        {
            return Ok(false);
        }
        state.insert(key, value, expiration, weight, now, &self.inner);
        Ok(true)
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the maps inconsistent in a
        // way that matters to a cache, so a poisoned lock is used as is.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn bucket(&self, key: &str) -> usize {
        // The modulo keeps the value below FLOOR_BUCKETS, so the cast is lossless.
        #[allow(clippy::cast_possible_truncation)]
        let bucket = (self.hasher.hash_one(key) % FLOOR_BUCKETS as u64) as usize;
        bucket
    }
}

impl State {
    fn bump(&mut self) -> u64 {
        self.next_stamp += 1;
        self.next_stamp
    }

    /// Reads `key` (a miss for a tombstone), sliding a sliding entry; forgets
    /// it when expired.
    fn touch(&mut self, key: &str, bucket: usize, now: SystemTime) -> Versioned {
        let version = self.touch_version(key, bucket, now);
        if version.as_token().is_none() {
            return Versioned::new(None, version);
        }
        let stamp = self.bump();
        let State {
            entries, recency, ..
        } = self;
        let Some(entry) = entries.get_mut(key) else {
            return Versioned::new(None, version);
        };
        if let Some(shared_key) = recency.remove(&entry.stamp) {
            recency.insert(stamp, shared_key);
        }
        entry.stamp = stamp;
        if entry.value.is_some() && entry.expiration.sliding().is_some() {
            entry.deadline = entry.expiration.deadline(now);
        }
        Versioned::new(entry.value.clone(), version)
    }

    /// The version of `key` now, forgetting it first if it expired.
    fn touch_version(&mut self, key: &str, bucket: usize, now: SystemTime) -> Version {
        let expired = match self.entries.get(key) {
            None => return Version::absent(self.floors[bucket]),
            Some(entry) if !entry.is_expired(now) => return Version::token(entry.version),
            Some(_) => true,
        };
        if expired {
            self.forget(key, bucket);
        }
        Version::absent(self.floors[bucket])
    }

    /// Replaces whatever `key` holds with a new entry and a new version.
    fn insert(
        &mut self,
        key: &str,
        value: Option<Bytes>,
        expiration: Expiration,
        weight: usize,
        now: SystemTime,
        inner: &Inner,
    ) {
        self.unlink(key);
        self.make_room(weight, inner.capacity, now, inner);
        let stamp = self.bump();
        self.last_version += 1;
        let key: Arc<str> = Arc::from(key);
        self.recency.insert(stamp, key.clone());
        self.used += weight;
        self.entries.insert(
            key,
            Entry {
                value,
                deadline: expiration.deadline(now),
                expiration,
                stamp,
                version: self.last_version,
            },
        );
    }

    /// Drops `key`'s entry from the maps, without touching its floor: for an
    /// entry that is being replaced.
    fn unlink(&mut self, key: &str) -> Option<Entry> {
        let (key, entry) = self.entries.remove_entry(key)?;
        self.recency.remove(&entry.stamp);
        self.used -= Entry::weight(&key, entry.value.as_ref());
        Some(entry)
    }

    /// Forgets `key` (expired or evicted): its version goes into its floor.
    fn forget(&mut self, key: &str, bucket: usize) {
        if let Some(entry) = self.unlink(key) {
            self.floors[bucket] = self.floors[bucket].max(entry.version);
        }
    }

    /// Frees room for `incoming` bytes: expired entries first, then the least
    /// recently used.
    fn make_room(&mut self, incoming: usize, capacity: usize, now: SystemTime, buckets: &Inner) {
        if self.used + incoming <= capacity {
            return;
        }
        let expired: Vec<Arc<str>> = self
            .entries
            .iter()
            .filter(|(_, e)| e.is_expired(now))
            .map(|(k, _)| k.clone())
            .collect();
        for key in expired {
            self.forget(&key, buckets.bucket(&key));
        }
        while self.used + incoming > capacity {
            let Some(key) = self.recency.first_key_value().map(|(_, key)| key.clone()) else {
                break;
            };
            self.forget(&key, buckets.bucket(&key));
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
        let expiration = options.resolve(SystemTime::now())?;
        self.write(key, Some(value), expiration, None).map(drop)
    }

    async fn refresh(&self, key: &str) -> Result<()> {
        self.touch(key).map(drop)
    }

    async fn remove(&self, key: &str) -> Result<()> {
        validate_key(key)?;
        let tombstone = EntryOptions::new().with_relative_expiration(TOMBSTONE_TTL);
        let expiration = tombstone.resolve(SystemTime::now())?;
        self.write(key, None, expiration, None).map(drop)
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
        let expiration = options.resolve(SystemTime::now())?;
        if expected.is_expired() {
            return Ok(false);
        }
        self.write(key, Some(value), expiration, Some(expected))
    }

    async fn next_stamp(&self, key: &str, options: &EntryOptions) -> Result<u64> {
        validate_key(key)?;
        let now = SystemTime::now();
        let expiration = options.resolve(now)?;
        let clock_us = now
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX));
        let bucket = self.inner.bucket(key);
        let mut state = self.inner.lock();
        let current = state.touch(key, bucket, now).value;
        let current = match current {
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
        let weight = Entry::weight(key, Some(&value));
        state.insert(key, Some(value), expiration, weight, now, &self.inner);
        Ok(stamp)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes(n: usize) -> Bytes {
        Bytes::from(vec![7u8; n])
    }

    #[tokio::test]
    async fn evicts_least_recently_used_to_stay_within_capacity() {
        let one = Entry::weight("k0", Some(&bytes(100)));
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
        assert_eq!(cache.used_bytes(), Entry::weight("a", Some(&bytes(10))));
        cache.remove("a").await.unwrap();
        assert_eq!(cache.used_bytes(), Entry::weight("a", None), "a tombstone");
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
        let cap =
            Entry::weight("live", Some(&bytes(100))) + Entry::weight("dies", Some(&bytes(100)));
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
        let one = Entry::weight("k0", Some(&bytes(100)));
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
}
