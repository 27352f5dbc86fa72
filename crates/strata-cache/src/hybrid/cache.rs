//! [`HybridCache`]: the public operations. The handle is an `Arc<Engine>`;
//! the hit path is `Engine::l1_fresh`, the miss path lives in `fetch`, the
//! changes in `write`.

use std::future::Future;
use std::sync::Arc;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::builder::HybridCacheBuilder;
use super::engine::Engine;
use super::options::HybridEntryOptions;
use super::order::Scope;
use super::propagate::Propagation;
use super::repr::Serde;
use super::stats::HybridStats;
use super::{FactoryContext, fetch, write};
use crate::error::{Error, ErrorKind, Result};

/// A typed two-level cache: L1 in process, L2 any
/// [`DistributedCache`](crate::DistributedCache), kept coherent across
/// instances by an optional [`Backplane`](crate::Backplane).
///
/// The handle is a cheap `Clone` (one `Arc`); clones share everything.
/// Operations must run inside a Tokio runtime (fetches and the propagation of
/// changes run in spawned tasks). A cache outlives the runtime it was built
/// in: its clock and tasks start again on the runtime of the next call.
///
/// Coherence: every change is applied here at once, then carried to L2 and
/// the other instances; a call waits for that at most `l2_timeout` and says
/// whether it completed ([`Propagation`]). What other instances may see and
/// when is stated in `docs/coherence.md`.
///
/// # Example
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// use std::sync::Arc;
/// use std::time::Duration;
/// use strata_cache::{HybridCache, HybridEntryOptions, MemoryDistributedCache};
///
/// let cache = HybridCache::builder()
///     .distributed(Arc::new(MemoryDistributedCache::new()))
///     .build();
/// let options = HybridEntryOptions::new()
///     .with_expiration(Duration::from_secs(60))
///     .with_tags(["products"]);
/// let name: String = cache
///     .get_or_create("product:1:name", &options, |_ctx| async {
///         Ok::<_, std::io::Error>("Lamp".to_string()) // e.g. a database query
///     })
///     .await?;
/// assert_eq!(name, "Lamp");
/// cache.remove_by_tag("products").await?;
/// # Ok::<(), strata_cache::Error>(())
/// # }).unwrap();
/// ```
#[derive(Clone, Debug)]
pub struct HybridCache {
    pub(crate) engine: Arc<Engine>,
}

impl HybridCache {
    /// A builder with every default: see [`HybridCacheBuilder`].
    pub fn builder() -> HybridCacheBuilder {
        HybridCacheBuilder::new()
    }

    /// Returns the value of `key`: from L1, else L2, else `factory`, whose
    /// result is written back to both layers and announced on the backplane.
    ///
    /// Concurrent calls for one key in this process share one L2 read and one
    /// factory run; a caller that is dropped does not cancel it. L2 and
    /// backplane failures are logged and never fail the call. An invalid key
    /// (empty, or longer than the configured maximum) runs the factory without
    /// caching; a value whose encoding exceeds the payload limit is returned
    /// but not cached.
    ///
    /// The factory runs in a task of its own (so that a dropped caller
    /// cancels nothing), hence `'static`: move into it what it needs (clone a
    /// pool handle, an id). Its error is whatever `?` gives you: any
    /// `std::error::Error`, `Box<dyn Error + Send + Sync>`, `anyhow::Error`.
    ///
    /// A hit clones `T`. For large values cache an `Arc<T>` (serde's `rc`
    /// feature, on in this crate): a hit is then a reference count.
    ///
    /// # Example
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// use std::sync::Arc;
    /// use strata_cache::{HybridCache, HybridEntryOptions};
    ///
    /// #[derive(Clone)]
    /// struct Db; // a connection pool, cheap to clone
    /// impl Db {
    ///     async fn product(&self, id: u64) -> Result<Option<String>, std::io::Error> {
    ///         Ok((id == 7).then(|| "Lamp".to_string()))
    ///     }
    /// }
    ///
    /// let (cache, db) = (HybridCache::builder().build(), Db);
    /// let id = 7;
    /// let name: Arc<Option<String>> = cache
    ///     .get_or_create(&format!("product:{id}"), &HybridEntryOptions::new(), {
    ///         let db = db.clone(); // the factory owns what it uses
    ///         move |_ctx| async move { db.product(id).await.map(Arc::new) }
    ///     })
    ///     .await?;
    /// assert_eq!(name.as_deref(), Some("Lamp"));
    /// # Ok::<(), strata_cache::Error>(())
    /// # }).unwrap();
    /// ```
    ///
    /// # Errors
    ///
    /// - [`ErrorKind::Factory`] when the factory fails and fail-safe has no
    ///   stale value to serve; [`Error::factory_error`] gives the factory's
    ///   own error back, which is also the
    ///   [`source`](std::error::Error::source). Every waiting caller gets it;
    ///   nothing is cached.
    /// - [`ErrorKind::Timeout`] past the hard factory timeout with no stale value.
    /// - [`ErrorKind::InvalidOptions`] for a zero expiration.
    pub async fn get_or_create<T, E, F, Fut>(
        &self,
        key: &str,
        options: &HybridEntryOptions,
        factory: F,
    ) -> Result<T>
    where
        T: Clone + Serialize + DeserializeOwned + Send + Sync + 'static,
        F: FnOnce(FactoryContext) -> Fut + Send + 'static,
        Fut: Future<Output = std::result::Result<T, E>> + Send + 'static,
        E: Into<Box<dyn std::error::Error + Send + Sync>> + Send + 'static,
    {
        if options.reads_l1()
            && let Some(value) = self.engine.l1_fresh::<Serde<T>>(key)
        {
            return Ok(value);
        }
        fetch::get_or_create_slow::<Serde<T>, _, _, _>(&self.engine, key, options, factory).await
    }

