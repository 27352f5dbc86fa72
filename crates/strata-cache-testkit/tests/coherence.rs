//! The coherence checker's short run, as CI runs it: three HybridCache
//! instances on a Redis of their own, every fault injected once, and no read
//! stale beyond five times its bound. The long run and its figures:
//! `docs/operations.md`.

use std::time::Duration;

use strata_cache_testkit::Topology;
use strata_cache_testkit::coherence::hybrid::{self, Faults};
use strata_cache_testkit::coherence::{Bounds, Config};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_under_every_fault_serve_nothing_stale_beyond_its_bound() {
    let config = Config {
        // Every fault once: 6 x (3 s calm + 2 s fault), and a calm end.
        duration: Duration::from_secs(33),
        ..Config::default()
    };
    let report = hybrid::run(3, config, Faults::all(), Bounds::default()).await;
    println!("{report}");
    assert_eq!(
        report.faults.len(),
        6,
        "every fault was injected:\n{report}"
    );
    assert!(report.judged > 1000, "the readers ran:\n{report}");
    assert!(report.writes > 100, "the writers ran:\n{report}");
    assert_eq!(
        report.violations, 0,
        "stale reads beyond 5x their bound:\n{report}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_healthy_run_sees_every_write_within_50_ms() {
    let config = Config {
        duration: Duration::from_secs(5),
        ..Config::default()
    };
    let report = hybrid::run(3, config, Faults::none(), Bounds::default()).await;
    println!("{report}");
    assert_eq!(
        report.beyond_bound, 0,
        "stale reads beyond 50 ms:\n{report}"
    );
}

/// The sentinels' master killed twice under the workload: the instances
/// follow the promoted replica, and what it lacks (asynchronous replication)
/// is treated as a restart, so nothing is stale beyond its bound.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_through_sentinel_failovers_serve_nothing_stale_beyond_its_bound() {
    let config = Config {
        // Two cycles of 3 s calm and a failover (about 3 s), and a calm end.
        duration: Duration::from_secs(16),
        ..Config::default()
    };
    let faults = Faults {
        master_failover: true,
        ..Faults::none()
    };
    let report = hybrid::run_on(Topology::Sentinel, 3, config, faults, Bounds::default()).await;
    println!("{report}");
    assert!(!report.faults.is_empty(), "no failover happened:\n{report}");
    assert!(report.judged > 1000, "the readers ran:\n{report}");
    assert_eq!(
        report.violations, 0,
        "stale reads beyond 5x their bound:\n{report}"
    );
}
