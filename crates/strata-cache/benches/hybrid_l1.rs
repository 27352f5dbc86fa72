//! L1 hit cost of `HybridCache::get_or_create`, against the baseline the
//! architecture sets: a `HashMap<String, Arc<T>>` with the foldhash hasher,
//! `get` plus a clone of the `Arc`, measured in the same run.
//!
//! Also measured beside them: the raw structure under L1 (a papaya table
//! keyed by the key's foldhash, a pinned read that compares the key and
//! clones the value: what `sharded::ShardedMap::read` does, rebuilt here
//! because the engine is private), the structures L1 used before (sharded
//! `RwLock<HashMap>`s read the same way; quick_cache's `get`), the hit
//! of the raw-bytes API, and hits spread over all the keys in turn (not one
//! hot key: the table's lines are not all in the core's cache), against
//! the `HashMap` read the same way.
//!
//! Run: `taskset -c 0 cargo bench -p strata-cache --bench hybrid_l1`.
//! The ratio to report is `hybrid_get_or_create / hashmap_foldhash_arc`.

use std::collections::HashMap;
use std::convert::Infallible;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher};
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_main};
use metrics::{
    Counter, CounterFn, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit,
};
use strata_cache::{Bytes, HybridCache, HybridEntryOptions};

mod support;
use support::{HOT, KEYS, Small, small};

/// A recorder whose counters are atomics: what a Prometheus exporter costs
/// on the hit path, roughly (one virtual call, one atomic add).
struct AtomicRecorder;

struct AtomicCounter(AtomicU64);

impl CounterFn for AtomicCounter {
    fn increment(&self, value: u64) {
        self.0.fetch_add(value, Ordering::Relaxed);
    }
    fn absolute(&self, value: u64) {
        self.0.fetch_max(value, Ordering::Relaxed);
    }
}

