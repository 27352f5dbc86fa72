//! `MemoryDistributedCache::set` as the cache fills: the same write with the
//! cache 10%, 50% and 100% full, in one run, so the ratios compare like with
//! like.
//!
//! The capacity is sized for 500,000 entries of 10-byte keys and 16-48-byte
//! values (32 on average), plus the per-entry overhead the cache charges.
//! Each row first fills the cache to its level, then overwrites random keys
//! of that level with values of random size, so the level holds. The 100%
//! row's key set is 1% larger than the cache holds: the cache sits at its
//! byte budget, and a write that grows a value or brings back an evicted key
//! must evict, as in a busy cache's steady state. The last row is the worst
//! case at capacity: every write is a key the cache no longer holds, so every
//! write evicts one entry.
//!
//! Entries use `default_options()` (sliding 30 min, absolute 1 h), so every
//! write also files the entry in the expiry index.
//!
//! Run: `cargo bench -p strata-cache --bench memory_capacity`.
//!
//! `MEMORY_CAPACITY_ROW` (0 to 3, the rows below in order) runs one row
//! only. For instruction counts, which a loaded machine does not skew, add
//! `MEMORY_CAPACITY_OPS`: the bench then skips criterion, fills the cache for
//! that row and makes that many writes through `timed_write`, which callgrind
//! counts alone:
//!
//! ```text
//! MEMORY_CAPACITY_ROW=2 MEMORY_CAPACITY_OPS=100000 valgrind --tool=callgrind \
//!     --toggle-collect='*timed_write*' target/release/deps/memory_capacity-<hash>
//! ```

mod poll;

use std::hint::black_box;

use bytes::Bytes;
use criterion::Criterion;
use strata_cache::MEMORY_ENTRY_OVERHEAD;
use strata_cache::{DistributedCache, EntryOptions, MemoryDistributedCache};

use poll::ready;

/// Entries the capacity holds at the mean value size.
const ENTRIES: usize = 500_000;
/// `key:000000`.
const KEY_LEN: usize = 10;
const MIN_VALUE: usize = 16;
const MAX_VALUE: usize = 48;
const MEAN_VALUE: usize = (MIN_VALUE + MAX_VALUE) / 2;
/// Pre-drawn writes the timed loop cycles through (a power of two).
const OPS: usize = 1 << 20;

fn capacity() -> usize {
    ENTRIES * (KEY_LEN + MEAN_VALUE + MEMORY_ENTRY_OVERHEAD)
}

fn key(i: usize) -> String {
    format!("key:{i:06}")
}

/// xorshift64: reproducible draws without a dependency.
struct Draw(u64);

impl Draw {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        usize::try_from(self.0 % n as u64).unwrap_or(0)
    }
}

/// A cache, its keys and the writes the timed loop makes.
struct Load {
    cache: MemoryDistributedCache,
    keys: Vec<String>,
    values: Vec<Bytes>,
    /// `(key, value)` indices.
    ops: Vec<(u32, u8)>,
    options: EntryOptions,
}

impl Load {
    /// Fills a cache with `level` percent of [`ENTRIES`] keys (1% more than
    /// fit at 100); the timed writes overwrite those keys at random.
    fn at_level(level: usize) -> Self {
        let count = match level {
            100 => ENTRIES + ENTRIES / 100,
            _ => ENTRIES * level / 100,
        };
        let mut draw = Draw(0x2545_F491_4F6C_DD1D);
        let ops = (0..OPS)
            .map(|_| (draw.below(count), draw.below(MAX_VALUE - MIN_VALUE + 1)))
            .collect();
        Self::new(count, ops)
    }

    /// A full cache whose timed writes go through a key set 10% larger than
    /// the cache holds, in order: each write is the key evicted longest ago.
    fn evicting() -> Self {
        let count = ENTRIES + ENTRIES / 10;
        let mut draw = Draw(0x9E37_79B9_7F4A_7C15);
        let ops = (0..OPS)
            .map(|i| ((ENTRIES + i) % count, draw.below(MAX_VALUE - MIN_VALUE + 1)))
            .collect();
        let load = Self::new(count, ops);
        assert!(load.cache.len() < count, "the key set does not fit");
        load
    }

    fn new(count: usize, ops: Vec<(usize, usize)>) -> Self {
        let values = (MIN_VALUE..=MAX_VALUE)
            .map(|n| Bytes::from(vec![b'v'; n]))
            .collect::<Vec<_>>();
        let to_u32 = |n: usize| u32::try_from(n).expect("fewer than 2^32 keys");
        let to_u8 = |n: usize| u8::try_from(n).expect("fewer than 256 sizes");
        let load = Self {
            cache: MemoryDistributedCache::with_capacity(capacity()),
            keys: (0..count).map(key).collect(),
            values,
            ops: ops
                .into_iter()
                .map(|(k, v)| (to_u32(k), to_u8(v)))
                .collect(),
            options: strata_cache::default_options(),
        };
        let mut draw = Draw(0xD1B5_4A32_D192_ED03);
        for key in &load.keys {
            let value = load.values[draw.below(load.values.len())].clone();
            ready(load.cache.set(key, value, &load.options)).expect("set");
        }
        load
    }

    /// The `i`th write; out of line, so that callgrind can count it alone.
    #[inline(never)]
    fn timed_write(&self, i: usize) {
        let (k, v) = self.ops[i & (OPS - 1)];
        let (key, value) = (&self.keys[k as usize], &self.values[v as usize]);
        black_box(ready(self.cache.set(key, value.clone(), &self.options))).expect("set");
    }
}

type Build = fn() -> Load;

/// The rows, in order.
const ROWS: [(&str, Build); 4] = [
    ("overwrite, 10% full", || Load::at_level(10)),
    ("overwrite, 50% full", || Load::at_level(50)),
    ("overwrite, 100% full", || Load::at_level(100)),
    ("new key, 100% full (evicts every write)", Load::evicting),
];

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("memory_set");
    let only = std::env::var("MEMORY_CAPACITY_ROW").ok();
    for (row, (name, build)) in ROWS.into_iter().enumerate() {
        if only.as_ref().is_some_and(|only| *only != row.to_string()) {
            continue;
        }
        let load = build();
        println!(
            "{name}: {} entries, {:.1}% of the capacity charged",
            load.cache.len(),
            100.0 * load.cache.used_bytes() as f64 / capacity() as f64
        );
        let mut i = 0;
        group.bench_function(name, |b| {
            b.iter(|| {
                load.timed_write(i);
                i += 1;
            });
        });
    }
    group.finish();
}

// What `criterion_group!`/`criterion_main!` expand to, minus the undocumented
// public function they add.
fn main() {
    let count = |name| {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse::<usize>().ok())
    };
    if let (Some(row), Some(ops)) = (count("MEMORY_CAPACITY_ROW"), count("MEMORY_CAPACITY_OPS")) {
        let (name, build) = ROWS[row];
        let load = build();
        for i in 0..ops {
            load.timed_write(i);
        }
        println!("{name}: {ops} writes");
        return;
    }
    let mut criterion = Criterion::default().configure_from_args();
    bench(&mut criterion);
    criterion.final_summary();
}
