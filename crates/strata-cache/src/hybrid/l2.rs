//! L2 access: every call bounded by a timeout and guarded by a circuit
//! breaker, failures logged (rate-limited) and counted, never returned to the
//! caller of `get_or_create`.
//!
//! The breaker opens after `threshold` consecutive failures and skips L2 for
//! the cool-down; then it is half-open: one call probes, success closes it,
//! failure opens it again. The backplane publisher uses the same breaker.
//! State is a few atomics: the hot path reads one of them.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;

use super::clock::{Clock, millis};
use super::stats::{Event, Stats};
use crate::distributed::DistributedCache;
use crate::error::{Error, ErrorKind, Result};
use crate::options::EntryOptions;

/// Consecutive failures that open a breaker, by default.
pub(crate) const DEFAULT_BREAKER_THRESHOLD: u32 = 5;
/// How long an open breaker skips its component, by default.
pub(crate) const DEFAULT_BREAKER_COOL_DOWN: Duration = Duration::from_secs(10);
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

    /// May a call go through now?
    pub(crate) fn allow(&self, now: u64) -> bool {
        let until = self.open_until_ms.load(Ordering::Acquire);
        if until == 0 {
            return true;
        }
        if now < until {
            return false;
        }
        // Half-open: one probe at a time.
        self.probing
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
    }

    pub(crate) fn success(&self) {
        self.failures.store(0, Ordering::Relaxed);
        if self.open_until_ms.swap(0, Ordering::AcqRel) != 0 {
            tracing::info!(component = self.name, "circuit breaker closed");
        }
        self.probing.store(false, Ordering::Release);
    }

    pub(crate) fn failure(&self, now: u64, operation: &str, key: &str, error: &Error) {
        let failures = self.failures.fetch_add(1, Ordering::Relaxed) + 1;
        if failures >= self.threshold {
            self.open_until_ms
                .store(now.saturating_add(self.cool_down_ms), Ordering::Release);
        }
        self.probing.store(false, Ordering::Release);
        let last = self.last_warn_ms.load(Ordering::Relaxed);
        if now >= last.saturating_add(WARN_EVERY_MS)
            && self
                .last_warn_ms
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            tracing::warn!(
                component = self.name,
                operation,
                key,
                consecutive_failures = failures,
                breaker_open = failures >= self.threshold,
                error = %error,
                "cache layer failed; carrying on without it"
            );
        }
    }
}

/// The optional L2 of a cache.
pub(crate) struct L2 {
    cache: Option<Arc<dyn DistributedCache>>,
    timeout: Duration,
    breaker: Breaker,
}

impl std::fmt::Debug for L2 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("L2")
            .field("configured", &self.cache.is_some())
            .field("timeout", &self.timeout)
            .field("breaker", &self.breaker)
            .finish()
    }
}

/// Why an L2 call produced nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum L2Failure {
    /// No L2 configured.
    Absent,
    /// The call failed, timed out or was skipped by the open breaker.
    Failed,
}

impl L2 {
    pub(crate) fn new(
        cache: Option<Arc<dyn DistributedCache>>,
        timeout: Duration,
        breaker: Breaker,
    ) -> Self {
        Self {
            cache,
            timeout,
            breaker,
        }
    }

    pub(crate) fn is_configured(&self) -> bool {
        self.cache.is_some()
    }

    pub(crate) async fn get(
        &self,
        clock: &Clock,
        stats: &Stats,
        key: &str,
    ) -> Result<Option<Bytes>, L2Failure> {
        self.call(
            clock,
            stats,
            "get",
            key,
            |c| async move { c.get(key).await },
        )
        .await
    }

    pub(crate) async fn set(
        &self,
        clock: &Clock,
        stats: &Stats,
        key: &str,
        value: Bytes,
        options: &EntryOptions,
    ) -> Result<(), L2Failure> {
        self.call(clock, stats, "set", key, |c| async move {
            c.set(key, value, options).await
        })
        .await
    }

    pub(crate) async fn remove(
        &self,
        clock: &Clock,
        stats: &Stats,
        key: &str,
    ) -> Result<(), L2Failure> {
        self.call(clock, stats, "remove", key, |c| async move {
            c.remove(key).await
        })
        .await
    }

    async fn call<'a, R, F, Fut>(
        &'a self,
        clock: &Clock,
        stats: &Stats,
        operation: &'static str,
        key: &str,
        f: F,
    ) -> Result<R, L2Failure>
    where
        F: FnOnce(&'a Arc<dyn DistributedCache>) -> Fut,
        Fut: std::future::Future<Output = Result<R>>,
    {
        let Some(cache) = &self.cache else {
            return Err(L2Failure::Absent);
        };
        if !self.breaker.allow(clock.coarse_ms()) {
            return Err(L2Failure::Failed);
        }
        let outcome = match tokio::time::timeout(self.timeout, f(cache)).await {
            Ok(outcome) => outcome,
            Err(_) => Err(Error::new(
                ErrorKind::Timeout,
                format!(
                    "L2 {operation} took over {:?}: check the backend, or raise \
                     HybridCacheBuilder::l2_timeout",
                    self.timeout
                ),
            )),
        };
        match outcome {
            Ok(value) => {
                self.breaker.success();
                Ok(value)
            }
            Err(error) => {
                stats.record(Event::L2Error);
                self.breaker.failure(clock.now_ms(), operation, key, &error);
                Err(L2Failure::Failed)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn breaker_opens_then_half_opens_for_one_probe() {
        let b = Breaker::new("test", 2, Duration::from_millis(100));
        let err = Error::new(ErrorKind::Unavailable, "down");
        assert!(b.allow(0));
        b.failure(0, "get", "k", &err);
        assert!(b.allow(1));
        b.failure(1, "get", "k", &err);
        assert!(!b.allow(50));
        assert!(b.allow(101), "half-open lets one probe through");
        assert!(!b.allow(102), "only one probe at a time");
        b.failure(102, "get", "k", &err);
        assert!(!b.allow(150));
        assert!(b.allow(203));
        b.success();
        assert!(b.allow(204) && b.allow(205));
    }
}
