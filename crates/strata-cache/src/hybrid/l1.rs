//! L1: the in-process layer. Typed values, bounded by weight, no decoding on
//! a hit.
//!
//! The map is `sharded`'s: a table with lock-free reads, CLOCK eviction by
//! the weight we give each entry (key, encoded payload size, tags, overhead),
//! so memory is bounded by bytes instead of entry count. (`moka`'s `get`
//! measured about 5x a plain `HashMap` lookup here, quick_cache's about
//! 1.8x: see `sharded` for why.) It has no TTL of its own: every entry
//! carries its deadlines and the hit path checks them.
//!
//! The value is stored type-erased (`Box<dyn Any>`) inside an `Arc` (so that
//! one cache holds any `T`, and slow paths can keep an entry past its
//! removal); a hit takes no lock, checks the deadlines, downcasts and clones
//! `T`, and touches no reference count.

use std::any::Any;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use super::repr::Repr;
use super::sharded::ShardedMap;

/// Bytes charged per entry on top of key, payload and tags: the map slot, the
/// `Arc`ed entry header and the boxed value's own struct. An estimate.
const ENTRY_OVERHEAD: u64 = 160;

/// One L1 entry. Times are wall milliseconds of the cache's [`Clock`](super::clock::Clock).
#[derive(Debug)]
pub(crate) struct L1Entry {
    pub(crate) value: Box<dyn Any + Send + Sync>,
    pub(crate) created_ms: u64,
    pub(crate) logical_expiry_ms: u64,
    /// L1 serves the entry until then (local expiration, slid by reads when
    /// `sliding_ms` is set, or a fail-safe throttle).
    pub(crate) fresh_until_ms: AtomicU64,
    /// The cap of `fresh_until_ms` when sliding.
    pub(crate) fresh_cap_ms: u64,
    pub(crate) sliding_ms: u64,
    /// Kept as a fail-safe fallback until then (equals `fresh_cap_ms` without fail-safe).
    pub(crate) stale_until_ms: u64,
    /// A hit at or after this starts a background refresh; `u64::MAX` for never.
    pub(crate) eager_at_ms: u64,
    pub(crate) eager_started: AtomicBool,
    pub(crate) tags: Box<[String]>,
    /// The local sequence number the read that produced the value began at
    /// (see `order`).
    pub(crate) read_seq: u64,
    /// The epoch the entry was last checked at; the hit path serves it only
    /// while the epoch is unchanged. [`UNCHECKED`] for never.
    pub(crate) checked: AtomicU64,
    /// The sequence number at which L2 last confirmed the entry (its read,
    /// or a later confirmation of its version after a gap).
    pub(crate) confirmed_seq: AtomicU64,
    /// The version token L2 held for this value, when it came from L2.
    pub(crate) l2_version: Option<u64>,
    /// Encoded payload size in bytes, for the weigher.
    pub(crate) payload_len: u64,
}

/// The `checked` of an entry the hit path must not serve before a check.
pub(crate) const UNCHECKED: u64 = u64::MAX;

/// The outcome of checking an entry on the hit path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Serve it.
    Serve,
    /// Serve it and refresh it in the background.
    ServeAndRefresh,
    /// Do not serve it as it is: expired, or the epoch moved since it was
    /// checked (a tag may have been invalidated, a gap may have made it
    /// suspect). The slow path decides.
    Revalidate,
}

impl L1Entry {
    /// Checks the deadlines and the epoch at `now`. Sliding entries slide.
    #[inline]
    pub(crate) fn verdict(&self, now: u64, epoch: u64) -> Verdict {
        if self.checked.load(Ordering::Relaxed) != epoch {
            return Verdict::Revalidate;
        }
        self.verdict_by_time(now)
    }

    /// The verdict on deadlines alone, for an entry whose tags were just checked.
    #[inline]
    pub(crate) fn verdict_by_time(&self, now: u64) -> Verdict {
        if now >= self.fresh_until_ms.load(Ordering::Relaxed) {
            return Verdict::Revalidate;
        }
        if self.sliding_ms != 0 {
            let slid = now.saturating_add(self.sliding_ms).min(self.fresh_cap_ms);
            self.fresh_until_ms.fetch_max(slid, Ordering::Relaxed);
        }
        if now >= self.eager_at_ms {
            return Verdict::ServeAndRefresh;
        }
        Verdict::Serve
    }

    /// True while the entry may serve as a fail-safe fallback.
    pub(crate) fn is_kept(&self, now: u64) -> bool {
        now < self.stale_until_ms
    }

    /// The value, when it is of representation `R`.
    #[inline]
    pub(crate) fn get<R: Repr>(&self) -> Option<R::Value> {
        R::load(&*self.value)
    }

