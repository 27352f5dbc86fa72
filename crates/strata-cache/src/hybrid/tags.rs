//! Tag invalidation by timestamp: an entry created at or before the
//! invalidation time of one of its tags (or of the last `clear()`) is stale.
//!
//! This instance learns invalidation times three ways: its own calls, peers'
//! backplane notices, and the records in L2 (`v1#tag:<tag>`, `v1#clear`),
//! read when an entry comes from L2 and the local copy of a record is older
//! than [`RECORD_CHECK_INTERVAL`]. That last path is how an instance without a
//! backplane (or after a gap) learns of a peer's `remove_by_tag`.
//!
//! L1 entries are not scanned on invalidation. Instead every invalidation
//! bumps an epoch; an L1 entry remembers the epoch it was last checked in, and
//! the hit path only compares two integers. A mismatch sends the entry through
//! a check against the known times (`local_stale`).
//!
//! Known times are kept in a bounded map ([`MAX_TAGS`]); a record evicted from
//! it is re-read from L2 when needed (without L2 it is forgotten).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use quick_cache::UnitWeighter;
use quick_cache::sync::Cache;

use super::clock::{Clock, millis};
use super::envelope::{CLEAR_KEY, decode_time, tag_key};
use super::l2::L2;
use super::stats::Stats;

/// How long a tag time read from L2 is trusted before it is read again.
pub(crate) const RECORD_CHECK_INTERVAL: Duration = Duration::from_secs(1);
/// How many tags' times are kept locally.
pub(crate) const MAX_TAGS: usize = 65_536;
/// Physical TTL of tag and clear records in L2: entries older than this
/// cannot be invalidated by a record that has expired, so keep entry
/// expirations (and fail-safe durations) below it.
pub(crate) const RECORD_TTL: Duration = Duration::from_secs(7 * 24 * 3600);

#[derive(Debug, Clone, Copy, Default)]
struct Record {
    at_ms: u64,
    /// When L2 was last read for this record; 0 for never.
    checked_ms: u64,
}

/// Known invalidation times of one cache.
#[derive(Debug)]
pub(crate) struct Tags {
    records: Cache<String, Record, UnitWeighter, foldhash::fast::RandomState>,
    clear: std::sync::Mutex<Record>,
    /// Serializes writers of `records`, so that two concurrent updates of one
    /// tag cannot lose the later time (quick_cache has no atomic update).
    /// Writers are rare: invalidations and L2 record reads.
    writers: std::sync::Mutex<()>,
    epoch: AtomicU64,
    /// The latest invalidation time known, for a new entry's creation stamp.
    latest_ms: AtomicU64,
    /// Records checked in L2 before this time are re-read (set by a gap).
    suspect_before_ms: AtomicU64,
}

impl Tags {
    pub(crate) fn new() -> Self {
        Self {
            records: Cache::with(
                1024,
                MAX_TAGS as u64,
                UnitWeighter,
                foldhash::fast::RandomState::default(),
                Default::default(),
            ),
            clear: std::sync::Mutex::default(),
            writers: std::sync::Mutex::default(),
            epoch: AtomicU64::new(0),
            latest_ms: AtomicU64::new(0),
            suspect_before_ms: AtomicU64::new(0),
        }
    }

    /// The invalidation epoch: changes whenever a newer time is recorded.
    #[inline]
    pub(crate) fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    /// The latest invalidation time known.
    pub(crate) fn latest_ms(&self) -> u64 {
        self.latest_ms.load(Ordering::Acquire)
    }

    /// Records that `tag` was invalidated at `at_ms` (keeps the later time).
    pub(crate) fn record(&self, tag: &str, at_ms: u64, checked_ms: u64) {
        let _writer = self
            .writers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let old = self.records.get(tag).unwrap_or_default();
        let newer = at_ms > old.at_ms;
        self.records.insert(
            tag.to_owned(),
            Record {
                at_ms: old.at_ms.max(at_ms),
                checked_ms: old.checked_ms.max(checked_ms),
            },
        );
        if newer {
            self.bump(at_ms);
        }
    }

