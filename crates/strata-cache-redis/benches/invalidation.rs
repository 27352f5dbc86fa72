//! Cross-instance invalidation latency: what a user of instance B sees after
//! instance A writes a key that B holds in its L1.
//!
//! Two `HybridCache` instances share a real Redis (a `redis-server` spawned
//! by the testkit guard) as L2 (`RedisCache`) and backplane
//! (`RedisBackplane`), each with its own connections. Each iteration: B
//! serves the old value from L1; A's `set` starts; B calls `get` in a loop
//! (yielding between calls, so that its listener and the connections run)
//! until it returns the new value. The time from the start of A's `set` to
//! that `get` is one sample. A's `set` duration is reported too.
//!
//! Run (client and server pinned to one core, see docs/benchmarks.md):
//!
//! ```text
//! taskset -c 0 cargo bench -p strata-cache-redis --bench invalidation
//! taskset -c 0 cargo bench -p strata-cache-redis --bench invalidation -- --iterations 5000
//! ```
//!
//! A custom harness (no criterion): the figure of interest is the tail
//! (p99, max) of a distribution, not a mean.

use std::sync::Arc;
use std::time::{Duration, Instant};

use strata_cache::{Backplane, DistributedCache, HybridCache, HybridEntryOptions};
use strata_cache_redis::{RedisBackplane, RedisCache, RedisCacheOptions};
use strata_cache_testkit::RedisServer;

const DEFAULT_ITERATIONS: usize = 2_000;
const WARM_UP: usize = 100;
const KEY: &str = "product:42";
/// A sample longer than this is a failure of the setup, not a figure.
const GIVE_UP: Duration = Duration::from_secs(5);

fn main() {
    let iterations = iterations_from_args();
    let server = RedisServer::new();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a Tokio runtime");
    let (latencies, sets) = runtime.block_on(measure(&server.url(), iterations));
    report(iterations, &latencies, &sets);
}

/// `--iterations N` among the arguments (cargo adds `--bench`).
fn iterations_from_args() -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == "--iterations")
        .and_then(|i| args.get(i + 1))
        .and_then(|n| n.parse().ok())
        .unwrap_or(DEFAULT_ITERATIONS)
}

/// One instance: its own RedisCache and RedisBackplane connections.
fn instance(url: &str, id: &str) -> HybridCache {
    let options = RedisCacheOptions::new(url).with_instance_name("bench-invalidation:");
    let l2: Arc<dyn DistributedCache> = Arc::new(RedisCache::new(options.clone()).expect("cache"));
    let backplane: Arc<dyn Backplane> = Arc::new(RedisBackplane::new(&options).expect("backplane"));
    HybridCache::builder()
        .distributed(l2)
        .backplane(backplane)
        .instance_id(id)
        .build()
}

/// Waits until a notice published by `a` reaches `b`: both are connected and
/// subscribed.
async fn wait_until_linked(a: &HybridCache, b: &HybridCache, options: &HybridEntryOptions) {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut version = 0_u64;
    loop {
        version += 1;
        a.set(KEY, version, options).await.expect("set");
        let _ = b.get::<u64>(KEY).await.expect("get");
        a.set(KEY, version + 1_000_000, options).await.expect("set");
        tokio::time::sleep(Duration::from_millis(50)).await;
        if b.get::<u64>(KEY).await.expect("get") == Some(version + 1_000_000) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the backplane did not link A and B within 10 s"
        );
    }
}

async fn measure(url: &str, iterations: usize) -> (Vec<Duration>, Vec<Duration>) {
    let (a, b) = (instance(url, "bench-a"), instance(url, "bench-b"));
    let options = HybridEntryOptions::new().with_expiration(Duration::from_secs(3600));
    wait_until_linked(&a, &b, &options).await;

    let mut latencies = Vec::with_capacity(iterations);
    let mut sets = Vec::with_capacity(iterations);
    let mut old = b.get::<u64>(KEY).await.expect("get").expect("a value");
    for i in 0..WARM_UP + iterations {
        // B serves the old value from its L1.
        let hits = b.stats().l1_hits();
        assert_eq!(b.get::<u64>(KEY).await.expect("get"), Some(old));
        assert_eq!(b.stats().l1_hits(), hits + 1, "B holds the key in L1");
        let new = old + 1;
        let start = Instant::now();
        let set = {
            let (a, options) = (a.clone(), options.clone());
            tokio::spawn(async move {
                a.set(KEY, new, &options).await.expect("set");
                start.elapsed()
            })
        };
        let seen = loop {
            if b.get::<u64>(KEY).await.expect("get") == Some(new) {
                break start.elapsed();
            }
            assert!(
                start.elapsed() < GIVE_UP,
                "B still serves {old} after {GIVE_UP:?}"
            );
            tokio::task::yield_now().await;
        };
        let set = set.await.expect("the set task");
        if i >= WARM_UP {
            latencies.push(seen);
            sets.push(set);
        }
        old = new;
    }
    (latencies, sets)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss
    )]
    let rank = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

fn report(iterations: usize, latencies: &[Duration], sets: &[Duration]) {
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!("cross-instance invalidation, {iterations} iterations after {WARM_UP} warm-up");
    println!("load average at the end: {}", load.trim());
    for (name, samples) in [
        ("set on A until B's get returns the new value", latencies),
        ("A's set (L2 write + publish)", sets),
    ] {
        let mut sorted = samples.to_vec();
        sorted.sort_unstable();
        let total: Duration = sorted.iter().sum();
        #[allow(clippy::cast_possible_truncation)]
        let mean = total / sorted.len().max(1) as u32;
        println!(
            "{name}: p50 {:?}  p90 {:?}  p99 {:?}  max {:?}  mean {:?}",
            percentile(&sorted, 0.50),
            percentile(&sorted, 0.90),
            percentile(&sorted, 0.99),
            sorted.last().copied().unwrap_or_default(),
            mean,
        );
    }
}
