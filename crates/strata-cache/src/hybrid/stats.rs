//! Per-instance counters ([`HybridStats`]) and the `metrics` facade counters.
//!
//! Every metric carries the label `cache` (the builder's `name`), so two
//! caches of one process are told apart. Metrics are resolved through the
//! facade at each event, not bound when the cache is built: a recorder
//! installed after the cache still receives everything. The events that
//! reach the facade are the slow paths' (a miss, an L2 hit, an error, a
//! notice), where a registry lookup is small next to an L2 round trip.
//!
//! The L1 hit path is kept to one plain store: hits are counted in
//! cache-line-padded slots, one per thread (threads are spread over
//! [`STRIPES`] slots), by a relaxed load and store rather than an atomic
//! add, which costs several nanoseconds more per hit. The price: two threads
//! sharing a slot that count at the same instant may lose one hit; with at
//! most [`STRIPES`] threads hitting one cache, counts are exact. The L1 hit
//! metric is not incremented per hit either: [`Stats::flush_metrics`] adds
//! what was counted since its last call, from a task every [`FLUSH_EVERY`].

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

/// Slots of the L1 hit counter.
const STRIPES: usize = 64;
/// How often the L1 hit counter is added to the `metrics` counter.
pub(crate) const FLUSH_EVERY: Duration = Duration::from_secs(1);

/// A snapshot of one HybridCache instance's counters, since it was built.
///
/// # Example
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// use strata_cache::{HybridCache, HybridEntryOptions};
///
/// let cache = HybridCache::builder().build();
/// let options = HybridEntryOptions::new();
/// for _ in 0..3 {
///     cache.get_or_create("k", &options, |_| async { Ok::<_, std::io::Error>(1) }).await?;
/// }
/// let stats = cache.stats();
/// assert_eq!((stats.factory_runs(), stats.l1_hits()), (1, 2));
/// # Ok::<(), strata_cache::Error>(())
/// # }).unwrap();
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HybridStats {
    l1_hits: u64,
    l2_hits: u64,
    misses: u64,
    factory_runs: u64,
    stale_served: u64,
    l2_errors: u64,
    backplane_sent: u64,
    backplane_received: u64,
    corrupt_entries: u64,
    deferred_operations: u64,
    replayed_operations: u64,
    pending_operations: u64,
    gaps: u64,
}

impl HybridStats {
    /// Calls answered from L1.
    pub fn l1_hits(&self) -> u64 {
        self.l1_hits
    }
    /// Fetches answered from L2 (one per coalesced fetch, not per waiting caller).
    pub fn l2_hits(&self) -> u64 {
        self.l2_hits
    }
    /// Fetches that found no usable value in L1 or L2 (one per coalesced fetch).
    pub fn misses(&self) -> u64 {
        self.misses
    }
    /// Factory runs started.
    pub fn factory_runs(&self) -> u64 {
        self.factory_runs
    }
    /// Calls answered with a stale value by fail-safe or a soft timeout.
    pub fn stale_served(&self) -> u64 {
        self.stale_served
    }
    /// L2 operations that failed or timed out (tag records included).
    pub fn l2_errors(&self) -> u64 {
        self.l2_errors
    }
    /// Notices published on the backplane.
    pub fn backplane_sent(&self) -> u64 {
        self.backplane_sent
    }
    /// Notices received from other instances.
    pub fn backplane_received(&self) -> u64 {
        self.backplane_received
    }
    /// L2 values under this cache's keys that were truncated or did not
    /// match their checksum (each was treated as a miss).
    pub fn corrupt_entries(&self) -> u64 {
        self.corrupt_entries
    }
    /// Writes and invalidations whose L2 operation or notice did not finish
    /// within the caller's budget, or failed, and were kept for replay.
    pub fn deferred_operations(&self) -> u64 {
        self.deferred_operations
    }
    /// Kept operations that were replayed successfully.
    pub fn replayed_operations(&self) -> u64 {
        self.replayed_operations
    }
    /// Operations not yet carried to L2 and the backplane, now.
    pub fn pending_operations(&self) -> u64 {
        self.pending_operations
    }
    /// Times L1 became suspect: a backplane reconnect, a hole in a peer's
    /// notices, or silence past the trust window.
    pub fn gaps(&self) -> u64 {
        self.gaps
    }
}

#[derive(Debug, Default)]
#[repr(align(64))]
struct Padded(AtomicU64);