    /// Records a `clear()` at `at_ms`.
    pub(crate) fn record_clear(&self, at_ms: u64, checked_ms: u64) {
        let newer = {
            let mut clear = self
                .clear
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let newer = at_ms > clear.at_ms;
            clear.at_ms = clear.at_ms.max(at_ms);
            clear.checked_ms = clear.checked_ms.max(checked_ms);
            newer
        };
        if newer {
            self.bump(at_ms);
        }
    }

    fn bump(&self, at_ms: u64) {
        self.latest_ms.fetch_max(at_ms, Ordering::AcqRel);
        // Release: a reader that sees the new epoch sees the record above.
        self.epoch.fetch_add(1, Ordering::AcqRel);
    }

    /// After a backplane gap: distrust what was read from L2 so far.
    pub(crate) fn mark_suspect(&self, now_ms: u64) {
        self.suspect_before_ms.store(now_ms, Ordering::Release);
        self.epoch.fetch_add(1, Ordering::AcqRel);
    }

    /// Is an entry created at `created_ms` with `tags` stale, by what this
    /// instance knows now?
    pub(crate) fn local_stale<S: AsRef<str>>(&self, created_ms: u64, tags: &[S]) -> bool {
        let cleared = self
            .clear
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .at_ms;
        if cleared != 0 && created_ms <= cleared {
            return true;
        }
        tags.iter().any(|tag| {
            self.records
                .get(tag.as_ref())
                .is_some_and(|r| r.at_ms != 0 && created_ms <= r.at_ms)
        })
    }

    /// Reads from L2 the records of `tags` (and the clear record) whose local
    /// copy is older than [`RECORD_CHECK_INTERVAL`]. L2 failures keep what is
    /// known: a failing L2 is not a reason to drop every entry.
    pub(crate) async fn refresh_from_l2<S: AsRef<str>>(
        &self,
        tags: &[S],
        l2: &L2,
        clock: &Clock,
        stats: &Stats,
    ) {
        if !l2.is_configured() {
            return;
        }
        let now = clock.now_ms();
        let suspect_before = self.suspect_before_ms.load(Ordering::Acquire);
        let due = |r: Record| {
            r.checked_ms == 0
                || r.checked_ms < suspect_before
                || now >= r.checked_ms.saturating_add(millis(RECORD_CHECK_INTERVAL))
        };
        let clear = *self
            .clear
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if due(clear)
            && let Ok(found) = l2.get(clock, stats, CLEAR_KEY).await
        {
            let at = found.as_deref().and_then(decode_time).unwrap_or(0);
            self.record_clear(at, now);
        }
        for tag in tags {
            let tag = tag.as_ref();
            if !due(self.records.get(tag).unwrap_or_default()) {
                continue;
            }
            if let Ok(found) = l2.get(clock, stats, &tag_key(tag)).await {
                let at = found.as_deref().and_then(decode_time).unwrap_or(0);
                self.record(tag, at, now);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_at_or_before_a_tag_time_are_stale() {
        let tags = Tags::new();
        let e0 = tags.epoch();
        tags.record("products", 100, 0);
        assert_ne!(tags.epoch(), e0);
        assert!(tags.local_stale(100, &["products"]));
        assert!(tags.local_stale(99, &["x", "products"]));
        assert!(!tags.local_stale(101, &["products"]));
        assert!(!tags.local_stale(50, &["other"]));
        let e1 = tags.epoch();
        tags.record("products", 90, 0);
        assert_eq!(tags.epoch(), e1, "an older time changes nothing");
        tags.record_clear(200, 0);
        assert!(tags.local_stale(150, &["other"]));
        assert_eq!(tags.latest_ms(), 200);
    }
}
