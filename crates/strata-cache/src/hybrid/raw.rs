//! The raw-bytes operations of [`HybridCache`]: for values that are already
//! encoded (an HTTP response body, a pre-rendered page) and are served as they
//! are. No codec runs: L2 holds the bytes in the envelope as is (codec id 0),
//! an L2 hit returns a zero-copy slice of the buffer L2 returned, and L1
//! holds the `Bytes` (a hit is a reference-count increment).
//!
//! Everything else is the typed path's machinery: stampede protection, tags,
//! fail-safe, timeouts, the backplane and the invalidation race fix. A key
//! holds one kind: a typed read of a raw entry is a miss, and the reverse.

use std::future::Future;

use bytes::Bytes;

use super::cache::{HybridCache, check_options};
use super::options::HybridEntryOptions;
use super::propagate::Propagation;
use super::repr::Raw;
use super::{FactoryContext, fetch, write};
#[cfg(doc)]
use crate::error::ErrorKind;
use crate::error::Result;

impl HybridCache {
    /// [`get_or_create`](Self::get_or_create) for pre-encoded bytes: returns
    /// the bytes of `key` from L1, else L2, else `factory`, whose bytes are
    /// cached as they are.
    ///
    /// The returned `Bytes` shares its buffer with the cache (no copy on an L1
    /// hit; on an L2 hit, a slice of the buffer the L2 backend returned).
    ///
    /// # Example
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// use strata_cache::{Bytes, HybridCache, HybridEntryOptions};
    ///
    /// let cache = HybridCache::builder().build();
    /// let options = HybridEntryOptions::new().with_tags(["products"]);
    /// let body = cache
    ///     .get_or_create_bytes("products:page:1", &options, |_ctx| async {
    ///         // e.g. a database query, encoded once as the HTTP response body
    ///         Ok::<_, std::io::Error>(Bytes::from_static(br#"[{"id":1}]"#))
    ///     })
    ///     .await?;
    /// assert_eq!(&body[..], br#"[{"id":1}]"#);
    /// # Ok::<(), strata_cache::Error>(())
    /// # }).unwrap();
    /// ```
    ///
    /// # Errors
    ///
    /// As [`get_or_create`](Self::get_or_create): [`ErrorKind::Factory`],
    /// [`ErrorKind::Timeout`], [`ErrorKind::InvalidOptions`].
    pub async fn get_or_create_bytes<E, F, Fut>(
        &self,
        key: &str,
        options: &HybridEntryOptions,
        factory: F,
    ) -> Result<Bytes>
    where
        F: FnOnce(FactoryContext) -> Fut + Send + 'static,
        Fut: Future<Output = std::result::Result<Bytes, E>> + Send + 'static,
        E: Into<Box<dyn std::error::Error + Send + Sync>> + Send + 'static,
    {
        if options.reads_l1()
            && let Some(value) = self.engine.l1_fresh::<Raw>(key)
        {
            return Ok(value);
        }
        fetch::get_or_create_slow::<Raw, _, _, _>(&self.engine, key, options, factory).await
    }

    /// [`get`](Self::get) for pre-encoded bytes: the bytes of `key` from L1
    /// or L2, without a factory. An entry written by the typed API is a miss.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidKey`] for an empty or too long key. L2 failures are
    /// a miss, not an error.
    pub async fn get_bytes(&self, key: &str) -> Result<Option<Bytes>> {
        if let Some(value) = self.engine.l1_fresh::<Raw>(key) {
            return Ok(Some(value));
        }
        self.engine.check_key(key)?;
        fetch::get_slow::<Raw>(&self.engine, key).await
    }

    /// [`set`](Self::set) for pre-encoded bytes: stores `value` as it is under
    /// `key` in both layers and tells the peers to drop their L1 copy.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidKey`], [`ErrorKind::InvalidOptions`] (a zero
    /// expiration), [`ErrorKind::PayloadTooLarge`] over the payload limit.
    /// L2 and backplane failures are logged and counted, not returned.
    pub async fn set_bytes(
        &self,
        key: &str,
        value: Bytes,
        options: &HybridEntryOptions,
    ) -> Result<Propagation> {
        self.engine.check_key(key)?;
        check_options(options)?;
        write::set::<Raw>(&self.engine, key, value, options).await
    }
}
