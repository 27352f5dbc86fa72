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
//! - [`conformance::run_at_capacity`] and [`conformance::run_with_foreign`]:
//!   the same checks on a cache small enough to fill, and where other
//!   programs write the store too.
//! - [`ChaosBackplane`]: the same for a backplane: lost, delayed or failed
//!   notices.
//! - [`coherence`]: the coherence checker: readers, writers and faults
//!   against several cache instances, every read judged against the history
//!   of acknowledged writes (also a binary: `cargo run -p
//!   strata-cache-testkit --bin coherence`).
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

// Layout (`conformance` and `coherence` are public, their items being
// namespaces of their own; the other types are re-exported here, so each has
// one path):
//
// - conformance: the DistributedCache conformance suite, run_all.
// - chaos: ChaosCache, a wrapper that injects errors and delays.
// - chaos_backplane: ChaosBackplane, a wrapper that loses, delays or fails
//   notices.
// - coherence: the coherence checker.
// - server: RedisServer, a throwaway redis-server on a free port.

mod chaos;
mod chaos_backplane;
pub mod coherence;
pub mod conformance;
mod server;

pub use chaos::ChaosCache;
pub use chaos_backplane::ChaosBackplane;
pub use server::RedisServer;

// The crate's README, its crates.io page, compiles as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
