//! Test support for Strata and for anyone writing a backend of it.
//!
//! - [`conformance::run_all`]: the semantics of
//!   [`DistributedCache`](strata_cache::DistributedCache) as executable
//!   checks; every backend runs them with one call.
//! - [`ChaosCache`]: a wrapper around any cache that fails or stalls on
//!   demand, to test what sits above a cache (fallbacks, circuit breakers,
//!   fail-safe).
//! - [`RedisServer`]: a throwaway `redis-server` on a free port, killed on
//!   drop, for tests that stop, restart or reconfigure Redis.
//!
//! # Example
//!
//! ```
//! use strata_cache::MemoryDistributedCache;
//!
//! #[tokio::test]
//! async fn memory_cache_conforms() {
//!     strata_cache_testkit::conformance::run_all(&MemoryDistributedCache::new()).await;
//! }
//! ```

// Layout (`conformance` is public, its checks being a namespace of their own;
// the other types are re-exported here, so each has one path):
//
// - conformance: the DistributedCache conformance suite, run_all.
// - chaos: ChaosCache, a wrapper that injects errors and delays.
// - server: RedisServer, a throwaway redis-server on a free port.

mod chaos;
pub mod conformance;
mod server;

pub use chaos::ChaosCache;
pub use server::RedisServer;

// The crate's README, its crates.io page, compiles as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
