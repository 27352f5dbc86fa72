//! [`HybridCache`]: the public operations. The handle is an `Arc<Inner>`; the
//! miss path lives in `fetch`, the backplane side in `listener`.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::oneshot;

use super::builder::HybridCacheBuilder;
use super::clock::{Clock, system_time};
use super::codec::CodecChoice;
use super::envelope::{CLEAR_KEY, encode_time, entry_key, tag_key};
use super::invalidation::Reads;
use super::l1::{Freshness, L1};
use super::l2::L2;
use super::listener::Announcer;
use super::options::HybridEntryOptions;
use super::repr::{Repr, Typed};
use super::stampede::Flights;
use super::stats::{HybridStats, Stats};
use super::tags::{RECORD_TTL, Tags};
use super::{FactoryContext, fetch, write};
use crate::backplane::BackplaneMessage;
use crate::error::{Error, ErrorKind, Result};
use crate::options::EntryOptions;

/// A typed two-level cache: L1 in process, L2 any
/// [`DistributedCache`](crate::DistributedCache), kept coherent across
/// instances by an optional [`Backplane`](crate::Backplane).
///
/// The handle is a cheap `Clone` (one `Arc`); clones share everything.
/// Operations must run inside a Tokio runtime (fetches run in spawned tasks).
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
    pub(crate) inner: Arc<Inner>,
}

/// Everything one cache shares between its clones and its tasks.
#[derive(Debug)]
pub(crate) struct Inner {
    pub(crate) instance_id: String,
    pub(crate) l1: L1,
    pub(crate) l2: L2,
    pub(crate) announcer: Option<Announcer>,
    pub(crate) flights: Arc<Flights>,
    /// Running reads, told of invalidations that land during them.
    pub(crate) reads: Arc<Reads>,
    pub(crate) tags: Tags,
    pub(crate) clock: Clock,
    pub(crate) stats: Stats,
    /// Bumped by each backplane gap; L1 entries of an older epoch are suspect.
    pub(crate) gap_epoch: AtomicU64,
    pub(crate) codec: CodecChoice,
    pub(crate) defaults: HybridEntryOptions,
    pub(crate) max_key_length: usize,
    pub(crate) max_payload_bytes: usize,
    /// Seeds the jitter of L1 expirations.
    pub(crate) random: foldhash::fast::RandomState,
    /// Dropped with the cache: tells the listener task to end.
    pub(crate) _shutdown: Option<oneshot::Sender<()>>,
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
    /// # Example
    ///
    /// See [`HybridCache`].
    ///
    /// # Errors
    ///
    /// - [`ErrorKind::Factory`] when the factory fails and fail-safe has no
    ///   stale value to serve; the factory's error is the
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
        E: std::error::Error + Send + Sync + 'static,
    {
        if options.reads_l1()
            && let Some(value) = self.inner.l1_fresh::<Typed<T>>(key)
        {
            return Ok(value);
        }
        fetch::get_or_create_slow::<Typed<T>, _, _, _>(&self.inner, key, options, factory).await
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
        if let Some(value) = self.inner.l1_fresh::<Typed<T>>(key) {
            return Ok(Some(value));
        }
        self.inner.check_key(key)?;
        fetch::get_slow::<Typed<T>>(&self.inner, key).await
    }

    /// Stores `value` under `key` in both layers and tells the peers to drop
    /// their L1 copy.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidKey`], [`ErrorKind::InvalidOptions`] (a zero
    /// expiration), [`ErrorKind::Serialization`] when the value does not
    /// encode, [`ErrorKind::PayloadTooLarge`] over the payload limit. L2 and
    /// backplane failures are logged and counted, not returned.
    pub async fn set<T>(&self, key: &str, value: T, options: &HybridEntryOptions) -> Result<()>
    where
        T: Clone + Serialize + DeserializeOwned + Send + Sync + 'static,
    {
        self.inner.check_key(key)?;
        check_options(options)?;
        write::set::<Typed<T>>(&self.inner, key, value, options).await
    }

