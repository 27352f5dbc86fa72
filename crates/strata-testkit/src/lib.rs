//! Test support for Strata. Not published.
//!
//! # Layout
//!
//! - [`conformance`]: the `DistributedCache` conformance suite, [`conformance::run_all`].
//! - [`chaos`]: [`ChaosCache`], a wrapper that injects errors and delays.

pub mod chaos;
pub mod conformance;

pub use chaos::ChaosCache;
