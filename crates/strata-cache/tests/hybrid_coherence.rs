//! Coherence under faults, by topology (L1, L1+L2, L1+L2+backplane): the
//! situations in which an instance used to serve stale data silently. Each
//! test forces its interleaving (paused time, gates, injected faults).

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use strata_cache::{
    Backplane, DistributedCache, ErrorKind, HybridCache, HybridEntryOptions, InProcessBackplane,
    MemoryDistributedCache, Propagation,
};
use strata_cache_testkit::{ChaosBackplane, ChaosCache};

use common::{DbDown, Product, counting, id, instance, memory_l2, options, product, secs, settle};

fn tagged() -> HybridEntryOptions {
    options().with_tags(["products"])
}

/// Lets background propagation and replay run for `d` of paused time.
async fn run_for(d: Duration) {
    tokio::time::sleep(d).await;
    settle().await;
}

#[tokio::test(start_paused = true)]
async fn l1_invalidations_in_the_same_millisecond_are_not_lost() {
    let cache = HybridCache::builder().build();
    let runs = Arc::new(AtomicU32::new(0));
    assert_eq!(id(&cache, "p", &tagged(), counting(&runs)).await, 1);
    // Paused time: all of this happens in one millisecond.
    cache.remove_by_tag("products").await.unwrap();
    assert_eq!(
        id(&cache, "p", &tagged(), counting(&runs)).await,
        2,
        "refilled"
    );
    cache.remove_by_tag("products").await.unwrap();
    assert_eq!(
        id(&cache, "p", &tagged(), counting(&runs)).await,
        3,
        "the second invalidation applies to the refilled value"
    );
    cache.clear().await.unwrap();
    assert_eq!(id(&cache, "p", &tagged(), counting(&runs)).await, 4);
    cache.clear().await.unwrap();
    assert_eq!(id(&cache, "p", &tagged(), counting(&runs)).await, 5);
}

#[tokio::test(start_paused = true)]
async fn l1_l2_a_clock_ahead_does_not_hide_a_later_invalidation() {
    let l2 = memory_l2();
    // `ahead` runs 20 s in the future; its entries must still lose to an
    // invalidation made after them on a machine with the right time.
    let ahead = HybridCache::builder()
        .distributed(Arc::clone(&l2))
        .clock_offset_ms(20_000)
        .build();
    let exact = instance(&l2);
    let runs = Arc::new(AtomicU32::new(0));
    let options = tagged().with_local_expiration(secs(600));
    assert_eq!(id(&ahead, "list", &options, counting(&runs)).await, 1);
    settle().await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    exact.remove_by_tag("products").await.unwrap();
    // Past the record check interval of an instance without a backplane.
    tokio::time::sleep(secs(2)).await;
    assert_eq!(id(&exact, "list", &options, counting(&runs)).await, 2);
    settle().await;
    // `ahead` learns of the invalidation from L2 (no backplane here): its
    // L1 copy is replaced as soon as it rereads the record.
    let fresh = HybridCache::builder()
        .distributed(Arc::clone(&l2))
        .clock_offset_ms(20_000)
        .build();
    assert_eq!(id(&fresh, "list", &options, counting(&runs)).await, 2);
}

#[tokio::test(start_paused = true)]
async fn l1_l2_writes_after_a_redis_blip_are_not_dropped() {
    let chaos = ChaosCache::new(Arc::new(MemoryDistributedCache::new()));
    let l2: Arc<dyn DistributedCache> = Arc::new(chaos.clone());
    let writer = instance(&l2);
    let reader = HybridCache::builder()
        .distributed(Arc::clone(&l2))
        .default_entry_options(options().with_local_expiration(Duration::from_millis(100)))
        .build();
    writer.set("p", product(1), &options()).await.unwrap();
    assert_eq!(reader.get::<Product>("p").await.unwrap(), Some(product(1)));
    // A blip: enough failures to open the breakers.
    chaos.fail_with(ErrorKind::Unavailable);
    for i in 0..6 {
        let _ = writer.get::<Product>(&format!("x{i}")).await;
    }
    chaos.heal();
    // Redis is back, the breaker is still open: the write is deferred, not
    // dropped, and lands (as a removal of the old value) once the breaker
    // lets a probe through.
    let outcome = writer.set("p", product(2), &options()).await.unwrap();
    assert_eq!(outcome, Propagation::Deferred);
    run_for(secs(2)).await;
    assert_eq!(writer.stats().pending_operations(), 0);
    assert_eq!(
        reader.get::<Product>("p").await.unwrap(),
        None,
        "product 1 is gone"
    );
    assert_eq!(writer.get::<Product>("p").await.unwrap(), Some(product(2)));
}