/// The live counters of one cache.
#[derive(Debug)]
pub(crate) struct Stats {
    l1_hits: Box<[Padded; STRIPES]>,
    /// The L1 hits already added to the metric.
    l1_hits_flushed: AtomicU64,
    l2_hits: AtomicU64,
    misses: AtomicU64,
    factory_runs: AtomicU64,
    stale_served: AtomicU64,
    l2_errors: AtomicU64,
    backplane_sent: AtomicU64,
    backplane_received: AtomicU64,
    corrupt_entries: AtomicU64,
    deferred_operations: AtomicU64,
    replayed_operations: AtomicU64,
    gaps: AtomicU64,
    /// The `cache` label of every metric.
    #[cfg_attr(not(feature = "metrics"), allow(dead_code))]
    name: String,
}

/// The counters without a `layer` label.
#[cfg(feature = "metrics")]
const METRIC_NAMES: &[&str] = &[
    "strata_hybrid_misses_total",
    "strata_hybrid_factory_runs_total",
    "strata_hybrid_stale_served_total",
    "strata_hybrid_l2_errors_total",
    "strata_backplane_messages_sent_total",
    "strata_backplane_messages_received_total",
    "strata_hybrid_corrupt_entries_total",
    "strata_hybrid_deferred_operations_total",
    "strata_hybrid_replayed_operations_total",
    "strata_backplane_gaps_total",
];

/// Which per-instance counter an event bumps.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Event {
    L2Hit,
    Miss,
    FactoryRun,
    StaleServed,
    L2Error,
    BackplaneSent,
    BackplaneReceived,
    Corrupt,
    Deferred,
    Replayed,
    Gap,
}

thread_local! {
    /// This thread's stripe, `usize::MAX` until assigned. A `const`
    /// thread-local without destructor: reading it is one load relative to
    /// the thread pointer.
    static STRIPE: Cell<usize> = const { Cell::new(usize::MAX) };
}

/// This thread's stripe.
#[inline]
fn stripe() -> usize {
    match STRIPE.get() {
        usize::MAX => assign_stripe(),
        index => index,
    }
}

/// Gives this thread the next stripe, round robin. Out of line: it runs once
/// per thread, and the hit path stays small.
#[cold]
fn assign_stripe() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let index = NEXT.fetch_add(1, Ordering::Relaxed) % STRIPES;
    STRIPE.set(index);
    index
}

impl Stats {
    pub(crate) fn new(name: String) -> Self {
        // Make every series visible at zero to a recorder already installed
        // (a scrape then shows them before their first event); events still
        // resolve their metric each time, so a later recorder gets them too.
        #[cfg(feature = "metrics")]
        {
            for metric in METRIC_NAMES {
                metrics::counter!(*metric, "cache" => name.clone()).increment(0);
            }
            for layer in ["l1", "l2"] {
                metrics::counter!("strata_hybrid_hits_total", "layer" => layer, "cache" => name.clone())
                    .increment(0);
            }
            metrics::gauge!("strata_hybrid_pending_operations", "cache" => name.clone()).set(0.0);
        }
        Self {
            l1_hits: Box::new(std::array::from_fn(|_| Padded::default())),
            l1_hits_flushed: AtomicU64::new(0),
            l2_hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            factory_runs: AtomicU64::new(0),
            stale_served: AtomicU64::new(0),
            l2_errors: AtomicU64::new(0),
            backplane_sent: AtomicU64::new(0),
            backplane_received: AtomicU64::new(0),
            corrupt_entries: AtomicU64::new(0),
            deferred_operations: AtomicU64::new(0),
            replayed_operations: AtomicU64::new(0),
            gaps: AtomicU64::new(0),
            name,
        }
    }

