//! Typed access to any [`DistributedCache`]: [`DistributedCacheExt`] (JSON) and
//! [`Typed`] (any [`Codec`]).
//!
//! These are the reference article's extension methods, made safe: bytes that
//! do not decode are treated as a miss (logged at warn and counted, never a
//! panic) and left where they are, since another writer (a .NET service, the
//! previous version of this one) may own them; and
//! [`get_or_set`](Typed::get_or_set) never fails because the cache does: a
//! cache that is down costs a warning and a factory run, not a request.

use std::future::Future;
use std::time::Duration;

use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::codec::Codec;
#[cfg(feature = "json")]
use crate::codec::Json;
use crate::distributed::DistributedCache;
use crate::error::Result;
use crate::options::EntryOptions;

/// The counter of cached bytes that did not decode, labelled by `codec`
/// (a [`Codec::NAME`], or `utf8` for [`get_string`](DistributedCacheExt::get_string)).
#[cfg(feature = "metrics")]
const UNDECODABLE_METRIC: &str = "strata_cache_undecodable_total";

/// Sliding expiration of [`default_options`]: 30 minutes.
pub const DEFAULT_SLIDING_EXPIRATION: Duration = Duration::from_secs(30 * 60);
/// Absolute expiration (relative to the write) of [`default_options`]: 1 hour.
pub const DEFAULT_RELATIVE_EXPIRATION: Duration = Duration::from_secs(60 * 60);

/// The options `set_value` uses: sliding 30 minutes, capped by an absolute
/// expiration 1 hour after the write, so that no entry lives forever by default.
pub fn default_options() -> EntryOptions {
    EntryOptions::new()
        .with_sliding_expiration(DEFAULT_SLIDING_EXPIRATION)
        .with_relative_expiration(DEFAULT_RELATIVE_EXPIRATION)
}

/// Typed helpers on every [`DistributedCache`], with the [`Json`] codec.
///
/// Text shared with .NET services goes through [`get_string`](Self::get_string)
/// and [`set_string`](Self::set_string), which store raw UTF-8 as .NET's
/// `GetString`/`SetString` do. The JSON helpers store a string as a JSON
/// string (`"Ada"` with its quotes): `get_value::<String>` of a .NET string
/// is a miss, and `set_value` on a key a .NET service reads with `GetString`
/// overwrites its entry with JSON.
///
/// # Example
///
/// ```
/// # tokio_test_block_on(async {
/// use strata_cache::{DistributedCacheExt, MemoryDistributedCache};
///
/// let cache = MemoryDistributedCache::new();
/// let name: String = cache
///     .get_or_set("user:1:name", &strata_cache::default_options(), || async {
///         Ok::<_, std::io::Error>("Ada".to_string())
///     })
///     .await?;
/// assert_eq!(name, "Ada");
/// assert_eq!(cache.get_value::<String>("user:1:name").await?, Some("Ada".into()));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # }).unwrap();
/// # fn tokio_test_block_on<F: std::future::Future>(f: F) -> F::Output {
/// #     tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(f)
/// # }
/// ```
pub trait DistributedCacheExt: DistributedCache {
    #[cfg(feature = "json")]
    /// Reads and decodes the value under `key`. See [`Typed::get_value`].
    ///
    /// # Errors
    ///
    /// A cache failure; never a decoding failure (that is a miss).
    fn get_value<T: DeserializeOwned + Send>(
        &self,
        key: &str,
    ) -> impl Future<Output = Result<Option<T>>> + Send {
        async move { Typed::new(self, Json).get_value(key).await }
    }

    #[cfg(feature = "json")]
    /// Encodes and stores `value` with [`default_options`]. See [`Typed::set_value`].
    ///
    /// # Errors
    ///
    /// An encoding failure or a cache failure.
    fn set_value<T: Serialize + ?Sized>(
        &self,
        key: &str,
        value: &T,
    ) -> impl Future<Output = Result<()>> + Send {
        let bytes = Json.encode(value);
        async move { self.set(key, Bytes::from(bytes?), &default_options()).await }
    }

