//! [`Engine`]: the parts of one cache, shared by its handles and its tasks.
//!
//! Each part owns its state behind a small interface: `L1` the in-process
//! map, `L2` the shared layer with its timeout and breaker, `Order` the
//! invalidation order, `Reads` the running reads, `Flights` the fetches in
//! flight, `Propagator` the changes on their way out, `Notices` the
//! backplane side, `Stats` the counters. The engine wires them together and
//! answers the questions that need several of them: the hit path
//! ([`Engine::l1_fresh`]), what a peer's notice means ([`Engine::apply`]),
//! and what a gap does ([`Engine::gap`]).

use std::sync::Arc;

use tokio::time::Instant;

use super::clock::Clock;
use super::codec::CodecChoice;
use super::l1::{L1, Verdict};
use super::l2::L2;
use super::notices::{Heard, Notices};
use super::options::HybridEntryOptions;
use super::order::{Order, Scope};
use super::propagate::Propagator;
use super::reads::Reads;
use super::repr::Repr;
use super::stampede::Flights;
use super::stats::{Event, Stats};
use super::tasks::Tasks;
use crate::backplane::{BackplaneEvent, BackplaneMessage};
use crate::error::{Error, ErrorKind, Result};

/// Cache-wide settings that do not belong to one part.
#[derive(Debug)]
pub(crate) struct Settings {
    /// The cache's name: its metrics' and spans' `cache` label.
    pub(crate) name: String,
    pub(crate) codec: CodecChoice,
    pub(crate) defaults: HybridEntryOptions,
    pub(crate) max_key_length: usize,
    pub(crate) max_payload_bytes: usize,
    /// Seeds the jitter of L1 expirations.
    pub(crate) random: foldhash::fast::RandomState,
}

/// Everything one cache shares between its clones and its tasks.
#[derive(Debug)]
pub(crate) struct Engine {
    pub(crate) id: String,
    pub(crate) settings: Settings,
    pub(crate) clock: Clock,
    pub(crate) stats: Arc<Stats>,
    pub(crate) l1: L1,
    pub(crate) l2: L2,
    pub(crate) order: Order,
    pub(crate) reads: Arc<Reads>,
    pub(crate) flights: Arc<Flights>,
    pub(crate) propagator: Propagator,
    pub(crate) notices: Option<Notices>,
    pub(crate) tasks: Tasks,
}

impl Engine {
    /// The hit path: a fresh L1 entry of representation `R`, or `None`. No
    /// allocation, no lock, no reference count: the entry is checked and its
    /// value cloned while the table is pinned.
    #[inline]
    pub(crate) fn l1_fresh<R: Repr>(&self, key: &str) -> Option<R::Value> {
        let now = self.clock.coarse_ms();
        let epoch = self.order.epoch();
        let value = self.l1.read(key, |entry| {
            if entry.verdict(now, epoch) != Verdict::Serve {
                return None;
            }
            entry.get::<R>()
        })??;
        self.stats.l1_hit();
        Some(value)
    }

    /// Rejects an empty key or one over the configured length.
    pub(crate) fn check_key(&self, key: &str) -> Result<()> {
        if key.is_empty() || key.len() > self.settings.max_key_length {
            return Err(Error::new(
                ErrorKind::InvalidKey,
                format!(
                    "the key or tag is {} bytes long; use 1 to {} bytes \
                     (HybridCacheBuilder::max_key_length)",
                    key.len(),
                    self.settings.max_key_length
                ),
            ));
        }
        Ok(())
    }

    /// The end of a call's budget for Redis: one `l2_timeout` from now.
    pub(crate) fn budget(&self) -> Instant {
        Instant::now() + self.l2.timeout()
    }

    /// True when the backplane's breaker is open.
    pub(crate) fn notices_open(&self) -> bool {
        self.notices.as_ref().is_some_and(Notices::is_open)
    }

    /// True while L1 must not be trusted without L2's confirmation of each
    /// entry: this instance does not hear its own heartbeats back.
    pub(crate) fn is_cut_off(&self) -> bool {
        self.notices.as_ref().is_some_and(Notices::is_cut_off)
    }

    /// Applies one backplane event to this instance.
    pub(crate) fn apply(&self, event: BackplaneEvent) {
        let notice = match event {
            BackplaneEvent::Notice(notice) => notice,
            BackplaneEvent::Gap => return self.gap("the backplane reconnected or fell behind"),
        };
        let Some(notices) = &self.notices else { return };
        match notices.heard(&notice) {
            Heard::Own => return,
            Heard::Peer { gap } => {
                if gap {
                    self.gap("a peer's notices were lost");
                }
            }
        }
        if notice.message == BackplaneMessage::Heartbeat {
            return;
        }
        self.stats.record(Event::BackplaneReceived);
        match notice.message {
            BackplaneMessage::Evict { key } => {
                tracing::trace!(key = %key, origin = %notice.origin, "peer changed key");
                self.reads.key_changed(&key);
                self.l1.remove(&key);
            }
            BackplaneMessage::TagInvalidated { tag, stamp } => {
                tracing::trace!(tag = %tag, origin = %notice.origin, "peer invalidated tag");
                self.order.peer_invalidated(Scope::Tag(&tag), stamp);
            }
            BackplaneMessage::Cleared { stamp } => {
                tracing::trace!(origin = %notice.origin, "peer cleared the cache");
                self.order.peer_invalidated(Scope::Clear, stamp);
                self.l1.clear();
            }
            BackplaneMessage::Heartbeat => {}
        }
    }

    /// Notices may have been lost: L1 entries confirmed before now are
    /// served only after L2 confirms them, and records are read again.
    pub(crate) fn gap(&self, why: &str) {
        tracing::warn!(
            instance = %self.id,
            why,
            "backplane gap: L1 entries will be confirmed against L2 before they are served"
        );
        self.stats.record(Event::Gap);
        self.order.mark_suspect();
    }
}
