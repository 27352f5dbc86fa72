//! `cargo run --release -p strata-cache-testkit --bin coherence -- [options]`:
//! the coherence checker against HybridCache instances on a Redis of its own
//! (started with the `redis-server` on `PATH`), every fault injected in
//! turn. Prints the report as a Markdown table; exits with 1 when a read was
//! stale beyond five times its bound.
//!
//! Options: `--seconds N` (60), `--instances N` (3), `--keys N` (64),
//! `--readers N` per instance (4), `--writers N` (2), `--seed N`,
//! `--topology single|cluster|sentinel` (single: one `redis-server`; cluster:
//! 3 masters and 3 replicas; sentinel: a master, 2 replicas, 3 sentinels),
//! `--no-faults`, `--only FAULT` (one of `lost-notices`, `l2-errors`,
//! `redis-hung`, `partition`, `redis-restart` (single only),
//! `master-failover` (cluster or sentinel only), `database-down`).

use std::time::Duration;

use strata_cache_testkit::Topology;
use strata_cache_testkit::coherence::hybrid::{self, Faults};
use strata_cache_testkit::coherence::{Bounds, Config};

fn main() {
    let mut config = Config {
        duration: Duration::from_secs(60),
        ..Config::default()
    };
    let mut instances = 3;
    let mut faults = None;
    let mut topology = Topology::Single;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut number = |name: &str| -> u64 {
            args.next()
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| usage(&format!("{name} needs a number")))
        };
        match arg.as_str() {
            "--seconds" => config.duration = Duration::from_secs(number("--seconds")),
            "--instances" => instances = number("--instances") as usize,
            "--keys" => config.keys = number("--keys") as usize,
            "--readers" => config.readers = number("--readers") as usize,
            "--writers" => config.writers = number("--writers") as usize,
            "--seed" => config.seed = number("--seed"),
            "--no-faults" => faults = Some(Faults::none()),
            "--topology" => {
                topology = args
                    .next()
                    .unwrap_or_default()
                    .parse()
                    .unwrap_or_else(|e: String| usage(&e));
            }
            "--only" => {
                let name = args.next().unwrap_or_default();
                let faults = faults.insert(Faults::none());
                match name.as_str() {
                    "lost-notices" => faults.lost_notices = true,
                    "l2-errors" => faults.l2_errors = true,
                    "redis-hung" => faults.redis_hung = true,
                    "partition" => faults.partition = true,
                    "redis-restart" => faults.redis_restart = true,
                    "database-down" => faults.database_down = true,
                    "master-failover" => faults.master_failover = true,
                    other => usage(&format!("unknown fault {other:?}")),
                }
            }
            other => usage(&format!("unknown option {other}")),
        }
    }
    let faults = faults.unwrap_or_else(|| Faults::all_on(topology));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a Tokio runtime");
    let started = std::time::Instant::now();
    let report = runtime.block_on(hybrid::run_on(
        topology,
        instances,
        config.clone(),
        faults,
        Bounds::default(),
    ));
    println!(
        "coherence: {instances} instances on {topology:?}, {} keys, {} readers per instance, {} writers, {:?}, seed {}, {} (wall {:?})\n",
        config.keys,
        config.readers,
        config.writers,
        config.duration,
        config.seed,
        faults.describe(),
        started.elapsed()
    );
    print!("{report}");
    if report.violations > 0 {
        std::process::exit(1);
    }
}

fn usage(problem: &str) -> ! {
    eprintln!(
        "coherence: {problem}\nusage: coherence [--seconds N] [--instances N] [--keys N] \
         [--readers N] [--writers N] [--seed N] [--topology single|cluster|sentinel] \
         [--no-faults | --only FAULT]"
    );
    std::process::exit(2);
}
