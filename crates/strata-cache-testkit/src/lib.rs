//! Test support for Strata. Not published.
//!
//! # Layout
//!
//! - [`conformance`]: the `DistributedCache` conformance suite, [`conformance::run_all`].
//! - [`chaos`]: [`ChaosCache`], a wrapper that injects errors and delays.
//! - [`chaos_backplane`]: [`ChaosBackplane`], a wrapper that loses, delays or
//!   fails backplane notices.
//! - [`coherence`]: the coherence checker: readers, writers and faults
//!   against several cache instances, every read judged against the history.
//! - [`server`]: [`RedisServer`], a throwaway `redis-server` on a free port.

pub mod chaos;
pub mod chaos_backplane;
pub mod coherence;
pub mod conformance;
pub mod server;

pub use chaos::ChaosCache;
pub use chaos_backplane::ChaosBackplane;
pub use server::RedisServer;