    #[cfg(feature = "json")]
    /// Encodes and stores `value` with `options`. See [`Typed::set_value`].
    ///
    /// # Errors
    ///
    /// An encoding failure or a cache failure.
    fn set_value_with<T: Serialize + ?Sized>(
        &self,
        key: &str,
        value: &T,
        options: &EntryOptions,
    ) -> impl Future<Output = Result<()>> + Send {
        let bytes = Json.encode(value);
        async move { self.set(key, Bytes::from(bytes?), options).await }
    }

    /// Reads the value under `key` as text: .NET's `GetString`.
    ///
    /// The stored bytes are the string's UTF-8, nothing else (no JSON quotes),
    /// so a string a .NET service stored with `SetString` reads back equal, and
    /// the other way round with [`set_string`](Self::set_string). Bytes that
    /// are not valid UTF-8 are a miss, logged and counted like bytes that do
    /// not decode ([`Typed::get_value`]), and left in place; .NET's
    /// `GetString` would return them with U+FFFD replacement characters.
    ///
    /// # Errors
    ///
    /// A cache failure; never a decoding failure.
    ///
    /// # Example
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// use strata_cache::{DistributedCache, DistributedCacheExt, EntryOptions, MemoryDistributedCache};
    ///
    /// let cache = MemoryDistributedCache::new();
    /// cache.set_string("greeting", "grüß dich", &EntryOptions::new()).await?;
    /// assert_eq!(cache.get_string("greeting").await?.as_deref(), Some("grüß dich"));
    /// // The bytes .NET's GetString reads: UTF-8, no JSON.
    /// assert_eq!(&cache.get("greeting").await?.unwrap()[..], "grüß dich".as_bytes());
    /// # Ok::<(), strata_cache::Error>(())
    /// # }).unwrap();
    /// ```
    fn get_string(&self, key: &str) -> impl Future<Output = Result<Option<String>>> + Send {
        async move {
            let Some(bytes) = self.get(key).await? else {
                return Ok(None);
            };
            match std::str::from_utf8(&bytes) {
                Ok(text) => Ok(Some(text.to_owned())),
                Err(error) => {
                    undecodable(key, "utf8", &error);
                    Ok(None)
                }
            }
        }
    }

    /// Stores `value` as its UTF-8 bytes with `options`: .NET's `SetString`
    /// (whose two-argument form stores without expiration, as
    /// `EntryOptions::new()` does). See [`get_string`](Self::get_string).
    ///
    /// # Errors
    ///
    /// A cache failure.
    fn set_string(
        &self,
        key: &str,
        value: &str,
        options: &EntryOptions,
    ) -> impl Future<Output = Result<()>> + Send {
        let bytes = Bytes::copy_from_slice(value.as_bytes());
        async move { self.set(key, bytes, options).await }
    }

    #[cfg(feature = "json")]
    /// Cache-aside with JSON. See [`Typed::get_or_set`].
    ///
    /// # Errors
    ///
    /// Only the factory's error.
    fn get_or_set<T, E, F, Fut>(
        &self,
        key: &str,
        options: &EntryOptions,
        factory: F,
    ) -> impl Future<Output = Result<T, E>> + Send
    where
        T: Serialize + DeserializeOwned + Send,
        F: FnOnce() -> Fut + Send,
        Fut: Future<Output = Result<T, E>> + Send,
    {
        async move {
            Typed::new(self, Json)
                .get_or_set(key, options, factory)
                .await
        }
    }

    /// The same helpers with another codec, for example
    /// `cache.with_codec(strata_cache::Postcard)`.
    fn with_codec<C: Codec>(&self, codec: C) -> Typed<'_, Self, C> {
        Typed::new(self, codec)
    }
}

impl<D: DistributedCache + ?Sized> DistributedCacheExt for D {}

/// Logs and counts cached bytes that do not decode as `codec`.
fn undecodable(key: &str, codec: &'static str, error: &dyn std::fmt::Display) {
    tracing::warn!(
        key,
        codec,
        %error,
        "cached bytes do not decode; treating them as a miss and leaving them in place"
    );
    #[cfg(feature = "metrics")]
    metrics::counter!(UNDECODABLE_METRIC, "codec" => codec).increment(1);
}

/// A [`DistributedCache`] seen through a [`Codec`].
#[derive(Debug)]
pub struct Typed<'a, D: ?Sized, C> {
    cache: &'a D,
    codec: C,
}

