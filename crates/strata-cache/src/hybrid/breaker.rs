//! [`Breaker`]: a circuit breaker plus a rate limiter of warnings, for L2 and
//! the backplane.
//!
//! The breaker opens after `threshold` consecutive failures and skips its
//! component for the cool-down; then it is half-open: one call probes,
//! success closes it, failure opens it again. State is a few atomics: the hot
//! path reads one of them.
//!
//! Cancellation safety: a call that is allowed through holds a [`Pass`]. A
//! pass that is dropped without an outcome (the caller's future was dropped
//! mid-call) releases the probe it may hold, so a cancelled probe never leaves
//! the breaker refusing every call for good.
//!
//! An open breaker only defers work: what it skips is kept by the recovery
//! queue (see `propagate`) and replayed once a probe succeeds.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use super::clock::millis;
use crate::error::Error;

/// Consecutive failures that open a breaker, by default.
pub(crate) const DEFAULT_BREAKER_THRESHOLD: u32 = 5;
/// How long an open breaker skips its component, by default: short, since
/// the recovery queue waits for its probe to replay what was deferred.
pub(crate) const DEFAULT_BREAKER_COOL_DOWN: Duration = Duration::from_secs(1);
/// Warnings of one component are logged at most this often.
const WARN_EVERY_MS: u64 = 1_000;

/// A circuit breaker plus a rate limiter of warnings.
#[derive(Debug)]
pub(crate) struct Breaker {
    name: &'static str,
    threshold: u32,
    cool_down_ms: u64,
    failures: AtomicU32,
    /// 0 when closed; else the time the breaker may half-open.
    open_until_ms: AtomicU64,
    probing: AtomicBool,
    last_warn_ms: AtomicU64,
}

/// Permission for one call. Report the call's outcome with
/// [`success`](Pass::success) or [`failure`](Pass::failure); dropping it
/// without either (a cancelled call) frees the probe slot and changes nothing
/// else.
#[derive(Debug)]
#[must_use]
pub(crate) struct Pass<'a> {
    breaker: &'a Breaker,
    probe: bool,
}

impl Breaker {
    pub(crate) fn new(name: &'static str, threshold: u32, cool_down: Duration) -> Self {
        Self {
            name,
            threshold: threshold.max(1),
            cool_down_ms: millis(cool_down),
            failures: AtomicU32::new(0),
            open_until_ms: AtomicU64::new(0),
            probing: AtomicBool::new(false),
            last_warn_ms: AtomicU64::new(0),
        }
    }

    /// A pass for one call now, or `None` while the breaker is open (or
    /// half-open with a probe already under way).
    pub(crate) fn pass(&self, now: u64) -> Option<Pass<'_>> {
        let until = self.open_until_ms.load(Ordering::Acquire);
        if until == 0 {
            return Some(Pass {
                breaker: self,
                probe: false,
            });
        }
        if now < until {
            return None;
        }
        // Half-open: one probe at a time.
        self.probing
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Relaxed)
            .ok()
            .map(|_| Pass {
                breaker: self,
                probe: true,
            })
    }

    /// True while calls are refused.
    pub(crate) fn is_open(&self, now: u64) -> bool {
        let until = self.open_until_ms.load(Ordering::Acquire);
        until != 0 && now < until
    }
}

impl Pass<'_> {
    /// The call succeeded: the breaker closes.
    pub(crate) fn success(mut self) {
        let breaker = self.breaker;
        breaker.failures.store(0, Ordering::Relaxed);
        if breaker.open_until_ms.swap(0, Ordering::AcqRel) != 0 {
            tracing::info!(component = breaker.name, "circuit breaker closed");
        }
        self.release();
    }

    /// The call failed: logged (rate-limited); enough failures in a row open
    /// the breaker.
    pub(crate) fn failure(mut self, now: u64, operation: &str, key: &str, error: &Error) {
        let breaker = self.breaker;
        let failures = breaker.failures.fetch_add(1, Ordering::Relaxed) + 1;
        if failures >= breaker.threshold {
            breaker
                .open_until_ms
                .store(now.saturating_add(breaker.cool_down_ms), Ordering::Release);
        }
        self.release();
        let last = breaker.last_warn_ms.load(Ordering::Relaxed);
        if now >= last.saturating_add(WARN_EVERY_MS)
            && breaker
                .last_warn_ms
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            tracing::warn!(
                component = breaker.name,
                operation,
                key,
                consecutive_failures = failures,
                breaker_open = failures >= breaker.threshold,
                error = %error,
                "cache layer failed; carrying on without it, its writes are kept for replay"
            );
        }
    }

    fn release(&mut self) {
        if std::mem::take(&mut self.probe) {
            self.breaker.probing.store(false, Ordering::Release);
        }
    }
}

impl Drop for Pass<'_> {
    fn drop(&mut self) {
        self.release();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;

    fn err() -> Error {
        Error::new(ErrorKind::Unavailable, "down")
    }

    #[test]
    fn opens_then_half_opens_for_one_probe() {
        let b = Breaker::new("test", 2, Duration::from_millis(100));
        b.pass(0).unwrap().failure(0, "get", "k", &err());
        b.pass(1).unwrap().failure(1, "get", "k", &err());
        assert!(b.pass(50).is_none());
        assert!(b.is_open(50));
        let probe = b.pass(101).expect("half-open lets one probe through");
        assert!(b.pass(102).is_none(), "only one probe at a time");
        probe.failure(102, "get", "k", &err());
        assert!(b.pass(150).is_none());
        b.pass(203).unwrap().success();
        assert!(b.pass(204).is_some() && b.pass(205).is_some());
    }

    #[test]
    fn a_dropped_probe_frees_the_breaker() {
        let b = Breaker::new("test", 1, Duration::from_millis(100));
        b.pass(0).unwrap().failure(0, "get", "k", &err());
        let probe = b.pass(100).expect("a probe");
        drop(probe); // the caller was cancelled mid-call
        let next = b.pass(101).expect("the next call may probe again");
        next.success();
        assert!(!b.is_open(102));
    }

    #[tokio::test]
    async fn a_cancelled_probing_call_does_not_switch_the_component_off() {
        let b = Breaker::new("test", 1, Duration::from_millis(100));
        b.pass(0).unwrap().failure(0, "get", "k", &err());
        let call = async {
            let pass = b.pass(100).expect("a probe");
            std::future::pending::<()>().await; // a call that never returns
            pass.success();
        };
        // The caller gives up: its future is dropped during the probe.
        let _ = tokio::time::timeout(Duration::from_millis(1), call).await;
        assert!(b.pass(101).is_some(), "a later call may probe");
    }
}
