//! The cache strategies behind [`ProductCache`](super::ProductCache): no cache,
//! a plain [`DistributedCache`] through the typed helpers (memory or Redis),
//! and HybridCache. Each implements get-or-load and invalidation; the policy
//! (keys, lifetimes) lives in the parent module.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;
use strata::{DistributedCache, DistributedCacheExt, EntryOptions, MemoryDistributedCache};

use super::{
    Entry, LIST_EXPIRATION, LIST_KEY, LIST_SLIDING, NEGATIVE_EXPIRATION, PRODUCT_EXPIRATION,
    PRODUCT_SLIDING,
};
use crate::config::{CacheMode, Config};
use crate::db::RepoError;
use crate::model::{Product, ProductList};

/// How long a readiness probe waits for Redis.
const HEALTH_TIMEOUT: Duration = Duration::from_secs(1);

/// Why the cache could not be built.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// The cache settings are inconsistent.
    #[error("{0}")]
    Config(String),
    /// The Redis client rejected its settings.
    #[error("invalid Redis settings: {0}")]
    Redis(#[source] strata::Error),
}

/// What the catalog caches: a product (or its absence) and the list.
pub(crate) trait Cacheable:
    Clone + Serialize + DeserializeOwned + Send + Sync + 'static
{
    /// True for a cached absence, which lives only [`NEGATIVE_EXPIRATION`].
    fn is_negative(&self) -> bool;
}

impl Cacheable for Option<Product> {
    fn is_negative(&self) -> bool {
        self.is_none()
    }
}

impl Cacheable for ProductList {
    fn is_negative(&self) -> bool {
        false
    }
}

/// The options of a plain (typed-helper) entry.
fn entry_options(entry: Entry, negative: bool) -> EntryOptions {
    match (entry, negative) {
        (_, true) => EntryOptions::new().with_relative_expiration(NEGATIVE_EXPIRATION),
        (Entry::Product, false) => EntryOptions::new()
            .with_relative_expiration(PRODUCT_EXPIRATION)
            .with_sliding_expiration(PRODUCT_SLIDING),
        (Entry::List, false) => EntryOptions::new()
            .with_relative_expiration(LIST_EXPIRATION)
            .with_sliding_expiration(LIST_SLIDING),
    }
}

pub(crate) enum Backend {
    /// `CACHE=none`.
    None,
    /// `CACHE=memory` or `CACHE=redis`: one [`DistributedCache`] through the
    /// typed helpers, the article's setup.
    Typed {
        cache: Arc<dyn DistributedCache>,
        /// True for Redis: reported by readiness.
        remote: bool,
    },
}

impl Backend {
    pub(crate) fn from_config(config: &Config) -> Result<Self, CacheError> {
        config.validate().map_err(CacheError::Config)?;
        Ok(match config.cache {
            CacheMode::None => Backend::None,
            CacheMode::Memory | CacheMode::Hybrid => Backend::Typed {
                cache: Arc::new(MemoryDistributedCache::with_capacity(
                    (config.l1_capacity_mb * 1024 * 1024) as usize,
                )),
                remote: false,
            },
            CacheMode::Redis => {
                return Err(CacheError::Config(
                    "CACHE=redis is not available yet".into(),
                ));
            }
        })
    }

    pub(crate) fn topology(&self) -> &'static str {
        match self {
            Backend::None => "none",
            Backend::Typed { remote: false, .. } => "memory",
            Backend::Typed { remote: true, .. } => "redis",
        }
    }

    pub(crate) async fn get_or_load<T, F, Fut>(
        &self,
        key: &str,
        entry: Entry,
        load: F,
    ) -> Result<T, RepoError>
    where
        T: Cacheable,
        F: Fn() -> Fut + Clone + Send + Sync + 'static,
        Fut: Future<Output = Result<T, RepoError>> + Send + 'static,
    {
        match self {
            Backend::None => load().await,
            Backend::Typed { cache, .. } => {
                match cache.get_value::<T>(key).await {
                    Ok(Some(value)) => return Ok(value),
                    Ok(None) => {}
                    Err(error) => {
                        tracing::warn!(key, %error, "cache read failed; reading the database");
                    }
                }
                let value = load().await?;
                let options = entry_options(entry, value.is_negative());
                if let Err(error) = cache.set_value_with(key, &value, &options).await {
                    tracing::warn!(key, %error, "cache write failed; the value is served uncached");
                }
                Ok(value)
            }
        }
    }

    /// Removes `product_key` and the list.
    pub(crate) async fn invalidate(&self, product_key: &str) {
        match self {
            Backend::None => {}
            Backend::Typed { cache, .. } => {
                for key in [product_key, LIST_KEY] {
                    if let Err(error) = cache.remove(key).await {
                        tracing::warn!(key, %error, "cache invalidation failed; the entry expires on its own");
                    }
                }
            }
        }
    }

    pub(crate) async fn health(&self) -> Option<Result<(), String>> {
        match self {
            Backend::Typed {
                cache,
                remote: true,
            } => Some(probe(cache.as_ref()).await),
            _ => None,
        }
    }
}

/// One read of a key that does not exist: proves the connection works.
async fn probe(cache: &dyn DistributedCache) -> Result<(), String> {
    match tokio::time::timeout(HEALTH_TIMEOUT, cache.get("health:probe")).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(error)) => Err(error.kind().to_string()),
        Err(_) => Err("timeout".into()),
    }
}