    /// The hit path's counter: a relaxed load and store on this thread's
    /// slot (see the module docs for why not an atomic add).
    #[inline]
    pub(crate) fn l1_hit(&self) {
        let slot = &self.l1_hits[stripe()].0;
        slot.store(slot.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
    }

    /// Adds the L1 hits counted since the last call to the `metrics` counter.
    pub(crate) fn flush_metrics(&self) {
        let total = self.l1_hits_total();
        let flushed = self.l1_hits_flushed.swap(total, Ordering::Relaxed);
        #[cfg(not(feature = "metrics"))]
        let _ = flushed;
        #[cfg(feature = "metrics")]
        if total > flushed {
            metrics::counter!("strata_hybrid_hits_total", "layer" => "l1", "cache" => self.name.clone())
                .increment(total - flushed);
        }
    }

    fn l1_hits_total(&self) -> u64 {
        self.l1_hits
            .iter()
            .map(|p| p.0.load(Ordering::Relaxed))
            .sum()
    }

    pub(crate) fn record(&self, event: Event) {
        let (counter, metric) = match event {
            Event::L2Hit => (&self.l2_hits, "strata_hybrid_hits_total"),
            Event::Miss => (&self.misses, "strata_hybrid_misses_total"),
            Event::FactoryRun => (&self.factory_runs, "strata_hybrid_factory_runs_total"),
            Event::StaleServed => (&self.stale_served, "strata_hybrid_stale_served_total"),
            Event::L2Error => (&self.l2_errors, "strata_hybrid_l2_errors_total"),
            Event::BackplaneSent => (&self.backplane_sent, "strata_backplane_messages_sent_total"),
            Event::BackplaneReceived => (
                &self.backplane_received,
                "strata_backplane_messages_received_total",
            ),
            Event::Corrupt => (&self.corrupt_entries, "strata_hybrid_corrupt_entries_total"),
            Event::Deferred => (
                &self.deferred_operations,
                "strata_hybrid_deferred_operations_total",
            ),
            Event::Replayed => (
                &self.replayed_operations,
                "strata_hybrid_replayed_operations_total",
            ),
            Event::Gap => (&self.gaps, "strata_backplane_gaps_total"),
        };
        counter.fetch_add(1, Ordering::Relaxed);
        #[cfg(feature = "metrics")]
        {
            let name = self.name.clone();
            if matches!(event, Event::L2Hit) {
                metrics::counter!(metric, "layer" => "l2", "cache" => name).increment(1);
            } else {
                metrics::counter!(metric, "cache" => name).increment(1);
            }
        }
        #[cfg(not(feature = "metrics"))]
        let _ = metric;
    }

    /// Sets the gauge of operations waiting for L2 or the backplane.
    pub(crate) fn set_pending(&self, pending: usize) {
        #[cfg(not(feature = "metrics"))]
        let _ = pending;
        #[cfg(feature = "metrics")]
        #[allow(clippy::cast_precision_loss)] // a count far below 2^52
        metrics::gauge!("strata_hybrid_pending_operations", "cache" => self.name.clone())
            .set(pending as f64);
    }

    pub(crate) fn snapshot(&self, pending: usize) -> HybridStats {
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        HybridStats {
            l1_hits: self.l1_hits_total(),
            l2_hits: load(&self.l2_hits),
            misses: load(&self.misses),
            factory_runs: load(&self.factory_runs),
            stale_served: load(&self.stale_served),
            l2_errors: load(&self.l2_errors),
            backplane_sent: load(&self.backplane_sent),
            backplane_received: load(&self.backplane_received),
            corrupt_entries: load(&self.corrupt_entries),
            deferred_operations: load(&self.deferred_operations),
            replayed_operations: load(&self.replayed_operations),
            pending_operations: pending as u64,
            gaps: load(&self.gaps),
        }
    }
}

impl Drop for Stats {
    /// The last hits reach the metric too.
    fn drop(&mut self) {
        self.flush_metrics();
    }
}

#[cfg(all(test, feature = "metrics"))]
mod tests {
    use std::sync::Arc;

    use metrics::{
        Counter, CounterFn, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit,
    };

    use super::*;

    /// Records the L1 hit counter's increments.
    #[derive(Default)]
    struct L1Hits(Arc<AtomicU64>);

    struct Add(Arc<AtomicU64>);

    impl CounterFn for Add {
        fn increment(&self, value: u64) {
            self.0.fetch_add(value, Ordering::Relaxed);
        }
        fn absolute(&self, _: u64) {}
    }

    impl Recorder for L1Hits {
        fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
            let l1 = key
                .labels()
                .any(|l| l.key() == "layer" && l.value() == "l1");
            if l1 {
                Counter::from_arc(Arc::new(Add(Arc::clone(&self.0))))
            } else {
                Counter::noop()
            }
        }
        fn register_gauge(&self, _: &Key, _: &Metadata<'_>) -> Gauge {
            Gauge::noop()
        }
        fn register_histogram(&self, _: &Key, _: &Metadata<'_>) -> Histogram {
            Histogram::noop()
        }
    }

    #[test]
    fn l1_hits_reach_the_metric_when_flushed_and_on_drop() {
        let recorder = L1Hits::default();
        let seen = Arc::clone(&recorder.0);
        let stats = Stats::new("test".into());
        for _ in 0..3 {
            stats.l1_hit();
        }
        let other_thread = std::thread::scope(|s| s.spawn(|| stats.l1_hit()).join());
        assert!(other_thread.is_ok());
        assert_eq!(seen.load(Ordering::Relaxed), 0, "not per hit");
        // The recorder is looked up at each flush: one installed after the
        // cache was built still receives the hits.
        metrics::with_local_recorder(&recorder, || stats.flush_metrics());
        assert_eq!(seen.load(Ordering::Relaxed), 4);
        metrics::with_local_recorder(&recorder, || stats.flush_metrics());
        assert_eq!(seen.load(Ordering::Relaxed), 4, "only what is new");
        stats.l1_hit();
        assert_eq!(stats.snapshot(0).l1_hits(), 5);
        metrics::with_local_recorder(&recorder, || drop(stats));
        assert_eq!(seen.load(Ordering::Relaxed), 5);
    }
}