impl<'a, D: DistributedCache + ?Sized, C: Codec> Typed<'a, D, C> {
    /// Wraps `cache` with `codec`.
    pub fn new(cache: &'a D, codec: C) -> Self {
        Self { cache, codec }
    }

    /// Reads and decodes the value under `key`.
    ///
    /// Bytes that do not decode as `T` (a changed type, another program's
    /// entry, the other side of a rolling deploy) are a miss: a warning is
    /// logged and `strata_cache_undecodable_total{codec}` counts it, and the
    /// bytes stay where they are. Removing them would destroy the entry of
    /// whoever wrote them, and could remove a valid value written in between;
    /// the next write of this key replaces them.
    ///
    /// # Errors
    ///
    /// A cache failure; never a decoding failure.
    pub async fn get_value<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>> {
        let Some(bytes) = self.cache.get(key).await? else {
            return Ok(None);
        };
        Ok(self.decode_or_miss(key, &bytes))
    }

    /// Decodes cached bytes; bytes that do not decode are a miss, left in place.
    fn decode_or_miss<T: DeserializeOwned>(&self, key: &str, bytes: &[u8]) -> Option<T> {
        match self.codec.decode(bytes) {
            Ok(value) => Some(value),
            Err(error) => {
                undecodable(key, C::NAME, &error);
                None
            }
        }
    }

    /// Encodes and stores `value` with `options`.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Serialization`](crate::ErrorKind::Serialization) when the
    /// value cannot be encoded; a cache failure otherwise.
    pub async fn set_value<T: Serialize + ?Sized>(
        &self,
        key: &str,
        value: &T,
        options: &EntryOptions,
    ) -> Result<()> {
        let bytes = self.codec.encode(value)?;
        self.cache.set(key, Bytes::from(bytes), options).await
    }

    /// Cache-aside: returns the cached value of `key` when there is one;
    /// otherwise runs `factory`, stores its value with `options` and returns it.
    ///
    /// The cache never fails this call: a read failure is a miss, a write
    /// failure leaves the value uncached, and both are logged at warn. Only the
    /// factory's error comes back. This helper does not merge concurrent misses
    /// of one key; `HybridCache` does.
    ///
    /// The fill is version-checked
    /// ([`set_if_version`](DistributedCache::set_if_version)): it lands only if
    /// nothing wrote or removed the key since the read that missed. So a
    /// caller whose factory loaded a row just before a writer committed and
    /// removed the key cannot put the old row back. After a failed read there
    /// is no version to check against, and the value is not stored.
    ///
    /// Bytes that do not decode are a miss (see [`get_value`](Self::get_value)):
    /// the factory runs, and its value replaces them only if their version is
    /// still the one read. An entry written by a program that does not version
    /// its writes (a .NET service) is never replaced by a fill.
    ///
    /// # Errors
    ///
    /// The factory's error, unchanged; nothing is cached then.
    pub async fn get_or_set<T, E, F, Fut>(
        &self,
        key: &str,
        options: &EntryOptions,
        factory: F,
    ) -> Result<T, E>
    where
        T: Serialize + DeserializeOwned,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let version = match self.cache.get_versioned(key).await {
            Ok(read) => {
                if let Some(bytes) = read.value
                    && let Some(value) = self.decode_or_miss(key, &bytes)
                {
                    return Ok(value);
                }
                Some(read.version)
            }
            Err(error) => {
                tracing::warn!(key, %error, "cache read failed; running the factory, not caching its value");
                None
            }
        };
        let value = factory().await?;
        let Some(version) = version else {
            return Ok(value);
        };
        // Encoded before the await, so the future does not hold `&T` (T need not be Sync).
        let stored = match self.codec.encode(&value) {
            Ok(bytes) => {
                self.cache
                    .set_if_version(key, Bytes::from(bytes), options, &version)
                    .await
            }
            Err(error) => Err(error),
        };
        match stored {
            Ok(true) => {}
            Ok(false) => {
                tracing::debug!(
                    key,
                    "the key changed while the factory ran, or holds an entry this cache \
                     does not version (another program's); the value is returned uncached"
                );
            }
            Err(error) => {
                tracing::warn!(key, %error, "cache write failed; the value is returned uncached");
            }
        }
        Ok(value)
    }
}
