//! [`HybridEntryOptions`]: how one `get_or_create`/`set` call caches its entry.
//!
//! Cache-wide settings (capacity, limits, timeouts of the layers) live on the
//! builder; these are per entry, and a cache's default set comes from
//! [`HybridCacheBuilder::default_entry_options`](super::HybridCacheBuilder::default_entry_options).

use std::time::Duration;

/// Default logical expiration: 5 minutes, as ASP.NET Core's HybridCache.
pub const DEFAULT_EXPIRATION: Duration = Duration::from_secs(5 * 60);
/// Default fail-safe throttle: after a failed refresh, the stale value is
/// served this long before the factory is tried again (FusionCache's default).
pub const DEFAULT_FAIL_SAFE_THROTTLE: Duration = Duration::from_secs(30);

const SKIP_L1_READ: u8 = 1;
const SKIP_L1_WRITE: u8 = 2;
const SKIP_L2_READ: u8 = 4;
const SKIP_L2_WRITE: u8 = 8;

/// Per-entry options of a [`HybridCache`](super::HybridCache) call.
///
/// Defaults: expiration [`DEFAULT_EXPIRATION`] (5 minutes) in both layers, no
/// sliding expiration, no tags, no jitter, fail-safe off, no factory timeouts,
/// no eager refresh, every layer read and written.
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use strata_cache::HybridEntryOptions;
///
/// let options = HybridEntryOptions::new()
///     .with_expiration(Duration::from_secs(600))
///     .with_local_expiration(Duration::from_secs(30))
///     .with_tags(["products", "catalog"])
///     .with_fail_safe(Duration::from_secs(3600))
///     .with_factory_timeouts(Some(Duration::from_millis(100)), Some(Duration::from_secs(2)));
/// assert_eq!(options.local_expiration(), Duration::from_secs(30));
/// ```
#[derive(Debug, Clone, PartialEq)]
#[must_use]
pub struct HybridEntryOptions {
    pub(crate) expiration: Duration,
    pub(crate) local_expiration: Option<Duration>,
    pub(crate) sliding: Option<Duration>,
    pub(crate) tags: Vec<String>,
    pub(crate) jitter: Option<Duration>,
    pub(crate) fail_safe_max: Option<Duration>,
    pub(crate) fail_safe_throttle: Duration,
    pub(crate) soft_timeout: Option<Duration>,
    pub(crate) hard_timeout: Option<Duration>,
    pub(crate) eager_refresh: Option<f32>,
    flags: u8,
}

impl Default for HybridEntryOptions {
    fn default() -> Self {
        Self {
            expiration: DEFAULT_EXPIRATION,
            local_expiration: None,
            sliding: None,
            tags: Vec::new(),
            jitter: None,
            fail_safe_max: None,
            fail_safe_throttle: DEFAULT_FAIL_SAFE_THROTTLE,
            soft_timeout: None,
            hard_timeout: None,
            eager_refresh: None,
            flags: 0,
        }
    }
}

impl HybridEntryOptions {
    /// The defaults listed on the type.
    pub fn new() -> Self {
        Self::default()
    }

    /// The logical expiration: how long the value is fresh, in L2 and (unless
    /// [`with_local_expiration`](Self::with_local_expiration)) in L1. A zero
    /// duration is rejected by the calls that use the options.
    pub fn with_expiration(mut self, expiration: Duration) -> Self {
        self.expiration = expiration;
        self
    }

    /// How long L1 serves the value before asking L2 again; defaults to the
    /// expiration and never exceeds it. A short local expiration bounds how
    /// stale an instance without a backplane can be.
    pub fn with_local_expiration(mut self, expiration: Duration) -> Self {
        self.local_expiration = Some(expiration);
        self
    }

    /// Drops the entry when it is not read for `idle` (in L1, and in L2
    /// through the backend's sliding expiration), within its expiration.
    pub fn with_sliding_expiration(mut self, idle: Duration) -> Self {
        self.sliding = Some(idle);
        self
    }

    /// Tags of the entry, for [`remove_by_tag`](super::HybridCache::remove_by_tag).
    /// Adds to the tags already set.
    pub fn with_tags<I, S>(mut self, tags: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.tags.extend(tags.into_iter().map(Into::into));
        self
    }

    /// Adds a random duration up to `jitter` to the L1 expiration, so that
    /// instances that cached a key together do not all refresh it together.
    pub fn with_jitter(mut self, jitter: Duration) -> Self {
        self.jitter = Some(jitter);
        self
    }

