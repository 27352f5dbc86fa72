//! Test support for Strata.
//!
//! # Layout
//!
//! - [`conformance`]: the `DistributedCache` conformance suite, [`conformance::run_all`].
//! - [`chaos`]: [`ChaosCache`], a wrapper that injects errors and delays.
//! - [`server`]: [`RedisServer`], a throwaway `redis-server` on a free port.

pub mod chaos;
pub mod conformance;
pub mod server;

pub use chaos::ChaosCache;
pub use server::RedisServer;

// The crate's README, its crates.io page, compiles as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
