//! The clock of HybridCache: wall-clock milliseconds, derived from Tokio's
//! monotonic clock, with a coarse copy for the L1 hit path.
//!
//! Why not `SystemTime::now()` everywhere: on this class of machine a clock
//! read costs about as much as the whole hash-map lookup an L1 hit is measured
//! against (about 23 ns against 19 ns). The hit path therefore reads an atomic
//! that a ticker task refreshes every [`TICK`]; every slow path refreshes it
//! too. Why derive wall time from `tokio::time::Instant`: tests pause Tokio's
//! clock and advance it, and logical expiry, tag times and L1 deadlines must
//! all move with it. In production (no `test-util`) Tokio's instant is the OS
//! monotonic clock, anchored to `SystemTime` once per process: every cache of
//! a process reads the same clock, so a tag time recorded by one instance is
//! comparable with an entry stamped by another.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::time::{Instant, MissedTickBehavior};

/// How often the coarse clock is refreshed: L1 deadlines are honoured to within
/// this much.
pub(crate) const TICK: Duration = Duration::from_millis(5);

/// A cheap-`Clone` clock; clones share one state.
#[derive(Clone, Debug)]
pub(crate) struct Clock {
    state: Arc<State>,
}

#[derive(Debug)]
struct State {
    /// Wall milliseconds as of the last refresh.
    coarse_ms: AtomicU64,
    /// True while a ticker keeps `coarse_ms` fresh; otherwise every read is precise.
    ticking: AtomicBool,
}

impl Clock {
    /// A clock anchored at the current wall time. Inside a Tokio runtime with
    /// timers, a ticker task keeps the coarse copy fresh and ends with the clock.
    pub(crate) fn new() -> Self {
        let state = Arc::new(State {
            coarse_ms: AtomicU64::new(wall_now_ms()),
            ticking: AtomicBool::new(false),
        });
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            handle.spawn(tick(Arc::downgrade(&state)));
        }
        Self { state }
    }

    /// Wall milliseconds, at most [`TICK`] behind: for the hit path.
    #[inline]
    pub(crate) fn coarse_ms(&self) -> u64 {
        if self.state.ticking.load(Ordering::Relaxed) {
            self.state.coarse_ms.load(Ordering::Relaxed)
        } else {
            self.now_ms()
        }
    }

    /// Precise wall milliseconds; also refreshes the coarse copy.
    pub(crate) fn now_ms(&self) -> u64 {
        self.state.refresh()
    }
}

impl State {
    fn refresh(&self) -> u64 {
        let now = wall_now_ms();
        self.coarse_ms.fetch_max(now, Ordering::Relaxed);
        now
    }
}

/// Wall milliseconds: the process's anchor plus Tokio's monotonic time since.
fn wall_now_ms() -> u64 {
    static ANCHOR: OnceLock<(std::time::Instant, i128)> = OnceLock::new();
    let (origin, origin_wall_ns) = *ANCHOR.get_or_init(|| {
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        (std::time::Instant::now(), i128::try_from(wall).unwrap_or(0))
    });
    // Tokio's instants are std instants (shifted by paused-time advances). A
    // paused runtime's clock may start before the anchor was taken, hence the
    // signed arithmetic (in nanoseconds, so that rounding is the same on
    // both sides of the anchor).
    let now = Instant::now().into_std();
    let offset_ns = match now.checked_duration_since(origin) {
        Some(after) => i128::try_from(after.as_nanos()).unwrap_or(i128::MAX / 2),
        None => -i128::try_from(origin.duration_since(now).as_nanos()).unwrap_or(0),
    };
    let wall_ms = (origin_wall_ns + offset_ns).max(0) / 1_000_000;
    u64::try_from(wall_ms).unwrap_or(u64::MAX)
}

/// Refreshes the coarse clock until the clock is dropped. `ticking` is set
/// only once the interval exists, so a runtime without timers (where
/// `interval` panics inside this task) leaves the clock on precise reads.
async fn tick(state: Weak<State>) {
    let mut interval = tokio::time::interval(TICK);
    interval.set_missed_tick_behavior(MissedTickBehavior::Skip);
    loop {
        interval.tick().await;
        let Some(state) = state.upgrade() else { return };
        state.refresh();
        state.ticking.store(true, Ordering::Relaxed);
    }
}

/// Milliseconds since the Unix epoch of `at` (0 before the epoch).
pub(crate) fn unix_ms(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The `SystemTime` of `ms` milliseconds since the Unix epoch.
pub(crate) fn system_time(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms)
}

/// Milliseconds of `d`, saturating.
pub(crate) fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn follows_paused_tokio_time() {
        let clock = Clock::new();
        let start = clock.now_ms();
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert!(clock.now_ms() >= start + 60_000);
        assert!(clock.coarse_ms() + millis(TICK) >= start + 60_000);
    }
}
