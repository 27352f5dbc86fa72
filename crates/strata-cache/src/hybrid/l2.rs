//! [`L2`]: the optional shared layer of a cache, as the engine uses it.
//!
//! Every call is bounded: reads by the caller's deadline (one budget for the
//! whole call, see `cache`), writes by `l2_timeout` (they run in propagation
//! jobs, not in callers). Every call goes through the L2 circuit breaker, and
//! failures are counted and logged there, never returned to a caller of
//! `get_or_create`. What a failed or skipped write means is decided by the
//! propagation jobs (`propagate`): they keep it for replay.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::time::Instant;

use super::breaker::Breaker;
use super::clock::Clock;
use super::stats::{Event, Stats};
use crate::distributed::{DistributedCache, Version, Versioned};
use crate::error::{Error, ErrorKind};
use crate::options::EntryOptions;

/// Why an L2 call produced nothing.
#[derive(Debug, Clone)]
pub(crate) enum L2Error {
    /// No L2 configured.
    Absent,
    /// The breaker is open: the call was not made.
    Skipped,
    /// The call failed or ran out of time (logged and counted by the breaker).
    Failed,
}

/// The optional L2 of a cache, with its timeout and breaker.
pub(crate) struct L2 {
    cache: Option<Arc<dyn DistributedCache>>,
    timeout: Duration,
    breaker: Breaker,
    clock: Clock,
    stats: Arc<Stats>,
}

impl std::fmt::Debug for L2 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("L2")
            .field("configured", &self.cache.is_some())
            .field("timeout", &self.timeout)
            .field("breaker", &self.breaker)
            .finish_non_exhaustive()
    }
}

impl L2 {
    pub(crate) fn new(
        cache: Option<Arc<dyn DistributedCache>>,
        timeout: Duration,
        breaker: Breaker,
        clock: Clock,
        stats: Arc<Stats>,
    ) -> Self {
        Self {
            cache,
            timeout,
            breaker,
            clock,
            stats,
        }
    }

    pub(crate) fn is_configured(&self) -> bool {
        self.cache.is_some()
    }

    /// True while the breaker refuses calls.
    pub(crate) fn is_open(&self) -> bool {
        self.breaker.is_open(self.clock.coarse_ms())
    }

    /// The bound of one L2 call.
    pub(crate) fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Reads an entry and its version, by `deadline`.
    pub(crate) async fn read(&self, key: &str, deadline: Instant) -> Result<Versioned, L2Error> {
        self.call("get", key, deadline, |c| c.get_versioned(key))
            .await
    }

    /// Reads several records in one round trip, by `deadline`.
    pub(crate) async fn read_many(
        &self,
        keys: &[&str],
        deadline: Instant,
    ) -> Result<Vec<Option<Bytes>>, L2Error> {
        let first = keys.first().copied().unwrap_or("");
        self.call("get_many", first, deadline, |c| c.get_many(keys))
            .await
    }

    /// Stores an entry unconditionally (an explicit `set`).
    pub(crate) async fn write(
        &self,
        key: &str,
        value: Bytes,
        options: &EntryOptions,
    ) -> Result<(), L2Error> {
        self.call("set", key, self.own_deadline(), |c| {
            c.set(key, value, options)
        })
        .await
    }

    /// Stores an entry if its version is still `expected` (a fill).
    pub(crate) async fn write_if(
        &self,
        key: &str,
        value: Bytes,
        options: &EntryOptions,
        expected: &Version,
    ) -> Result<bool, L2Error> {
        self.call("set_if_version", key, self.own_deadline(), |c| {
            c.set_if_version(key, value, options, expected)
        })
        .await
    }

    /// Removes an entry (a tombstone in the backend).
    pub(crate) async fn remove(&self, key: &str) -> Result<(), L2Error> {
        self.call("remove", key, self.own_deadline(), |c| c.remove(key))
            .await
    }

    /// Advances a stamp record.
    pub(crate) async fn stamp(&self, key: &str, options: &EntryOptions) -> Result<u64, L2Error> {
        self.call("next_stamp", key, self.own_deadline(), |c| {
            c.next_stamp(key, options)
        })
        .await
    }

    fn own_deadline(&self) -> Instant {
        Instant::now() + self.timeout
    }

    async fn call<'a, R, F, Fut>(
        &'a self,
        operation: &'static str,
        key: &str,
        deadline: Instant,
        f: F,
    ) -> Result<R, L2Error>
    where
        F: FnOnce(&'a Arc<dyn DistributedCache>) -> Fut,
        Fut: std::future::Future<Output = crate::error::Result<R>>,
    {
        let Some(cache) = &self.cache else {
            return Err(L2Error::Absent);
        };
        let Some(pass) = self.breaker.pass(self.clock.coarse_ms()) else {
            return Err(L2Error::Skipped);
        };
        let deadline = deadline.min(Instant::now() + self.timeout);
        let outcome = match tokio::time::timeout_at(deadline, f(cache)).await {
            Ok(outcome) => outcome,
            Err(_) => Err(Error::new(
                ErrorKind::Timeout,
                format!(
                    "L2 {operation} did not answer in time (at most {:?} per call, less when \
                     the caller's budget was spent): check the backend, or raise \
                     HybridCacheBuilder::l2_timeout",
                    self.timeout
                ),
            )),
        };
        match outcome {
            Ok(value) => {
                pass.success();
                Ok(value)
            }
            Err(error) => {
                self.stats.record(Event::L2Error);
                pass.failure(self.clock.now_ms(), operation, key, &error);
                Err(L2Error::Failed)
            }
        }
    }
}
