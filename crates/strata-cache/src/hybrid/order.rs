//! [`Order`]: in which order invalidations happened, without comparing clocks.
//!
//! Two orders, one per layer:
//!
//! - **Local sequence** (L1). Every invalidation this instance learns of (its
//!   own `remove_by_tag` or `clear`, a peer's notice, a newer record read from
//!   L2) takes the next number of one counter. A read notes the counter when
//!   it begins ([`Order::begin_read`]); the value it produces is stale once
//!   one of its tags (or `clear`) has a higher number. The counter is also the
//!   hit path's epoch: an L1 entry remembers the value it was last checked at,
//!   and only a changed counter sends it through [`Order::check_l1`].
//! - **Stamps** (L2). Every tag (and `clear`) has a stamp in L2, advanced by
//!   the backend itself (`DistributedCache::next_stamp`: the old stamp plus
//!   one, or the backend's clock, whichever is larger). An L2 entry carries
//!   the stamps its writer knew when its read began; a reader finds it stale
//!   when it knows a newer stamp for one of them ([`Order::check_l2`]).
//!   Stamps are learned from this instance's own invalidations, peers'
//!   notices and the records in L2, read in one round trip
//!   ([`Order::due_records`]).
//!
//! While this instance's own invalidation of a tag has not reached L2 (its
//! stamp is unknown: L2 is slow or down), the tag is *pending*: no L2 entry
//! carrying it is trusted, since none can be known to postdate it.
//!
//! Without L2 there are no stamps: local sequence numbers order everything,
//! and a peer's notice (which carries no stamp then) counts as a new
//! invalidation when it arrives.
//!
//! After a gap (lost notices, a reconnect, silence) every L1 entry read
//! before it is *suspect* and needs L2's confirmation of its version; records
//! read before it are read again.
//!
//! What this does not own: key-level invalidations of running reads (see
//! `reads`), and the pending writes of keys (see `propagate`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use super::clock::millis;
use super::envelope::{CLEAR_KEY, tag_key};
use crate::distributed::parse_stamp;

/// Without a backplane, how long a record read from L2 is trusted before it
/// is read again (with one, records are read again only after a gap).
pub(crate) const RECORD_CHECK_INTERVAL: Duration = Duration::from_secs(1);
/// Physical TTL of stamp records in L2, renewed by each invalidation. A
/// record that expires is safe to lose: the next stamp still moves forward
/// with the backend's clock.
pub(crate) const RECORD_TTL: Duration = Duration::from_secs(7 * 24 * 3600);
/// How many tags' states are kept; past it the oldest half is dropped (a
/// dropped tag counts as invalidated when it was dropped: a spurious miss at
/// worst).
pub(crate) const MAX_TAGS: usize = 65_536;

/// A tag, or `clear` (a tag every entry carries).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scope<'a> {
    Tag(&'a str),
    Clear,
}

impl Scope<'_> {
    /// The L2 key of the scope's stamp record.
    pub(crate) fn record_key(self) -> String {
        match self {
            Scope::Tag(tag) => tag_key(tag),
            Scope::Clear => CLEAR_KEY.to_owned(),
        }
    }
}

/// What this instance knows of one tag (or of `clear`).
#[derive(Debug, Clone, Copy, Default)]
struct Known {
    /// Local sequence number of the latest invalidation known; 0 for none.
    seq: u64,
    /// The newest L2 stamp known; 0 for none.
    stamp: u64,
    /// This instance's latest invalidation has not reached L2 yet.
    pending: bool,
    /// When the record was last read from L2; 0 for never.
    checked_ms: u64,
    /// The sequence number that read began at: a read from before a gap
    /// does not count after it.
    checked_seq: u64,
}

#[derive(Debug, Default)]
struct State {
    tags: HashMap<String, Known, foldhash::fast::RandomState>,
    clear: Known,
    /// The newest sequence number among dropped tag states: a tag not in the
    /// map counts as invalidated then.
    dropped_seq: u64,
    /// Entries confirmed, and records read, before this sequence number need
    /// confirming (reading) again.
    suspect_before: u64,
}

/// How an L1 entry stands against what this instance knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum L1Check {
    /// Nothing invalidated it.
    Current,
    /// A tag of it (or `clear`) was invalidated after its read began.
    Stale,
    /// Nothing known invalidated it, but it was last confirmed before a gap:
    /// serve it only once L2 confirms its version.
    Suspect,
}

