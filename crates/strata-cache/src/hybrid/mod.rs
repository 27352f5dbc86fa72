//! HybridCache: a typed two-level cache (in-process L1, any
//! [`DistributedCache`](crate::DistributedCache) as L2) with stampede
//! protection, tags, fail-safe and a backplane that keeps instances' L1 copies
//! coherent, under faults too (`docs/coherence.md`).
//!
//! This module is a facade: it declares the parts and re-exports the public
//! types. The engine is crate-private. Reading order, from a call down:
//!
//! ```text
//! cache ── hit path: engine::Engine::l1_fresh (L1 entry at the current epoch)
//!   │
//!   ├─ get_or_create / get ─► fetch (the miss path, drawn there)
//!   │                           ├─ lookup: classify L1, load L2 (envelope, stamps)
//!   │                           ├─ stampede: one flight per key
//!   │                           └─ write: build entries, insert into L1
//!   └─ set / remove / remove_by_tag / clear ─► write ─► propagate (jobs,
//!                                              recovery queue, replay)
//! ```
//!
//! - `builder`: [`HybridCacheBuilder`], every cache-wide default in one place.
//! - `options`: [`HybridEntryOptions`], per-call options; `context`:
//!   [`FactoryContext`], what a factory may change about its entry.
//! - `cache`: [`HybridCache`], the public operations; `raw`: their raw-bytes
//!   variants (`get_or_create_bytes`...); `repr`: typed and raw values as the
//!   engine sees them; `codec`: the codec a cache writes with.
//! - `engine`: the parts of one cache wired together, and what a peer's
//!   notice or a gap does.
//! - `fetch`: the miss path; `lookup`: L1 and L2 as the slow path sees them;
//!   `write`: entries and the explicit changes; `propagate`: changes on their
//!   way to L2 and the backplane, kept and replayed when they cannot go.
//! - `order`: the invalidation order (local sequence, L2 stamps); `reads`:
//!   running reads a key invalidation must reach; `stampede`: one fetch per key.
//! - `l1` (on `sharded`'s map), `l2` (timeouts; `breaker`), `envelope` (the L2
//!   byte format), `notices` (the backplane side: numbered notices,
//!   heartbeats, holes and silence), `tasks` (background tasks), `clock`,
//!   `stats`.

mod breaker;
mod builder;
mod cache;
mod clock;
mod codec;
mod context;
mod engine;
mod envelope;
mod fetch;
mod l1;
mod l2;
mod lookup;
mod notices;
mod options;
mod order;
mod propagate;
mod raw;
mod reads;
mod repr;
mod sharded;
mod stampede;
mod stats;
mod tasks;
mod write;

pub use builder::{
    DEFAULT_L1_CAPACITY_BYTES, DEFAULT_L2_TIMEOUT, DEFAULT_MAX_KEY_LENGTH,
    DEFAULT_MAX_PAYLOAD_BYTES, DEFAULT_TRUST_WINDOW, HybridCacheBuilder,
};
pub use cache::HybridCache;
pub use context::FactoryContext;
pub use options::{DEFAULT_EXPIRATION, DEFAULT_FAIL_SAFE_THROTTLE, HybridEntryOptions};
pub use propagate::Propagation;
pub use stats::HybridStats;
