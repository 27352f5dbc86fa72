//! Per-instance counters ([`HybridStats`]) and the `metrics` facade counters.
//!
//! Metric handles are registered once, when the cache is built, and kept:
//! calling the `counter!` macro per event costs a registry lookup with a
//! recorder installed, while incrementing a kept handle is one virtual call.
//! The consequence: install the metrics recorder before building the cache.
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

use metrics::{Counter, Gauge};

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
    metrics: Metrics,
}

#[derive(Debug)]
struct Metrics {
    l1_hits: Counter,
    l2_hits: Counter,
    misses: Counter,
    factory_runs: Counter,
    stale_served: Counter,
    l2_errors: Counter,
    backplane_sent: Counter,
    backplane_received: Counter,
    corrupt_entries: Counter,
    deferred_operations: Counter,
    replayed_operations: Counter,
    gaps: Counter,
    pending_operations: Gauge,
}

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
    pub(crate) fn new() -> Self {
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
            metrics: Metrics {
                l1_hits: metrics::counter!("strata_hybrid_hits_total", "layer" => "l1"),
                l2_hits: metrics::counter!("strata_hybrid_hits_total", "layer" => "l2"),
                misses: metrics::counter!("strata_hybrid_misses_total"),
                factory_runs: metrics::counter!("strata_hybrid_factory_runs_total"),
                stale_served: metrics::counter!("strata_hybrid_stale_served_total"),
                l2_errors: metrics::counter!("strata_hybrid_l2_errors_total"),
                backplane_sent: metrics::counter!("strata_backplane_messages_sent_total"),
                backplane_received: metrics::counter!("strata_backplane_messages_received_total"),
                corrupt_entries: metrics::counter!("strata_hybrid_corrupt_entries_total"),
                deferred_operations: metrics::counter!("strata_hybrid_deferred_operations_total"),
                replayed_operations: metrics::counter!("strata_hybrid_replayed_operations_total"),
                gaps: metrics::counter!("strata_backplane_gaps_total"),
                pending_operations: metrics::gauge!("strata_hybrid_pending_operations"),
            },
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
        if total > flushed {
            self.metrics.l1_hits.increment(total - flushed);
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
            Event::L2Hit => (&self.l2_hits, &self.metrics.l2_hits),
            Event::Miss => (&self.misses, &self.metrics.misses),
            Event::FactoryRun => (&self.factory_runs, &self.metrics.factory_runs),
            Event::StaleServed => (&self.stale_served, &self.metrics.stale_served),
            Event::L2Error => (&self.l2_errors, &self.metrics.l2_errors),
            Event::BackplaneSent => (&self.backplane_sent, &self.metrics.backplane_sent),
            Event::BackplaneReceived => {
                (&self.backplane_received, &self.metrics.backplane_received)
            }
            Event::Corrupt => (&self.corrupt_entries, &self.metrics.corrupt_entries),
            Event::Deferred => (&self.deferred_operations, &self.metrics.deferred_operations),
            Event::Replayed => (&self.replayed_operations, &self.metrics.replayed_operations),
            Event::Gap => (&self.gaps, &self.metrics.gaps),
        };
        counter.fetch_add(1, Ordering::Relaxed);
        metric.increment(1);
    }

    /// Sets the gauge of operations waiting for L2 or the backplane.
    pub(crate) fn set_pending(&self, pending: usize) {
        #[allow(clippy::cast_precision_loss)] // a count far below 2^52
        self.metrics.pending_operations.set(pending as f64);
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use metrics::{
        CounterFn, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit,
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
        let stats = metrics::with_local_recorder(&recorder, Stats::new);
        for _ in 0..3 {
            stats.l1_hit();
        }
        let other_thread = std::thread::scope(|s| s.spawn(|| stats.l1_hit()).join());
        assert!(other_thread.is_ok());
        assert_eq!(seen.load(Ordering::Relaxed), 0, "not per hit");
        stats.flush_metrics();
        assert_eq!(seen.load(Ordering::Relaxed), 4);
        stats.flush_metrics();
        assert_eq!(seen.load(Ordering::Relaxed), 4, "only what is new");
        stats.l1_hit();
        assert_eq!(stats.snapshot(0).l1_hits(), 5);
        drop(stats);
        assert_eq!(seen.load(Ordering::Relaxed), 5);
    }
}
