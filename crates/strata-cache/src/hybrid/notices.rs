//! [`Notices`]: this instance's side of the backplane. It publishes numbered
//! notices and heartbeats, and tracks what it hears so that lost messages and
//! silence are detected instead of trusted.
//!
//! - Every notice this instance sends carries the next number of its own
//!   sequence. A heartbeat, sent every quarter of the trust window, carries
//!   the number through which every notice has been handed to the backplane
//!   (sent, or failed for good). A receiver that finds a number at or below a
//!   heartbeat's that it never received knows it lost a notice: a gap, and
//!   its L1 becomes suspect (see `order`). Concurrent publishes may arrive out
//!   of order, which is why holes are judged at heartbeats, not at each
//!   notice; a heartbeat that arrives after a higher notice is late and
//!   tells nothing. A sender whose notice numbers go back has restarted: a
//!   gap too.
//! - This instance hears its own messages too. A heartbeat of ours not heard
//!   back within the trust window means our subscription or our connection is
//!   dead, or Redis is hung: we are *cut off*. While cut off, L1 is not served
//!   without L2 confirming each entry's version; when our messages come back,
//!   one more gap makes everything read during the silence suspect.
//!
//! Publishing goes through the backplane breaker and `l2_timeout`. What the
//! notices mean to the cache (evict a key, a tag's new stamp) is applied by
//! the engine (`engine::Engine::apply`); the tasks live in `tasks`.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use super::breaker::Breaker;
use super::clock::{Clock, millis};
use super::stats::{Event, Stats};
use crate::backplane::{Backplane, BackplaneMessage, Notice};
use crate::error::{Error, ErrorKind, Result};

/// Which numbers of a sequence were seen: every number through `through`,
/// and some above it.
#[derive(Debug, Default)]
struct Seen {
    through: u64,
    above: BTreeSet<u64>,
}

impl Seen {
    fn add(&mut self, n: u64) {
        if n > self.through {
            self.above.insert(n);
        }
        while self.above.first() == Some(&(self.through + 1)) {
            self.above.pop_first();
            self.through += 1;
        }
    }

    /// Everything through `n` is settled: numbers not seen by now never will be.
    fn settle(&mut self, n: u64) {
        self.through = self.through.max(n);
        self.above.retain(|&m| m > n);
        self.add(n);
    }
}

/// What this instance heard of one peer.
#[derive(Debug)]
struct Peer {
    seen: Seen,
    heard_ms: u64,
}

/// What a received notice means for this instance.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Heard {
    /// Our own message: nothing to apply.
    Own,
    /// A peer's message, to apply; `gap` when messages of it were lost before it.
    Peer { gap: bool },
}

/// The backplane side of one cache.
pub(crate) struct Notices {
    backplane: Arc<dyn Backplane>,
    breaker: Breaker,
    timeout: Duration,
    origin: String,
    /// The last sequence number this instance gave a notice.
    sequence: AtomicU64,
    /// The numbers whose publish finished (sent or failed), for heartbeats.
    // A std Mutex: a set insert per publish, never across an await.
    finished: Mutex<Seen>,
    trust_window: Duration,
    clock: Clock,
    stats: Arc<Stats>,
    // A std Mutex: one map operation per received notice, never across an await.
    peers: Mutex<HashMap<String, Peer, foldhash::fast::RandomState>>,
    /// When the oldest heartbeat of ours not yet heard back was sent; 0 for none.
    awaiting_since_ms: AtomicU64,
    cut_off: AtomicBool,
}

impl std::fmt::Debug for Notices {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Notices")
            .field("origin", &self.origin)
            .field("trust_window", &self.trust_window)
            .field("cut_off", &self.cut_off)
            .finish_non_exhaustive()
    }
}

impl Notices {
    pub(crate) fn new(
        backplane: Arc<dyn Backplane>,
        origin: String,
        timeout: Duration,
        breaker: Breaker,
        trust_window: Duration,
        clock: Clock,
        stats: Arc<Stats>,
    ) -> Self {
        Self {
            backplane,
            breaker,
            timeout,
            origin,
            sequence: AtomicU64::new(0),
            finished: Mutex::default(),
            trust_window,
            clock,
            stats,
            peers: Mutex::default(),
            awaiting_since_ms: AtomicU64::new(0),
            cut_off: AtomicBool::new(false),
        }
    }

    pub(crate) fn backplane(&self) -> &Arc<dyn Backplane> {
        &self.backplane
    }

    pub(crate) fn trust_window(&self) -> Duration {
        self.trust_window
    }

    /// True while the backplane's breaker refuses calls.
    pub(crate) fn is_open(&self) -> bool {
        self.breaker.is_open(self.clock.coarse_ms())
    }

    /// True while this instance does not hear its own messages back.
    pub(crate) fn is_cut_off(&self) -> bool {
        self.cut_off.load(Ordering::Acquire)
    }