#[tokio::test(start_paused = true)]
async fn l1_l2_backplane_a_write_during_an_outage_wins_after_the_partition() {
    let chaos = ChaosCache::new(Arc::new(MemoryDistributedCache::new()));
    let l2: Arc<dyn DistributedCache> = Arc::new(chaos.clone());
    let backplane = Arc::new(InProcessBackplane::new());
    let build = |id: &str| {
        HybridCache::builder()
            .distributed(Arc::clone(&l2))
            .backplane(Arc::clone(&backplane) as Arc<dyn Backplane>)
            .instance_id(id)
            .build()
    };
    let (a, b) = (build("a"), build("b"));
    a.set("p", product(1), &options()).await.unwrap();
    assert_eq!(b.get::<Product>("p").await.unwrap(), Some(product(1)));
    // Redis unreachable, with its data kept: a's write cannot get out.
    chaos.fail_with(ErrorKind::Unavailable);
    let outcome = a.set("p", product(2), &options()).await.unwrap();
    assert_eq!(outcome, Propagation::Deferred);
    assert_eq!(a.stats().pending_operations(), 1);
    // The partition is a gap for everyone: a must keep its own newer write.
    backplane.simulate_gap();
    settle().await;
    assert_eq!(a.get::<Product>("p").await.unwrap(), Some(product(2)));
    // Redis answers again: the write is replayed (as a removal: the old value
    // leaves L2 and b's L1, and cannot come back) and reaches b.
    chaos.heal();
    run_for(secs(2)).await;
    assert_eq!(a.stats().pending_operations(), 0);
    assert!(a.stats().replayed_operations() >= 1);
    assert_eq!(a.get::<Product>("p").await.unwrap(), Some(product(2)));
    let runs = Arc::new(AtomicU32::new(1));
    assert_eq!(
        id(&b, "p", &options(), counting(&runs)).await,
        2,
        "b no longer has product 1: it loads the source of truth"
    );
}

#[tokio::test(start_paused = true)]
async fn l1_l2_a_failed_removal_is_replayed_not_reported_as_done() {
    let chaos = ChaosCache::new(Arc::new(MemoryDistributedCache::new()));
    let l2: Arc<dyn DistributedCache> = Arc::new(chaos.clone());
    let a = instance(&l2);
    a.set("p", product(1), &options()).await.unwrap();
    chaos.fail_with(ErrorKind::Timeout);
    let outcome = a.remove("p").await.unwrap();
    assert_eq!(outcome, Propagation::Deferred, "the caller is told");
    assert_eq!(a.stats().pending_operations(), 1);
    chaos.heal();
    run_for(secs(2)).await;
    assert_eq!(a.stats().pending_operations(), 0);
    let b = instance(&l2);
    assert_eq!(
        b.get::<Product>("p").await.unwrap(),
        None,
        "the removal reached L2 after all"
    );
}

#[tokio::test(start_paused = true)]
async fn l1_l2_backplane_a_slow_write_is_announced_only_once_it_landed() {
    let chaos = ChaosCache::new(Arc::new(MemoryDistributedCache::new()));
    let l2: Arc<dyn DistributedCache> = Arc::new(chaos.clone());
    let backplane = Arc::new(InProcessBackplane::new());
    let build = |id: &str| {
        HybridCache::builder()
            .distributed(Arc::clone(&l2))
            .backplane(Arc::clone(&backplane) as Arc<dyn Backplane>)
            .instance_id(id)
            .build()
    };
    let (a, b) = (build("a"), build("b"));
    a.set("p", product(1), &options()).await.unwrap();
    assert_eq!(b.get::<Product>("p").await.unwrap(), Some(product(1)));
    // L2 answers, but after the timeout: the write is cut, and must not be
    // announced as if it had landed (b would reload the old value and keep it).
    chaos.set_delay(Duration::from_millis(1500));
    let outcome = a.set("p", product(2), &options()).await.unwrap();
    assert_eq!(outcome, Propagation::Deferred);
    settle().await;
    assert_eq!(b.get::<Product>("p").await.unwrap(), Some(product(1)));
    chaos.set_delay(Duration::ZERO);
    run_for(secs(3)).await;
    // Replayed as a removal: b no longer serves product 1.
    assert_eq!(b.get::<Product>("p").await.unwrap(), None);
}

