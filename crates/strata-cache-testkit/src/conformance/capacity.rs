//! Conformance checks of a backend at its capacity: [`run_at_capacity`].
//!
//! A full cache is the steady state of a busy one. These checks write several
//! times a backend's capacity through it and ask what the contract promises
//! however much it evicts: every write is accepted, the entry just written is
//! there, and a read never returns an older value than the last one written
//! to its key (evicted entries read as missing, never as what they held
//! before their last write).
//!
//! They need a backend small enough to fill in a test (a
//! `MemoryDistributedCache` of a few MiB, a `redis-server --maxmemory 4mb`),
//! so they run apart from [`run_all`](super::run_all), on a cache of their own.

use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use strata_cache::{DistributedCache, EntryOptions};

use super::{Keys, get};

/// Bytes of each value written.
const VALUE_LEN: usize = 1024;
/// How many times the capacity the checks write.
const FILL_FACTOR: usize = 4;
/// Bounds on the number of writes, whatever the capacity.
const MIN_WRITES: usize = 1_000;
const MAX_WRITES: usize = 100_000;

/// Runs the capacity checks against `cache`, whose capacity is about
/// `capacity_bytes`, one after the other (they share the capacity).
///
/// The entries carry a one-hour expiration, so a Redis with a `volatile-*`
/// eviction policy (the one the docs recommend) can evict them.
///
/// # Panics
///
/// When a check fails; the message names the check and what was expected.
pub async fn run_at_capacity<C: DistributedCache + ?Sized>(cache: &C, capacity_bytes: usize) {
    let k = Keys::new();
    a_full_cache_keeps_every_write_and_never_serves_an_older_value(cache, &k, capacity_bytes).await;
}

/// A value that names its key and its generation, padded to [`VALUE_LEN`].
fn stamped(key: usize, generation: u32) -> Bytes {
    let mut value = BytesMut::with_capacity(VALUE_LEN);
    value.put_slice(format!("{key}:{generation}:").as_bytes());
    value.resize(VALUE_LEN, b'.');
    value.freeze()
}

/// Writes `FILL_FACTOR` times the capacity over a key set larger than the
/// cache holds, overwriting keys as often as it adds new ones, and reads a
/// key every few writes.
async fn a_full_cache_keeps_every_write_and_never_serves_an_older_value<
    C: DistributedCache + ?Sized,
>(
    cache: &C,
    k: &Keys,
    capacity: usize,
) {
    const CHECK: &str = "a_full_cache_keeps_every_write_and_never_serves_an_older_value";
    let writes = (FILL_FACTOR * capacity / VALUE_LEN).clamp(MIN_WRITES, MAX_WRITES);
    // Twice as many keys as fit: about half the writes overwrite a key that is
    // still there, half write one the cache had to evict.
    let key_count = (2 * capacity / VALUE_LEN).clamp(16, writes);
    let keys: Vec<String> = (0..key_count)
        .map(|i| k.key(&format!("full-{i}")))
        .collect();
    let mut generations = vec![0u32; key_count];
    let options = EntryOptions::new().with_relative_expiration(Duration::from_secs(3600));
    // xorshift64: a fixed, spread-out order of keys.
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        usize::try_from(state % key_count as u64).unwrap_or(0)
    };
    let mut last = 0;
    for write in 0..writes {
        let i = next();
        generations[i] += 1;
        cache
            .set(&keys[i], stamped(i, generations[i]), &options)
            .await
            .unwrap_or_else(|e| {
                panic!("[{CHECK}] write {write} of {writes} into a full cache failed: {e}")
            });
        last = i;
        if write % 5 == 0 {
            let j = next();
            if let Some(read) = get(cache, &keys[j], CHECK).await {
                assert_eq!(
                    read,
                    stamped(j, generations[j]),
                    "[{CHECK}] after {write} writes, a read returned another value than the \
                     last one written to its key"
                );
            }
        }
    }
    assert_eq!(
        get(cache, &keys[last], CHECK).await,
        Some(stamped(last, generations[last])),
        "[{CHECK}] the entry written last is not there"
    );
    let mut held = 0;
    for (i, key) in keys.iter().enumerate() {
        if let Some(read) = get(cache, key, CHECK).await {
            assert_eq!(
                read,
                stamped(i, generations[i]),
                "[{CHECK}] an older value came back"
            );
            held += 1;
        }
    }
    assert!(
        held > 0 && held < key_count,
        "[{CHECK}] {held} of {key_count} keys held: the cache did not fill, or did not evict"
    );
}