    /// Publishes a change with this instance's next sequence number.
    ///
    /// # Errors
    ///
    /// The backplane's failure, a timeout, or [`ErrorKind::Unavailable`] while
    /// the breaker is open. The caller keeps the notice for replay.
    pub(crate) async fn publish(&self, message: BackplaneMessage) -> Result<()> {
        let sequence = self.sequence.fetch_add(1, Ordering::AcqRel) + 1;
        let sent = self
            .send(Notice::new(self.origin.clone(), sequence, message))
            .await;
        // Failed or sent, this number is settled: a receiver that never gets
        // it will see a hole at the next heartbeat, which is right (the change
        // it carried is replayed under a new number).
        self.finished
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .add(sequence);
        sent
    }

    /// Publishes a heartbeat (the last sequence number, again). Called by the
    /// heartbeat task every quarter of the trust window.
    pub(crate) async fn heartbeat(&self) {
        let now = self.clock.now_ms();
        let _ = self.awaiting_since_ms.compare_exchange(
            0,
            now.max(1),
            Ordering::AcqRel,
            Ordering::Relaxed,
        );
        let through = self
            .finished
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .through;
        let notice = Notice::new(self.origin.clone(), through, BackplaneMessage::Heartbeat);
        // A failed heartbeat is not retried: the next one follows, and the
        // silence it leaves is what `check_silence` measures.
        let _ = self.send(notice).await;
    }

    async fn send(&self, notice: Notice) -> Result<()> {
        let now = self.clock.coarse_ms();
        let Some(pass) = self.breaker.pass(now) else {
            return Err(Error::new(
                ErrorKind::Unavailable,
                "the backplane's circuit breaker is open",
            ));
        };
        let published =
            match tokio::time::timeout(self.timeout, self.backplane.publish(&notice)).await {
                Ok(result) => result,
                Err(_) => Err(Error::new(
                    ErrorKind::Timeout,
                    "the backplane did not take the notice in time",
                )),
            };
        match published {
            Ok(()) => {
                pass.success();
                if notice.message != BackplaneMessage::Heartbeat {
                    self.stats.record(Event::BackplaneSent);
                }
                Ok(())
            }
            Err(error) => {
                let subject = match &notice.message {
                    BackplaneMessage::Evict { key } => key.as_str(),
                    BackplaneMessage::TagInvalidated { tag, .. } => tag.as_str(),
                    _ => "",
                };
                pass.failure(self.clock.now_ms(), "publish", subject, &error);
                Err(error)
            }
        }
    }

    /// Records a received notice: whose it is, and whether messages of its
    /// sender were lost before it.
    pub(crate) fn heard(&self, notice: &Notice) -> Heard {
        let now = self.clock.now_ms();
        if notice.origin == self.origin {
            self.awaiting_since_ms.store(0, Ordering::Release);
            return Heard::Own;
        }
        if notice.sequence == 0 {
            // A sender that does not number its notices (wire format 1).
            return Heard::Peer { gap: false };
        }
        let heartbeat = notice.message == BackplaneMessage::Heartbeat;
        let n = notice.sequence;
        let mut peers = self.peers.lock().unwrap_or_else(PoisonError::into_inner);
        // Forget peers silent for long (gone): keeps the map bounded.
        let forget_after = millis(self.trust_window).saturating_mul(30);
        if peers.len() > 64 {
            peers.retain(|_, p| now.saturating_sub(p.heard_ms) < forget_after);
        }
        // A sequence as it stands after hearing `n` first (or again after a
        // restart of the sender).
        let start = |n: u64| {
            let mut seen = Seen {
                through: if heartbeat { n } else { n.saturating_sub(1) },
                above: BTreeSet::new(),
            };
            seen.add(n);
            seen
        };
        let gap = match peers.get_mut(&notice.origin) {
            None => {
                peers.insert(
                    notice.origin.clone(),
                    Peer {
                        seen: start(n),
                        heard_ms: now,
                    },
                );
                // First contact: only a sender's very first notice, or a
                // heartbeat before any notice, proves nothing was missed.
                if heartbeat { n != 0 } else { n != 1 }
            }
            Some(peer) => {
                peer.heard_ms = now;
                // A heartbeat below what we hold is late, not a restart: it
                // was numbered while a notice was being published, and that
                // notice overtook it. A restart shows at the sender's next
                // notice, whose number goes back.
                if heartbeat && n < peer.seen.through {
                    return Heard::Peer { gap: false };
                }
                let restarted = !heartbeat && n <= peer.seen.through;
                if restarted {
                    peer.seen = start(n);
                    true
                } else if heartbeat {
                    let missing = n > peer.seen.through;
                    peer.seen.settle(n);
                    missing
                } else {
                    peer.seen.add(n);
                    false
                }
            }
        };
        Heard::Peer { gap }
    }

