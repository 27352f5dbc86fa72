//! `RedisCache` throughput and call latency on one `redis-server` against a
//! Redis Cluster of 3 masters (each with a replica), both started by the
//! testkit in the same run.
//!
//! Workload: 16 callers (Tokio tasks on a multi-thread runtime of 2 workers,
//! as a service on a two-core machine runs them) share one `RedisCache` per
//! topology and call it back to back, each picking one of 1,000 preloaded
//! keys at random and doing a `get` (one `HMGET`) or a `set` of a 215-byte
//! value with a 1-hour expiration (one `MULTI`/`EXEC`), 90% gets by default.
//! On the cluster the keys spread over the three masters' slots, and the
//! replicas receive every write.
//!
//! Method: each round runs every mix on both topologies for a fixed time,
//! the topologies alternating (single first in odd rounds, cluster first in
//! even ones), so that load drifting on a shared machine hits both sides.
//! Per round: calls per second over the round (calls still in flight at its
//! end included) and the p50/p99 of the calls' latencies, from the call to
//! its answer as the caller sees it. Per topology: the median of the rounds'
//! throughputs and the percentiles of all its calls; then the cluster/single
//! ratio of the medians and the median of the per-round ratios.
//!
//! Run (see docs/benchmarks.md; the guards' `redis-server` children inherit
//! the affinity):
//!
//! ```text
//! taskset -c 0 cargo bench -p strata-cache-redis --bench topology
//! cargo bench -p strata-cache-redis --bench topology -- --rounds 5 --seconds 3 --gets 90,50
//! ```
//!
//! A custom harness (no criterion): the figures are throughputs under
//! concurrency and latency percentiles, not the mean time of one call.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use strata_cache::{DistributedCache, EntryOptions};
use strata_cache_redis::{RedisCache, RedisCacheOptions};
use strata_cache_testkit::{RedisDeployment, Topology};

const KEYS: usize = 1_000;
const VALUE_LEN: usize = 215;
const CALLERS: usize = 16;
const WORKERS: usize = 2;
/// Untimed calls per topology before the first round: connections, the
/// cluster client's slot map, the servers' first allocations.
const WARM_UP: Duration = Duration::from_secs(1);
const TOPOLOGIES: [Topology; 2] = [Topology::Single, Topology::Cluster];

/// Command-line knobs (cargo adds `--bench`, which is ignored).
struct Args {
    rounds: usize,
    round_time: Duration,
    /// The mixes to run, as the percentage of calls that are gets.
    gets: Vec<u64>,
}

impl Args {
    fn parse() -> Self {
        let args: Vec<String> = std::env::args().collect();
        let value = |flag: &str| {
            args.iter()
                .position(|a| a == flag)
                .and_then(|i| args.get(i + 1))
                .cloned()
        };
        let rounds = value("--rounds").and_then(|n| n.parse().ok()).unwrap_or(5);
        let seconds = value("--seconds")
            .and_then(|s| s.parse().ok())
            .unwrap_or(3.0);
        let gets = value("--gets")
            .map(|list| {
                list.split(',')
                    .map(|p| p.trim().parse().expect("--gets takes percentages: 90,50"))
                    .collect()
            })
            .unwrap_or_else(|| vec![90, 50]);
        Self {
            rounds,
            round_time: Duration::from_secs_f64(seconds),
            gets,
        }
    }
}

/// What one topology did in one round of one mix.
struct Round {
    calls: u64,
    errors: u64,
    elapsed: Duration,
    /// Every call's latency, sorted.
    latencies: Vec<Duration>,
}

impl Round {
    #[allow(clippy::cast_precision_loss)]
    fn per_second(&self) -> f64 {
        self.calls as f64 / self.elapsed.as_secs_f64()
    }
}

fn main() {
    let args = Args::parse();
    let deployments = TOPOLOGIES.map(RedisDeployment::start);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(WORKERS)
        .enable_all()
        .build()
        .expect("a Tokio runtime");
    let keys: Arc<[String]> = (0..KEYS).map(|i| format!("item:{i}")).collect();
    let caches = runtime.block_on(async {
        let single = connect(&deployments[0].url()).await;
        let clustered = connect(&deployments[1].url()).await;
        for cache in [&single, &clustered] {
            preload(cache, &keys).await;
            run_round(cache, &keys, args.gets[0], WARM_UP, 0).await;
        }
        [single, clustered]
    });

    println!(
        "RedisCache get/set, {CALLERS} callers on a multi-thread runtime ({WORKERS} workers), \
         {KEYS} keys, {VALUE_LEN}-byte values, {} rounds of {:?} per topology and mix",
        args.rounds, args.round_time
    );
    println!("single: one redis-server; cluster: 3 masters + 3 replicas");
    println!("CPUs allowed: {}", cpus_allowed());
    println!("load average at the start: {}", load_average());

    // results[mix][topology]: one Round per round.
    let mut results: Vec<[Vec<Round>; 2]> = args.gets.iter().map(|_| [vec![], vec![]]).collect();
    for round in 0..args.rounds {
        let order = if round % 2 == 0 { [0, 1] } else { [1, 0] };
        for (mix, &gets) in args.gets.iter().enumerate() {
            for t in order {
                let seed = (round * 64 + mix * 2 + t) as u64;
                let outcome =
                    runtime.block_on(run_round(&caches[t], &keys, gets, args.round_time, seed));
                println!(
                    "round {}  {gets:>2}% get  {:<7}  {:>8.0} ops/s  p50 {}  p99 {}  errors {}",
                    round + 1,
                    TOPOLOGIES[t].name(),
                    outcome.per_second(),
                    micros(percentile(&outcome.latencies, 0.50)),
                    micros(percentile(&outcome.latencies, 0.99)),
                    outcome.errors,
                );
                results[mix][t].push(outcome);
            }
        }
    }
    println!("load average at the end: {}", load_average());
    for (mix, &gets) in args.gets.iter().enumerate() {
        summarize(gets, &results[mix]);
    }
}

