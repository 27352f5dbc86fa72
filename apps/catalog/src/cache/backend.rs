//! The cache strategies behind [`ProductCache`](super::ProductCache): no cache,
//! a plain [`DistributedCache`] (memory or Redis), and [`HybridCache`]. Each
//! implements get-or-load, invalidation and a health probe; the policy (keys,
//! lifetimes) lives in the parent module.
//!
//! Values are cached as the JSON the API serves (response bodies), so a hit
//! is served as it is: no decode, no re-encode. A plain cache stores those
//! bytes under the key; HybridCache through its raw-bytes API.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use strata_cache::{
    Bytes, DistributedCache, EntryOptions, ErrorKind, FactoryContext, HybridCache,
    HybridEntryOptions, MemoryDistributedCache, Propagation,
};
use strata_cache_redis::{RedisBackplane, RedisCache, RedisCacheOptions};

use super::{
    Entry, LIST_EXPIRATION, LIST_KEY, LIST_SLIDING, LIST_TAG, LOCAL_EXPIRATION,
    NEGATIVE_EXPIRATION, PRODUCT_EXPIRATION, PRODUCT_SLIDING,
};
use crate::config::{CacheMode, Config};
use crate::db::RepoError;

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
    Redis(#[source] strata_cache::Error),
}

/// The cached body of a product that does not exist: JSON `null`, which is
/// also what the typed helpers wrote for `Option::<Product>::None`.
pub(crate) const NEGATIVE: &[u8] = b"null";

fn is_negative(body: &[u8]) -> bool {
    body == NEGATIVE
}

/// The options of a plain-cache entry.
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

/// The options of a HybridCache entry. A negative entry is shortened by the
/// factory through [`FactoryContext::set_expiration`].
fn hybrid_options(entry: Entry) -> HybridEntryOptions {
    let options = HybridEntryOptions::new().with_local_expiration(LOCAL_EXPIRATION);
    match entry {
        Entry::Product => options
            .with_expiration(PRODUCT_EXPIRATION)
            .with_sliding_expiration(PRODUCT_SLIDING),
        Entry::List => options
            .with_expiration(LIST_EXPIRATION)
            .with_sliding_expiration(LIST_SLIDING)
            .with_tags([LIST_TAG]),
    }
}

pub(crate) enum Backend {
    /// `CACHE=none`.
    None,
    /// `CACHE=memory` or `CACHE=redis`: one [`DistributedCache`], the
    /// article's setup.
    Typed {
        cache: Arc<dyn DistributedCache>,
        /// The same cache when it is Redis, for readiness probes.
        redis: Option<RedisCache>,
    },
    /// `CACHE=hybrid`: L1, plus Redis as L2 and backplane when configured.
    Hybrid {
        cache: HybridCache,
        /// The L2 when it is Redis, for readiness probes.
        redis: Option<RedisCache>,
    },
}

/// The Redis client settings of `config` (URL, key prefix, timeouts).
pub(crate) fn redis_options(config: &Config, url: &str) -> RedisCacheOptions {
    RedisCacheOptions::new(url)
        .with_instance_name(config.instance_name.clone())
        .with_operation_timeout(Duration::from_millis(config.redis_timeout_ms.max(1)))
}

impl Backend {
    pub(crate) fn from_config(config: &Config) -> Result<Self, CacheError> {
        config.validate().map_err(CacheError::Config)?;
        Ok(match config.cache {
            CacheMode::None => Backend::None,
            CacheMode::Hybrid => {
                let l2_timeout = Duration::from_millis(config.redis_timeout_ms.max(1));
                let mut builder = HybridCache::builder()
                    .name("catalog")
                    .l1_capacity_bytes(config.l1_capacity_mb.saturating_mul(1024 * 1024))
                    .l2_timeout(l2_timeout);
                let mut redis = None;
                if let Some(url) = &config.redis_url {
                    let options = redis_options(config, url);
                    let l2 = RedisCache::new(&options).map_err(CacheError::Redis)?;
                    let backplane = RedisBackplane::new(&options).map_err(CacheError::Redis)?;
                    builder = builder.distributed(l2.clone()).backplane(backplane);
                    redis = Some(l2);
                }
                Backend::Hybrid {
                    cache: builder.build(),
                    redis,
                }
            }
            CacheMode::Memory => Backend::Typed {
                cache: Arc::new(MemoryDistributedCache::with_capacity(
                    (config.l1_capacity_mb * 1024 * 1024) as usize,
                )),
                redis: None,
            },
            CacheMode::Redis => {
                let url = config.redis_url.as_deref().unwrap_or_default();
                let redis =
                    RedisCache::new(redis_options(config, url)).map_err(CacheError::Redis)?;
                Backend::Typed {
                    cache: Arc::new(redis.clone()),
                    redis: Some(redis),
                }
            }
        })
    }