    /// Checks whether our own heartbeat came back in time. Returns whether
    /// this instance just became cut off (`Some(true)`), just came back
    /// (`Some(false)`), or neither.
    pub(crate) fn check_silence(&self) -> Option<bool> {
        let now = self.clock.now_ms();
        let since = self.awaiting_since_ms.load(Ordering::Acquire);
        let silent = since != 0 && now.saturating_sub(since) > millis(self.trust_window);
        let was = self.cut_off.swap(silent, Ordering::AcqRel);
        (silent != was).then_some(silent)
    }

    /// Marks this instance cut off (its listener is gone).
    pub(crate) fn set_cut_off(&self) {
        self.cut_off.store(true, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backplane::InProcessBackplane;

    fn notices() -> Notices {
        Notices::new(
            Arc::new(InProcessBackplane::new()),
            "me".into(),
            Duration::from_secs(1),
            Breaker::new("backplane", 5, Duration::from_secs(1)),
            Duration::from_secs(1),
            Clock::with_offset(0),
            Arc::new(Stats::new("test".into())),
        )
    }

    fn from(origin: &str, sequence: u64, message: BackplaneMessage) -> Notice {
        Notice::new(origin, sequence, message)
    }

    fn evict() -> BackplaneMessage {
        BackplaneMessage::Evict { key: "k".into() }
    }

    #[test]
    fn holes_are_found_at_heartbeats_whatever_the_arrival_order() {
        let n = notices();
        assert_eq!(n.heard(&from("a", 1, evict())), Heard::Peer { gap: false });
        assert_eq!(n.heard(&from("a", 3, evict())), Heard::Peer { gap: false });
        assert_eq!(
            n.heard(&from("a", 2, evict())),
            Heard::Peer { gap: false },
            "out of order"
        );
        let beat = |seq| from("a", seq, BackplaneMessage::Heartbeat);
        assert_eq!(n.heard(&beat(3)), Heard::Peer { gap: false });
        assert_eq!(n.heard(&from("a", 5, evict())), Heard::Peer { gap: false });
        assert_eq!(n.heard(&beat(5)), Heard::Peer { gap: true }, "4 was lost");
        assert_eq!(n.heard(&beat(5)), Heard::Peer { gap: false });
        assert_eq!(n.heard(&from("me", 9, evict())), Heard::Own);
    }

    #[test]
    fn a_sender_whose_numbers_go_back_restarted() {
        let n = notices();
        assert_eq!(n.heard(&from("a", 1, evict())), Heard::Peer { gap: false });
        assert_eq!(n.heard(&from("a", 2, evict())), Heard::Peer { gap: false });
        assert_eq!(n.heard(&from("a", 1, evict())), Heard::Peer { gap: true });
        assert_eq!(n.heard(&from("a", 2, evict())), Heard::Peer { gap: false });
    }

    #[test]
    fn a_heartbeat_overtaken_by_a_notice_is_late_not_a_restart() {
        let n = notices();
        let beat = |seq| from("a", seq, BackplaneMessage::Heartbeat);
        assert_eq!(n.heard(&from("a", 1, evict())), Heard::Peer { gap: false });
        assert_eq!(n.heard(&from("a", 2, evict())), Heard::Peer { gap: false });
        // Numbered 1 while notice 2 was being published; arrives after it.
        assert_eq!(n.heard(&beat(1)), Heard::Peer { gap: false });
        assert_eq!(n.heard(&beat(2)), Heard::Peer { gap: false });
        assert_eq!(n.heard(&from("a", 3, evict())), Heard::Peer { gap: false });
        assert_eq!(n.heard(&beat(3)), Heard::Peer { gap: false });
        // A hole is still found.
        assert_eq!(n.heard(&from("a", 5, evict())), Heard::Peer { gap: false });
        assert_eq!(n.heard(&beat(4)), Heard::Peer { gap: true }, "4 was lost");
    }

    #[test]
    fn first_contact_is_a_gap_unless_it_is_the_senders_start() {
        let n = notices();
        assert_eq!(
            n.heard(&from("new", 1, evict())),
            Heard::Peer { gap: false }
        );
        assert_eq!(
            n.heard(&from("quiet", 0, BackplaneMessage::Heartbeat)),
            Heard::Peer { gap: false }
        );
        assert_eq!(
            n.heard(&from("old", 57, evict())),
            Heard::Peer { gap: true }
        );
        assert_eq!(n.heard(&from("v1", 0, evict())), Heard::Peer { gap: false });
    }

    #[test]
    fn heartbeats_carry_the_numbers_settled_so_far() {
        let mut seen = Seen::default();
        seen.add(2);
        assert_eq!(seen.through, 0);
        seen.add(1);
        assert_eq!(seen.through, 2);
        seen.settle(5);
        assert_eq!((seen.through, seen.above.len()), (5, 0));
    }
}