impl Recorder for AtomicRecorder {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn register_counter(&self, _: &Key, _: &Metadata<'_>) -> Counter {
        Counter::from_arc(Arc::new(AtomicCounter(AtomicU64::new(0))))
    }
    fn register_gauge(&self, _: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::noop()
    }
    fn register_histogram(&self, _: &Key, _: &Metadata<'_>) -> Histogram {
        Histogram::noop()
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a Tokio runtime")
}

/// The structure L1 used before papaya, rebuilt: sharded `RwLock<HashMap>`s
/// keyed by the key's foldhash (high bits pick the shard, a pass-through hasher in the
/// table), the key compared, the value cloned under the read lock.
struct Sharded {
    shards: Vec<RwLock<Table>>,
    hasher: foldhash::fast::RandomState,
}

type Table = HashMap<u64, (Box<str>, Small), BuildHasherDefault<PassThrough>>;

#[derive(Default)]
struct PassThrough(u64);

impl Hasher for PassThrough {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, _: &[u8]) {
        unreachable!("u64 keys only")
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

impl Sharded {
    fn new(count: usize) -> Self {
        Self {
            shards: (0..count).map(|_| RwLock::default()).collect(),
            hasher: foldhash::fast::RandomState::default(),
        }
    }
    fn locate(&self, key: &str) -> (u64, &RwLock<Table>) {
        let hash = self.hasher.hash_one(key);
        let index = (hash >> 32) as usize & (self.shards.len() - 1);
        (hash, &self.shards[index])
    }
    fn insert(&self, key: &str, value: Small) {
        let (hash, shard) = self.locate(key);
        shard
            .write()
            .expect("lock")
            .insert(hash, (Box::from(key), value));
    }
    fn get(&self, key: &str) -> Option<Small> {
        let (hash, shard) = self.locate(key);
        let table = shard.read().expect("lock");
        table
            .get(&hash)
            .filter(|(k, _)| **k == *key)
            .map(|(_, v)| v.clone())
    }
}

/// The raw structure under L1, rebuilt: one papaya table keyed by the key's
/// foldhash (pass-through hasher), the key compared, the value cloned while
/// the thread is pinned.
struct LockFree {
    table: papaya::HashMap<u64, (Box<str>, Small), BuildHasherDefault<PassThrough>>,
    hasher: foldhash::fast::RandomState,
}

impl LockFree {
    fn new() -> Self {
        Self {
            // As L1 builds it: blocking resizes, so reads probe one table.
            table: papaya::HashMap::builder()
                .hasher(BuildHasherDefault::default())
                .resize_mode(papaya::ResizeMode::Blocking)
                .build(),
            hasher: foldhash::fast::RandomState::default(),
        }
    }
    fn insert(&self, key: &str, value: Small) {
        let hash = self.hasher.hash_one(key);
        self.table.pin().insert(hash, (Box::from(key), value));
    }
    fn get(&self, key: &str) -> Option<Small> {
        let hash = self.hasher.hash_one(key);
        let table = self.table.pin();
        table
            .get(&hash)
            .filter(|(k, _)| **k == *key)
            .map(|(_, v)| v.clone())
    }
}

/// A cache with `KEYS` entries (typed, and raw under `raw:`), its coarse
/// clock ticking.
fn filled_cache(rt: &tokio::runtime::Runtime) -> HybridCache {
    rt.block_on(async {
        let cache = HybridCache::builder().build();
        let options = HybridEntryOptions::new().with_expiration(Duration::from_secs(3600));
        for id in 0..KEYS {
            cache
                .set(&format!("product:{id}"), small(id), &options)
                .await
                .expect("set");
            let body = Bytes::from(format!("{{\"id\":{id},\"price_cents\":1999,\"stock\":7}}"));
            cache
                .set_bytes(&format!("raw:product:{id}"), body, &options)
                .await
                .expect("set_bytes");
        }
        // Let the clock's ticker run once, as it does in a live service.
        tokio::time::sleep(Duration::from_millis(20)).await;
        cache
    })
}

fn bench_hit(c: &mut Criterion, rt: &tokio::runtime::Runtime, cache: &HybridCache, name: &str) {
    let options = HybridEntryOptions::new();
    c.bench_function(name, |b| {
        b.to_async(rt).iter(|| async {
            let value = cache
                .get_or_create(black_box(HOT), &options, |_| async {
                    Ok::<_, Infallible>(small(0))
                })
                .await;
            black_box(value)
        });
    });
}

fn l1_hit(c: &mut Criterion) {
    let mut map: HashMap<String, Arc<Small>, foldhash::fast::RandomState> = HashMap::default();
    let qc: quick_cache::sync::Cache<String, Arc<Small>> = quick_cache::sync::Cache::new(2000);
    for id in 0..KEYS {
        map.insert(format!("product:{id}"), Arc::new(small(id)));
        qc.insert(format!("product:{id}"), Arc::new(small(id)));
    }
    c.bench_function("l1_hit/hashmap_foldhash_arc", |b| {
        b.iter(|| black_box(map.get(black_box(HOT)).cloned()));
    });
    let raw = LockFree::new();
    let sharded = Sharded::new(8);
    for id in 0..KEYS {
        raw.insert(&format!("product:{id}"), small(id));
        sharded.insert(&format!("product:{id}"), small(id));
    }
    c.bench_function("l1_hit/papaya_pinned_read", |b| {
        b.iter(|| black_box(raw.get(black_box(HOT))));
    });
    c.bench_function("l1_hit/sharded_rwlock_hashmap_read", |b| {
        b.iter(|| black_box(sharded.get(black_box(HOT))));
    });
    c.bench_function("l1_hit/quick_cache_get", |b| {
        b.iter(|| black_box(qc.get(black_box(HOT))));
    });

    let rt = runtime();
    let cache = filled_cache(&rt);
    bench_hit(c, &rt, &cache, "l1_hit/hybrid_get_or_create");
    paired(&rt, &cache, &map, &raw);
    let options = HybridEntryOptions::new();
    c.bench_function("l1_hit/hybrid_get_or_create_bytes", |b| {
        b.to_async(&rt).iter(|| async {
            let value = cache
                .get_or_create_bytes(black_box("raw:product:42"), &options, |_| async {
                    Ok::<_, Infallible>(Bytes::new())
                })
                .await;
            black_box(value)
        });
    });

    // Hits spread over every key, in turn.
    let keys: Vec<String> = (0..KEYS).map(|id| format!("product:{id}")).collect();
    let mut next = 0;
    c.bench_function("l1_hit/hashmap_foldhash_arc_all_keys", |b| {
        b.iter(|| {
            next = (next + 1) % keys.len();
            black_box(map.get(black_box(keys[next].as_str())).cloned())
        });
    });
    c.bench_function("l1_hit/hybrid_get_or_create_all_keys", |b| {
        b.to_async(&rt).iter(|| {
            next = (next + 1) % keys.len();
            let key = keys[next].as_str();
            let cache = &cache;
            let options = &options;
            async move {
                let value = cache
                    .get_or_create(black_box(key), options, |_| async {
                        Ok::<_, Infallible>(small(0))
                    })
                    .await;
                black_box(value)
            }
        });
    });

    // The same with a metrics recorder installed before the cache is built.
    metrics::set_global_recorder(AtomicRecorder).expect("no recorder installed yet");
    let cache = filled_cache(&rt);
    bench_hit(c, &rt, &cache, "l1_hit/hybrid_get_or_create_with_recorder");
    assert!(cache.stats().l1_hits() > 0);
}

/// Rounds and calls per side of the paired measurement.
const ROUNDS: usize = 300;
const CALLS: u32 = 10_000;

/// Paired figures, robust to load that drifts during a run: each round times
/// `CALLS` HashMap gets, then `CALLS` raw-structure (papaya) reads, then `CALLS` hits,
/// back to back; the median of the per-round ratios is printed.
fn paired(
    rt: &tokio::runtime::Runtime,
    cache: &HybridCache,
    map: &HashMap<String, Arc<Small>, foldhash::fast::RandomState>,
    table: &LockFree,
) {
    let options = HybridEntryOptions::new();
    let (mut raw_ratios, mut hit_ratios, mut base_ns) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        let start = Instant::now();
        for _ in 0..CALLS {
            black_box(map.get(black_box(HOT)).cloned());
        }
        let base = start.elapsed();
        let start = Instant::now();
        for _ in 0..CALLS {
            black_box(table.get(black_box(HOT)));
        }
        let raw = start.elapsed();
        let hit = rt.block_on(async {
            let start = Instant::now();
            for _ in 0..CALLS {
                let value = cache
                    .get_or_create(black_box(HOT), &options, |_| async {
                        Ok::<_, Infallible>(small(0))
                    })
                    .await;
                black_box(value).ok();
            }
            start.elapsed()
        });
        raw_ratios.push(raw.as_secs_f64() / base.as_secs_f64());
        hit_ratios.push(hit.as_secs_f64() / base.as_secs_f64());
        base_ns.push(base.as_secs_f64() * 1e9 / f64::from(CALLS));
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "paired ({ROUNDS} rounds of {CALLS} calls): HashMap {:.1} ns/call (median); \
         raw (papaya) / HashMap {:.2}x; hit / HashMap {:.2}x (medians); load average {}",
        median(&mut base_ns),
        median(&mut raw_ratios),
        median(&mut hit_ratios),
        load.trim()
    );
}

mod group {
    #![allow(missing_docs)]
    criterion::criterion_group!(benches, super::l1_hit);
}
criterion_main!(group::benches);
