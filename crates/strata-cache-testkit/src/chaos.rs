//! [`ChaosCache`]: a [`DistributedCache`] wrapper that fails or stalls on demand.
//!
//! Fault injection as a product feature, after FusionCache's chaos wrappers:
//! tests of the layers above a cache (HybridCache's breaker and fail-safe, the
//! Catalog's fallback to the database) switch faults on and off while the code
//! under test keeps its handle.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use strata_cache::{DistributedCache, EntryOptions, Error, ErrorKind, Result, Version, Versioned};

/// Wraps any [`DistributedCache`] and injects errors and delays.
///
/// Faults apply to every operation (`get`, `set`, `refresh`, `remove`,
/// `get_many`, `get_versioned`, `set_if_version`, `next_stamp`). A delay
/// is served before the error check, so `fail_with` plus `set_delay` models a
/// server that times out slowly. Clones share one set of faults.
///
/// # Example
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// use std::sync::Arc;
/// use strata_cache::{DistributedCache, ErrorKind, MemoryDistributedCache};
/// use strata_cache_testkit::ChaosCache;
///
/// let chaos = ChaosCache::new(Arc::new(MemoryDistributedCache::new()));
/// chaos.fail_with(ErrorKind::Unavailable);
/// assert_eq!(chaos.get("k").await.unwrap_err().kind(), ErrorKind::Unavailable);
/// chaos.heal();
/// assert_eq!(chaos.get("k").await.unwrap(), None);
/// # });
/// ```
#[derive(Clone)]
pub struct ChaosCache {
    inner: Arc<dyn DistributedCache>,
    faults: Arc<Faults>,
}

#[derive(Default)]
struct Faults {
    // A std Mutex: held only to copy two small values, never across an await.
    state: Mutex<FaultState>,
    calls: AtomicU64,
    injected: AtomicU64,
}

#[derive(Default, Clone, Copy)]
struct FaultState {
    /// Fail every call with this kind.
    always: Option<ErrorKind>,
    /// Fail this many next calls with `next_kind`.
    next: u64,
    next_kind: Option<ErrorKind>,
    delay: Duration,
}

impl ChaosCache {
    /// Wraps `inner` with no fault switched on.
    pub fn new(inner: Arc<dyn DistributedCache>) -> Self {
        Self {
            inner,
            faults: Arc::default(),
        }
    }

    /// Fails every call with an error of `kind` until [`heal`](Self::heal).
    pub fn fail_with(&self, kind: ErrorKind) {
        self.lock().always = Some(kind);
    }

    /// Fails the next `count` calls with an error of `kind`, then behaves again.
    pub fn fail_next(&self, count: u64, kind: ErrorKind) {
        let mut state = self.lock();
        state.next = count;
        state.next_kind = Some(kind);
    }

    /// Delays every call by `delay` (zero to stop).
    pub fn set_delay(&self, delay: Duration) {
        self.lock().delay = delay;
    }

    /// Switches every fault off: no error, no delay.
    pub fn heal(&self) {
        *self.lock() = FaultState::default();
    }

    /// Calls received so far, failed ones included.
    pub fn calls(&self) -> u64 {
        self.faults.calls.load(Ordering::Relaxed)
    }

    /// Calls failed by an injected error so far.
    pub fn injected_failures(&self) -> u64 {
        self.faults.injected.load(Ordering::Relaxed)
    }

    fn lock(&self) -> MutexGuard<'_, FaultState> {
        self.faults
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Applies the faults of one call: waits out the delay, then returns the
    /// injected error, if any.
    async fn inject(&self, operation: &str) -> Result<()> {
        self.faults.calls.fetch_add(1, Ordering::Relaxed);
        let (delay, failure) = {
            let mut state = self.lock();
            let failure = match state.always {
                Some(kind) => Some(kind),
                None if state.next > 0 => {
                    state.next -= 1;
                    state.next_kind
                }
                None => None,
            };
            (state.delay, failure)
        };
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        match failure {
            Some(kind) => {
                self.faults.injected.fetch_add(1, Ordering::Relaxed);
                Err(Error::new(
                    kind,
                    format!("chaos: injected {kind} failure on {operation}"),
                ))
            }
            None => Ok(()),
        }
    }
}

#[async_trait]
impl DistributedCache for ChaosCache {
    async fn get(&self, key: &str) -> Result<Option<Bytes>> {
        self.inject("get").await?;
        self.inner.get(key).await
    }

    async fn set(&self, key: &str, value: Bytes, options: &EntryOptions) -> Result<()> {
        self.inject("set").await?;
        self.inner.set(key, value, options).await
    }

    async fn refresh(&self, key: &str) -> Result<()> {
        self.inject("refresh").await?;
        self.inner.refresh(key).await
    }

    async fn remove(&self, key: &str) -> Result<()> {
        self.inject("remove").await?;
        self.inner.remove(key).await
    }

    async fn get_many(&self, keys: &[&str]) -> Result<Vec<Option<Bytes>>> {
        self.inject("get_many").await?;
        self.inner.get_many(keys).await
    }

    async fn get_versioned(&self, key: &str) -> Result<Versioned> {
        self.inject("get_versioned").await?;
        self.inner.get_versioned(key).await
    }

    async fn set_if_version(
        &self,
        key: &str,
        value: Bytes,
        options: &EntryOptions,
        expected: &Version,
    ) -> Result<bool> {
        self.inject("set_if_version").await?;
        self.inner
            .set_if_version(key, value, options, expected)
            .await
    }

    async fn next_stamp(&self, key: &str, options: &EntryOptions) -> Result<u64> {
        self.inject("next_stamp").await?;
        self.inner.next_stamp(key, options).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use strata_cache::MemoryDistributedCache;

    #[tokio::test]
    async fn fail_next_fails_exactly_that_many_calls() {
        let chaos = ChaosCache::new(Arc::new(MemoryDistributedCache::new()));
        chaos.fail_next(2, ErrorKind::Timeout);
        assert!(chaos.get("k").await.unwrap_err().is_timeout());
        assert!(chaos.remove("k").await.unwrap_err().is_timeout());
        assert_eq!(chaos.get("k").await.unwrap(), None);
        assert_eq!((chaos.calls(), chaos.injected_failures()), (3, 2));
    }

    #[tokio::test(start_paused = true)]
    async fn delay_is_served_before_the_call() {
        let chaos = ChaosCache::new(Arc::new(MemoryDistributedCache::new()));
        chaos.set_delay(Duration::from_secs(5));
        let started = tokio::time::Instant::now();
        chaos.get("k").await.unwrap();
        assert!(started.elapsed() >= Duration::from_secs(5));
    }

    #[tokio::test]
    async fn passes_the_conformance_suite_when_healthy() {
        let chaos = ChaosCache::new(Arc::new(MemoryDistributedCache::new()));
        crate::conformance::run_all(&chaos).await;
    }
}
