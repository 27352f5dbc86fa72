//! [`Shard`]: one slice of a [`MemoryDistributedCache`](super::MemoryDistributedCache):
//! its entries, their recency order, their expiry order and its version floors.
//!
//! The cache hashes each key to one shard and locks only that shard, so a
//! reader never waits for work on other keys' shards. Inside a shard nothing
//! scans; every operation costs O(1) or O(log n) in the shard's entry count:
//!
//! - entries live in a slab (a `Vec` of slots reused through a free list),
//!   found by key through a hash map from key to slot number;
//! - recency is a doubly linked list threaded through the slab by slot
//!   number: a read moves its slot to the front, eviction takes the back;
//! - expiry is a `BTreeSet` of `(deadline, slot)`, earliest first. A slot is
//!   filed under its deadline or an earlier one: a read that slides an entry,
//!   or an overwrite that gives it a later deadline, only moves the slot's
//!   `deadline`, and the entry is filed again when the earlier one comes up.
//!   So reads never touch the index, and overwrites only when they bring the
//!   deadline closer.
//!
//! The shard does not know the cache's byte budget: it reports what each
//! change adds or frees, and the cache decides how much to evict.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;

use crate::distributed::{Version, Versioned};
use crate::options::Expiration;

/// Bytes charged per entry on top of its key and value: the slot, the index
/// and expiry entries, the key's allocation. An estimate, so that a flood of
/// empty values is bounded too.
pub const MEMORY_ENTRY_OVERHEAD: usize = 96;

/// "No slot" in the recency links.
const NIL: u32 = u32::MAX;

/// The bytes an entry for `key` holding `value` is charged.
pub(super) fn weight(key: &str, value: Option<&Bytes>) -> usize {
    key.len() + value.map_or(0, Bytes::len) + MEMORY_ENTRY_OVERHEAD
}

/// Where a key lives: its shard (chosen by the cache) and its floor bucket
/// in that shard.
#[derive(Debug, Clone, Copy)]
pub(super) struct Place {
    pub(super) shard: usize,
    pub(super) bucket: u32,
}

#[derive(Debug)]
struct Slot {
    key: Arc<str>,
    /// `None` for a tombstone.
    value: Option<Bytes>,
    expiration: Expiration,
    /// When the entry expires, as of its last touch; `None` never.
    deadline: Option<SystemTime>,
    /// The deadline the expiry index files this slot under: `None` when not
    /// filed (then `deadline` is `None` too); otherwise at most `deadline`,
    /// or any time when `deadline` is `None` (an overwrite removed it).
    filed: Option<SystemTime>,
    version: u64,
    bucket: u32,
    /// Toward the most recently used end.
    prev: u32,
    /// Toward the least recently used end.
    next: u32,
}

impl Slot {
    fn weight(&self) -> usize {
        weight(&self.key, self.value.as_ref())
    }

    fn is_expired(&self, now: SystemTime) -> bool {
        self.deadline.is_some_and(|d| d <= now)
    }
}

/// One shard's entries and books. Not synchronized: the cache holds it in a
/// mutex.
#[derive(Debug)]
pub(super) struct Shard {
    index: HashMap<Arc<str>, u32, foldhash::fast::RandomState>,
    slots: Vec<Option<Slot>>,
    free: Vec<u32>,
    /// Most recently used slot.
    head: u32,
    /// Least recently used slot: the next to evict.
    tail: u32,
    expiry: BTreeSet<(SystemTime, u32)>,
    /// The last version token given out here; tokens only grow.
    last_version: u64,
    /// Per bucket of keys, the newest version of an entry or tombstone the
    /// shard forgot (evicted or expired). A read of an absent key returns its
    /// bucket's floor, and a version-checked write expecting "absent" lands
    /// only if the floor did not move: a forgotten removal or write can never
    /// let an older read's value back in. Sharing a floor between the keys of
    /// a bucket costs at worst a refused write-back, never a stale one.
    floors: Box<[u64]>,
}

impl Shard {
    pub(super) fn new(buckets: usize) -> Self {
        Self {
            index: HashMap::default(),
            slots: Vec::new(),
            free: Vec::new(),
            head: NIL,
            tail: NIL,
            expiry: BTreeSet::new(),
            last_version: 0,
            floors: vec![0; buckets].into_boxed_slice(),
        }
    }

    /// Number of entries held, tombstones and expired ones not yet reclaimed
    /// included.
    pub(super) fn len(&self) -> usize {
        self.index.len()
    }

