//! The thread front of L1: a small per-thread table of the L1 entries a
//! thread hit last, so that a hot key is served without touching the shared
//! map.
//!
//! Why: an L1 hit is measured against a plain `HashMap` lookup plus an `Arc`
//! clone. A read of the shared map (see `sharded`) pins the thread in
//! papaya's collector, probes, and unpins with an atomic swap; on this
//! project's machines that read alone cost 1.4 to 2.2 times the whole
//! baseline, before any of the hit's own checks. A front hit writes no
//! shared memory and takes no atomic read-modify-write: a thread-local
//! lookup, a comparison of the key, and one load of the entry's `unlisted`
//! flag.
//!
//! How it stays right: a front holds `Arc`s of L1 entries, never copies.
//! Whenever L1 stops listing an entry (removed, replaced, evicted, cleared)
//! it sets the entry's `unlisted` flag under the shard's lock, and a front
//! never serves an unlisted entry; everything else a hit checks (deadlines,
//! tag and gap epochs, sliding, eager refresh) lives in the shared entry and
//! is checked the same way for a front hit as for a map hit. A write that
//! happens before a read (same thread, or ordered by any synchronisation)
//! is therefore seen by the read; a read racing a write may return the value
//! just replaced, as a map read may.
//!
//! What it costs: an L1 hit that misses the front fills it (one reference
//! count increment, and a decrement for the entry it displaces). A front
//! has [`SLOTS`] slots, direct-mapped by the key's hash, shared by every
//! cache of the process (each slot records the cache it belongs to). Only
//! entries of at most [`MAX_PAYLOAD`] encoded bytes are fronted, since a
//! front keeps an entry L1 dropped alive until the slot is reused or the
//! thread ends: at most `SLOTS * MAX_PAYLOAD` (512 KiB) of values per
//! thread, never served.
//!
//! The front's table sits in a `RefCell`; a value's `Clone` that called back
//! into a cache on the same thread would find it borrowed and go to the map.

use std::cell::RefCell;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use super::l1::L1Entry;
use super::sharded::touch;

/// Slots per thread.
const SLOTS: usize = 128;

/// The largest encoded payload a front keeps, in bytes.
pub(crate) const MAX_PAYLOAD: u64 = 4096;

/// One fronted entry: the cache it belongs to and the key's hash in that
/// cache's L1.
struct Slot {
    owner: u64,
    hash: u64,
    entry: Arc<L1Entry>,
}

thread_local! {
    static FRONT: RefCell<[Option<Slot>; SLOTS]> =
        const { RefCell::new([const { None }; SLOTS]) };
}

/// A process-unique cache id for [`read`] and [`fill`]: ids are never
/// reused, so a dropped cache's slots never match a new cache.
pub(crate) fn new_owner() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

#[inline]
fn index(hash: u64) -> usize {
    // The table uses the low bits and the shards bits 32 and up: these are
    // as good as any.
    (hash >> 7) as usize % SLOTS
}

/// Runs `f` on this thread's fronted entry of `key` in cache `owner`, when
/// there is one that L1 still lists; `None` otherwise.
#[inline]
pub(crate) fn read<R>(
    owner: u64,
    hash: u64,
    key: &str,
    f: impl FnOnce(&L1Entry) -> R,
) -> Option<R> {
    FRONT
        .try_with(|front| {
            let front = front.try_borrow().ok()?;
            let slot = front[index(hash)].as_ref()?;
            let entry = &*slot.entry;
            if slot.owner != owner
                || slot.hash != hash
                || !same_key(&entry.key, key)
                || entry.unlisted.load(Ordering::Acquire)
            {
                return None;
            }
            touch(entry);
            Some(f(entry))
        })
        .ok()
        .flatten()
}

/// `a == b`, without a call to `memcmp` for keys of 8 bytes or more: 8-byte
/// words, the last one overlapping. (The call costs as many instructions as
/// the rest of a front hit's checks.)
#[inline]
fn same_key(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let word = |bytes: &[u8], at: usize| {
        let mut w = [0; 8];
        w.copy_from_slice(&bytes[at..at + 8]);
        u64::from_ne_bytes(w)
    };
    let n = a.len();
    if n < 8 {
        return a == b;
    }
    let mut at = 0;
    while at + 8 < n {
        if word(a, at) != word(b, at) {
            return false;
        }
        at += 8;
    }
    word(a, n - 8) == word(b, n - 8)
}

