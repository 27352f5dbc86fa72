//! [`MemoryDistributedCache`]: the in-process [`DistributedCache`] backend.
//!
//! It plays the role of `MemoryDistributedCache` in ASP.NET Core: a stand-in
//! for a shared cache in tests and single-instance deployments, with exactly
//! the semantics of the Redis backend (the conformance suite runs on both). It
//! is not the HybridCache L1, which stores typed values and is built for speed.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use async_trait::async_trait;
use bytes::Bytes;

use crate::distributed::{DistributedCache, validate_key};
use crate::error::{Error, ErrorKind, Result};
use crate::options::{EntryOptions, Expiration};

/// Default capacity of [`MemoryDistributedCache::new`]: 64 MiB.
pub const DEFAULT_CAPACITY_BYTES: usize = 64 * 1024 * 1024;

/// Bytes charged per entry on top of its key and value: the map slot, the
/// recency index and the entry header. An estimate, so that a flood of empty
/// values is bounded too.
const ENTRY_OVERHEAD: usize = 96;

/// An in-process [`DistributedCache`] bounded by the total size of its keys and
/// values. When a write would exceed the capacity, expired entries and then the
/// least recently used ones are evicted.
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
}

#[derive(Debug, Default)]
struct State {
    entries: HashMap<Arc<str>, Entry>,
    /// Recency index: `stamp -> key`, oldest first. Each entry's `stamp` is its key here.
    recency: BTreeMap<u64, Arc<str>>,
    next_stamp: u64,
    used: usize,
}

#[derive(Debug)]
struct Entry {
    value: Bytes,
    expiration: Expiration,
    /// When the entry expires, as of its last touch; `None` never.
    deadline: Option<SystemTime>,
    stamp: u64,
}

impl Entry {
    fn weight(key: &str, value: &Bytes) -> usize {
        key.len() + value.len() + ENTRY_OVERHEAD
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
                state: Mutex::new(State::default()),
            }),
        }
    }

    /// The configured capacity in bytes.
    pub fn capacity(&self) -> usize {
        self.inner.capacity
    }

    /// Bytes currently charged (keys, values and overhead), expired entries not
    /// yet evicted included.
    pub fn used_bytes(&self) -> usize {
        self.inner.lock().used
    }

    /// Number of entries held, expired ones not yet evicted included.
    pub fn len(&self) -> usize {
        self.inner.lock().entries.len()
    }

    /// True when no entry is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Reads `key` and slides it; `refresh` is the same without the value.
    fn touch(&self, key: &str) -> Result<Option<Bytes>> {
        validate_key(key)?;
        let now = SystemTime::now();
        let mut state = self.inner.lock();
        let expired = match state.entries.get(key) {
            None => return Ok(None),
            Some(entry) => entry.is_expired(now),
        };
        if expired {
            state.remove(key);
            return Ok(None);
        }
        let stamp = state.bump();
        let State {
            entries, recency, ..
        } = &mut *state;
        let Some(entry) = entries.get_mut(key) else {
            return Ok(None);
        };
        if let Some(shared_key) = recency.remove(&entry.stamp) {
            recency.insert(stamp, shared_key);
        }
        entry.stamp = stamp;
        if entry.expiration.sliding().is_some() {
            entry.deadline = entry.expiration.deadline(now);
        }
        Ok(Some(entry.value.clone()))
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
}

impl State {
    fn bump(&mut self) -> u64 {
        self.next_stamp += 1;
        self.next_stamp
    }

    fn remove(&mut self, key: &str) {
        if let Some((key, entry)) = self.entries.remove_entry(key) {
            self.recency.remove(&entry.stamp);
            self.used -= Entry::weight(&key, &entry.value);
        }
    }

    /// Frees room for `incoming` bytes: expired entries first, then the least
    /// recently used.
    fn make_room(&mut self, incoming: usize, capacity: usize, now: SystemTime) {
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
            self.remove(&key);
        }
        while self.used + incoming > capacity {
            let Some((_, key)) = self.recency.pop_first() else {
                break;
            };
            if let Some(entry) = self.entries.remove(&key) {
                self.used -= Entry::weight(&key, &entry.value);
            }
        }
    }
}

#[async_trait]
impl DistributedCache for MemoryDistributedCache {
    async fn get(&self, key: &str) -> Result<Option<Bytes>> {
        self.touch(key)
    }

    async fn set(&self, key: &str, value: Bytes, options: &EntryOptions) -> Result<()> {
        validate_key(key)?;
        let now = SystemTime::now();
        let expiration = options.resolve(now)?;
        let weight = Entry::weight(key, &value);
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
        let mut state = self.inner.lock();
        state.remove(key);
        state.make_room(weight, capacity, now);
        let stamp = state.bump();
        let key: Arc<str> = Arc::from(key);
        state.recency.insert(stamp, key.clone());
        state.used += weight;
        state.entries.insert(
            key,
            Entry {
                value,
                deadline: expiration.deadline(now),
                expiration,
                stamp,
            },
        );
        Ok(())
    }

    async fn refresh(&self, key: &str) -> Result<()> {
        self.touch(key).map(drop)
    }

    async fn remove(&self, key: &str) -> Result<()> {
        validate_key(key)?;
        self.inner.lock().remove(key);
        Ok(())
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
        let one = Entry::weight("k0", &bytes(100));
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
        assert_eq!(cache.used_bytes(), Entry::weight("a", &bytes(10)));
        cache.remove("a").await.unwrap();
        assert_eq!(cache.used_bytes(), 0);
        assert!(cache.is_empty());
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
        let cap = Entry::weight("live", &bytes(100)) + Entry::weight("dies", &bytes(100));
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
}