    /// Removes `key` from both layers and from every peer's L1.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidKey`]. L2 and backplane failures are logged, not returned.
    pub async fn remove(&self, key: &str) -> Result<()> {
        self.inner.check_key(key)?;
        let inner = &self.inner;
        tracing::debug!(key, "remove");
        // Mark first, then remove: a running read either sees the mark or
        // wrote L1 before it (and that copy goes now).
        inner.reads.key_changed(key);
        inner.l1.remove(key);
        let _ = inner
            .l2
            .remove(&inner.clock, &inner.stats, &entry_key(key))
            .await;
        inner
            .announce(BackplaneMessage::Evict {
                key: key.to_owned(),
            })
            .await;
        Ok(())
    }

    /// Makes every entry tagged `tag` stale, on every instance: records the
    /// time locally and in L2, and announces it on the backplane.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidKey`] for an empty or too long tag.
    pub async fn remove_by_tag(&self, tag: &str) -> Result<()> {
        self.inner.check_key(tag)?;
        let inner = &self.inner;
        let now = inner.clock.now_ms();
        tracing::debug!(tag, "remove by tag");
        inner.tags.record(tag, now, 0);
        inner.reads.tag_changed(tag);
        let record = EntryOptions::new().with_relative_expiration(RECORD_TTL);
        let _ = inner
            .l2
            .set(
                &inner.clock,
                &inner.stats,
                &tag_key(tag),
                encode_time(now),
                &record,
            )
            .await;
        inner
            .announce(BackplaneMessage::TagInvalidated {
                tag: tag.to_owned(),
                at: system_time(now),
            })
            .await;
        Ok(())
    }

    /// [`remove_by_tag`](Self::remove_by_tag) for each of `tags`.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidKey`] for an empty or too long tag (checked before
    /// any is removed).
    pub async fn remove_by_tags(&self, tags: &[&str]) -> Result<()> {
        for tag in tags {
            self.inner.check_key(tag)?;
        }
        for tag in tags {
            self.remove_by_tag(tag).await?;
        }
        Ok(())
    }

    /// Makes every entry created until now stale, on every instance.
    ///
    /// # Errors
    ///
    /// None today; L2 and backplane failures are logged, not returned.
    pub async fn clear(&self) -> Result<()> {
        let inner = &self.inner;
        let now = inner.clock.now_ms();
        tracing::debug!("clear");
        inner.tags.record_clear(now, 0);
        inner.reads.all_changed();
        inner.l1.clear();
        let record = EntryOptions::new().with_relative_expiration(RECORD_TTL);
        let _ = inner
            .l2
            .set(
                &inner.clock,
                &inner.stats,
                CLEAR_KEY,
                encode_time(now),
                &record,
            )
            .await;
        inner
            .announce(BackplaneMessage::Cleared {
                at: system_time(now),
            })
            .await;
        Ok(())
    }

    /// This instance's id: the origin of its backplane notices.
    pub fn instance_id(&self) -> &str {
        &self.inner.instance_id
    }

    /// This instance's counters.
    pub fn stats(&self) -> HybridStats {
        self.inner.stats.snapshot()
    }

    /// The cache-wide default entry options (from the builder).
    pub fn default_entry_options(&self) -> &HybridEntryOptions {
        &self.inner.defaults
    }
}

impl Inner {
    /// The hit path: a fresh L1 entry of representation `R`, or `None`. No
    /// allocation, no clock call, no reference count: the entry is checked
    /// and its value cloned under the L1 shard's read lock.
    #[inline]
    pub(crate) fn l1_fresh<R: Repr>(&self, key: &str) -> Option<R::Value> {
        let now = self.clock.coarse_ms();
        let tag_epoch = self.tags.epoch();
        let gap = self.gap_epoch.load(Ordering::Acquire);
        let value = self.l1.read(key, |entry| {
            if entry.freshness(now, tag_epoch, gap) != Freshness::Fresh {
                return None;
            }
            entry.get::<R>()
        })??;
        self.stats.l1_hit();
        Some(value)
    }

    /// Rejects an empty key or one over the configured length.
    pub(crate) fn check_key(&self, key: &str) -> Result<()> {
        if key.is_empty() || key.len() > self.max_key_length {
            return Err(Error::new(
                ErrorKind::InvalidKey,
                format!(
                    "the key or tag is {} bytes long; use 1 to {} bytes \
                     (HybridCacheBuilder::max_key_length)",
                    key.len(),
                    self.max_key_length
                ),
            ));
        }
        Ok(())
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
    Ok(())
}
