//! The clock of HybridCache: wall-clock milliseconds, derived from Tokio's
//! monotonic clock, with a coarse copy for the L1 hit path.
//!
//! Why not `SystemTime::now()` everywhere: a clock read costs about as much as
//! the whole hash-map lookup an L1 hit is measured against. The hit path
//! therefore reads an atomic that a ticker task refreshes every [`TICK`];
//! every slow path refreshes it too. Why derive wall time from
//! `tokio::time::Instant`: tests pause Tokio's clock and advance it, and
//! logical expiry and L1 deadlines must move with it. In production Tokio's
//! instant is the OS monotonic clock, anchored to `SystemTime` once per
//! process.
//!
//! The clock only decides expiry. The order of invalidations never depends
//! on it (see `order`), so a machine whose clock is off changes how long its
//! entries live, nothing else. [`Clock::with_offset`] shifts one cache's clock
//! to test exactly that.
//!
//! The ticker runs on the runtime that was current when the clock started
//! ticking. When that runtime shuts down, the ticker's guard is dropped and
//! the clock falls back to precise reads; the next slow path on another
//! runtime starts a new ticker ([`Clock::ensure_ticking`]). A clock never
//! freezes.

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
    /// Set while a ticker task exists (from its spawn to its guard's drop).
    ticker_alive: AtomicBool,
    /// Added to the process's wall clock, in milliseconds (fault injection).
    offset_ms: i64,
}

/// Held by the ticker task: when the task ends (its cache is gone, or its
/// runtime shut down) the clock goes back to precise reads.
struct TickerGuard(Weak<State>);

impl Drop for TickerGuard {
    fn drop(&mut self) {
        if let Some(state) = self.0.upgrade() {
            state.ticking.store(false, Ordering::Relaxed);
            state.ticker_alive.store(false, Ordering::Release);
        }
    }
}

impl Clock {
    /// A clock `offset_ms` away from this process's wall clock (0 in
    /// production). Inside a Tokio runtime with timers, a ticker task keeps
    /// the coarse copy fresh and ends with the clock.
    pub(crate) fn with_offset(offset_ms: i64) -> Self {
        let state = Arc::new(State {
            coarse_ms: AtomicU64::new(0),
            ticking: AtomicBool::new(false),
            ticker_alive: AtomicBool::new(false),
            offset_ms,
        });
        state.refresh();
        let clock = Self { state };
        clock.ensure_ticking();
        clock
    }

    /// Starts a ticker on the current runtime unless one runs.
    pub(crate) fn ensure_ticking(&self) {
        if self.state.ticker_alive.load(Ordering::Acquire) {
            return;
        }
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            return;
        };
        if self.state.ticker_alive.swap(true, Ordering::AcqRel) {
            return;
        }
        handle.spawn(tick(TickerGuard(Arc::downgrade(&self.state))));
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
        let now = wall_now_ms().saturating_add_signed(self.offset_ms);
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

/// Refreshes the coarse clock until the clock is dropped or the runtime ends.
/// `ticking` is set only once the interval exists, so a runtime without
/// timers (where `interval` panics inside this task) leaves the clock on
/// precise reads.
async fn tick(guard: TickerGuard) {
    let mut interval = tokio::time::interval(TICK);
    interval.set_missed_tick_behavior(MissedTickBehavior::Skip);
    loop {
        interval.tick().await;
        let Some(state) = guard.0.upgrade() else {
            return;
        };
        state.refresh();
        state.ticking.store(true, Ordering::Relaxed);
    }
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
        let clock = Clock::with_offset(0);
        let start = clock.now_ms();
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert!(clock.now_ms() >= start + 60_000);
        assert!(clock.coarse_ms() + millis(TICK) >= start + 60_000);
    }

    #[test]
    fn an_offset_shifts_every_read() {
        let plain = Clock::with_offset(0);
        let ahead = Clock::with_offset(20_000);
        let (a, b) = (plain.now_ms(), ahead.now_ms());
        assert!((19_900..=20_100).contains(&(b - a)), "{a} {b}");
    }

    #[test]
    fn a_clock_outlives_the_runtime_it_started_ticking_in() {
        let first = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let clock = first.block_on(async {
            let clock = Clock::with_offset(0);
            tokio::time::sleep(TICK * 3).await;
            clock
        });
        assert!(clock.state.ticking.load(Ordering::Relaxed));
        drop(first); // the ticker task goes with its runtime
        assert!(!clock.state.ticking.load(Ordering::Relaxed));
        let before = clock.coarse_ms();
        std::thread::sleep(Duration::from_millis(30));
        assert!(
            clock.coarse_ms() >= before + 25,
            "the coarse clock froze with its runtime"
        );
        let second = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        second.block_on(async {
            clock.ensure_ticking();
            tokio::time::sleep(TICK * 3).await;
        });
        assert!(clock.state.ticking.load(Ordering::Relaxed), "ticks again");
    }
}