/// How an L2 entry's stamps stand against what this instance knows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum L2Check {
    Current,
    Stale,
    /// These records must be read first (never read, or read too long ago).
    Unknown(Vec<String>),
}

/// The invalidation order of one cache.
#[derive(Debug)]
pub(crate) struct Order {
    seq: AtomicU64,
    // A std Mutex: held for a few map operations on slow paths, never across
    // an await; the hit path reads only `seq`.
    state: Mutex<State>,
    /// True when stamps come from an L2.
    with_l2: bool,
    /// How long a record read from L2 is trusted; `None`: until a gap.
    record_trust: Option<Duration>,
}

impl Order {
    pub(crate) fn new(with_l2: bool, with_backplane: bool) -> Self {
        Self {
            seq: AtomicU64::new(0),
            state: Mutex::default(),
            with_l2,
            record_trust: (!with_backplane).then_some(RECORD_CHECK_INTERVAL),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The hit path's epoch: changes with every invalidation learned.
    #[inline]
    pub(crate) fn epoch(&self) -> u64 {
        self.seq.load(Ordering::Acquire)
    }

    /// The sequence number a read beginning now notes.
    pub(crate) fn begin_read(&self) -> u64 {
        self.seq.load(Ordering::Acquire)
    }

    fn next(&self) -> u64 {
        self.seq.fetch_add(1, Ordering::AcqRel) + 1
    }

    /// This instance invalidates `scope` now. Returns the invalidation's
    /// sequence number; with L2, the scope is pending until
    /// [`own_stamp`](Self::own_stamp).
    pub(crate) fn invalidate(&self, scope: Scope<'_>) -> u64 {
        let mut state = self.lock();
        let seq = self.next();
        let known = state.known_mut(scope);
        known.seq = seq;
        known.pending = self.with_l2;
        seq
    }

    /// The L2 stamp of this instance's invalidation `seq` of `scope` arrived.
    pub(crate) fn own_stamp(&self, scope: Scope<'_>, stamp: u64, seq: u64) {
        let mut state = self.lock();
        let known = state.known_mut(scope);
        known.stamp = known.stamp.max(stamp);
        if seq >= known.seq {
            known.pending = false;
        }
    }

    /// A peer invalidated `scope` (its notice), with `stamp` (0: no stamp).
    pub(crate) fn peer_invalidated(&self, scope: Scope<'_>, stamp: u64) {
        let mut state = self.lock();
        self.learn(&mut state, scope, stamp);
    }

    fn learn(&self, state: &mut State, scope: Scope<'_>, stamp: u64) {
        let newer = stamp == 0 || stamp > state.known(scope).stamp;
        if newer {
            let seq = self.next();
            let known = state.known_mut(scope);
            known.seq = seq;
            known.stamp = known.stamp.max(stamp);
        }
    }

    /// Checks an L1 entry read at `read_seq` with `tags`, last confirmed at
    /// `confirmed_seq`.
    pub(crate) fn check_l1<S: AsRef<str>>(
        &self,
        read_seq: u64,
        confirmed_seq: u64,
        tags: &[S],
    ) -> L1Check {
        let state = self.lock();
        if state.changed_since(read_seq, tags) {
            L1Check::Stale
        } else if confirmed_seq < state.suspect_before {
            L1Check::Suspect
        } else {
            L1Check::Current
        }
    }

    /// True when `scope`s among `tags` (or `clear`) were invalidated after
    /// `read_seq`: a value read then must not be cached.
    pub(crate) fn changed_since<S: AsRef<str>>(&self, read_seq: u64, tags: &[S]) -> bool {
        self.lock().changed_since(read_seq, tags)
    }

    /// Checks an L2 entry's stamps at `now_ms`.
    pub(crate) fn check_l2(
        &self,
        clear_stamp: u64,
        tags: &[(String, u64)],
        now_ms: u64,
    ) -> L2Check {
        let state = self.lock();
        let mut unknown = Vec::new();
        let scopes = std::iter::once((Scope::Clear, clear_stamp))
            .chain(tags.iter().map(|(t, s)| (Scope::Tag(t), *s)));
        for (scope, recorded) in scopes {
            let known = state.known(scope);
            if known.pending || known.stamp > recorded {
                return L2Check::Stale;
            }
            if self.is_due(&state, known, now_ms) {
                unknown.push(scope.record_key());
            }
        }
        if unknown.is_empty() {
            L2Check::Current
        } else {
            L2Check::Unknown(unknown)
        }
    }

    /// The record keys among `tags` (and `clear`) that must be read before a
    /// value with these tags is checked or written (never read, or read too
    /// long ago). Empty without L2.
    pub(crate) fn due_records<S: AsRef<str>>(&self, tags: &[S], now_ms: u64) -> Vec<String> {
        if !self.with_l2 {
            return Vec::new();
        }
        let state = self.lock();
        std::iter::once(Scope::Clear)
            .chain(tags.iter().map(|t| Scope::Tag(t.as_ref())))
            .filter(|scope| self.is_due(&state, state.known(*scope), now_ms))
            .map(Scope::record_key)
            .collect()
    }

    fn is_due(&self, state: &State, known: Known, now_ms: u64) -> bool {
        if !self.with_l2 || known.pending {
            return false;
        }
        known.checked_ms == 0
            || known.checked_seq < state.suspect_before
            || self
                .record_trust
                .is_some_and(|trust| now_ms >= known.checked_ms.saturating_add(millis(trust)))
    }

    /// Applies records read from L2 at `now_ms` by a read that began at
    /// `read_seq`: `keys[i]` held `values[i]`. A missing record is stamp 0
    /// (nothing newer than what is known).
    pub(crate) fn apply_records(
        &self,
        keys: &[String],
        values: &[Option<bytes::Bytes>],
        now_ms: u64,
        read_seq: u64,
    ) {
        let mut state = self.lock();
        for (key, value) in keys.iter().zip(values) {
            let stamp = value.as_deref().and_then(parse_stamp).unwrap_or(0);
            let scope = if key == CLEAR_KEY {
                Scope::Clear
            } else if let Some(tag) = key.strip_prefix(&tag_key("")) {
                Scope::Tag(tag)
            } else {
                continue;
            };
            if stamp != 0 {
                self.learn(&mut state, scope, stamp);
            }
            let known = state.known_mut(scope);
            known.checked_ms = known.checked_ms.max(now_ms.max(1));
            known.checked_seq = known.checked_seq.max(read_seq);
        }
    }

    /// The stamps an L2 entry written now should carry for `tags`, as of
    /// `seq` (the sequence number its read began at, or the `set`'s own): the
    /// stamp known for each scope not invalidated since `seq`, else 0 (the
    /// entry is then stale for every reader that knows the newer stamp).
    pub(crate) fn stamps_for<S: AsRef<str>>(
        &self,
        tags: &[S],
        seq: u64,
    ) -> (u64, Vec<(String, u64)>) {
        let state = self.lock();
        let stamp = |scope| {
            let known = state.known(scope);
            if known.pending || known.seq > seq {
                0
            } else {
                known.stamp
            }
        };
        let tags = tags
            .iter()
            .map(|t| (t.as_ref().to_owned(), stamp(Scope::Tag(t.as_ref()))))
            .collect();
        (stamp(Scope::Clear), tags)
    }

    /// True when this instance's own invalidation of `scope` has not reached L2.
    pub(crate) fn is_pending(&self, scope: Scope<'_>) -> bool {
        self.lock().known(scope).pending
    }

    /// Notices may have been lost: every L1 entry confirmed before now is
    /// suspect, and every record is read again before it is trusted.
    pub(crate) fn mark_suspect(&self) {
        let mut state = self.lock();
        state.suspect_before = self.next();
    }
}

impl State {
    fn known(&self, scope: Scope<'_>) -> Known {
        match scope {
            Scope::Clear => self.clear,
            Scope::Tag(tag) => self.tags.get(tag).copied().unwrap_or(Known {
                seq: self.dropped_seq,
                ..Known::default()
            }),
        }
    }

    fn known_mut(&mut self, scope: Scope<'_>) -> &mut Known {
        match scope {
            Scope::Clear => &mut self.clear,
            Scope::Tag(tag) => {
                if !self.tags.contains_key(tag) {
                    if self.tags.len() >= MAX_TAGS {
                        self.drop_oldest_half();
                    }
                    let fresh = Known {
                        seq: self.dropped_seq,
                        ..Known::default()
                    };
                    self.tags.insert(tag.to_owned(), fresh);
                }
                self.tags.entry(tag.to_owned()).or_default()
            }
        }
    }

    fn changed_since<S: AsRef<str>>(&self, read_seq: u64, tags: &[S]) -> bool {
        self.clear.seq > read_seq
            || tags
                .iter()
                .any(|tag| self.known(Scope::Tag(tag.as_ref())).seq > read_seq)
    }

    /// Keeps the map bounded: drops the half of the tags invalidated longest
    /// ago (never a pending one), remembering the newest dropped number.
    fn drop_oldest_half(&mut self) {
        let mut seqs: Vec<u64> = self.tags.values().map(|k| k.seq).collect();
        seqs.sort_unstable();
        let cut = seqs[seqs.len() / 2];
        let mut dropped = self.dropped_seq;
        self.tags.retain(|_, known| {
            let keep = known.seq > cut || known.pending;
            if !keep {
                dropped = dropped.max(known.seq);
            }
            keep
        });
        self.dropped_seq = dropped;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalidations_in_the_same_millisecond_are_ordered() {
        let order = Order::new(false, false);
        let first = order.begin_read();
        order.invalidate(Scope::Tag("products"));
        let refill = order.begin_read();
        assert_eq!(order.check_l1(first, first, &["products"]), L1Check::Stale);
        assert_eq!(
            order.check_l1(refill, refill, &["products"]),
            L1Check::Current
        );
        order.invalidate(Scope::Tag("products"));
        assert_eq!(
            order.check_l1(refill, refill, &["products"]),
            L1Check::Stale,
            "a second invalidation right after a refill must apply"
        );
        assert_eq!(order.check_l1(refill, refill, &["other"]), L1Check::Current);
        order.invalidate(Scope::Clear);
        assert_eq!(order.check_l1(refill, refill, &["other"]), L1Check::Stale);
    }

    #[test]
    fn l2_entries_are_checked_by_stamps() {
        let order = Order::new(true, true);
        let keys = vec![tag_key("products"), CLEAR_KEY.to_owned()];
        assert_eq!(order.due_records(&["products"], 1), {
            let mut k = keys.clone();
            k.reverse();
            k
        });
        let values = [Some(bytes::Bytes::from_static(b"100")), None];
        order.apply_records(&keys, &values, 1, order.begin_read());
        assert!(
            order.due_records(&["products"], 2).is_empty(),
            "trusted until a gap"
        );
        let tags = |s: u64| vec![("products".to_owned(), s)];
        assert_eq!(order.check_l2(0, &tags(100), 2), L2Check::Current);
        assert_eq!(order.check_l2(0, &tags(99), 2), L2Check::Stale);
        // A peer's newer stamp.
        order.peer_invalidated(Scope::Tag("products"), 150);
        assert_eq!(order.check_l2(0, &tags(100), 2), L2Check::Stale);
        assert_eq!(order.check_l2(0, &tags(150), 2), L2Check::Current);
        // Our own, pending: nothing with the tag is trusted until its stamp.
        let seq = order.invalidate(Scope::Tag("products"));
        assert_eq!(order.check_l2(0, &tags(150), 2), L2Check::Stale);
        assert_eq!(order.stamps_for(&["products"], seq), (0, tags(0)));
        order.own_stamp(Scope::Tag("products"), 200, seq);
        assert_eq!(order.check_l2(0, &tags(200), 2), L2Check::Current);
        assert_eq!(order.stamps_for(&["products"], seq), (0, tags(200)));
        assert_eq!(order.stamps_for(&["products"], seq - 1), (0, tags(0)));
        // A gap: records are read again.
        order.mark_suspect();
        assert_eq!(
            order.check_l2(0, &tags(200), 3),
            L2Check::Unknown(vec![CLEAR_KEY.to_owned(), tag_key("products")])
        );
    }

    #[test]
    fn a_gap_makes_entries_confirmed_before_it_suspect() {
        let order = Order::new(true, true);
        let read = order.begin_read();
        order.mark_suspect();
        assert_eq!(order.check_l1(read, read, &["t"]), L1Check::Suspect);
        let confirmed = order.begin_read();
        assert_eq!(order.check_l1(read, confirmed, &["t"]), L1Check::Current);
    }

    #[test]
    fn the_tag_map_stays_bounded_and_dropped_tags_count_as_invalidated() {
        let order = Order::new(false, false);
        let read = order.begin_read();
        for i in 0..=MAX_TAGS {
            order.invalidate(Scope::Tag(&format!("t{i}")));
        }
        assert!(order.lock().tags.len() <= MAX_TAGS);
        let after = order.begin_read();
        assert_eq!(order.check_l1(read, read, &["t0"]), L1Check::Stale);
        assert_eq!(order.check_l1(after, after, &["t0"]), L1Check::Current);
    }
}