    fn slot(&self, n: u32) -> &Slot {
        // Links and the index only ever name occupied slots.
        self.slots[n as usize]
            .as_ref()
            .expect("a linked slot is occupied")
    }

    fn slot_mut(&mut self, n: u32) -> &mut Slot {
        self.slots[n as usize]
            .as_mut()
            .expect("a linked slot is occupied")
    }

    /// Reads `key` (a miss for a tombstone), moving it to the front of the
    /// recency list and sliding a sliding entry; forgets it when expired.
    /// Returns the bytes it freed along with the read.
    pub(super) fn touch(&mut self, key: &str, place: Place, now: SystemTime) -> (Versioned, usize) {
        let (version, freed) = self.version(key, place, now);
        let Some(&n) = self.index.get(key) else {
            return (Versioned::new(None, version), freed);
        };
        self.unlink(n);
        self.push_front(n);
        let slot = self.slot_mut(n);
        if slot.value.is_some() && slot.expiration.sliding().is_some() {
            // Only the deadline moves; the expiry index catches up lazily.
            slot.deadline = slot.expiration.deadline(now);
        }
        (Versioned::new(slot.value.clone(), version), freed)
    }

    /// The version of `key` now, forgetting it first if it expired; and the
    /// bytes that freed.
    pub(super) fn version(&mut self, key: &str, place: Place, now: SystemTime) -> (Version, usize) {
        let floor = |shard: &Self| Version::absent(shard.floors[place.bucket as usize]);
        let Some(&n) = self.index.get(key) else {
            return (floor(self), 0);
        };
        let slot = self.slot(n);
        if !slot.is_expired(now) {
            return (Version::token(slot.version), 0);
        }
        let freed = self.forget(n);
        (floor(self), freed)
    }

    /// Replaces whatever `key` holds with `value` (`None`: a tombstone) under a
    /// new version, at the front of the recency list. Returns the bytes the
    /// replaced entry freed.
    pub(super) fn insert(
        &mut self,
        key: &str,
        value: Option<Bytes>,
        expiration: Expiration,
        place: Place,
        now: SystemTime,
    ) -> usize {
        self.last_version += 1;
        let deadline = expiration.deadline(now);
        let version = self.last_version;
        if let Some(&n) = self.index.get(key) {
            // Replaced in place: the key's allocation and its map slot stay.
            let freed = self.slot(n).weight();
            self.unlink(n);
            let slot = self.slot_mut(n);
            slot.value = value;
            slot.expiration = expiration;
            slot.deadline = deadline;
            slot.version = version;
            // Filed under an earlier deadline (or none), it stays filed: the
            // index catches up when that deadline comes up.
            let closer = match (slot.filed, deadline) {
                (Some(filed), Some(deadline)) => deadline < filed,
                (None, Some(_)) => true,
                (_, None) => false,
            };
            if closer {
                self.unfile(n);
                self.file(n, deadline);
            }
            self.push_front(n);
            return freed;
        }
        let key: Arc<str> = Arc::from(key);
        let slot = Slot {
            key: Arc::clone(&key),
            value,
            expiration,
            deadline,
            filed: None,
            version,
            bucket: place.bucket,
            prev: NIL,
            next: NIL,
        };
        let n = match self.free.pop() {
            Some(n) => {
                self.slots[n as usize] = Some(slot);
                n
            }
            None => {
                // A shard holding 4 billion entries would need hundreds of GiB.
                let n = u32::try_from(self.slots.len()).expect("fewer than 2^32 slots per shard");
                self.slots.push(Some(slot));
                n
            }
        };
        self.index.insert(key, n);
        self.file(n, deadline);
        self.push_front(n);
        0
    }

    /// Forgets whatever `key` holds, raising its floor. Returns the bytes
    /// freed.
    pub(super) fn forget_key(&mut self, key: &str) -> usize {
        match self.index.get(key) {
            Some(&n) => self.forget(n),
            None => 0,
        }
    }

    /// Frees one entry to make room: the earliest expired one if there is one,
    /// else the least recently used; with `keep_newest`, never the most
    /// recently used (the entry a write just made). Returns the bytes freed, 0
    /// when nothing could go.
    pub(super) fn evict_one(&mut self, now: SystemTime, keep_newest: bool) -> usize {
        let freed = self.reclaim_expired(now, 1);
        if freed > 0 {
            return freed;
        }
        if self.tail == NIL || (keep_newest && self.tail == self.head) {
            return 0;
        }
        self.forget(self.tail)
    }

