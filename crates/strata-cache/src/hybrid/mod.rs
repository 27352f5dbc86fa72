//! HybridCache: a typed two-level cache (in-process L1, any
//! [`DistributedCache`](crate::DistributedCache) as L2) with stampede
//! protection, tags, fail-safe and a backplane that keeps instances' L1 copies
//! coherent.
//!
//! This module is a facade: it declares the parts and re-exports the public
//! types. The engine is crate-private.
//!
//! - `builder`: [`HybridCacheBuilder`], every cache-wide default in one place.
//! - `options`: [`HybridEntryOptions`], per-call options.
//! - `context`: [`FactoryContext`], what a factory may change about its entry.
//! - `cache`: [`HybridCache`], the public operations; `raw`: their raw-bytes
//!   variants (`get_or_create_bytes`...); `repr`: typed and raw values as the
//!   engine sees them.
//! - `fetch`: the miss path run once per key (L2, factory, write-back);
//!   `write`: building entries and writing them through the layers.
//! - `l1`: the bounded in-process layer, on `sharded`'s map; `l2`: timeouts
//!   and circuit breaker.
//! - `stampede`: one in-flight fetch per key; `tags`: tag invalidation times;
//!   `invalidation`: invalidations that land while a read runs (the
//!   cache-aside race).
//! - `envelope`: the versioned L2 byte format; `listener`: the backplane task.
//! - `clock`: the coarse clock of the hit path; `stats`: counters and metrics.

mod builder;
mod cache;
mod clock;
mod codec;
mod context;
mod envelope;
mod fetch;
mod invalidation;
mod l1;
mod l2;
mod listener;
mod options;
mod raw;
mod repr;
mod sharded;
mod stampede;
mod stats;
mod tags;
mod write;

pub use builder::{
    DEFAULT_L1_CAPACITY_BYTES, DEFAULT_L2_TIMEOUT, DEFAULT_MAX_KEY_LENGTH,
    DEFAULT_MAX_PAYLOAD_BYTES, HybridCacheBuilder,
};
pub use cache::HybridCache;
pub use context::FactoryContext;
pub use options::{DEFAULT_EXPIRATION, DEFAULT_FAIL_SAFE_THROTTLE, HybridEntryOptions};
pub use stats::HybridStats;