    /// Returns the value of `key` from L1 or L2, without a factory. The L2
    /// value is checked against its logical expiry and tags, and copied to L1.
    ///
    /// # Example
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// use strata_cache::{HybridCache, HybridEntryOptions};
    ///
    /// let cache = HybridCache::builder().build();
    /// assert_eq!(cache.get::<u32>("answer").await?, None);
    /// cache.set("answer", 42_u32, &HybridEntryOptions::new()).await?;
    /// assert_eq!(cache.get::<u32>("answer").await?, Some(42));
    /// # Ok::<(), strata_cache::Error>(())
    /// # }).unwrap();
    /// ```
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidKey`] for an empty or too long key. L2 failures are
    /// a miss, not an error.
    pub async fn get<T>(&self, key: &str) -> Result<Option<T>>
    where
        T: Clone + Serialize + DeserializeOwned + Send + Sync + 'static,
    {
        if let Some(value) = self.engine.l1_fresh::<Serde<T>>(key) {
            return Ok(Some(value));
        }
        self.engine.check_key(key)?;
        fetch::get_slow::<Serde<T>>(&self.engine, key).await
    }

    /// Stores `value` under `key`: in L1 at once, then in L2, and tells the
    /// peers to drop their L1 copy.
    ///
    /// Returns whether L2 and the backplane took the change within
    /// `l2_timeout` ([`Propagation::Complete`]) or it finishes in the
    /// background, replayed if need be ([`Propagation::Deferred`]). This
    /// instance serves the new value either way.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidKey`], [`ErrorKind::InvalidOptions`] (a zero
    /// expiration), [`ErrorKind::Serialization`] when the value does not
    /// encode, [`ErrorKind::PayloadTooLarge`] over the payload limit. After
    /// an encoding error the key is removed (its old value must not be
    /// served as if the write had not happened). L2 and backplane failures
    /// are not errors: they make the result `Deferred`.
    pub async fn set<T>(
        &self,
        key: &str,
        value: T,
        options: &HybridEntryOptions,
    ) -> Result<Propagation>
    where
        T: Clone + Serialize + DeserializeOwned + Send + Sync + 'static,
    {
        self.engine.check_key(key)?;
        check_options(options)?;
        write::set::<Serde<T>>(&self.engine, key, value, options).await
    }

    /// Removes `key` from this instance at once, then from L2 and from every
    /// peer's L1.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidKey`]. L2 and backplane failures make the result
    /// [`Propagation::Deferred`]: the removal is replayed until it lands.
    pub async fn remove(&self, key: &str) -> Result<Propagation> {
        self.engine.check_key(key)?;
        tracing::debug!(key, "remove");
        Ok(write::remove(&self.engine, key).await)
    }

    /// Makes every entry tagged `tag` stale, on every instance: at once here,
    /// then through the tag's stamp in L2 and a notice on the backplane.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidKey`] for an empty or too long tag. L2 and
    /// backplane failures make the result [`Propagation::Deferred`].
    pub async fn remove_by_tag(&self, tag: &str) -> Result<Propagation> {
        self.engine.check_key(tag)?;
        tracing::debug!(tag, "remove by tag");
        Ok(write::invalidate(&self.engine, Scope::Tag(tag)).await)
    }

    /// [`remove_by_tag`](Self::remove_by_tag) for each of `tags`; `Deferred`
    /// when any of them is.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidKey`] for an empty or too long tag (checked before
    /// any is removed).
    pub async fn remove_by_tags<I, S>(&self, tags: I) -> Result<Propagation>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let tags: Vec<S> = tags.into_iter().collect();
        for tag in &tags {
            self.engine.check_key(tag.as_ref())?;
        }
        let mut all = Propagation::Complete;
        for tag in &tags {
            if self.remove_by_tag(tag.as_ref()).await? == Propagation::Deferred {
                all = Propagation::Deferred;
            }
        }
        Ok(all)
    }

    /// Makes every entry created until now stale, on every instance.
    ///
    /// # Errors
    ///
    /// None today; L2 and backplane failures make the result
    /// [`Propagation::Deferred`].
    pub async fn clear(&self) -> Result<Propagation> {
        tracing::debug!("clear");
        Ok(write::invalidate(&self.engine, Scope::Clear).await)
    }

    /// This instance's id: the origin of its backplane notices.
    pub fn instance_id(&self) -> &str {
        &self.engine.id
    }

    /// This instance's counters.
    pub fn stats(&self) -> HybridStats {
        self.engine.stats.snapshot(self.engine.propagator.pending())
    }

    /// The cache-wide default entry options (from the builder).
    pub fn default_entry_options(&self) -> &HybridEntryOptions {
        &self.engine.settings.defaults
    }
}

/// Rejects options no entry can have.
pub(crate) fn check_options(options: &HybridEntryOptions) -> Result<()> {
    if options.expiration.is_zero() {
        return Err(Error::new(
            ErrorKind::InvalidOptions,
            "the expiration is zero: use a positive duration, or skip_l1_write and \
             skip_l2_write to not cache",
        ));
    }
    if let Some(threshold) = options.eager_refresh
        && !(threshold > 0.0 && threshold < 1.0)
    {
        return Err(Error::new(
            ErrorKind::InvalidOptions,
            format!(
                "the eager refresh threshold is {threshold}: use a fraction of the entry's \
                 life strictly between 0 and 1 (0.9: refresh after 90%)"
            ),
        ));
    }
    Ok(())
}
