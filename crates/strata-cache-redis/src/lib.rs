//! Redis for Strata: [`RedisCache`], a [`DistributedCache`] stored the way
//! .NET's `Microsoft.Extensions.Caching.StackExchangeRedis` stores it, and
//! [`RedisBackplane`], a [`Backplane`] over Redis pub/sub.
//!
//! A .NET service and a Rust service with the same instance name share one
//! cache: each reads the other's entries, sliding expirations included. Where
//! that provider is weak this crate does better and stays compatible: a read
//! costs one `HMGET`, and a sliding entry is renewed after it by a script that
//! can never extend an entry past its absolute expiration or revive a removed
//! one; expirations have millisecond precision, and an overwrite without
//! expiration clears the old TTL. Neither
//! type fails to build because Redis is down (both connect and reconnect in
//! the background, failing calls fast meanwhile), and every call is bounded by
//! a timeout. Both are configured by one [`RedisCacheOptions`]: the URL
//! (`redis://[user:password@]host:port/db`, or `rediss://` for TLS), the
//! instance name that prefixes every key and the backplane's channel, and the
//! timeouts.
//!
//! # Which type to use
//!
//! - [`RedisCache`] alone, through [`strata_cache::DistributedCacheExt`]'s
//!   typed helpers: every read is a Redis round trip, so every instance sees
//!   the same data; this is the .NET provider's model.
//! - [`RedisCache`] as the L2 of a [`HybridCache`], with a [`RedisBackplane`]:
//!   hits from process memory, and every write evicts the other instances'
//!   copies. The usual choice for a service with several instances.
//!
//! # Example
//!
//! ```no_run
//! # async fn demo() -> strata_cache::Result<()> {
//! use strata_cache::{DistributedCacheExt, HybridCache};
//! use strata_cache_redis::{RedisBackplane, RedisCache, RedisCacheOptions};
//!
//! let options = RedisCacheOptions::new("redis://127.0.0.1:6379/0").with_instance_name("catalog:");
//!
//! // The byte-level cache, with the typed helpers.
//! let redis = RedisCache::new(&options)?;
//! redis.set_value("greeting", "hello").await?;
//! let greeting: Option<String> = redis.get_value("greeting").await?;
//!
//! // The two-level cache over it.
//! let hybrid = HybridCache::builder()
//!     .distributed(redis)
//!     .backplane(RedisBackplane::new(&options)?)
//!     .build();
//! # Ok(())
//! # }
//! ```
//!
//! The storage layout, for tools that read or write entries directly, is in
//! [`layout`].
//!
//! # Features
//!
//! - `tls` (default): `rediss://` URLs, over rustls with the ring provider.
//!   Without it a `rediss://` URL is refused with `InvalidOptions`.
//!
//! This crate turns on no feature of `strata-cache`: enable `hybrid` there to
//! use [`HybridCache`] (it is on by default).
//!
//! [`DistributedCache`]: strata_cache::DistributedCache
//! [`Backplane`]: strata_cache::Backplane
//! [`HybridCache`]: strata_cache::HybridCache

// Layout (only `layout` is a public module; the types are re-exported here,
// so each has one path):
//
// - options: RedisCacheOptions, the URL, instance name and timeouts, and
//   their defaults.
// - cache: RedisCache, the DistributedCache.
// - backplane: RedisBackplane, the Backplane.
// - layout: the .NET storage layout (hash fields, ticks) and the Lua script.
// - link: the self-healing connection both types run on.
// - error: how Redis failures map onto strata_cache::ErrorKind.

mod backplane;
mod cache;
mod error;
pub mod layout;
mod link;
mod options;

pub use backplane::RedisBackplane;
pub use cache::RedisCache;
pub use options::{
    DEFAULT_CONNECT_TIMEOUT, DEFAULT_OPERATION_TIMEOUT, DEFAULT_URL, RedisCacheOptions,
};

// The crate's README, its crates.io page, compiles as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