    pub(crate) fn topology(&self) -> &'static str {
        match self {
            Backend::None => "none",
            Backend::Typed { redis: None, .. } => "memory",
            Backend::Typed { redis: Some(_), .. } => "redis",
            Backend::Hybrid { redis: None, .. } => "hybrid (L1)",
            Backend::Hybrid { redis: Some(_), .. } => "hybrid (L1 + Redis L2 + backplane)",
        }
    }

    pub(crate) fn hybrid(&self) -> Option<&HybridCache> {
        match self {
            Backend::Hybrid { cache, .. } => Some(cache),
            _ => None,
        }
    }

    /// The body under `key`, or `load`'s, which is then cached. Cache
    /// failures are logged and fall back to `load`; only its error returns.
    pub(crate) async fn get_or_load<F, Fut>(
        &self,
        key: &str,
        entry: Entry,
        load: F,
    ) -> Result<Bytes, RepoError>
    where
        F: Fn() -> Fut + Clone + Send + Sync + 'static,
        Fut: Future<Output = Result<Bytes, RepoError>> + Send + 'static,
    {
        match self {
            Backend::None => load().await,
            Backend::Typed { cache, .. } => {
                // Cache-aside with a version check: the fill lands only if no
                // writer removed the key since this read, so a row loaded
                // just before a write commits cannot be put back after the
                // write's invalidation (on any instance).
                let version = match cache.get_versioned(key).await {
                    Ok(read) => match read.value {
                        Some(body) => return Ok(body),
                        None => Some(read.version),
                    },
                    Err(error) => {
                        tracing::warn!(key, %error, "cache read failed; reading the database");
                        None
                    }
                };
                let body = load().await?;
                if let Some(version) = version {
                    // In the background: the request waits for Redis once
                    // (the read above), whatever Redis does with the fill.
                    let (cache, key, body) = (Arc::clone(cache), key.to_owned(), body.clone());
                    let options = entry_options(entry, is_negative(&body));
                    tokio::spawn(async move {
                        match cache.set_if_version(&key, body, &options, &version).await {
                            Ok(true) => {}
                            Ok(false) => {
                                tracing::debug!(
                                    key,
                                    "the entry changed during the load; not cached"
                                );
                            }
                            Err(error) => {
                                tracing::warn!(key, %error, "cache write failed; the value is served uncached");
                            }
                        }
                    });
                }
                Ok(body)
            }
            Backend::Hybrid { cache, .. } => {
                let factory_load = load.clone();
                let factory = move |context: FactoryContext| async move {
                    let body = factory_load().await?;
                    if is_negative(&body) {
                        context.set_expiration(NEGATIVE_EXPIRATION);
                    }
                    Ok::<Bytes, RepoError>(body)
                };
                match cache
                    .get_or_create_bytes(key, &hybrid_options(entry), factory)
                    .await
                {
                    Ok(body) => Ok(body),
                    Err(error) if error.kind() == ErrorKind::Factory => {
                        // The database failed inside the factory: that is the
                        // answer, no need to ask it again.
                        let source = std::error::Error::source(&error)
                            .and_then(|s| s.downcast_ref::<RepoError>());
                        match source {
                            Some(repo_error) => Err(repo_error.clone()),
                            None => load().await,
                        }
                    }
                    Err(error) => {
                        tracing::warn!(key, %error, "cache failed; reading the database");
                        load().await
                    }
                }
            }
        }
    }

    /// Removes `product_key` and the list. Both at once: a request waits for
    /// Redis at most one timeout, however many entries it invalidates.
    pub(crate) async fn invalidate(&self, product_key: &str) {
        match self {
            Backend::None => {}
            Backend::Typed { cache, .. } => {
                let (product, list) =
                    tokio::join!(cache.remove(product_key), cache.remove(LIST_KEY));
                for (key, result) in [(product_key, product), (LIST_KEY, list)] {
                    if let Err(error) = result {
                        tracing::warn!(key, %error, "cache invalidation failed; the entry expires on its own");
                    }
                }
            }
            Backend::Hybrid { cache, .. } => {
                // HybridCache keeps what L2 or the backplane did not take and
                // replays it; it returns errors only for invalid keys.
                let (product, list) =
                    tokio::join!(cache.remove(product_key), cache.remove_by_tag(LIST_TAG));
                for (what, result) in [(product_key, product), (LIST_TAG, list)] {
                    match result {
                        Ok(Propagation::Complete) => {}
                        Ok(_) => tracing::warn!(
                            what,
                            "cache invalidation deferred: Redis did not take it in time; \
                             it is replayed as soon as Redis answers"
                        ),
                        Err(error) => tracing::warn!(what, %error, "cache invalidation failed"),
                    }
                }
            }
        }
    }

    pub(crate) async fn health(&self) -> Option<Result<(), String>> {
        match self {
            Backend::Typed {
                redis: Some(redis), ..
            }
            | Backend::Hybrid {
                redis: Some(redis), ..
            } => Some(probe(redis).await),
            _ => None,
        }
    }
}

/// One PING: proves the connection works. The answer names the error class
/// only, never the URL.
async fn probe(redis: &RedisCache) -> Result<(), String> {
    match tokio::time::timeout(HEALTH_TIMEOUT, redis.ping()).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(error)) => Err(error.kind().to_string()),
        Err(_) => Err("timeout".into()),
    }
}
