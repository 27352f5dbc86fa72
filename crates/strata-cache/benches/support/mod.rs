//! What the L1 benches share: the cached value and the hot key.

use serde::{Deserialize, Serialize};

/// The small struct the benches cache.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Small {
    pub(crate) id: u64,
    pub(crate) price_cents: i64,
    pub(crate) stock: u32,
}

/// Keys the benches fill: `product:0` to `product:999`.
pub(crate) const KEYS: u64 = 1000;

/// The key every hot-key row reads.
pub(crate) const HOT: &str = "product:42";

/// The value under `product:{id}`.
pub(crate) fn small(id: u64) -> Small {
    Small {
        id,
        price_cents: 1999,
        stock: 7,
    }
}