    /// Turns fail-safe on: the last good value is kept for `max_duration`
    /// after its creation and served when a refresh fails (factory error, L2
    /// failure after the logical expiry) or exceeds the soft timeout.
    pub fn with_fail_safe(mut self, max_duration: Duration) -> Self {
        self.fail_safe_max = Some(max_duration);
        self
    }

    /// After a failed refresh, serve the stale value this long before trying
    /// the factory again (default [`DEFAULT_FAIL_SAFE_THROTTLE`], 30 s).
    pub fn with_fail_safe_throttle(mut self, throttle: Duration) -> Self {
        self.fail_safe_throttle = throttle;
        self
    }

    /// Factory timeouts. `soft` applies only when a stale value is at hand
    /// (fail-safe): past it the stale value is returned and the factory goes
    /// on in the background to refresh the entry. `hard` applies always: past
    /// it the call returns the stale value if there is one, else an
    /// [`ErrorKind::Timeout`](crate::ErrorKind::Timeout) error; the factory
    /// still completes in the background and caches its result.
    ///
    /// Both count from the moment the caller starts waiting for the refresh.
    pub fn with_factory_timeouts(mut self, soft: Option<Duration>, hard: Option<Duration>) -> Self {
        self.soft_timeout = soft;
        self.hard_timeout = hard;
        self
    }

    /// Eager refresh: a hit past `threshold` (a fraction of the entry's life,
    /// strictly between 0 and 1, e.g. 0.9) returns at once and refreshes the
    /// entry in the background, once. A threshold outside (0, 1) is refused:
    /// calls not answered from L1 fail with
    /// [`ErrorKind::InvalidOptions`](crate::ErrorKind::InvalidOptions).
    pub fn with_eager_refresh(mut self, threshold: f32) -> Self {
        self.eager_refresh = Some(threshold);
        self
    }

    /// Do not read L1 for this call (L2 and the factory still apply).
    pub fn skip_l1_read(mut self) -> Self {
        self.flags |= SKIP_L1_READ;
        self
    }

    /// Do not write the result to L1.
    pub fn skip_l1_write(mut self) -> Self {
        self.flags |= SKIP_L1_WRITE;
        self
    }

    /// Do not read L2 for this call.
    pub fn skip_l2_read(mut self) -> Self {
        self.flags |= SKIP_L2_READ;
        self
    }

    /// Do not write the result to L2.
    pub fn skip_l2_write(mut self) -> Self {
        self.flags |= SKIP_L2_WRITE;
        self
    }

    /// The logical expiration.
    pub fn expiration(&self) -> Duration {
        self.expiration
    }

    /// The L1 expiration: the local one if set, never more than the logical one.
    pub fn local_expiration(&self) -> Duration {
        self.local_expiration
            .map_or(self.expiration, |l| l.min(self.expiration))
    }

    /// The tags.
    pub fn tags(&self) -> &[String] {
        &self.tags
    }

    /// The fail-safe maximum duration, when fail-safe is on.
    pub fn fail_safe_max_duration(&self) -> Option<Duration> {
        self.fail_safe_max
    }

    #[inline]
    pub(crate) fn reads_l1(&self) -> bool {
        self.flags & SKIP_L1_READ == 0
    }

    pub(crate) fn writes_l1(&self) -> bool {
        self.flags & SKIP_L1_WRITE == 0
    }

    pub(crate) fn reads_l2(&self) -> bool {
        self.flags & SKIP_L2_READ == 0
    }

    pub(crate) fn writes_l2(&self) -> bool {
        self.flags & SKIP_L2_WRITE == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_flags() {
        let o = HybridEntryOptions::new();
        assert_eq!(o.expiration(), DEFAULT_EXPIRATION);
        assert_eq!(o.local_expiration(), DEFAULT_EXPIRATION);
        assert!(o.reads_l1() && o.writes_l1() && o.reads_l2() && o.writes_l2());
        let o = o.skip_l1_read().skip_l2_write();
        assert!(!o.reads_l1() && o.writes_l1() && o.reads_l2() && !o.writes_l2());
    }

    #[test]
    fn local_expiration_never_exceeds_expiration() {
        let o = HybridEntryOptions::new()
            .with_expiration(Duration::from_secs(10))
            .with_local_expiration(Duration::from_secs(60));
        assert_eq!(o.local_expiration(), Duration::from_secs(10));
    }

    #[test]
    fn eager_threshold_is_kept_as_given_for_the_call_to_check() {
        assert_eq!(
            HybridEntryOptions::new()
                .with_eager_refresh(0.8)
                .eager_refresh,
            Some(0.8)
        );
    }
}