/// A `RedisCache` on `url`, once it answers.
async fn connect(url: &str) -> RedisCache {
    let options = RedisCacheOptions::new(url).with_instance_name("bench-topology:");
    let cache = RedisCache::new(options).expect("valid options");
    let deadline = Instant::now() + Duration::from_secs(10);
    while cache.ping().await.is_err() {
        assert!(
            Instant::now() < deadline,
            "Redis at {url} did not answer within 10 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    cache
}

fn entry_options() -> EntryOptions {
    EntryOptions::new().with_relative_expiration(Duration::from_secs(3600))
}

fn value() -> Bytes {
    Bytes::from(vec![b'v'; VALUE_LEN])
}

async fn preload(cache: &RedisCache, keys: &[String]) {
    let (value, options) = (value(), entry_options());
    for key in keys {
        cache
            .set(key, value.clone(), &options)
            .await
            .expect("preload");
    }
}

/// `CALLERS` tasks call `cache` back to back for `time`; `gets` percent of
/// the calls are gets.
async fn run_round(
    cache: &RedisCache,
    keys: &Arc<[String]>,
    gets: u64,
    time: Duration,
    seed: u64,
) -> Round {
    let start = Instant::now();
    let deadline = start + time;
    let callers: Vec<_> = (0..CALLERS as u64)
        .map(|caller| {
            let (cache, keys) = (cache.clone(), Arc::clone(keys));
            let mut random = SplitMix((seed << 8) | caller);
            tokio::spawn(async move {
                let (value, options) = (value(), entry_options());
                let mut latencies = Vec::with_capacity(1 << 14);
                let mut errors = 0_u64;
                while Instant::now() < deadline {
                    let draw = random.next();
                    #[allow(clippy::cast_possible_truncation)]
                    let key = &keys[(draw % KEYS as u64) as usize];
                    let call = Instant::now();
                    let ok = if (draw >> 32) % 100 < gets {
                        // A miss would mean the preload is gone: count it.
                        matches!(cache.get(key).await, Ok(Some(_)))
                    } else {
                        cache.set(key, value.clone(), &options).await.is_ok()
                    };
                    latencies.push(call.elapsed());
                    errors += u64::from(!ok);
                }
                (latencies, errors)
            })
        })
        .collect();
    let mut latencies = Vec::new();
    let mut errors = 0;
    for caller in callers {
        let (mine, failed) = caller.await.expect("a caller task");
        latencies.extend(mine);
        errors += failed;
    }
    let elapsed = start.elapsed();
    latencies.sort_unstable();
    Round {
        calls: latencies.len() as u64,
        errors,
        elapsed,
        latencies,
    }
}

/// Per topology: throughput per round and its median, the percentiles of
/// all calls; then the cluster/single ratios.
fn summarize(gets: u64, rounds: &[Vec<Round>; 2]) {
    println!("\n{gets}% get / {}% set:", 100 - gets);
    let mut medians = [0.0; 2];
    for (t, topology) in TOPOLOGIES.iter().enumerate() {
        let mut line = String::new();
        for round in &rounds[t] {
            let _ = write!(line, " {:.0}", round.per_second());
        }
        medians[t] = median(rounds[t].iter().map(Round::per_second).collect());
        let mut all: Vec<Duration> = rounds[t]
            .iter()
            .flat_map(|r| r.latencies.iter().copied())
            .collect();
        all.sort_unstable();
        let errors: u64 = rounds[t].iter().map(|r| r.errors).sum();
        println!(
            "  {:<7} ops/s per round{line}; median {:.0}; latency p50 {}  p99 {} ({} calls, {errors} errors)",
            topology.name(),
            medians[t],
            micros(percentile(&all, 0.50)),
            micros(percentile(&all, 0.99)),
            all.len(),
        );
    }
    let paired: Vec<f64> = rounds[0]
        .iter()
        .zip(&rounds[1])
        .map(|(single, cluster)| cluster.per_second() / single.per_second())
        .collect();
    let (low, high) = paired
        .iter()
        .fold((f64::MAX, f64::MIN), |(l, h), &r| (l.min(r), h.max(r)));
    println!(
        "  cluster / single: {:.3} (ratio of the medians); {:.3} (median of the per-round ratios, {low:.3} to {high:.3})",
        medians[1] / medians[0],
        median(paired),
    );
}

/// SplitMix64: a few instructions per draw, and the runs repeat.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_unstable_by(f64::total_cmp);
    match values.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => values[n / 2],
        n => f64::midpoint(values[n / 2 - 1], values[n / 2]),
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss
    )]
    let rank = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

fn micros(d: Duration) -> String {
    format!("{:.0} µs", d.as_secs_f64() * 1e6)
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .trim()
        .to_owned()
}

/// The CPUs this process may run on: tells a pinned run from another.
fn cpus_allowed() -> String {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|line| line.strip_prefix("Cpus_allowed_list:"))
        .map_or_else(|| "unknown".to_owned(), |list| list.trim().to_owned())
}
