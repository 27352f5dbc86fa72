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
//! - [`RedisCluster`] and [`RedisSentinel`]: the same for the two
//!   high-availability deployments: a Redis Cluster of 3 masters and 3
//!   replicas, and a master with 2 replicas under 3 sentinels; with
//!   failover, restart and (cluster) live slot migration on demand, and
//!   (`with_password`) data nodes that require a password.
//! - [`RedisDeployment`]: one of the three, chosen by [`Topology`] (also a
//!   binary: `with-redis <single|cluster|sentinel> -- <command>` runs a
//!   command against a throwaway one).
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
// - cluster: RedisCluster, a throwaway 6-node Redis Cluster.
// - sentinel: RedisSentinel, a throwaway master, replicas and sentinels.
// - deployment: RedisDeployment and Topology, any of the three by name.
// - node: one process of a cluster or sentinel deployment (crate-private).
// - resp: the small synchronous RESP client of their admin commands
//   (crate-private).

mod chaos;
mod chaos_backplane;
mod cluster;
pub mod coherence;
pub mod conformance;
mod deployment;
mod node;
mod resp;
mod sentinel;
mod server;

pub use chaos::ChaosCache;
pub use chaos_backplane::ChaosBackplane;
pub use cluster::RedisCluster;
pub use deployment::{RedisDeployment, Topology};
pub use sentinel::RedisSentinel;
pub use server::RedisServer;

// The crate's README, its crates.io page, compiles as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
