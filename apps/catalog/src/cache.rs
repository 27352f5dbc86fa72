//! [`ProductCache`]: how the catalog caches products, whatever the strategy
//! (`CACHE=none|memory|redis|hybrid`), and how writes invalidate.
//!
//! Entries and their lifetimes:
//!
//! | key | value | lifetime |
//! |---|---|---|
//! | `product:{id}` | the product's JSON body | sliding 30 min, at most 1 h (the article's defaults); L1 5 min |
//! | `product:{id}` | `null`: "no such product" | 30 s: a short negative entry, so a flood of lookups of a missing id costs one query per 30 s; any write to the id removes it |
//! | `products` | the full list's JSON body, tag `products` | at most 20 min, sliding 2 min (the article's list entry); L1 5 min |
//!
//! Values are the response bodies themselves, encoded once when the cache is
//! filled, and served as they are: a hit costs no decode and no re-encode
//! (a thousand products are about 300 KB of JSON). They are the same bytes the
//! typed helpers wrote for `Option<Product>` and `Vec<Product>`, so Redis
//! entries of earlier versions still read.
//!
//! Paged requests (`?limit=&offset=`) are cut from the cached full body (see
//! [`ListBody::page`]), not cached per page: one entry to invalidate instead of
//! one per (limit, offset) pair ever asked. The index of where each product
//! starts is built once per cached body and kept beside it (`list_index`), so
//! a page costs a lookup and one slice copy, never a decode or a scan.
//!
//! Every write, after its database commit, removes `product:{id}` and
//! invalidates the tag `products` (with plain caches: removes the `products`
//! key). A cache failure never fails a request: it is logged at warn and the
//! database answers. Which module does what: storage is [`crate::db`]; this
//! module only decides what to keep and for how long.

mod backend;
mod body;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use strata_cache::{Bytes, HybridCache};
use uuid::Uuid;

use crate::config::{CacheMode, Config};
use crate::db::{ProductRepository, RepoError};

pub use backend::CacheError;
use backend::{Backend, NEGATIVE};
pub use body::ListBody;

/// The key of one product's entry.
pub fn product_key(id: Uuid) -> String {
    format!("product:{id}")
}

/// The key of the full list's entry.
pub const LIST_KEY: &str = "products";
/// The tag every list entry carries (HybridCache).
pub const LIST_TAG: &str = "products";

/// Absolute lifetime of a product entry: the article's 1 hour.
pub const PRODUCT_EXPIRATION: Duration = Duration::from_secs(60 * 60);
/// Sliding lifetime of a product entry: the article's 30 minutes.
pub const PRODUCT_SLIDING: Duration = Duration::from_secs(30 * 60);
/// Lifetime of a "no such product" entry.
pub const NEGATIVE_EXPIRATION: Duration = Duration::from_secs(30);
/// Absolute lifetime of the list entry: the article's 20 minutes.
pub const LIST_EXPIRATION: Duration = Duration::from_secs(20 * 60);
/// Sliding lifetime of the list entry: the article's 2 minutes.
pub const LIST_SLIDING: Duration = Duration::from_secs(2 * 60);
/// How long HybridCache keeps an entry in process memory (L1). The backplane
/// evicts L1 copies on every write; this bounds how long a copy could live if
/// a notice were lost anyway.
pub const LOCAL_EXPIRATION: Duration = Duration::from_secs(5 * 60);

/// The catalog's cache: a cheap `Clone` handle shared by every request.
#[derive(Clone)]
pub struct ProductCache {
    inner: Arc<Inner>,
}

struct Inner {
    backend: Backend,
    mode: CacheMode,
    /// Database loads made on behalf of the cache (factory runs). An `Arc`
    /// because the loader that bumps it must be `'static` for HybridCache.
    db_loads: Arc<AtomicU64>,
    /// The last list body served, indexed. An L1 hit returns the same buffer
    /// until the entry is replaced, so its index is reused instead of being
    /// rebuilt per request. After an invalidation it keeps the old list (a
    /// few hundred KiB) alive until the next list request replaces it. A
    /// `std` mutex: held for a pointer compare and a clone, never across an
    /// await.
    list_index: Mutex<Option<ListBody>>,
    /// How many times a list body was indexed (a pass over its bytes).
    list_indexings: AtomicU64,
    /// `catalog_cache_lookups_total` per entry and outcome, registered once:
    /// naming a labelled counter per request builds and hashes its key.
    lookups: [metrics::Counter; 4],
}

/// The slot of `lookups` for an entry and an outcome.
fn lookup_slot(entry: Entry, miss: bool) -> usize {
    (entry as usize) * 2 + usize::from(miss)
}

/// Which entry a lookup is about: decides options, log and metric labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Entry {
    /// `product:{id}`
    Product = 0,
    /// `products`
    List = 1,
}

impl Entry {
    fn label(self) -> &'static str {
        match self {
            Entry::Product => "product",
            Entry::List => "products",
        }
    }
}

impl ProductCache {
    /// Builds the cache `config` describes. Never fails because Redis is down:
    /// the Redis client connects in the background.
    ///
    /// # Errors
    ///
    /// An invalid Redis URL or cache setting.
    pub fn from_config(config: &Config) -> Result<Self, CacheError> {
        // HybridCache binds its metric handles when built: the Prometheus
        // recorder must be installed first, or its series go nowhere.
        crate::metrics::recorder();
        let backend = Backend::from_config(config)?;
        Ok(Self::with_backend(backend, config.cache))
    }

    /// A cache that caches nothing (`CACHE=none`).
    pub fn disabled() -> Self {
        Self::with_backend(Backend::None, CacheMode::None)
    }

