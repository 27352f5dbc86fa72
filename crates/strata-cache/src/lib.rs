//! Distributed caching for Rust services: the ASP.NET Core caching stack
//! (`IDistributedCache`, typed get-or-set helpers and `HybridCache`) done the
//! Rust way.
//!
//! This crate is the core and has no network dependency. Redis is in
//! [`strata-cache-redis`](https://docs.rs/strata-cache-redis); test support
//! (the backend conformance suite, a fault-injecting wrapper, a throwaway
//! `redis-server`) in
//! [`strata-cache-testkit`](https://docs.rs/strata-cache-testkit).
//!
//! # Which API to use
//!
//! - **[`HybridCache`]**, for application code. Typed values in an in-process
//!   L1 that answers hits without I/O or decoding, an optional shared L2 (any
//!   [`DistributedCache`]) and an optional [`Backplane`] through which every
//!   write evicts the other instances' L1 copies. Concurrent misses of one key
//!   share one factory run; tags invalidate groups of entries on every
//!   instance; fail-safe serves the last value when the factory fails; an L2
//!   outage costs a warning and a factory run, never a failed call. Build it
//!   with [`HybridCache::builder`] (cache-wide defaults); per-call options are
//!   [`HybridEntryOptions`].
//! - **[`DistributedCache`] and [`DistributedCacheExt`]**, when every read must
//!   come from the shared store (no in-process copy to go stale), when entries
//!   are shared with .NET services through Redis, or to write a backend. The
//!   contract is `IDistributedCache`: byte values with absolute, relative and
//!   sliding expiration ([`EntryOptions`]). The typed helpers `get_value`,
//!   `set_value` and `get_or_set` encode with [`Json`]; [`Typed`] takes any
//!   [`Codec`], such as [`Postcard`]. `get_or_set` never fails because of the
//!   cache, but it has no L1 and no stampede protection.
//!
//! ## HybridCache
//!
//! Here the L2 is a [`MemoryDistributedCache`]; in production it is a
//! `RedisCache`, with a `RedisBackplane`, both from `strata-cache-redis`.
//!
//! ```
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! use std::sync::Arc;
//! use std::time::Duration;
//! use strata_cache::{HybridCache, HybridEntryOptions, MemoryDistributedCache};
//!
//! let cache = HybridCache::builder()
//!     .distributed(Arc::new(MemoryDistributedCache::new()))
//!     .build();
//! let options = HybridEntryOptions::new()
//!     .with_expiration(Duration::from_secs(20 * 60))
//!     .with_local_expiration(Duration::from_secs(5 * 60))
//!     .with_tags(["products"]);
//! let names: Vec<String> = cache
//!     .get_or_create("products", &options, |_ctx| async {
//!         Ok::<_, std::io::Error>(vec!["Lamp".to_string()]) // a database query
//!     })
//!     .await?;
//! assert_eq!(names, ["Lamp"]);
//! cache.remove_by_tag("products").await?; // on every instance, with a backplane
//! # Ok::<(), strata_cache::Error>(())
//! # }).unwrap();
//! ```
//!
//! ## DistributedCache and the typed helpers
//!
//! ```
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! use std::time::Duration;
//! use strata_cache::{DistributedCache, DistributedCacheExt, EntryOptions, MemoryDistributedCache};
//!
//! let cache = MemoryDistributedCache::new();
//! let options = EntryOptions::new().with_sliding_expiration(Duration::from_secs(120));
//! cache.set_value_with("greeting", "hello", &options).await?;
//! assert_eq!(cache.get_value::<String>("greeting").await?.as_deref(), Some("hello"));
//! cache.remove("greeting").await?;
//! # Ok::<(), strata_cache::Error>(())
//! # }).unwrap();
//! ```
//!
//! # Backends and backplanes
//!
//! | | in this process | Redis (`strata-cache-redis`) |
//! |---|---|---|
//! | [`DistributedCache`] | [`MemoryDistributedCache`] | `RedisCache`, in the .NET provider's storage layout |
//! | [`Backplane`] | [`InProcessBackplane`] | `RedisBackplane`, over pub/sub |
//!
//! [`MemoryDistributedCache`] has the semantics of the Redis backend (the
//! same conformance suite runs on both): a stand-in for tests and single
//! instances. It is not HybridCache's L1, which holds typed values. A new
//! backend implements [`DistributedCache`] with
//! [`#[async_trait]`](macro@async_trait) and runs
//! `strata_cache_testkit::conformance::run_all` in its tests.
//!
//! # Errors
//!
//! One [`Error`] type, opaque and cheap to clone, whose [`ErrorKind`] says
//! what a caller can do: retry (`Unavailable`, `Timeout`), fix the call
//! (`InvalidOptions`, `InvalidKey`), or handle a failed factory (`Factory`:
//! [`Error::factory_error`] gives the factory's own error back).
//!
//! # Features
//!
//! All on by default; turn them off (`default-features = false`) to keep
//! only the byte contract, the memory backend and the typed helpers' codec
//! plumbing.
//!
//! - `hybrid`: [`HybridCache`] (needs `json`, its default codec).
//! - `json`: the [`Json`] codec and the JSON helpers of
//!   [`DistributedCacheExt`] (`get_value`, `set_value`, `get_or_set`).
//! - `postcard`: the [`Postcard`] codec.
//! - `metrics`: counters through the `metrics` facade (the per-instance
//!   [`HybridStats`] are kept either way).

