//! The cache-aside race: an invalidation (`remove`, `set`, `remove_by_tag`,
//! `clear`, or a peer's notice of one) that lands while a read of the same key
//! is running must not be undone by that read's write-back.
//!
//! The classic case: a fetch's factory reads the old row; a writer commits
//! and calls `remove(key)`; the fetch then caches the old row until it
//! expires. Comparing timestamps cannot catch it (the write-back is newer than
//! the remove), so every running read (a fetch, or `get` copying an L2 value
//! to L1) registers here, and every invalidation marks the running reads it
//! concerns. A marked read still returns its value to its callers (they asked
//! before the write) but writes neither L1 nor L2, and the stampede map lets
//! later callers start a new fetch instead of joining it.
//!
//! A tag's invalidation marks every running read with that tag: since a
//! factory may add tags, a read keeps the tags invalidated during its run and
//! checks its final tags against them when it writes.
//!
//! The L2 write of a marked read is skipped, and one that was under way when
//! the mark came is followed by an L2 removal (the invalidation's own
//! removal may have reached L2 first). What remains open: a peer's
//! invalidation whose notice arrives only after this read's L2 write has
//! completed, while its L2 removal reached L2 before that write. L1 is then
//! cleaned by the notice, but L2 keeps the read's value until it expires.
//! Closing that needs versioned writes in L2 (a compare-and-set), which the
//! `DistributedCache` contract does not offer.
//!
//! What this does not own: the L1 and L2 writes themselves (see `write`), and
//! the timestamp rules of tags (see `tags`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

/// More tags invalidated during one read than this mark it as a whole: the
/// list stays short, and such a read is rare enough to be simply not cached.
const MAX_TAG_MARKS: usize = 16;

/// What happened to one running read's key since it started.
#[derive(Debug, Default)]
pub(crate) struct ReadMarks {
    // A std Mutex: held for a flag update or around one L1 insert, never
    // across an await. Holding it around the insert is what makes "check,
    // then write L1" atomic with respect to "mark, then remove from L1".
    state: Mutex<Marks>,
}

#[derive(Debug, Default)]
struct Marks {
    /// The key itself changed (or everything did).
    whole: bool,
    /// Tags invalidated since the read started.
    tags: Vec<String>,
}

impl ReadMarks {
    fn lock(&self) -> MutexGuard<'_, Marks> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// True when anything was invalidated during the read: a caller arriving
    /// now must not join it (its value may predate what the caller should see).
    pub(crate) fn is_marked(&self) -> bool {
        let marks = self.lock();
        marks.whole || !marks.tags.is_empty()
    }

    /// True when an entry with `tags`, read by this read, must not be written.
    pub(crate) fn invalidates<S: AsRef<str>>(&self, tags: &[S]) -> bool {
        self.lock().invalidates(tags)
    }

    /// Runs `write` unless an entry with `tags` is invalidated; true when it ran.
    /// An invalidation that marks this read after `write` ran removes what it
    /// wrote (invalidators mark first, then remove from L1).
    pub(crate) fn write_unless_invalidated<S: AsRef<str>>(
        &self,
        tags: &[S],
        write: impl FnOnce(),
    ) -> bool {
        let marks = self.lock();
        if marks.invalidates(tags) {
            return false;
        }
        write();
        true
    }

    fn mark_whole(&self) {
        self.lock().whole = true;
    }

    fn mark_tag(&self, tag: &str) {
        let mut marks = self.lock();
        if marks.whole || marks.tags.iter().any(|t| t == tag) {
            return;
        }
        if marks.tags.len() >= MAX_TAG_MARKS {
            marks.whole = true;
        } else {
            marks.tags.push(tag.to_owned());
        }
    }
}

impl Marks {
    fn invalidates<S: AsRef<str>>(&self, tags: &[S]) -> bool {
        self.whole
            || tags
                .iter()
                .any(|tag| self.tags.iter().any(|t| t == tag.as_ref()))
    }
}

/// The running reads of one cache, by key.
#[derive(Debug, Default)]
pub(crate) struct Reads {
    // A std Mutex: one map operation per read start, end and invalidation,
    // never held across an await. Reads are L1 misses, rare next to hits
    // (which never touch it).
    map: Mutex<HashMap<String, Vec<Arc<ReadMarks>>, foldhash::fast::RandomState>>,
}

/// One registered read; dropping it unregisters the read.
#[derive(Debug)]
pub(crate) struct RunningRead {
    reads: Arc<Reads>,
    key: String,
    marks: Arc<ReadMarks>,
}

impl Reads {
    fn lock(
        &self,
    ) -> MutexGuard<'_, HashMap<String, Vec<Arc<ReadMarks>>, foldhash::fast::RandomState>> {
        self.map.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Registers a read of `key` that starts now.
    pub(crate) fn start(self: &Arc<Self>, key: &str) -> RunningRead {
        let marks = Arc::new(ReadMarks::default());
        self.lock()
            .entry(key.to_owned())
            .or_default()
            .push(Arc::clone(&marks));
        RunningRead {
            reads: Arc::clone(self),
            key: key.to_owned(),
            marks,
        }
    }

    /// `key` changed: marks its running reads. Call before removing the key
    /// from L1.
    pub(crate) fn key_changed(&self, key: &str) {
        if let Some(reads) = self.lock().get(key) {
            reads.iter().for_each(|r| r.mark_whole());
        }
    }

    /// `tag` was invalidated: every running read remembers it.
    pub(crate) fn tag_changed(&self, tag: &str) {
        self.lock().values().flatten().for_each(|r| r.mark_tag(tag));
    }

    /// Everything was invalidated (`clear`): marks every running read.
    pub(crate) fn all_changed(&self) {
        self.lock().values().flatten().for_each(|r| r.mark_whole());
    }

    /// Number of running reads, for tests.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().values().map(Vec::len).sum()
    }
}

impl RunningRead {
    /// What happened to the key since the read started.
    pub(crate) fn marks(&self) -> &Arc<ReadMarks> {
        &self.marks
    }
}

impl Drop for RunningRead {
    fn drop(&mut self) {
        let mut map = self.reads.lock();
        if let Some(reads) = map.get_mut(&self.key) {
            reads.retain(|r| !Arc::ptr_eq(r, &self.marks));
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
    fn marks_reach_the_running_reads_they_concern() {
        let reads = Arc::new(Reads::default());
        let a = reads.start("a");
        let b = reads.start("b");
        reads.key_changed("a");
        assert!(a.marks().invalidates::<&str>(&[]));
        assert!(!b.marks().is_marked());
        reads.tag_changed("products");
        assert!(b.marks().is_marked());
        assert!(b.marks().invalidates(&["x", "products"]));
        assert!(!b.marks().invalidates(&["x"]));
        let mut wrote = false;
        assert!(b.marks().write_unless_invalidated(&["x"], || wrote = true));
        assert!(wrote);
        reads.all_changed();
        assert!(b.marks().invalidates::<&str>(&[]));
        drop((a, b));
        assert_eq!(reads.len(), 0);
    }

    #[test]
    fn a_read_started_after_an_invalidation_is_not_marked() {
        let reads = Arc::new(Reads::default());
        reads.key_changed("a");
        reads.all_changed();
        let a = reads.start("a");
        assert!(!a.marks().is_marked());
    }

    #[test]
    fn too_many_tag_marks_mark_the_whole_read() {
        let reads = Arc::new(Reads::default());
        let a = reads.start("a");
        for i in 0..=MAX_TAG_MARKS {
            reads.tag_changed(&format!("t{i}"));
        }
        assert!(a.marks().invalidates(&["unrelated"]));
    }
}
