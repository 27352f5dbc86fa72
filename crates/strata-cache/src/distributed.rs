//! [`DistributedCache`]: the byte-level contract every backend implements.
//!
//! This is `IDistributedCache` for Rust: four async operations on opaque byte
//! values, plus what a cache shared by several writers needs to stay coherent
//! (see `docs/coherence.md`): a batch read, version-checked writes that a
//! removal or a newer write defeats, and stamps that order invalidations.
//! Typed access lives in [`crate::typed`]; the layered cache in
//! [`crate::hybrid`]. The exact semantics are pinned by the conformance suite in
//! `strata-cache-testkit`, which every backend runs.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;

use crate::error::{Error, ErrorKind, Result};
use crate::options::EntryOptions;

/// How long a removal is remembered (a *tombstone*), and so how long a read
/// may run before its version-checked write-back is refused outright: 10
/// minutes.
///
/// A backend keeps a removed key's new version this long, so that a
/// [`set_if_version`](DistributedCache::set_if_version) based on a read from
/// before the removal fails. A write-back based on an older read is refused
/// whatever the backend holds ([`Version::is_expired`]).
pub const TOMBSTONE_TTL: Duration = Duration::from_secs(10 * 60);

/// The version of a key as a read saw it: what
/// [`set_if_version`](DistributedCache::set_if_version) compares against.
///
/// Every write and every removal gives a key a new version, so a write-back
/// based on a read lands only if nothing changed the key since. Opaque to
/// callers; backends build it with [`absent`](Self::absent),
/// [`token`](Self::token) and [`unversioned`](Self::unversioned).
#[derive(Debug, Clone)]
pub struct Version {
    state: VersionState,
    read_at: Instant,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum VersionState {
    /// No entry and no tombstone; the number is the backend's own (a floor
    /// raised by evictions, or 0).
    Absent(u64),
    /// An entry or a tombstone with this token.
    Token(u64),
    /// An entry written by someone who does not version (a .NET service):
    /// never matches.
    Unversioned,
}

impl Version {
    /// The version of a key that holds nothing. `floor` is the backend's:
    /// two absent versions match only when their floors are equal (a backend
    /// that forgets removed keys raises it), 0 for a backend that never forgets
    /// within [`TOMBSTONE_TTL`].
    pub fn absent(floor: u64) -> Self {
        Self::new(VersionState::Absent(floor))
    }

    /// The version of an entry or tombstone carrying `token`.
    pub fn token(token: u64) -> Self {
        Self::new(VersionState::Token(token))
    }

    /// The version of an entry that carries none (written by another
    /// program): no version-checked write replaces it.
    pub fn unversioned() -> Self {
        Self::new(VersionState::Unversioned)
    }

    fn new(state: VersionState) -> Self {
        Self {
            state,
            read_at: Instant::now(),
        }
    }

    /// The token of an entry or tombstone, if this version has one.
    pub fn as_token(&self) -> Option<u64> {
        match self.state {
            VersionState::Token(token) => Some(token),
            _ => None,
        }
    }

    /// The floor of an absent key, if the key was absent.
    pub fn as_absent(&self) -> Option<u64> {
        match self.state {
            VersionState::Absent(floor) => Some(floor),
            _ => None,
        }
    }

    /// True when the read was made longer than [`TOMBSTONE_TTL`] ago: a
    /// write-back based on it must be refused, since the removals it should
    /// lose to may be forgotten.
    pub fn is_expired(&self) -> bool {
        self.read_at.elapsed() >= TOMBSTONE_TTL
    }
}

impl PartialEq for Version {
    /// Versions are equal when they name the same state; when they were read
    /// does not matter. [`unversioned`](Self::unversioned) equals nothing.
    fn eq(&self, other: &Self) -> bool {
        self.state != VersionState::Unversioned && self.state == other.state
    }
}

/// A value as [`get_versioned`](DistributedCache::get_versioned) read it,
/// with the version of its key.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Versioned {
    /// The value, `None` for a missing, expired or removed key.
    pub value: Option<Bytes>,
    /// The key's version: pass it to [`set_if_version`](DistributedCache::set_if_version).
    pub version: Version,
}

impl Versioned {
    /// A read's result.
    pub fn new(value: Option<Bytes>, version: Version) -> Self {
        Self { value, version }
    }
}

