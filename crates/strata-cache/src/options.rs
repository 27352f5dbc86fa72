//! [`EntryOptions`]: when a cache entry expires, and [`Expiration`], the same
//! options resolved against a clock and validated.
//!
//! The rules are those of `DistributedCacheEntryOptions` in ASP.NET Core, made
//! strict: an absolute expiration (a point in time), an absolute expiration
//! relative to now (a duration, which wins when both are set) and a sliding
//! expiration (renewed by every read, never past the absolute one). Backends
//! never interpret options themselves: they call [`EntryOptions::resolve`].

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::error::{Error, Result};

/// The latest instant an entry may expire at: 9999-12-31T23:59:59Z, the largest
/// `DateTimeOffset` .NET can represent, so every entry stays readable by the
/// .NET Redis provider.
pub const MAX_EXPIRATION_UNIX_SECS: u64 = 253_402_300_799;

/// How long a cache entry lives.
///
/// The default has no expiration: the entry lives until it is removed or
/// evicted.
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use strata_cache::EntryOptions;
///
/// // The reference article's product list: gone after 20 minutes at the latest,
/// // and after 2 minutes without a read.
/// let options = EntryOptions::new()
///     .with_relative_expiration(Duration::from_secs(20 * 60))
///     .with_sliding_expiration(Duration::from_secs(2 * 60));
/// assert_eq!(options.sliding_expiration(), Some(Duration::from_secs(120)));
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
#[must_use]
pub struct EntryOptions {
    absolute: Option<SystemTime>,
    relative: Option<Duration>,
    sliding: Option<Duration>,
}

impl EntryOptions {
    /// Options with no expiration at all.
    pub fn new() -> Self {
        Self::default()
    }

    /// Expire at a point in time. Ignored when a relative expiration is also set.
    pub fn with_absolute_expiration(mut self, at: SystemTime) -> Self {
        self.absolute = Some(at);
        self
    }

    /// Expire this long after the write (`AbsoluteExpirationRelativeToNow` in .NET).
    pub fn with_relative_expiration(mut self, after: Duration) -> Self {
        self.relative = Some(after);
        self
    }

    /// Expire when not read for this long; every `get` or `refresh` renews it,
    /// but never past the absolute expiration.
    pub fn with_sliding_expiration(mut self, idle: Duration) -> Self {
        self.sliding = Some(idle);
        self
    }

    /// The absolute expiration, as set.
    pub fn absolute_expiration(&self) -> Option<SystemTime> {
        self.absolute
    }

    /// The expiration relative to the write, as set.
    pub fn relative_expiration(&self) -> Option<Duration> {
        self.relative
    }

    /// The sliding expiration, as set.
    pub fn sliding_expiration(&self) -> Option<Duration> {
        self.sliding
    }

    /// Checks the options against `now` and turns them into an [`Expiration`]:
    /// a relative expiration becomes `now + duration` and replaces any absolute one.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidOptions`](crate::ErrorKind::InvalidOptions) when the
    /// absolute expiration is at or before `now`, when the relative or sliding
    /// duration is zero, or when an expiration would fall after
    /// 9999-12-31T23:59:59Z.
    pub fn resolve(&self, now: SystemTime) -> Result<Expiration> {
        let absolute = match (self.relative, self.absolute) {
            (Some(relative), _) => {
                if relative.is_zero() {
                    return Err(Error::invalid_options(
                        "the relative expiration is zero: use a positive duration, \
                         or no expiration for an entry that lives until removed",
                    ));
                }
                Some(checked_deadline(now, relative, "relative")?)
            }
            (None, Some(at)) => {
                if at <= now {
                    return Err(Error::invalid_options(format!(
                        "the absolute expiration {} is not in the future (now is {}): \
                         pass a later time, or use a relative expiration",
                        unix_display(at),
                        unix_display(now)
                    )));
                }
                if at > max_expiration() {
                    return Err(Error::invalid_options(
                        "the absolute expiration is after 9999-12-31T23:59:59Z, \
                         the latest instant a cache entry may have",
                    ));
                }
                Some(at)
            }
            (None, None) => None,
        };
        if let Some(sliding) = self.sliding {
            if sliding.is_zero() {
                return Err(Error::invalid_options(
                    "the sliding expiration is zero: use a positive duration, \
                     or no sliding expiration",
                ));
            }
            checked_deadline(now, sliding, "sliding")?;
        }
        Ok(Expiration {
            absolute,
            sliding: self.sliding,
        })
    }
}

/// Validated expiration of one entry: an absolute deadline and a sliding window.
///
/// Backends store these two values (the Redis layout stores exactly these) and
/// ask [`deadline`](Expiration::deadline) when the entry expires next.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Expiration {
    absolute: Option<SystemTime>,
    sliding: Option<Duration>,
}

