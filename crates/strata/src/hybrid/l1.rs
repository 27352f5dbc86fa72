//! L1: the in-process layer. Typed values, bounded by weight, no decoding on
//! a hit.
//!
//! Why quick_cache: measured on the development VM, `moka`'s `get` costs about
//! 5x a plain `HashMap` lookup (its read path records the access in a
//! concurrent buffer), while quick_cache's sharded, lock-per-shard CLOCK-Pro
//! map reads under one shard `RwLock` with no allocation. It evicts by the
//! weight we give each entry (key, encoded payload size, tags, overhead),
//! which bounds memory by bytes instead of entry count. It has no TTL of its
//! own: every entry carries its deadlines and the hit path checks them.
//!
//! The value is stored type-erased (`Box<dyn Any>`) inside an `Arc` so that
//! one cache holds any `T`; a hit clones the `Arc`, downcasts and clones `T`.

use std::any::Any;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use quick_cache::Weighter;

use super::repr::Repr;
use quick_cache::sync::Cache;

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
    /// The tag epoch the entry was last checked against (see `tags`).
    pub(crate) tag_epoch: AtomicU64,
    /// The backplane gap epoch the entry was read or written in (see `listener`).
    pub(crate) gap_epoch: u64,
    /// Encoded payload size in bytes, for the weigher.
    pub(crate) payload_len: u64,
}

/// The outcome of checking an entry on the hit path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Freshness {
    /// Serve it.
    Fresh,
    /// Serve it and refresh in the background.
    Eager,
    /// Do not serve it as is: expired, suspect after a gap, or a tag changed.
    Check,
}

impl L1Entry {
    /// Checks the deadlines and epochs against `now`. Sliding entries slide.
    #[inline]
    pub(crate) fn freshness(&self, now: u64, tag_epoch: u64, gap_epoch: u64) -> Freshness {
        if self.gap_epoch != gap_epoch || self.tag_epoch.load(Ordering::Relaxed) != tag_epoch {
            return Freshness::Check;
        }
        if now >= self.fresh_until_ms.load(Ordering::Relaxed) {
            return Freshness::Check;
        }
        if self.sliding_ms != 0 {
            let slid = now.saturating_add(self.sliding_ms).min(self.fresh_cap_ms);
            self.fresh_until_ms.fetch_max(slid, Ordering::Relaxed);
        }
        if now >= self.eager_at_ms {
            return Freshness::Eager;
        }
        Freshness::Fresh
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
    pub(crate) fn throttled<R: Repr>(
        &self,
        now: u64,
        throttle: u64,
        gap_epoch: u64,
    ) -> Option<Self> {
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
            tag_epoch: AtomicU64::new(self.tag_epoch.load(Ordering::Relaxed)),
            gap_epoch,
            payload_len: self.payload_len,
        })
    }
}

#[derive(Debug, Clone, Copy)]
struct EntryWeighter;

impl Weighter<String, Arc<L1Entry>> for EntryWeighter {
    fn weight(&self, key: &String, entry: &Arc<L1Entry>) -> u64 {
        let tags: usize = entry.tags.iter().map(String::len).sum();
        // Never zero: quick_cache never evicts zero-weight entries.
        (key.len() + tags) as u64 + entry.payload_len + ENTRY_OVERHEAD
    }
}

type Map = Cache<
    String,
    Arc<L1Entry>,
    EntryWeighter,
    foldhash::fast::RandomState,
    quick_cache::sync::DefaultLifecycle<String, Arc<L1Entry>>,
>;

/// The bounded L1 map. Shared by all clones of a cache through `Inner`.
#[derive(Debug)]
pub(crate) struct L1 {
    map: Map,
}

impl L1 {
    /// An L1 holding about `capacity_bytes` of weighted entries.
    pub(crate) fn new(capacity_bytes: u64) -> Self {
        // quick_cache sizes its tables from an item estimate: assume ~1 KiB entries.
        let estimated = usize::try_from(capacity_bytes / 1024)
            .unwrap_or(usize::MAX)
            .clamp(64, 1 << 20);
        let map = Cache::with(
            estimated,
            capacity_bytes.max(1),
            EntryWeighter,
            foldhash::fast::RandomState::default(),
            Default::default(),
        );
        Self { map }
    }

    /// The entry under `key`, whatever its deadlines.
    #[inline]
    pub(crate) fn get(&self, key: &str) -> Option<Arc<L1Entry>> {
        self.map.get(key)
    }

    /// Inserts or replaces; an entry heavier than the whole capacity is not kept.
    pub(crate) fn insert(&self, key: &str, entry: Arc<L1Entry>) {
        self.map.insert(key.to_owned(), entry);
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
    use crate::hybrid::repr::Typed;

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
            tag_epoch: AtomicU64::new(0),
            gap_epoch: 0,
            payload_len,
        })
    }

    #[test]
    fn freshness_follows_deadlines_and_epochs() {
        let e = entry(1);
        assert_eq!(e.freshness(10, 0, 0), Freshness::Fresh);
        assert_eq!(e.freshness(45, 0, 0), Freshness::Eager);
        assert_eq!(e.freshness(50, 0, 0), Freshness::Check);
        assert_eq!(e.freshness(10, 1, 0), Freshness::Check);
        assert_eq!(e.freshness(10, 0, 1), Freshness::Check);
        assert_eq!(e.get::<Typed<u32>>(), Some(7));
        assert_eq!(e.get::<Typed<u64>>(), None);
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
