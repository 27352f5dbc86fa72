//! Redis for Strata: [`RedisCache`], a `strata_cache::DistributedCache` stored the
//! way .NET's `Microsoft.Extensions.Caching.StackExchangeRedis` stores it, and
//! [`RedisBackplane`], a `strata_cache::Backplane` over Redis pub/sub.
//!
//! A .NET service and a Rust service with the same instance name share one
//! cache: each reads the other's entries, sliding expirations included. Where
//! that provider is weak this crate does better and stays compatible: a read
//! costs one `HMGET`, and a sliding entry is renewed after it by a script that
//! can never extend an entry past its absolute expiration or revive a removed
//! one; expirations have millisecond precision, and an overwrite without
//! expiration clears the old TTL. Neither type fails to build because Redis
//! is down, and every call is bounded by a timeout.
//!
//! # Example
//!
//! ```no_run
//! # async fn demo() -> strata_cache::Result<()> {
//! use strata_cache::DistributedCacheExt;
//! use strata_cache_redis::{RedisCache, RedisCacheOptions};
//!
//! let cache = RedisCache::new(RedisCacheOptions::new("redis://127.0.0.1:6379/0"))?;
//! cache.set_value("greeting", "hello").await?;
//! let greeting: Option<String> = cache.get_value("greeting").await?;
//! # Ok(())
//! # }
//! ```
//!
//! # Layout
//!
//! - [`options`]: [`RedisCacheOptions`], the URL, instance name and timeouts.
//! - [`cache`]: [`RedisCache`], the `DistributedCache`.
//! - [`backplane`]: [`RedisBackplane`], the `Backplane`.
//! - [`layout`]: the .NET storage layout (hash fields, ticks) and the Lua scripts.
//! - `link`: the self-healing connection both types run on.
//! - `error`: how Redis failures map onto `strata_cache::ErrorKind`.

pub mod backplane;
pub mod cache;
mod error;
pub mod layout;
mod link;
pub mod options;

pub use backplane::RedisBackplane;
pub use cache::RedisCache;
pub use options::{
    DEFAULT_CONNECT_TIMEOUT, DEFAULT_OPERATION_TIMEOUT, DEFAULT_URL, RedisCacheOptions,
};
