//! [`Reads`]: the running reads of a cache, so that a key invalidated while a
//! read of it runs is not put back by that read.
//!
//! The cache-aside race: a fetch's factory reads the old row; a writer commits
//! and calls `remove(key)` (here or on a peer, whose notice arrives here); the
//! fetch then caches the old row. Every running read (a fetch, or `get`
//! copying an L2 value to L1) registers here, and every invalidation of a key
//! (`remove`, `set`, a peer's eviction notice) marks the running reads of
//! that key. A marked read still returns its value to its callers (they asked
//! before the write) but writes neither L1 nor L2, and the stampede map lets
//! later callers start a new fetch instead of joining it.
//!
//! Tags and `clear` are not marked here: a read notes the local sequence
//! number it began at, and `order` tells whether one of its tags was
//! invalidated since. In L2 the version check of the fill
//! (`set_if_version`) closes the same race across instances, even when the
//! notice arrives late.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

/// Whether one running read's key was invalidated since it began.
#[derive(Debug, Default)]
pub(crate) struct ReadMark {
    // A std Mutex: held for a flag update or around one L1 insert, never
    // across an await. Holding it around the insert is what makes "check,
    // then write L1" atomic with respect to "mark, then remove from L1".
    invalidated: Mutex<bool>,
}

impl ReadMark {
    fn lock(&self) -> MutexGuard<'_, bool> {
        self.invalidated
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// True when the key was invalidated during the read.
    pub(crate) fn is_set(&self) -> bool {
        *self.lock()
    }

    /// Runs `write` unless the key was invalidated (and `more_checks` holds);
    /// true when it ran. An invalidation that marks this read after `write`
    /// ran removes what it wrote (invalidators mark first, then remove from L1).
    pub(crate) fn write_unless_set(
        &self,
        more_checks: impl FnOnce() -> bool,
        write: impl FnOnce(),
    ) -> bool {
        let invalidated = self.lock();
        if *invalidated || !more_checks() {
            return false;
        }
        write();
        true
    }

    fn set(&self) {
        *self.lock() = true;
    }
}

type Map = HashMap<String, Vec<Arc<ReadMark>>, foldhash::fast::RandomState>;

/// The running reads of one cache, by key.
#[derive(Debug, Default)]
pub(crate) struct Reads {
    // A std Mutex: one map operation per read start, end and invalidation,
    // never held across an await. Reads are L1 misses, rare next to hits
    // (which never touch it).
    map: Mutex<Map>,
}

/// One registered read; dropping it unregisters the read.
#[derive(Debug)]
pub(crate) struct RunningRead {
    reads: Arc<Reads>,
    key: String,
    mark: Arc<ReadMark>,
}

impl Reads {
    fn lock(&self) -> MutexGuard<'_, Map> {
        self.map.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Registers a read of `key` that starts now.
    pub(crate) fn start(self: &Arc<Self>, key: &str) -> RunningRead {
        let mark = Arc::new(ReadMark::default());
        self.lock()
            .entry(key.to_owned())
            .or_default()
            .push(Arc::clone(&mark));
        RunningRead {
            reads: Arc::clone(self),
            key: key.to_owned(),
            mark,
        }
    }

    /// `key` changed: marks its running reads. Call before removing the key
    /// from L1.
    pub(crate) fn key_changed(&self, key: &str) {
        if let Some(reads) = self.lock().get(key) {
            reads.iter().for_each(|r| r.set());
        }
    }

    /// Number of running reads, for tests.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().values().map(Vec::len).sum()
    }
}

impl RunningRead {
    /// Whether the key was invalidated since the read started.
    pub(crate) fn mark(&self) -> &Arc<ReadMark> {
        &self.mark
    }
}

impl Drop for RunningRead {
    fn drop(&mut self) {
        let mut map = self.reads.lock();
        if let Some(reads) = map.get_mut(&self.key) {
            reads.retain(|r| !Arc::ptr_eq(r, &self.mark));
            if reads.is_empty() {
                map.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marks_reach_the_running_reads_of_their_key() {
        let reads = Arc::new(Reads::default());
        let a = reads.start("a");
        let b = reads.start("b");
        reads.key_changed("a");
        assert!(a.mark().is_set());
        assert!(!b.mark().is_set());
        let mut wrote = false;
        assert!(b.mark().write_unless_set(|| true, || wrote = true));
        assert!(wrote);
        assert!(!a.mark().write_unless_set(|| true, || unreachable!()));
        assert!(!b.mark().write_unless_set(|| false, || unreachable!()));
        drop((a, b));
        assert_eq!(reads.len(), 0);
    }

    #[test]
    fn a_read_started_after_an_invalidation_is_not_marked() {
        let reads = Arc::new(Reads::default());
        reads.key_changed("a");
        let a = reads.start("a");
        assert!(!a.mark().is_set());
    }
}