#[tokio::test(start_paused = true)]
async fn l1_l2_a_cancelled_probe_does_not_switch_l2_off() {
    let chaos = ChaosCache::new(Arc::new(MemoryDistributedCache::new()));
    let l2: Arc<dyn DistributedCache> = Arc::new(chaos.clone());
    let cache = HybridCache::builder()
        .distributed(Arc::clone(&l2))
        .circuit_breaker(1, secs(1))
        .build();
    let no_l1 = options().skip_l1_read().skip_l1_write();
    chaos.fail_with(ErrorKind::Unavailable);
    let _ = cache.get::<Product>("x").await;
    run_for(secs(2)).await;
    chaos.heal();
    // The probing call (a `get`: its L2 read runs in the caller's future)
    // hangs in L2, and its caller gives up.
    chaos.set_delay(secs(60));
    let probe = cache.get::<Product>("p");
    assert!(
        tokio::time::timeout(Duration::from_millis(10), probe)
            .await
            .is_err()
    );
    chaos.set_delay(Duration::ZERO);
    run_for(secs(2)).await;
    // Another instance writes p; this one must read it from L2 again.
    instance(&l2)
        .set("p", product(7), &options())
        .await
        .unwrap();
    let runs = Arc::new(AtomicU32::new(0));
    assert_eq!(id(&cache, "p", &no_l1, counting(&runs)).await, 7);
}

#[tokio::test(start_paused = true)]
async fn l1_l2_a_fill_read_before_a_peers_removal_does_not_land() {
    // No backplane: only L2's versions stand between the old row and L2.
    let l2 = memory_l2();
    let (reader, writer) = (instance(&l2), instance(&l2));
    let release = Arc::new(tokio::sync::Notify::new());
    let started = Arc::new(tokio::sync::Notify::new());
    let fetch = {
        let (reader, release, started) =
            (reader.clone(), Arc::clone(&release), Arc::clone(&started));
        tokio::spawn(async move {
            reader
                .get_or_create("p", &options(), move |_| async move {
                    started.notify_one();
                    release.notified().await; // the old row, read before the write
                    Ok::<_, DbDown>(product(1))
                })
                .await
        })
    };
    started.notified().await;
    writer.remove("p").await.unwrap(); // the writer committed, then invalidated
    release.notify_one();
    assert_eq!(fetch.await.unwrap().unwrap(), product(1));
    settle().await;
    let third = instance(&l2);
    assert_eq!(third.get::<Product>("p").await.unwrap(), None, "not in L2");
}

#[tokio::test(start_paused = true)]
async fn l1_a_slow_factory_still_caches_its_value() {
    let cache = HybridCache::builder().build();
    let options = HybridEntryOptions::new().with_expiration(secs(1));
    let runs = Arc::new(AtomicU32::new(0));
    let slow = {
        let runs = Arc::clone(&runs);
        move |_| async move {
            tokio::time::sleep(secs(2)).await; // slower than the entry's life
            Ok::<_, DbDown>(product(runs.fetch_add(1, Ordering::SeqCst) + 1))
        }
    };
    assert_eq!(id(&cache, "p", &options, slow).await, 1);
    assert_eq!(
        id(&cache, "p", &options, counting(&runs)).await,
        1,
        "expiration counts from when the value is stored"
    );
}

#[tokio::test(start_paused = true)]
async fn l1_l2_backplane_a_hung_redis_costs_a_call_one_timeout() {
    let chaos = ChaosCache::new(Arc::new(MemoryDistributedCache::new()));
    let l2: Arc<dyn DistributedCache> = Arc::new(chaos.clone());
    let backplane = ChaosBackplane::new(Arc::new(InProcessBackplane::new()));
    let cache = HybridCache::builder()
        .distributed(l2)
        .backplane(Arc::new(backplane.clone()))
        .l2_timeout(secs(1))
        .build();
    chaos.set_delay(secs(30));
    backplane.set_delay(secs(30));
    let started = tokio::time::Instant::now();
    let outcome = cache.set("p", product(1), &tagged()).await.unwrap();
    assert_eq!(outcome, Propagation::Deferred);
    assert!(
        started.elapsed() <= secs(1),
        "set waited {:?}",
        started.elapsed()
    );
    let started = tokio::time::Instant::now();
    let runs = Arc::new(AtomicU32::new(0));
    assert_eq!(id(&cache, "q", &tagged(), counting(&runs)).await, 1);
    assert!(
        started.elapsed() <= secs(1),
        "a miss waited {:?}",
        started.elapsed()
    );
    let started = tokio::time::Instant::now();
    cache.remove_by_tag("products").await.unwrap();
    assert!(
        started.elapsed() <= secs(1),
        "remove_by_tag waited {:?}",
        started.elapsed()
    );
}