    /// A copy of this entry that L1 serves for `throttle` from `now`: what a
    /// failed refresh leaves behind under fail-safe.
    pub(crate) fn throttled<R: Repr>(&self, now: u64, throttle: u64, epoch: u64) -> Option<Self> {
        let value = self.get::<R>()?;
        let until = now
            .saturating_add(throttle)
            .min(self.stale_until_ms.max(now + 1));
        Some(Self {
            value: R::store(value),
            created_ms: self.created_ms,
            logical_expiry_ms: self.logical_expiry_ms,
            fresh_until_ms: AtomicU64::new(until),
            fresh_cap_ms: until,
            sliding_ms: 0,
            stale_until_ms: self.stale_until_ms,
            eager_at_ms: u64::MAX,
            eager_started: AtomicBool::new(false),
            tags: self.tags.clone(),
            read_seq: self.read_seq,
            checked: AtomicU64::new(epoch),
            confirmed_seq: AtomicU64::new(self.confirmed_seq.load(Ordering::Relaxed)),
            l2_version: self.l2_version,
            payload_len: self.payload_len,
        })
    }
}

/// The weight of an entry: key, encoded payload, tags and a fixed overhead.
fn weight(key: &str, entry: &L1Entry) -> u64 {
    let tags: usize = entry.tags.iter().map(String::len).sum();
    (key.len() + tags) as u64 + entry.payload_len + ENTRY_OVERHEAD
}

/// Most shards of an L1: more would make each shard's share of the capacity
/// (the heaviest entry it keeps) small.
const MAX_SHARDS: usize = 64;

/// The bounded L1 map. Shared by all clones of a cache through the engine.
#[derive(Debug)]
pub(crate) struct L1 {
    map: ShardedMap<Arc<L1Entry>>,
}

impl L1 {
    /// An L1 holding about `capacity_bytes` of weighted entries, over four
    /// shards per core (at most [`MAX_SHARDS`]): writers on different cores
    /// seldom share a lock. An entry heavier than one shard's share is not kept.
    pub(crate) fn new(capacity_bytes: u64) -> Self {
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        let shards = (cores * 4).clamp(4, MAX_SHARDS);
        Self {
            map: ShardedMap::new(capacity_bytes.max(1), shards),
        }
    }

    /// Runs `f` on the entry under `key` (whatever its deadlines), without a
    /// lock: the hit path, with no reference-count traffic.
    #[inline]
    pub(crate) fn read<R>(&self, key: &str, f: impl FnOnce(&L1Entry) -> R) -> Option<R> {
        self.map.read(key, |entry| f(entry))
    }

    /// The entry under `key`, whatever its deadlines.
    pub(crate) fn get(&self, key: &str) -> Option<Arc<L1Entry>> {
        self.map.read(key, Arc::clone)
    }

    /// Inserts or replaces; an entry heavier than a shard's capacity is not kept.
    pub(crate) fn insert(&self, key: &str, entry: Arc<L1Entry>) {
        let weight = weight(key, &entry);
        self.map.insert(key, entry, weight);
    }

    pub(crate) fn remove(&self, key: &str) {
        self.map.remove(key);
    }

    /// Removes `key` only if it still holds `entry` (not a newer write).
    pub(crate) fn remove_if_same(&self, key: &str, entry: &Arc<L1Entry>) {
        self.map
            .remove_if(key, |current| Arc::ptr_eq(current, entry));
    }

    pub(crate) fn clear(&self) {
        self.map.clear();
    }

    /// The total weight held, in estimated bytes.
    #[cfg(test)]
    pub(crate) fn weight(&self) -> u64 {
        self.map.weight()
    }

    /// Number of entries held.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hybrid::repr::Serde;

    fn entry(payload_len: u64) -> Arc<L1Entry> {
        Arc::new(L1Entry {
            value: Box::new(7_u32),
            created_ms: 0,
            logical_expiry_ms: 100,
            fresh_until_ms: AtomicU64::new(50),
            fresh_cap_ms: 50,
            sliding_ms: 0,
            stale_until_ms: 50,
            eager_at_ms: 40,
            eager_started: AtomicBool::new(false),
            tags: Box::new([]),
            read_seq: 0,
            checked: AtomicU64::new(0),
            confirmed_seq: AtomicU64::new(0),
            l2_version: None,
            payload_len,
        })
    }

    #[test]
    fn verdict_follows_deadlines_and_the_epoch() {
        let e = entry(1);
        assert_eq!(e.verdict(10, 0), Verdict::Serve);
        assert_eq!(e.verdict(45, 0), Verdict::ServeAndRefresh);
        assert_eq!(e.verdict(50, 0), Verdict::Revalidate);
        assert_eq!(e.verdict(10, 1), Verdict::Revalidate);
        e.checked.store(UNCHECKED, Ordering::Relaxed);
        assert_eq!(e.verdict(10, 0), Verdict::Revalidate);
        assert_eq!(e.get::<Serde<u32>>(), Some(7));
        assert_eq!(e.get::<Serde<u64>>(), None);
    }

    #[test]
    fn is_bounded_by_weight() {
        let l1 = L1::new(64 * 1024);
        for i in 0..1000 {
            l1.insert(&format!("k{i}"), entry(1000));
        }
        assert!(l1.weight() <= 64 * 1024, "{}", l1.weight());
        assert!(l1.len() < 100);
    }
}
