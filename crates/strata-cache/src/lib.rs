//! Strata: distributed caching for Rust services.
//!
//! Strata is the ASP.NET Core caching stack (`IDistributedCache`, its Redis
//! provider, typed get-or-set helpers and `HybridCache`) done the Rust way. This
//! crate is the core: it has no network dependency. Redis lives in
//! `strata-cache-redis`; test support in `strata-cache-testkit`.
//!
//! # Example
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
//! # Layout
//!
//! - [`error`]: [`Error`], opaque, with an [`ErrorKind`] callers can act on.
//! - [`options`]: [`EntryOptions`] (absolute, relative, sliding expiration) and
//!   their validated form, [`Expiration`].
//! - [`distributed`]: the byte-level contract, [`DistributedCache`].
//! - [`codec`]: [`Codec`], with [`Json`] (default) and [`Postcard`].
//! - [`typed`]: [`DistributedCacheExt`]: `get_value`, `set_value`, `get_or_set`.
//! - [`memory`]: [`MemoryDistributedCache`], the in-process backend.
//! - [`backplane`]: [`Backplane`], how cache instances announce changes to
//!   each other, and [`InProcessBackplane`].
//! - [`hybrid`]: [`HybridCache`], the typed two-level cache (L1 in process, L2
//!   any [`DistributedCache`]) with stampede protection, tags and fail-safe.

pub mod backplane;
pub mod codec;
pub mod distributed;
pub mod error;
pub mod hybrid;
pub mod memory;
pub mod options;
pub mod typed;

pub use backplane::{
    Backplane, BackplaneEvent, BackplaneMessage, InProcessBackplane, Notice, Subscription,
};
pub use codec::{Codec, Json, Postcard};
pub use distributed::{DistributedCache, validate_key};
pub use error::{Error, ErrorKind, Result};
pub use hybrid::{
    FactoryContext, HybridCache, HybridCacheBuilder, HybridEntryOptions, HybridStats,
};
pub use memory::MemoryDistributedCache;
pub use options::{EntryOptions, Expiration};
pub use typed::{DistributedCacheExt, Typed, default_options};

/// Re-exported so that implementors of [`DistributedCache`] use the same macro version.
pub use async_trait::async_trait;
/// Re-exported: the value type of [`DistributedCache`].
pub use bytes::Bytes;

// The crate's README, its crates.io page, compiles as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