#[tokio::test(start_paused = true)]
async fn l1_l2_damaged_bytes_are_a_counted_miss() {
    let l2 = memory_l2();
    let writer = instance(&l2);
    let body = strata_cache::Bytes::from(vec![b'x'; 1000]);
    writer.set_bytes("list", body, &options()).await.unwrap();
    let stored = l2.get("v2:list").await.unwrap().unwrap();
    // Truncated: the header is intact, the payload is cut.
    l2.set(
        "v2:list",
        stored.slice(..stored.len() - 500),
        &strata_cache::EntryOptions::new(),
    )
    .await
    .unwrap();
    let reader = instance(&l2);
    assert_eq!(reader.get_bytes("list").await.unwrap(), None);
    assert_eq!(reader.stats().corrupt_entries(), 1);
}

/// Two instances on one L2, each with its own fault-injecting view of one
/// in-process backplane.
fn faulty_pair() -> (
    HybridCache,
    HybridCache,
    ChaosBackplane,
    Arc<dyn DistributedCache>,
) {
    let l2 = memory_l2();
    let shared = Arc::new(InProcessBackplane::new());
    let a_view = ChaosBackplane::new(Arc::clone(&shared) as Arc<dyn Backplane>);
    let b_view = ChaosBackplane::new(shared as Arc<dyn Backplane>);
    let build = |id: &str, view: &ChaosBackplane| {
        HybridCache::builder()
            .distributed(Arc::clone(&l2))
            .backplane(Arc::new(view.clone()))
            .instance_id(id)
            .build()
    };
    let (a, b) = (build("a", &a_view), build("b", &b_view));
    (a, b, b_view, l2)
}

#[tokio::test(start_paused = true)]
async fn l1_l2_backplane_a_lost_notice_is_found_within_the_trust_window() {
    let (a, b, b_view, _l2) = faulty_pair();
    a.set("p", product(1), &options()).await.unwrap();
    assert_eq!(b.get::<Product>("p").await.unwrap(), Some(product(1)));
    b_view.lose_next(1);
    a.set("p", product(2), &options()).await.unwrap();
    settle().await;
    assert_eq!(b_view.lost(), 1);
    // a's next heartbeat names the notice b never received.
    run_for(strata_cache::DEFAULT_TRUST_WINDOW).await;
    assert!(b.stats().gaps() >= 1);
    assert_eq!(b.get::<Product>("p").await.unwrap(), Some(product(2)));
}

#[tokio::test(start_paused = true)]
async fn l1_l2_backplane_an_instance_that_hears_nothing_stops_trusting_l1() {
    let (a, b, b_view, _l2) = faulty_pair();
    a.set("p", product(1), &options()).await.unwrap();
    assert_eq!(b.get::<Product>("p").await.unwrap(), Some(product(1)));
    // b's subscription goes silent: it hears neither a nor itself.
    b_view.lose_ratio(1.0);
    a.set("p", product(2), &options()).await.unwrap();
    run_for(strata_cache::DEFAULT_TRUST_WINDOW * 2).await;
    // Cut off, b asks L2 before serving its L1 copy, every time.
    assert_eq!(b.get::<Product>("p").await.unwrap(), Some(product(2)));
    a.set("p", product(3), &options()).await.unwrap();
    assert_eq!(b.get::<Product>("p").await.unwrap(), Some(product(3)));
    // Heard again: L1 is trusted again.
    b_view.heal();
    run_for(strata_cache::DEFAULT_TRUST_WINDOW).await;
    assert_eq!(b.get::<Product>("p").await.unwrap(), Some(product(3)));
    let hits = b.stats().l1_hits();
    assert_eq!(b.get::<Product>("p").await.unwrap(), Some(product(3)));
    assert_eq!(b.stats().l1_hits(), hits + 1);
}
