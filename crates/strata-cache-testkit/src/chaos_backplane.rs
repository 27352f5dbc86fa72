//! [`ChaosBackplane`]: a [`Backplane`] wrapper that loses, delays or fails
//! notices on demand.
//!
//! What the layers above a backplane must survive: a publish that fails (the
//! transport is down), one that hangs (Redis paused), and a notice that is
//! published but never delivered (at-most-once delivery). Clones share one
//! set of faults; subscriptions made through the wrapper see only what it
//! lets through.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use strata_cache::{Backplane, BackplaneEvent, Error, ErrorKind, Notice, Result, Subscription};
use tokio::sync::broadcast;

/// Capacity of the channel between the wrapped backplane and the wrapper's
/// subscribers.
const CAPACITY: usize = 4096;

/// Wraps any [`Backplane`] and injects faults into its notices.
///
/// # Example
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// use std::sync::Arc;
/// use strata_cache::{Backplane, BackplaneMessage, InProcessBackplane, Notice};
/// use strata_cache_testkit::ChaosBackplane;
///
/// let chaos = ChaosBackplane::new(Arc::new(InProcessBackplane::new()));
/// let mut events = chaos.subscribe();
/// chaos.lose_next(1);
/// let notice = Notice::new("a", 1, BackplaneMessage::Evict { key: "k".into() });
/// chaos.publish(&notice).await.unwrap(); // accepted, never delivered
/// tokio::task::yield_now().await; // the forwarding task decides
/// assert_eq!(chaos.lost(), 1);
/// # });
/// ```
#[derive(Clone)]
pub struct ChaosBackplane {
    inner: Arc<dyn Backplane>,
    faults: Arc<Faults>,
    events: broadcast::Sender<BackplaneEvent>,
}

#[derive(Default)]
struct Faults {
    // A std Mutex: held only to copy a few values, never across an await.
    state: Mutex<FaultState>,
    lost: AtomicU64,
    /// The xorshift state of `lose_ratio`.
    random: AtomicU64,
}

#[derive(Default, Clone, Copy)]
struct FaultState {
    /// Fail every publish with this kind.
    fail: Option<ErrorKind>,
    delay: Duration,
    /// Lose this many next notices (published, never delivered).
    lose_next: u64,
    /// Lose each notice with this probability, in millionths.
    lose_per_million: u32,
}

impl ChaosBackplane {
    /// Wraps `inner` with no fault switched on. Must be called inside a Tokio
    /// runtime: a task forwards what `inner` delivers.
    pub fn new(inner: Arc<dyn Backplane>) -> Self {
        let events = broadcast::channel(CAPACITY).0;
        let faults = Arc::new(Faults {
            random: AtomicU64::new(0x9E37_79B9_7F4A_7C15),
            ..Faults::default()
        });
        let mut subscription = inner.subscribe();
        let (forward, weak) = (events.clone(), Arc::downgrade(&faults));
        tokio::spawn(async move {
            while let Some(event) = subscription.recv().await {
                let Some(faults) = weak.upgrade() else { return };
                if matches!(event, BackplaneEvent::Notice(_)) && faults.lose() {
                    continue;
                }
                // No subscriber is not an error.
                let _ = forward.send(event);
            }
        });
        Self {
            inner,
            faults,
            events,
        }
    }

    /// Fails every publish with an error of `kind` until [`heal`](Self::heal).
    pub fn fail_with(&self, kind: ErrorKind) {
        self.lock().fail = Some(kind);
    }

    /// Delays every publish by `delay` (a hung transport); zero to stop.
    pub fn set_delay(&self, delay: Duration) {
        self.lock().delay = delay;
    }

    /// Loses the next `count` notices: their publish succeeds, no subscriber
    /// of this wrapper receives them.
    pub fn lose_next(&self, count: u64) {
        self.lock().lose_next = count;
    }

    /// Loses each notice with probability `ratio` (0 to 1), deterministically
    /// for a given sequence of notices.
    pub fn lose_ratio(&self, ratio: f64) {
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let per_million = (ratio.clamp(0.0, 1.0) * 1e6) as u32;
        self.lock().lose_per_million = per_million;
    }

    /// Switches every fault off.
    pub fn heal(&self) {
        *self.lock() = FaultState::default();
    }

    /// Notices lost so far.
    pub fn lost(&self) -> u64 {
        self.faults.lost.load(Ordering::Relaxed)
    }

    /// Delivers [`BackplaneEvent::Gap`] to this wrapper's subscribers, as a
    /// transport does after a reconnect.
    pub fn simulate_gap(&self) {
        let _ = self.events.send(BackplaneEvent::Gap);
    }

    fn lock(&self) -> MutexGuard<'_, FaultState> {
        self.faults.lock()
    }
}

impl Faults {
    fn lock(&self) -> MutexGuard<'_, FaultState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether the notice at hand is lost.
    fn lose(&self) -> bool {
        let lost = {
            let mut state = self.lock();
            if state.lose_next > 0 {
                state.lose_next -= 1;
                true
            } else if state.lose_per_million > 0 {
                let mut x = self.random.load(Ordering::Relaxed);
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                self.random.store(x, Ordering::Relaxed);
                x % 1_000_000 < u64::from(state.lose_per_million)
            } else {
                false
            }
        };
        if lost {
            self.lost.fetch_add(1, Ordering::Relaxed);
        }
        lost
    }
}

#[async_trait]
impl Backplane for ChaosBackplane {
    async fn publish(&self, notice: &Notice) -> Result<()> {
        let (delay, fail) = {
            let state = self.lock();
            (state.delay, state.fail)
        };
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        if let Some(kind) = fail {
            return Err(Error::new(
                kind,
                format!("chaos: injected {kind} failure on publish"),
            ));
        }
        self.inner.publish(notice).await
    }

    fn subscribe(&self) -> Subscription {
        Subscription::new(self.events.subscribe())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use strata_cache::{BackplaneMessage, InProcessBackplane};

    fn notice(n: u64) -> Notice {
        Notice::new("a", n, BackplaneMessage::Evict { key: "k".into() })
    }

    #[tokio::test]
    async fn loses_fails_and_heals() {
        let chaos = ChaosBackplane::new(Arc::new(InProcessBackplane::new()));
        let mut events = chaos.subscribe();
        chaos.lose_next(1);
        chaos.publish(&notice(1)).await.unwrap();
        chaos.publish(&notice(2)).await.unwrap();
        assert_eq!(events.recv().await, Some(BackplaneEvent::Notice(notice(2))));
        assert_eq!(chaos.lost(), 1);
        chaos.fail_with(ErrorKind::Unavailable);
        assert!(chaos.publish(&notice(3)).await.is_err());
        chaos.heal();
        chaos.publish(&notice(4)).await.unwrap();
        assert_eq!(events.recv().await, Some(BackplaneEvent::Notice(notice(4))));
    }

    #[tokio::test]
    async fn a_ratio_loses_about_that_share() {
        let chaos = ChaosBackplane::new(Arc::new(InProcessBackplane::new()));
        let _events = chaos.subscribe();
        chaos.lose_ratio(0.25);
        for n in 0..2000 {
            chaos.publish(&notice(n)).await.unwrap();
        }
        // The forwarding task decides; let it go through the notices.
        for _ in 0..100 {
            tokio::task::yield_now().await;
        }
        let lost = chaos.lost();
        assert!((350..650).contains(&lost), "{lost} of 2000");
    }
}
