//! [`DistributedCache`]: the byte-level contract every backend implements.
//!
//! This is `IDistributedCache` for Rust: four async operations on opaque byte
//! values. Typed access lives in [`crate::typed`]; the layered cache in
//! [`crate::hybrid`]. The exact semantics are pinned by the conformance suite in
//! `strata-cache-testkit`, which every backend runs.

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;

use crate::error::{Error, ErrorKind, Result};
use crate::options::EntryOptions;

/// A cache shared by every instance of a service: bytes in, bytes out.
///
/// The trait is object safe: services hold an `Arc<dyn DistributedCache>` and
/// pick the backend at start-up.
///
/// Semantics every implementation keeps (the conformance suite checks them):
///
/// - keys are case-sensitive opaque strings; the empty key is rejected;
/// - an empty value round-trips as empty, not as missing;
/// - `set` replaces both the value and the expiration of an existing entry;
/// - `get` and `refresh` push a sliding entry's expiry forward, never past its
///   absolute expiration; they do nothing to an absolute-only entry;
/// - expiry has millisecond precision.
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
