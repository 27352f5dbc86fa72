//! How long a `MemoryDistributedCache::get` waits while another thread writes
//! into the full cache: a custom harness, since criterion measures means and
//! this is about the tail.
//!
//! The cache is sized and filled as in `memory_capacity` (500,000 entries of
//! 16-48-byte values). A writer thread then writes as fast as it can through
//! a key set 10% larger than the cache, so every write evicts an entry, while
//! the main thread times each of its gets of random keys one by one. The
//! same gets are timed first with no writer, as the baseline. Printed:
//! percentiles of the get's latency in each phase, and the writer's rate.
//!
//! Run: `cargo bench -p strata-cache --bench memory_latency` (not pinned: the
//! reader and the writer each need a core).

mod poll;

use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use strata_cache::MEMORY_ENTRY_OVERHEAD;
use strata_cache::{DistributedCache, MemoryDistributedCache};

use poll::ready;

const ENTRIES: usize = 500_000;
const KEY_LEN: usize = 10;
const MEAN_VALUE: usize = 32;
/// The key set the writer cycles through: 10% more than fits.
const KEYS: usize = ENTRIES + ENTRIES / 10;
/// Timed gets per phase.
const SAMPLES: usize = 2_000_000;

fn key(i: usize) -> String {
    format!("key:{i:06}")
}

struct Draw(u64);

impl Draw {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        usize::try_from(self.0 % n as u64).unwrap_or(0)
    }
}

/// A value of 16 to 48 bytes, in its own allocation as a written value
/// would be (values that share one allocation would make the reader and the
/// writer contend on its reference count, which a cache does not do).
fn value(draw: &mut Draw) -> Bytes {
    const PAYLOAD: [u8; 48] = [b'v'; 48];
    Bytes::copy_from_slice(&PAYLOAD[..16 + draw.below(33)])
}

/// Times `SAMPLES` gets of random keys; returns the latencies in ns, sorted.
fn timed_gets(cache: &MemoryDistributedCache, keys: &[String]) -> Vec<u64> {
    let mut draw = Draw(0x2545_F491_4F6C_DD1D);
    let mut samples = Vec::with_capacity(SAMPLES);
    for _ in 0..SAMPLES {
        let key = &keys[draw.below(keys.len())];
        let start = Instant::now();
        let value = ready(cache.get(key)).expect("get");
        let elapsed = start.elapsed();
        black_box(value);
        samples.push(u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX));
    }
    samples.sort_unstable();
    samples
}

fn report(phase: &str, samples: &[u64]) {
    let at = |q: f64| {
        // q is in [0, 1], so the index is within the vector.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let i = ((samples.len() - 1) as f64 * q) as usize;
        samples[i] as f64 / 1000.0
    };
    println!(
        "{phase}: get p50 {:.2} µs, p90 {:.2} µs, p99 {:.2} µs, p99.9 {:.2} µs, p99.99 {:.2} µs, max {:.1} µs ({} gets)",
        at(0.5),
        at(0.9),
        at(0.99),
        at(0.999),
        at(0.9999),
        at(1.0),
        samples.len()
    );
}

fn main() {
    let capacity = ENTRIES * (KEY_LEN + MEAN_VALUE + MEMORY_ENTRY_OVERHEAD);
    let cache = MemoryDistributedCache::with_capacity(capacity);
    let keys: Arc<Vec<String>> = Arc::new((0..KEYS).map(key).collect());
    let options = strata_cache::default_options();
    let mut draw = Draw(0xD1B5_4A32_D192_ED03);
    for key in keys.iter() {
        ready(cache.set(key, value(&mut draw), &options)).expect("set");
    }
    println!(
        "filled: {} entries, {:.1}% of {capacity} bytes charged",
        cache.len(),
        100.0 * cache.used_bytes() as f64 / capacity as f64
    );

    report("no writer", &timed_gets(&cache, &keys));

    let stop = Arc::new(AtomicBool::new(false));
    let writes = Arc::new(AtomicU64::new(0));
    let writer = {
        let (cache, keys) = (cache.clone(), Arc::clone(&keys));
        let (stop, writes) = (Arc::clone(&stop), Arc::clone(&writes));
        std::thread::spawn(move || {
            let mut draw = Draw(0x9E37_79B9_7F4A_7C15);
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                ready(cache.set(&keys[i % KEYS], value(&mut draw), &options)).expect("set");
                i += 1;
                if i % 1024 == 0 {
                    writes.store(i as u64, Ordering::Relaxed);
                }
            }
        })
    };
    // Let the writer reach its steady state: every write evicts.
    std::thread::sleep(Duration::from_millis(200));
    let (start, before) = (Instant::now(), writes.load(Ordering::Relaxed));
    let samples = timed_gets(&cache, &keys);
    let rate = (writes.load(Ordering::Relaxed) - before) as f64 / start.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    writer.join().expect("the writer panicked");
    report("writer at capacity", &samples);
    println!(
        "writer: {:.2} M writes/s during the timed gets, each evicting one entry",
        rate / 1e6
    );
}