impl Expiration {
    /// Rebuilds an expiration from stored parts, without validation (a stored
    /// entry may legitimately be past its deadline).
    pub fn from_parts(absolute: Option<SystemTime>, sliding: Option<Duration>) -> Self {
        Self { absolute, sliding }
    }

    /// The point in time after which the entry is gone, whatever its reads.
    pub fn absolute(&self) -> Option<SystemTime> {
        self.absolute
    }

    /// The idle time after which the entry is gone.
    pub fn sliding(&self) -> Option<Duration> {
        self.sliding
    }

    /// True when the entry never expires by itself.
    pub fn is_never(&self) -> bool {
        self.absolute.is_none() && self.sliding.is_none()
    }

    /// When the entry expires if it is touched (written, read or refreshed) at
    /// `now`: `now + sliding`, capped by the absolute expiration.
    pub fn deadline(&self, now: SystemTime) -> Option<SystemTime> {
        let slid = self.sliding.and_then(|s| now.checked_add(s));
        match (slid, self.absolute) {
            (Some(s), Some(a)) => Some(s.min(a)),
            (Some(s), None) => Some(s),
            (None, a) => a,
        }
    }

    /// How long the entry lives if touched at `now`: `None` for no expiration,
    /// zero when it is already due.
    pub fn time_to_live(&self, now: SystemTime) -> Option<Duration> {
        self.deadline(now)
            .map(|d| d.duration_since(now).unwrap_or(Duration::ZERO))
    }
}

fn max_expiration() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(MAX_EXPIRATION_UNIX_SECS)
}

fn checked_deadline(now: SystemTime, after: Duration, what: &str) -> Result<SystemTime> {
    now.checked_add(after)
        .filter(|at| *at <= max_expiration())
        .ok_or_else(|| {
            Error::invalid_options(format!(
                "the {what} expiration of {after:?} reaches past 9999-12-31T23:59:59Z: \
                 use a shorter duration, or no expiration"
            ))
        })
}

fn unix_display(t: SystemTime) -> String {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => format!("{:.3}s after the Unix epoch", d.as_secs_f64()),
        Err(e) => format!("{:.3}s before the Unix epoch", e.duration().as_secs_f64()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    const MIN: Duration = Duration::from_secs(60);

    fn now() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_700_000_000)
    }

    #[test]
    fn no_options_never_expire() {
        let e = EntryOptions::new().resolve(now()).unwrap();
        assert!(e.is_never());
        assert_eq!(e.deadline(now()), None);
        assert_eq!(e.time_to_live(now()), None);
    }

    #[test]
    fn relative_wins_over_absolute() {
        let e = EntryOptions::new()
            .with_absolute_expiration(now() + 10 * MIN)
            .with_relative_expiration(MIN)
            .resolve(now())
            .unwrap();
        assert_eq!(e.absolute(), Some(now() + MIN));
    }

    #[test]
    fn relative_wins_even_over_a_past_absolute() {
        let e = EntryOptions::new()
            .with_absolute_expiration(now() - MIN)
            .with_relative_expiration(MIN)
            .resolve(now());
        assert!(e.is_ok());
    }

    #[test]
    fn sliding_is_capped_by_absolute() {
        let e = EntryOptions::new()
            .with_relative_expiration(3 * MIN)
            .with_sliding_expiration(2 * MIN)
            .resolve(now())
            .unwrap();
        assert_eq!(e.deadline(now()), Some(now() + 2 * MIN));
        assert_eq!(e.deadline(now() + 2 * MIN), Some(now() + 3 * MIN));
        assert_eq!(e.time_to_live(now() + 4 * MIN), Some(Duration::ZERO));
    }

    #[test]
    fn invalid_options_are_rejected_with_a_reason() {
        let cases = [
            EntryOptions::new().with_absolute_expiration(now()),
            EntryOptions::new().with_absolute_expiration(now() - MIN),
            EntryOptions::new().with_relative_expiration(Duration::ZERO),
            EntryOptions::new().with_sliding_expiration(Duration::ZERO),
            EntryOptions::new().with_relative_expiration(Duration::MAX),
            EntryOptions::new().with_sliding_expiration(Duration::from_secs(u64::MAX / 2)),
            EntryOptions::new().with_absolute_expiration(
                UNIX_EPOCH + Duration::from_secs(MAX_EXPIRATION_UNIX_SECS + 1),
            ),
        ];
        for options in cases {
            let err = options.resolve(now()).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidOptions, "{options:?}");
            assert!(err.message().contains("expiration"), "{err}");
        }
    }
}