    fn with_backend(backend: Backend, mode: CacheMode) -> Self {
        // The counters below bind to the recorder installed when they are
        // registered.
        crate::metrics::recorder();
        let lookups = std::array::from_fn(|slot| {
            // The inverse of `lookup_slot`.
            let entry = if slot < 2 {
                Entry::Product
            } else {
                Entry::List
            };
            let outcome = if slot % 2 == 1 { "miss" } else { "hit" };
            metrics::counter!(
                "catalog_cache_lookups_total",
                "entry" => entry.label(),
                "result" => outcome
            )
        });
        Self {
            inner: Arc::new(Inner {
                backend,
                mode,
                db_loads: Arc::new(AtomicU64::new(0)),
                list_index: Mutex::new(None),
                list_indexings: AtomicU64::new(0),
                lookups,
            }),
        }
    }

    /// The strategy in use.
    pub fn mode(&self) -> CacheMode {
        self.inner.mode
    }

    /// A one-line description of the layers in use, for logs and readiness.
    pub fn topology(&self) -> &'static str {
        self.inner.backend.topology()
    }

    /// The HybridCache in use (`CACHE=hybrid`), whose
    /// [`stats`](HybridCache::stats) say which layer served each read.
    pub fn hybrid(&self) -> Option<&HybridCache> {
        self.inner.backend.hybrid()
    }

    /// How many times the database was read on behalf of the cache since
    /// start: one per miss. A second GET that leaves this unchanged was served
    /// from the cache; tests assert hits with it.
    pub fn db_loads(&self) -> u64 {
        self.inner.db_loads.load(Ordering::Relaxed)
    }

    /// How many times a list body was indexed (one pass over its bytes)
    /// since start: once per cached body, not per request. A page served
    /// from a cache hit leaves this unchanged; tests assert it.
    pub fn list_indexings(&self) -> u64 {
        self.inner.list_indexings.load(Ordering::Relaxed)
    }

    /// One product's JSON body (what `GET /products/{id}` serves), from the
    /// cache or the database; `None` when there is no such product.
    ///
    /// # Errors
    ///
    /// Only the database's error; cache failures fall back to the database.
    pub async fn product_body(
        &self,
        repo: &Arc<dyn ProductRepository>,
        id: Uuid,
    ) -> Result<Option<Bytes>, RepoError> {
        let repo = repo.clone();
        let load = move || {
            let repo = repo.clone();
            async move {
                let product = repo.get(id).await?;
                serde_json::to_vec(&product)
                    .map(Bytes::from)
                    .map_err(|e| RepoError::Corrupt(format!("cannot encode product {id}: {e}")))
            }
        };
        let body = self.fetch(Entry::Product, &product_key(id), load).await?;
        Ok((body != NEGATIVE).then_some(body))
    }

    /// The JSON body of every product (what `GET /products` serves), from the
    /// cache or the database.
    ///
    /// # Errors
    ///
    /// Only the database's error; cache failures fall back to the database.
    pub async fn list_body(
        &self,
        repo: &Arc<dyn ProductRepository>,
    ) -> Result<ListBody, RepoError> {
        let repo = repo.clone();
        let load = move || {
            let repo = repo.clone();
            async move { body::encode(&repo.list().await?) }
        };
        let bytes = self.fetch(Entry::List, LIST_KEY, load).await?;
        Ok(self.indexed(bytes))
    }

    /// `bytes` with its index: the kept one when it was built from this very
    /// buffer, else a new one, which is then kept.
    fn indexed(&self, bytes: Bytes) -> ListBody {
        let kept = || {
            self.inner
                .list_index
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
        };
        if let Some(body) = kept().as_ref().filter(|body| body.indexes(&bytes)) {
            return body.clone();
        }
        let body = ListBody::new(bytes);
        self.inner.list_indexings.fetch_add(1, Ordering::Relaxed);
        *kept() = Some(body.clone());
        body
    }

    /// Looks `key` up and loads it on a miss, counting and logging which it was.
    async fn fetch<F, Fut>(&self, entry: Entry, key: &str, load: F) -> Result<Bytes, RepoError>
    where
        F: Fn() -> Fut + Clone + Send + Sync + 'static,
        Fut: Future<Output = Result<Bytes, RepoError>> + Send + 'static,
    {
        // `ran` says whether this call's loader ran: a miss for this request.
        let ran = Arc::new(AtomicBool::new(false));
        let counted = {
            let ran = ran.clone();
            let loads = self.inner.db_loads.clone();
            move || {
                ran.store(true, Ordering::Relaxed);
                loads.fetch_add(1, Ordering::Relaxed);
                metrics::counter!("catalog_db_loads_total", "entry" => entry.label()).increment(1);
                load()
            }
        };
        let result = self.inner.backend.get_or_load(key, entry, counted).await;
        if self.inner.mode != CacheMode::None {
            let miss = ran.load(Ordering::Relaxed);
            let outcome = if miss { "miss" } else { "hit" };
            tracing::debug!(key, outcome, "cache {outcome} for {key}");
            self.inner.lookups[lookup_slot(entry, miss)].increment(1);
        }
        result
    }

    /// Invalidates what a write to product `id` changed: its own entry and the
    /// list. Call after the database commit. Never fails: a cache that cannot
    /// be reached is logged, and the entries expire on their own.
    pub async fn invalidate(&self, id: Uuid) {
        self.inner.backend.invalidate(&product_key(id)).await;
    }

    /// The state of the remote part of the cache (Redis): `None` when there is
    /// none, otherwise `Ok` or why it is unreachable.
    pub async fn health(&self) -> Option<Result<(), String>> {
        self.inner.backend.health().await
    }
}