/// A cache shared by every instance of a service: bytes in, bytes out.
///
/// The trait is object safe: services hold an `Arc<dyn DistributedCache>` and
/// pick the backend at start-up.
///
/// Semantics every implementation keeps (the conformance suite checks them):
///
/// - keys are case-sensitive opaque strings; the empty key is rejected;
/// - an empty value round-trips as empty, not as missing;
/// - `set` replaces both the value and the expiration of an existing entry; a
///   `set` the backend refuses removes the entry;
/// - `get` and `refresh` push a sliding entry's expiry forward, never past its
///   absolute expiration; they do nothing to an absolute-only entry;
/// - expiry has millisecond precision;
/// - every write and removal gives the key a new [`Version`]; a removal is
///   remembered for [`TOMBSTONE_TTL`] (a tombstone, which reads as missing);
/// - stamps ([`next_stamp`](Self::next_stamp)) of one key only grow.
#[async_trait]
pub trait DistributedCache: Send + Sync + 'static {
    /// Returns the value stored under `key`, or `None` when there is none (never
    /// written, removed, expired or evicted). Renews a sliding expiration.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidKey`] for an empty key; a backend failure otherwise
    /// ([`ErrorKind::Unavailable`], [`ErrorKind::Timeout`], ...).
    async fn get(&self, key: &str) -> Result<Option<Bytes>>;

    /// Stores `value` under `key` with `options`, replacing any existing entry
    /// along with its expiration.
    ///
    /// A failed `set` does not leave the previous value to be served in place
    /// of the new one: when the backend refuses the write (the value too
    /// large, the options invalid, a server out of memory), the key is removed
    /// and reads as missing, as after [`remove`](Self::remove). Only a backend
    /// that cannot be reached at all keeps what it held.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidOptions`] when `options` do not
    /// [resolve](EntryOptions::resolve); [`ErrorKind::InvalidKey`];
    /// [`ErrorKind::PayloadTooLarge`] when the backend cannot hold the value;
    /// a backend failure otherwise.
    async fn set(&self, key: &str, value: Bytes, options: &EntryOptions) -> Result<()>;

    /// Renews the sliding expiration of `key` without reading its value. Does
    /// nothing for a missing entry or one without sliding expiration.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidKey`]; a backend failure otherwise.
    async fn refresh(&self, key: &str) -> Result<()>;

    /// Removes `key`. Removing a missing key is not an error.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidKey`]; a backend failure otherwise.
    async fn remove(&self, key: &str) -> Result<()>;

    /// Returns the values of `keys`, in order, as [`get`](Self::get) would
    /// (sliding entries slide). One round trip on a single Redis.
    ///
    /// The default runs `get` for each key in turn; backends override it.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidKey`] when a key is empty; a backend failure otherwise.
    async fn get_many(&self, keys: &[&str]) -> Result<Vec<Option<Bytes>>> {
        let mut values = Vec::with_capacity(keys.len());
        for key in keys {
            values.push(self.get(key).await?);
        }
        Ok(values)
    }

    /// Reads `key` as [`get`](Self::get) does, and returns its [`Version`] too:
    /// the token to pass to [`set_if_version`](Self::set_if_version) when the
    /// caller fills a miss (cache-aside) or refreshes the value.
    ///
    /// # Errors
    ///
    /// As [`get`](Self::get).
    async fn get_versioned(&self, key: &str) -> Result<Versioned>;

    /// Stores `value` as [`set`](Self::set) does, but only if the key's version
    /// is still `expected`: nothing wrote or removed it since the read that
    /// returned `expected`. Returns whether the value was stored.
    ///
    /// This is what keeps a cache-aside reader that loaded a row before a
    /// writer committed from putting the old row back after the writer's
    /// `remove`: the removal changed the version. Refused (`Ok(false)`) when
    /// `expected` [is expired](Version::is_expired) or
    /// [unversioned](Version::unversioned).
    ///
    /// A write refused for its value or its options (too large, invalid)
    /// removes the value it would have replaced, if the version is still
    /// `expected`; otherwise the key is left as it is.
    ///
    /// # Errors
    ///
    /// As [`set`](Self::set).
    async fn set_if_version(
        &self,
        key: &str,
        value: Bytes,
        options: &EntryOptions,
        expected: &Version,
    ) -> Result<bool>;

    /// Advances the stamp stored under `key` and returns it: a number greater
    /// than any stamp this key held, and at least the backend's clock in
    /// microseconds since the Unix epoch, so that a stamp lost with its key
    /// (expired, evicted, a restarted backend) still moves forward. The record
    /// is stored as an entry whose value is the stamp in decimal, with
    /// `options`' expiration. HybridCache orders tag invalidations with it.
    ///
    /// # Errors
    ///
    /// As [`set`](Self::set); [`ErrorKind::Serialization`] when the key holds a
    /// value that is not a stamp.
    async fn next_stamp(&self, key: &str, options: &EntryOptions) -> Result<u64>;
}

#[async_trait]
impl<T: DistributedCache + ?Sized> DistributedCache for Arc<T> {
    async fn get(&self, key: &str) -> Result<Option<Bytes>> {
        (**self).get(key).await
    }

    async fn set(&self, key: &str, value: Bytes, options: &EntryOptions) -> Result<()> {
        (**self).set(key, value, options).await
    }

    async fn refresh(&self, key: &str) -> Result<()> {
        (**self).refresh(key).await
    }

    async fn remove(&self, key: &str) -> Result<()> {
        (**self).remove(key).await
    }

    async fn get_many(&self, keys: &[&str]) -> Result<Vec<Option<Bytes>>> {
        (**self).get_many(keys).await
    }

    async fn get_versioned(&self, key: &str) -> Result<Versioned> {
        (**self).get_versioned(key).await
    }

    async fn set_if_version(
        &self,
        key: &str,
        value: Bytes,
        options: &EntryOptions,
        expected: &Version,
    ) -> Result<bool> {
        (**self).set_if_version(key, value, options, expected).await
    }

    async fn next_stamp(&self, key: &str, options: &EntryOptions) -> Result<u64> {
        (**self).next_stamp(key, options).await
    }
}

/// Parses a stamp record's value (decimal); `None` for anything else.
pub(crate) fn parse_stamp(bytes: &[u8]) -> Option<u64> {
    std::str::from_utf8(bytes).ok()?.parse().ok()
}

/// Rejects the keys no backend accepts: the empty key.
///
/// Backends call this first, so every backend answers a bad key the same way.
///
/// # Errors
///
/// [`ErrorKind::InvalidKey`] when `key` is empty.
pub fn validate_key(key: &str) -> Result<()> {
    if key.is_empty() {
        return Err(Error::new(
            ErrorKind::InvalidKey,
            "the cache key is empty: use a non-empty key such as \"product:42\"",
        ));
    }
    Ok(())
}