    /// Forgets up to `max` expired entries, earliest deadline first, filing
    /// again (at most `max` times) the slid entries whose filed deadline came
    /// up. Returns the bytes freed.
    pub(super) fn reclaim_expired(&mut self, now: SystemTime, max: usize) -> usize {
        let mut freed = 0;
        let mut budget = max;
        while budget > 0 {
            let Some(&(filed, n)) = self.expiry.first() else {
                break;
            };
            if filed > now {
                break;
            }
            budget -= 1;
            let slot = self.slot(n);
            if slot.is_expired(now) {
                freed += self.forget(n);
            } else {
                // Slid or overwritten since it was filed: file it under its
                // current deadline.
                let deadline = slot.deadline;
                self.unfile(n);
                self.file(n, deadline);
            }
        }
        freed
    }

    /// Forgets slot `n` (expired or evicted): its version goes into its
    /// bucket's floor. Returns the bytes freed.
    fn forget(&mut self, n: u32) -> usize {
        self.unfile(n);
        self.unlink(n);
        let Some(slot) = self.slots[n as usize].take() else {
            return 0;
        };
        self.free.push(n);
        self.index.remove(&*slot.key);
        let floor = &mut self.floors[slot.bucket as usize];
        *floor = (*floor).max(slot.version);
        slot.weight()
    }

    fn file(&mut self, n: u32, deadline: Option<SystemTime>) {
        if let Some(at) = deadline {
            self.expiry.insert((at, n));
        }
        self.slot_mut(n).filed = deadline;
    }

    fn unfile(&mut self, n: u32) {
        if let Some(at) = self.slot_mut(n).filed.take() {
            self.expiry.remove(&(at, n));
        }
    }

    fn unlink(&mut self, n: u32) {
        let (prev, next) = {
            let slot = self.slot(n);
            (slot.prev, slot.next)
        };
        if prev == NIL {
            if self.head == n {
                self.head = next;
            }
        } else {
            self.slot_mut(prev).next = next;
        }
        if next == NIL {
            if self.tail == n {
                self.tail = prev;
            }
        } else {
            self.slot_mut(next).prev = prev;
        }
        let slot = self.slot_mut(n);
        slot.prev = NIL;
        slot.next = NIL;
    }

    fn push_front(&mut self, n: u32) {
        let old_head = self.head;
        {
            let slot = self.slot_mut(n);
            slot.prev = NIL;
            slot.next = old_head;
        }
        if old_head == NIL {
            self.tail = n;
        } else {
            self.slot_mut(old_head).prev = n;
        }
        self.head = n;
    }
}