/// Fronts `entry` (of cache `owner`, its key hashing to `hash`) on this
/// thread, when it is small enough.
pub(crate) fn fill(owner: u64, hash: u64, entry: &Arc<L1Entry>) {
    if entry.payload_len > MAX_PAYLOAD {
        return;
    }
    // The displaced entry is dropped after the borrow ends: its drop runs
    // the value's destructor, which is the user's code.
    let _displaced = FRONT
        .try_with(|front| {
            let mut front = front.try_borrow_mut().ok()?;
            front[index(hash)].replace(Slot {
                owner,
                hash,
                entry: Arc::clone(entry),
            })
        })
        .ok()
        .flatten();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hybrid::sharded::Resident;
    use std::sync::atomic::AtomicBool;

    fn entry(key: &str, payload_len: u64) -> Arc<L1Entry> {
        Arc::new(L1Entry {
            key: Box::from(key),
            value: Box::new(7_u32),
            created_ms: 0,
            logical_expiry_ms: 100,
            fresh_until_ms: AtomicU64::new(50),
            fresh_cap_ms: 50,
            sliding_ms: 0,
            stale_until_ms: 50,
            eager_at_ms: u64::MAX,
            eager_started: AtomicBool::new(false),
            tags: Box::new([]),
            tag_epoch: AtomicU64::new(0),
            gap_epoch: 0,
            payload_len,
            referenced: AtomicBool::new(false),
            unlisted: AtomicBool::new(false),
        })
    }

    #[test]
    fn serves_what_it_was_given_to_its_owner_only() {
        let (owner, other) = (new_owner(), new_owner());
        let e = entry("k", 10);
        assert_eq!(read(owner, 99, "k", |e| e.payload_len), None, "empty");
        fill(owner, 99, &e);
        assert_eq!(read(owner, 99, "k", |e| e.payload_len), Some(10));
        assert!(
            e.referenced.load(Ordering::Relaxed),
            "a front hit marks the entry"
        );
        assert_eq!(read(other, 99, "k", |_| ()), None, "another cache's slot");
        assert_eq!(read(owner, 98, "k", |_| ()), None, "another hash");
        assert_eq!(read(owner, 99, "j", |_| ()), None, "another key, same hash");
        let other_thread = std::thread::spawn(move || read(owner, 99, "k", |_| ()).is_none());
        assert!(other_thread.join().unwrap(), "fronts are per thread");
    }

    #[test]
    fn compares_keys_of_every_length() {
        let keys = [
            "",
            "a",
            "ab",
            "abcdefg",
            "abcdefgh",
            "abcdefghi",
            "product:42",
            "a:sixteen-bytes!",
            "a key of twenty-five bytes",
        ];
        for a in keys {
            for b in keys {
                assert_eq!(same_key(a, b), a == b, "{a:?} {b:?}");
            }
            for at in 0..a.len() {
                let mut other = a.as_bytes().to_vec();
                other[at] ^= 1;
                let other = String::from_utf8(other).unwrap();
                assert!(!same_key(a, &other), "{a:?} differs at {at}");
            }
        }
    }

    #[test]
    fn stops_serving_an_entry_l1_let_go() {
        let owner = new_owner();
        let e = entry("k", 10);
        fill(owner, 5, &e);
        e.unlisted();
        assert_eq!(read(owner, 5, "k", |_| ()), None);
    }

    #[test]
    fn keeps_small_entries_only_and_releases_what_it_displaces() {
        let owner = new_owner();
        let big = entry("big", MAX_PAYLOAD + 1);
        fill(owner, 1, &big);
        assert_eq!(read(owner, 1, "big", |_| ()), None);
        assert_eq!(Arc::strong_count(&big), 1);
        let first = entry("a", 1);
        fill(owner, 1, &first);
        assert_eq!(Arc::strong_count(&first), 2);
        // Same slot (same hash), another entry: the first is let go.
        fill(owner, 1, &entry("b", 1));
        assert_eq!(Arc::strong_count(&first), 1);
    }
}
