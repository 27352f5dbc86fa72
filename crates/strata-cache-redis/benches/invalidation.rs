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
//! A backplane gap at B (`HybridStats::gaps`: B judged that notices may have
//! been lost) makes B confirm its L1 copy against L2 before serving it. Such
//! a confirmation can return the new value before the notice arrives, so an
//! iteration during which B reports a gap is left out and run again, and the
//! number of gaps and left-out iterations is printed when there were any.
//!
//! With `--topology cluster` the same runs on a Redis Cluster of 3 masters
//! and 3 replicas (the testkit's `RedisCluster`): the key lives on the master
//! of its slot, and the notices go over sharded pub/sub (`SPUBLISH` to the
//! master of the channel's slot, `SSUBSCRIBE` there). The bench then also
//! prints which masters serve the key and the channel, and how many
//! `SPUBLISH` the masters counted.
//!
//! Run (client and server pinned to one core, see docs/benchmarks.md):
//!
//! ```text
//! taskset -c 0 cargo bench -p strata-cache-redis --bench invalidation
//! taskset -c 0 cargo bench -p strata-cache-redis --bench invalidation -- --iterations 5000
//! taskset -c 0 cargo bench -p strata-cache-redis --bench invalidation -- --topology cluster
//! ```
//!
//! A custom harness (no criterion): the figure of interest is the tail
//! (p99, max) of a distribution, not a mean.

use std::sync::Arc;
use std::time::{Duration, Instant};

use strata_cache::{Backplane, DistributedCache, HybridCache, HybridEntryOptions};
use strata_cache_redis::{RedisBackplane, RedisCache, RedisCacheOptions};
use strata_cache_testkit::{RedisCluster, RedisDeployment, Topology};

const DEFAULT_ITERATIONS: usize = 2_000;
const WARM_UP: usize = 100;
const KEY: &str = "product:42";
const INSTANCE_NAME: &str = "bench-invalidation:";
/// A sample longer than this is a failure of the setup, not a figure.
const GIVE_UP: Duration = Duration::from_secs(5);

fn main() {
    let iterations = arg("--iterations")
        .and_then(|n| n.parse().ok())
        .unwrap_or(DEFAULT_ITERATIONS);
    // `--topology single|cluster` (default single).
    let topology = arg("--topology").map_or(Topology::Single, |name| {
        name.parse()
            .unwrap_or_else(|e: String| panic!("--topology: {e}"))
    });
    let deployment = RedisDeployment::start(topology);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a Tokio runtime");
    let samples = runtime.block_on(measure(&deployment.url(), iterations));
    match &deployment {
        RedisDeployment::Cluster(cluster) => {
            report(
                " on a Redis Cluster (3 masters + 3 replicas, sharded pub/sub)",
                iterations,
                &samples,
            );
            report_cluster(cluster);
        }
        _ => report("", iterations, &samples),
    }
}

/// The value after `flag` among the arguments (cargo adds `--bench`).
fn arg(flag: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == flag)
        .and_then(|i| args.get(i + 1))
        .cloned()
}

/// One instance: its own RedisCache and RedisBackplane connections.
fn instance(url: &str, id: &str) -> HybridCache {
    let options = RedisCacheOptions::new(url).with_instance_name(INSTANCE_NAME);
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

/// What [`measure`] collected.
struct Samples {
    /// From the start of A's `set` until B's `get` returns the new value.
    latencies: Vec<Duration>,
    /// A's `set`.
    sets: Vec<Duration>,
    /// Backplane gaps B reported after the warm-up.
    gaps: u64,
    /// Iterations after the warm-up left out because B reported a gap
    /// during them.
    left_out: usize,
}

async fn measure(url: &str, iterations: usize) -> Samples {
    let (a, b) = (instance(url, "bench-a"), instance(url, "bench-b"));
    let options = HybridEntryOptions::new().with_expiration(Duration::from_secs(3600));
    wait_until_linked(&a, &b, &options).await;

    let mut latencies = Vec::with_capacity(iterations);
    let mut sets = Vec::with_capacity(iterations);
    let mut left_out = 0;
    let mut old = b.get::<u64>(KEY).await.expect("get").expect("a value");
    let mut gaps_before = b.stats().gaps();
    let mut gaps_after_warm_up = None;
    for i in 0.. {
        if latencies.len() == iterations {
            break;
        }
        if i == WARM_UP {
            gaps_after_warm_up = Some(b.stats().gaps());
        }
        // B serves the old value from its L1; after a gap it confirms the
        // value against L2 once, and serves it from L1 again.
        let hits = b.stats().l1_hits();
        assert_eq!(b.get::<u64>(KEY).await.expect("get"), Some(old));
        if b.stats().l1_hits() != hits + 1 {
            assert!(b.stats().gaps() > gaps_before, "B holds the key in L1");
            let hits = b.stats().l1_hits();
            assert_eq!(b.get::<u64>(KEY).await.expect("get"), Some(old));
            assert_eq!(b.stats().l1_hits(), hits + 1, "B holds the key in L1");
        }
        gaps_before = b.stats().gaps();
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
            if b.stats().gaps() == gaps_before {
                latencies.push(seen);
                sets.push(set);
            } else {
                left_out += 1;
            }
        }
        old = new;
    }
    Samples {
        latencies,
        sets,
        gaps: b.stats().gaps() - gaps_after_warm_up.unwrap_or_default(),
        left_out,
    }
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

fn report(topology: &str, iterations: usize, samples: &Samples) {
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "cross-instance invalidation{topology}, {iterations} iterations after {WARM_UP} warm-up"
    );
    println!("load average at the end: {}", load.trim());
    for (name, values) in [
        (
            "set on A until B's get returns the new value",
            &samples.latencies,
        ),
        ("A's set (L2 write + publish)", &samples.sets),
    ] {
        let mut sorted = values.to_vec();
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
    if samples.gaps > 0 || samples.left_out > 0 {
        println!(
            "backplane gaps at B after the warm-up: {}; iterations left out (a gap during them) and run again: {}",
            samples.gaps, samples.left_out
        );
    }
}

/// Which masters served the key and the channel, and the `SPUBLISH` count
/// of every master: the notices went over sharded pub/sub.
fn report_cluster(cluster: &RedisCluster) {
    let key = format!("{INSTANCE_NAME}{KEY}");
    // The channel RedisBackplane documents: `{instance_name}strata:backplane`.
    let channel = format!("{INSTANCE_NAME}strata:backplane");
    for (what, name) in [("key", &key), ("channel", &channel)] {
        let slot = RedisCluster::slot_of(name);
        println!(
            "{what} {name}: slot {slot}, master 127.0.0.1:{}",
            cluster.master_of_slot(slot)
        );
    }
    let mut counts = Vec::new();
    for port in cluster.masters() {
        let info: String = redis::Client::open(format!("redis://127.0.0.1:{port}"))
            .and_then(|client| client.get_connection())
            .and_then(|mut conn| redis::cmd("INFO").arg("commandstats").query(&mut conn))
            .unwrap_or_default();
        let calls = info
            .lines()
            .find_map(|line| line.strip_prefix("cmdstat_spublish:calls="))
            .and_then(|rest| rest.split(',').next())
            .unwrap_or("0")
            .to_owned();
        counts.push(format!("127.0.0.1:{port} {calls}"));
    }
    println!("SPUBLISH calls per master: {}", counts.join(", "));
}