#[cfg(test)]
impl Shard {
    /// Checks the shard's books (links, index, expiry filing) and returns
    /// the bytes its entries are charged.
    pub(super) fn audit(&self) -> usize {
        let (mut n, mut prev, mut seen, mut charged) = (self.head, NIL, 0, 0);
        while n != NIL {
            let slot = self.slot(n);
            assert_eq!(slot.prev, prev, "broken back link");
            assert_eq!(self.index.get(&*slot.key), Some(&n), "index disagrees");
            if let Some(at) = slot.filed {
                assert!(
                    self.expiry.contains(&(at, n)),
                    "filed slot not in the index"
                );
                assert!(
                    slot.deadline.is_none_or(|d| d >= at),
                    "filed after its deadline"
                );
            } else {
                assert!(slot.deadline.is_none(), "a deadline that is not filed");
            }
            charged += slot.weight();
            seen += 1;
            (prev, n) = (n, slot.next);
        }
        assert_eq!(self.tail, prev, "tail is not the last slot");
        assert_eq!(seen, self.index.len(), "list and index disagree");
        assert_eq!(
            self.expiry.len(),
            self.slots
                .iter()
                .flatten()
                .filter(|s| s.filed.is_some())
                .count()
        );
        charged
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    const PLACE: Place = Place {
        shard: 0,
        bucket: 0,
    };

    fn forever() -> Expiration {
        Expiration::from_parts(None, None)
    }

    fn value(s: &'static str) -> Option<Bytes> {
        Some(Bytes::from_static(s.as_bytes()))
    }

    /// Walks the recency list front to back, checking the back links.
    fn order(shard: &Shard) -> Vec<String> {
        let mut keys = Vec::new();
        let (mut n, mut prev) = (shard.head, NIL);
        while n != NIL {
            let slot = shard.slot(n);
            assert_eq!(slot.prev, prev, "broken back link");
            keys.push(slot.key.to_string());
            (prev, n) = (n, slot.next);
        }
        assert_eq!(shard.tail, prev, "tail is not the last slot");
        assert_eq!(keys.len(), shard.len(), "list and index disagree");
        keys
    }

    #[test]
    fn reads_and_writes_move_entries_to_the_front_and_eviction_takes_the_back() {
        let mut shard = Shard::new(1);
        let now = SystemTime::now();
        for key in ["a", "b", "c"] {
            shard.insert(key, value("v"), forever(), PLACE, now);
        }
        assert_eq!(order(&shard), ["c", "b", "a"]);
        let (read, _) = shard.touch("a", PLACE, now);
        assert_eq!(read.value, value("v"));
        assert_eq!(order(&shard), ["a", "c", "b"]);
        shard.insert("c", value("w"), forever(), PLACE, now);
        assert_eq!(order(&shard), ["c", "a", "b"]);
        assert_eq!(shard.evict_one(now, true), weight("b", value("v").as_ref()));
        assert_eq!(order(&shard), ["c", "a"]);
        // A freed slot is reused.
        shard.insert("d", value("v"), forever(), PLACE, now);
        assert_eq!(shard.slots.len(), 3);
        assert_eq!(order(&shard), ["d", "c", "a"]);
        shard.evict_one(now, true);
        shard.evict_one(now, true);
        assert_eq!(order(&shard), ["d"]);
        assert_eq!(
            shard.evict_one(now, true),
            0,
            "the newest entry is never evicted"
        );
    }

    #[test]
    fn expired_entries_go_first_earliest_first_and_slid_ones_are_filed_again() {
        let mut shard = Shard::new(1);
        let start = SystemTime::now();
        let secs = Duration::from_secs;
        let absolute = |s| Expiration::from_parts(Some(start + secs(s)), None);
        let sliding = Expiration::from_parts(None, Some(secs(10)));
        shard.insert("live", value("v"), forever(), PLACE, start);
        shard.insert("slides", value("v"), sliding, PLACE, start);
        shard.insert("late", value("v"), absolute(20), PLACE, start);
        shard.insert("early", value("v"), absolute(5), PLACE, start);
        // Read at 8 s: "slides" now lasts until 18 s, though filed under 10 s.
        shard.touch("slides", PLACE, start + secs(8));
        let at = start + secs(12);
        // "early" is expired; "slides" is filed again, not forgotten.
        assert!(shard.reclaim_expired(at, 10) > 0);
        assert_eq!(order(&shard), ["slides", "late", "live"]);
        assert_eq!(
            shard.expiry.first().map(|&(d, _)| d),
            Some(start + secs(18))
        );
        // At 25 s both deadlines passed: eviction takes them before "live",
        // the least recently used.
        let at = start + secs(25);
        assert!(shard.evict_one(at, true) > 0);
        assert!(shard.evict_one(at, true) > 0);
        assert_eq!(order(&shard), ["live"]);
        assert!(shard.expiry.is_empty());
    }

    #[test]
    fn overwrites_refile_only_when_they_bring_the_deadline_closer() {
        let mut shard = Shard::new(1);
        let start = SystemTime::now();
        let secs = Duration::from_secs;
        let absolute = |s| Expiration::from_parts(Some(start + secs(s)), None);
        shard.insert("k", value("v"), absolute(10), PLACE, start);
        let filed = |shard: &Shard| shard.expiry.iter().map(|&(d, _)| d).collect::<Vec<_>>();
        shard.insert("k", value("v"), absolute(20), PLACE, start);
        assert_eq!(
            filed(&shard),
            [start + secs(10)],
            "a later deadline stays filed early"
        );
        shard.insert("k", value("v"), absolute(5), PLACE, start);
        assert_eq!(
            filed(&shard),
            [start + secs(5)],
            "a closer deadline is filed"
        );
        shard.insert("k", value("v"), forever(), PLACE, start);
        shard.audit();
        // When the old filing comes up, the entry is live: filed no more.
        assert_eq!(shard.reclaim_expired(start + secs(6), 4), 0);
        assert!(shard.expiry.is_empty());
        assert_eq!(order(&shard), ["k"]);
        shard.audit();
    }

    #[test]
    fn forgotten_versions_raise_the_floor() {
        let mut shard = Shard::new(1);
        let now = SystemTime::now();
        let (before, _) = shard.version("k", PLACE, now);
        shard.insert("k", value("v"), forever(), PLACE, now);
        shard.insert("other", value("v"), forever(), PLACE, now);
        let (written, _) = shard.version("k", PLACE, now);
        assert_eq!(written, Version::token(1));
        shard.evict_one(now, true);
        let (after, _) = shard.version("k", PLACE, now);
        assert_ne!(after, before, "the floor moved");
        assert_eq!(after, Version::absent(1));
    }
}
