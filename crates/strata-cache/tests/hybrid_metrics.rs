//! The `metrics` facade counters of HybridCache, read through a global
//! `DebuggingRecorder` (this file is its own test binary, so installing a
//! global recorder touches no other test).
//!
//! Every instance registers the same keys, so the counters are shared by all
//! the caches of the process: one test walks through the steps in order and
//! checks the totals after each. `Snapshotter::snapshot` drains counters (it
//! swaps them to zero), so [`Totals`] adds the snapshots up.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use metrics_util::MetricKind;
use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use strata_cache::{
    DistributedCache, ErrorKind, HybridCache, HybridEntryOptions, MemoryDistributedCache,
};
use strata_cache_testkit::ChaosCache;

use common::{Cluster, DbDown, Product, cluster, failing, secs, settle};

/// Text that must never reach a metric: the cached values carry it.
const SECRET: &str = "VALUE-5ecret-9f1c";

const HITS: &str = "strata_hybrid_hits_total";
const MISSES: &str = "strata_hybrid_misses_total";
const FACTORY_RUNS: &str = "strata_hybrid_factory_runs_total";
const STALE_SERVED: &str = "strata_hybrid_stale_served_total";
const L2_ERRORS: &str = "strata_hybrid_l2_errors_total";
const SENT: &str = "strata_backplane_messages_sent_total";
const RECEIVED: &str = "strata_backplane_messages_received_total";
const CORRUPT: &str = "strata_hybrid_corrupt_entries_total";
const DEFERRED: &str = "strata_hybrid_deferred_operations_total";
const REPLAYED: &str = "strata_hybrid_replayed_operations_total";
const GAPS: &str = "strata_backplane_gaps_total";

/// The documented counters, as (name, labels).
const DOCUMENTED: [(&str, &[(&str, &str)]); 12] = [
    (HITS, &[("layer", "l1")]),
    (HITS, &[("layer", "l2")]),
    (MISSES, &[]),
    (FACTORY_RUNS, &[]),
    (STALE_SERVED, &[]),
    (L2_ERRORS, &[]),
    (SENT, &[]),
    (RECEIVED, &[]),
    (CORRUPT, &[]),
    (DEFERRED, &[]),
    (REPLAYED, &[]),
    (GAPS, &[]),
];

/// A value that carries [`SECRET`].
fn secret(id: u32) -> Product {
    Product {
        id,
        name: format!("{SECRET} #{id}"),
    }
}

/// How often the L1 hit metric is flushed (`stats::FLUSH_EVERY`, crate-private).
const FLUSH_EVERY: Duration = Duration::from_secs(1);

/// One metric: its name and its labels, sorted.
type Id = (String, Vec<(String, String)>);

/// The counters since the recorder was installed, with every name, label
/// and description seen.
struct Totals {
    snapshotter: Snapshotter,
    counters: BTreeMap<Id, u64>,
    descriptions: Vec<String>,
}

impl Totals {
    fn install() -> Self {
        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        recorder
            .install()
            .unwrap_or_else(|_| panic!("no other recorder in this test binary"));
        Self {
            snapshotter,
            counters: BTreeMap::new(),
            descriptions: Vec::new(),
        }
    }

    /// Adds what was counted since the last call.
    fn collect(&mut self) {
        for (key, _unit, description, value) in self.snapshotter.snapshot().into_vec() {
            let (kind, key) = key.into_parts();
            assert!(
                key.labels()
                    .any(|l| l.key() == "cache" && l.value() == "default"),
                "{key:?}: every metric names its cache"
            );
            if kind == MetricKind::Gauge {
                assert_eq!(
                    (key.name(), key.labels().count()),
                    ("strata_hybrid_pending_operations", 1),
                    "the one gauge, with its cache label only"
                );
                continue;
            }
            assert_eq!(kind, MetricKind::Counter, "{key:?}: counters and one gauge");
            let DebugValue::Counter(delta) = value else {
                panic!("{key:?}: not a counter value");
            };
            let mut labels: Vec<(String, String)> = key
                .labels()
                .filter(|l| l.key() != "cache")
                .map(|l| (l.key().to_owned(), l.value().to_owned()))
                .collect();
            labels.sort();
            *self
                .counters
                .entry((key.name().to_owned(), labels))
                .or_default() += delta;
            self.descriptions.extend(description.map(|d| d.to_string()));
        }
    }