// Layout (the modules are private; everything public is re-exported here, so
// each item has one path):
//
// - error: Error, opaque, with an ErrorKind callers can act on.
// - options: EntryOptions (absolute, relative, sliding expiration) and their
//   validated form, Expiration.
// - distributed: the byte-level contract, DistributedCache.
// - codec: Codec, with Json (default) and Postcard.
// - typed: DistributedCacheExt (get_value, set_value, get_or_set) and Typed.
// - memory: MemoryDistributedCache, the in-process backend.
// - backplane: Backplane, how cache instances announce changes to each other,
//   and InProcessBackplane.
// - hybrid: HybridCache, the typed two-level cache (L1 in process, L2 any
//   DistributedCache) with stampede protection, tags and fail-safe.

mod backplane;
mod codec;
mod distributed;
mod error;
#[cfg(feature = "hybrid")]
mod hybrid;
mod memory;
mod options;
mod typed;

pub use backplane::{
    Backplane, BackplaneEvent, BackplaneMessage, InProcessBackplane, Notice, Subscription,
};
pub use codec::Codec;
#[cfg(feature = "json")]
pub use codec::Json;
#[cfg(feature = "postcard")]
pub use codec::Postcard;
pub use distributed::{DistributedCache, TOMBSTONE_TTL, Version, Versioned, validate_key};
pub use error::{Error, ErrorKind, Result};
#[cfg(feature = "hybrid")]
pub use hybrid::{
    DEFAULT_EXPIRATION, DEFAULT_FAIL_SAFE_THROTTLE, DEFAULT_L1_CAPACITY_BYTES, DEFAULT_L2_TIMEOUT,
    DEFAULT_MAX_KEY_LENGTH, DEFAULT_MAX_PAYLOAD_BYTES, DEFAULT_TRUST_WINDOW, FactoryContext,
    HybridCache, HybridCacheBuilder, HybridEntryOptions, HybridStats, Propagation,
};
pub use memory::{DEFAULT_CAPACITY_BYTES, MEMORY_ENTRY_OVERHEAD, MemoryDistributedCache};
pub use options::{EntryOptions, Expiration, MAX_EXPIRATION_UNIX_SECS};
pub use typed::{
    DEFAULT_RELATIVE_EXPIRATION, DEFAULT_SLIDING_EXPIRATION, DistributedCacheExt, Typed,
    default_options,
};

/// Re-exported so that implementors of [`DistributedCache`] use the same macro version.
#[doc(no_inline)]
pub use async_trait::async_trait;
/// Re-exported: the value type of [`DistributedCache`].
#[doc(no_inline)]
pub use bytes::Bytes;

// The crate's README, its crates.io page, compiles as a doctest.
#[cfg(all(doctest, feature = "hybrid"))]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
