//! Test support for Strata. Not published.
//!
//! # Layout
//!
//! - [`conformance`]: the `DistributedCache` conformance suite: [`conformance::run_all`]
//!   for every backend, [`conformance::run_at_capacity`] on a cache small
//!   enough to fill, [`conformance::run_with_foreign`] where other programs
//!   can write the store.
//! - [`chaos`]: [`ChaosCache`], a wrapper that injects errors and delays.
//! - [`server`]: [`RedisServer`], a throwaway `redis-server` on a free port.

pub mod chaos;
pub mod conformance;
pub mod server;

pub use chaos::ChaosCache;
pub use server::RedisServer;