    /// The total of `name` with exactly `labels`.
    fn get(&mut self, name: &str, labels: &[(&str, &str)]) -> u64 {
        self.collect();
        let id = (
            name.to_owned(),
            labels
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        );
        self.counters.get(&id).copied().unwrap_or(0)
    }

    fn l1_hits(&mut self) -> u64 {
        self.get(HITS, &[("layer", "l1")])
    }

    fn l2_hits(&mut self) -> u64 {
        self.get(HITS, &[("layer", "l2")])
    }

    /// The totals of every counter but the two hit counters.
    fn others(&mut self) -> Others {
        Others {
            misses: self.get(MISSES, &[]),
            factory_runs: self.get(FACTORY_RUNS, &[]),
            stale_served: self.get(STALE_SERVED, &[]),
            l2_errors: self.get(L2_ERRORS, &[]),
            sent: self.get(SENT, &[]),
            received: self.get(RECEIVED, &[]),
        }
    }

    /// Advances paused time until the L1 hit metric reaches `expected`, for
    /// at most five flush periods.
    async fn wait_for_l1_hits(&mut self, expected: u64) {
        for _ in 0..50 {
            if self.l1_hits() >= expected {
                break;
            }
            tokio::time::sleep(FLUSH_EVERY / 10).await;
        }
        assert_eq!(self.l1_hits(), expected, "L1 hits after the flush");
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Others {
    misses: u64,
    factory_runs: u64,
    stale_served: u64,
    l2_errors: u64,
    sent: u64,
    received: u64,
}

fn options() -> HybridEntryOptions {
    common::options()
}

/// A factory that returns `secret(id)`.
fn make(
    id: u32,
) -> impl FnOnce(strata_cache::FactoryContext) -> std::future::Ready<Result<Product, DbDown>>
+ Send
+ 'static {
    move |_| std::future::ready(Ok(secret(id)))
}

#[tokio::test(start_paused = true)]
async fn hybrid_metrics_counters_move_as_documented_and_never_carry_values() {
    // Before any build: the caches register their counters at build().
    let mut totals = Totals::install();
    let Cluster { a, b, .. } = cluster();
    let zero = Others {
        misses: 0,
        factory_runs: 0,
        stale_served: 0,
        l2_errors: 0,
        sent: 0,
        received: 0,
    };
    assert_eq!(totals.others(), zero);

    // 1. A miss on a: L1 and L2 empty, the factory runs; the write-back is
    //    announced by a and received by b.
    let key = "key-alpha-17";
    let got = a.get_or_create(key, &options(), make(1)).await.unwrap();
    assert_eq!(got, secret(1));
    settle().await;
    let after_miss = Others {
        misses: 1,
        factory_runs: 1,
        sent: 1,
        received: 1,
        ..zero
    };
    assert_eq!(totals.others(), after_miss);
    assert_eq!(totals.l2_hits(), 0);

    // 2. L1 hits on a: counted per thread, added to the metric by the flush
    //    task, not per hit.
    for _ in 0..3 {
        let got = a.get_or_create(key, &options(), failing()).await.unwrap();
        assert_eq!(got, secret(1));
    }
    assert_eq!(a.stats().l1_hits(), 3);
    assert_eq!(
        totals.l1_hits(),
        0,
        "the L1 hit metric is not bumped per hit"
    );
    totals.wait_for_l1_hits(3).await;
    assert_eq!(totals.others(), after_miss, "L1 hits touch nothing else");

    // 3. An L2 hit on b: a's value, no factory run, no miss.
    let got = b.get_or_create(key, &options(), failing()).await.unwrap();
    assert_eq!(got, secret(1));
    assert_eq!(totals.l2_hits(), 1);
    assert_eq!(b.stats().l2_hits(), 1);
    assert_eq!(totals.others(), after_miss);

    // 4. A set on a: one message sent by a, received by b, which drops its L1
    //    copy and reads the new value from L2 (a second L2 hit).
    a.set(key, secret(2), &options()).await.unwrap();
    settle().await;
    let after_set = Others {
        sent: 2,
        received: 2,
        ..after_miss
    };
    assert_eq!(totals.others(), after_set);
    assert_eq!(
        (a.stats().backplane_sent(), b.stats().backplane_received()),
        (2, 2)
    );
    assert_eq!(b.stats().backplane_sent(), 0);
    assert_eq!(
        a.stats().backplane_received(),
        0,
        "own notices are not counted"
    );
    assert_eq!(b.get::<Product>(key).await.unwrap(), Some(secret(2)));
    assert_eq!(totals.l2_hits(), 2);

    // 5. L2 errors through ChaosCache: the read and the write-back fail, the
    //    factory still serves the value.
    let chaos = ChaosCache::new(Arc::new(MemoryDistributedCache::new()));
    let c = HybridCache::builder()
        .distributed(Arc::new(chaos.clone()) as Arc<dyn DistributedCache>)
        .build();
    chaos.fail_with(ErrorKind::Unavailable);
    let got = c
        .get_or_create("key-beta-23", &options(), make(3))
        .await
        .unwrap();
    assert_eq!(got, secret(3));
    assert_eq!(chaos.injected_failures(), 2, "one L2 read, one L2 write");
    let after_errors = Others {
        misses: 2,
        factory_runs: 2,
        l2_errors: 2,
        ..after_set
    };
    assert_eq!(totals.others(), after_errors);
    assert_eq!(c.stats().l2_errors(), 2);

    // 6. Fail-safe: a's entry expires logically, the factory fails on b, b
    //    serves the stale L2 value. That fetch is a miss with a factory run too.
    let fail_safe = HybridEntryOptions::new()
        .with_expiration(secs(60))
        .with_fail_safe(secs(3600));
    let stale_key = "key-gamma-31";
    a.set(stale_key, secret(4), &fail_safe).await.unwrap();
    settle().await;
    tokio::time::sleep(secs(61)).await;
    let got = b
        .get_or_create(stale_key, &fail_safe, failing())
        .await
        .unwrap();
    assert_eq!(got, secret(4));
    let after_stale = Others {
        misses: 3,
        factory_runs: 3,
        stale_served: 1,
        sent: 3,
        received: 3,
        ..after_errors
    };
    assert_eq!(totals.others(), after_stale);
    assert_eq!(b.stats().stale_served(), 1);
    // Nothing more was hit meanwhile, and the flushes kept the L1 total.
    assert_eq!((totals.l1_hits(), totals.l2_hits()), (3, 2));

    // The metrics are the per-instance counters summed over the instances.
    let (sa, sb, sc) = (a.stats(), b.stats(), c.stats());
    let sum = |f: fn(&strata_cache::HybridStats) -> u64| f(&sa) + f(&sb) + f(&sc);
    assert_eq!(
        Others {
            misses: sum(|s| s.misses()),
            factory_runs: sum(|s| s.factory_runs()),
            stale_served: sum(|s| s.stale_served()),
            l2_errors: sum(|s| s.l2_errors()),
            sent: sum(|s| s.backplane_sent()),
            received: sum(|s| s.backplane_received()),
        },
        after_stale
    );
    assert_eq!(sum(|s| s.l1_hits()), 3);
    assert_eq!(sum(|s| s.l2_hits()), 2);

    // Dropping the caches flushes what is left: nothing here.
    drop((a, b, c));
    totals.collect();
    assert_eq!((totals.l1_hits(), totals.l2_hits()), (3, 2));

    // Only the documented names and labels: no key, no value, in a name, a
    // label or a description.
    let documented: Vec<Id> = DOCUMENTED
        .iter()
        .map(|(name, labels)| {
            (
                (*name).to_owned(),
                labels
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect(),
            )
        })
        .collect();
    let seen: Vec<&Id> = totals.counters.keys().collect();
    for id in &seen {
        assert!(documented.contains(id), "undocumented metric {id:?}");
    }
    assert_eq!(
        seen.len(),
        documented.len(),
        "every documented metric is registered"
    );
    let mut texts: Vec<String> = totals.descriptions.clone();
    for (name, labels) in &seen {
        texts.push(name.clone());
        for (k, v) in labels {
            texts.push(k.clone());
            texts.push(v.clone());
        }
    }
    for forbidden in [SECRET, "key-alpha", "key-beta", "key-gamma"] {
        for text in &texts {
            assert!(
                !text.contains(forbidden),
                "{forbidden:?} in metric text {text:?}"
            );
        }
    }
}
