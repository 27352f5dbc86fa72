//! HybridCache with L1 and L2 (MemoryDistributedCache, ChaosCache for
//! faults), several instances sharing one L2 without a backplane.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use strata_cache::{
    Bytes, DistributedCache, EntryOptions, ErrorKind, HybridCache, HybridEntryOptions,
    MemoryDistributedCache,
};
use strata_cache_testkit::ChaosCache;

use common::{DbDown, Product, counting, failing, id, instance, memory_l2, product, secs, settle};

#[tokio::test(start_paused = true)]
async fn l1_l2_a_second_instance_reads_the_first_ones_value_from_l2() {
    let l2 = memory_l2();
    let (a, b) = (instance(&l2), instance(&l2));
    let runs = Arc::new(AtomicU32::new(0));
    let options = HybridEntryOptions::new();
    a.get_or_create("p:1", &options, counting(&runs))
        .await
        .unwrap();
    settle().await; // the fill of L2 follows the answer
    assert_eq!(
        b.get_or_create("p:1", &options, counting(&runs))
            .await
            .unwrap(),
        product(1)
    );
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    assert_eq!((b.stats().l2_hits(), b.stats().factory_runs()), (1, 0));
    // Now in b's L1.
    b.get_or_create("p:1", &options, counting(&runs))
        .await
        .unwrap();
    assert_eq!(b.stats().l1_hits(), 1);
    // The L2 value is an envelope under the versioned key.
    let raw = l2.get("v2:p:1").await.unwrap().unwrap();
    assert!(raw.starts_with(b"STRH\x02\x01"));
    let json = br#"{"id":1,"name":"product 1"}"#;
    assert!(raw.windows(json.len()).any(|w| w == json));
}

#[tokio::test(start_paused = true)]
async fn l1_l2_postcard_entries_are_readable_by_a_json_instance() {
    let l2 = memory_l2();
    let a = HybridCache::builder()
        .distributed(Arc::clone(&l2))
        .postcard()
        .build();
    let b = instance(&l2);
    a.set("p", product(3), &HybridEntryOptions::new())
        .await
        .unwrap();
    assert_eq!(b.get::<Product>("p").await.unwrap(), Some(product(3)));
}

#[tokio::test(start_paused = true)]
async fn l1_l2_bytes_that_are_not_an_envelope_are_a_miss() {
    let l2 = memory_l2();
    let opts = EntryOptions::new();
    l2.set("v2:p", Bytes::from_static(br#"{"id":9,"name":"x"}"#), &opts)
        .await
        .unwrap();
    let cache = instance(&l2);
    let runs = Arc::new(AtomicU32::new(0));
    let value = cache
        .get_or_create("p", &HybridEntryOptions::new(), counting(&runs))
        .await
        .unwrap();
    assert_eq!(value, product(1));
    // And an envelope whose payload is not a Product is a miss too.
    let other = instance(&l2);
    other
        .set("q", "a string".to_string(), &HybridEntryOptions::new())
        .await
        .unwrap();
    assert_eq!(cache.get::<Product>("q").await.unwrap(), None);
}

#[tokio::test(start_paused = true)]
async fn l1_l2_local_expiration_rereads_l2_before_the_logical_expiry() {
    let l2 = memory_l2();
    let (a, b) = (instance(&l2), instance(&l2));
    let options = HybridEntryOptions::new()
        .with_expiration(secs(600))
        .with_local_expiration(secs(10));
    a.set("p", product(1), &options).await.unwrap();
    assert_eq!(id(&b, "p", &options, failing()).await, 1);
    a.set("p", product(2), &options).await.unwrap();
    // Without a backplane, b serves its L1 copy until the local expiration...
    assert_eq!(id(&b, "p", &options, failing()).await, 1);
    tokio::time::sleep(secs(11)).await;
    // ...then reads the new value from L2.
    assert_eq!(id(&b, "p", &options, failing()).await, 2);
}

#[tokio::test(start_paused = true)]
async fn l1_l2_logical_expiry_in_the_envelope_is_honoured() {
    let l2 = memory_l2();
    let (a, b) = (instance(&l2), instance(&l2));
    let runs = Arc::new(AtomicU32::new(0));
    let options = HybridEntryOptions::new()
        .with_expiration(secs(60))
        .with_fail_safe(secs(3600));
    a.get_or_create("p", &options, counting(&runs))
        .await
        .unwrap();
    tokio::time::sleep(secs(61)).await;
    // L2 still holds the entry (fail-safe keeps it physically), but it is
    // logically expired: b runs the factory.
    assert_eq!(id(&b, "p", &options, counting(&runs)).await, 2);
}

#[tokio::test(start_paused = true)]
async fn l1_l2_fail_safe_uses_the_l2_value_when_the_factory_fails() {
    let l2 = memory_l2();
    let (a, b) = (instance(&l2), instance(&l2));
    let options = HybridEntryOptions::new()
        .with_expiration(secs(60))
        .with_fail_safe(secs(3600));
    a.set("p", product(1), &options).await.unwrap();
    tokio::time::sleep(secs(61)).await;
    assert_eq!(id(&b, "p", &options, failing()).await, 1);
    assert_eq!(b.stats().stale_served(), 1);
}

#[tokio::test(start_paused = true)]
async fn l1_l2_failures_never_fail_get_or_create() {
    let chaos = ChaosCache::new(Arc::new(MemoryDistributedCache::new()));
    let l2: Arc<dyn DistributedCache> = Arc::new(chaos.clone());
    let cache = instance(&l2);
    chaos.fail_with(ErrorKind::Unavailable);
    let runs = Arc::new(AtomicU32::new(0));
    let options = HybridEntryOptions::new();
    assert_eq!(id(&cache, "p", &options, counting(&runs)).await, 1);
    assert!(cache.stats().l2_errors() >= 1);
    // The value still landed in L1.
    assert_eq!(id(&cache, "p", &options, counting(&runs)).await, 1);
    cache.set("q", product(5), &options).await.unwrap();
    cache.remove("q").await.unwrap();
    cache.remove_by_tag("t").await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn l1_l2_slow_l2_is_bounded_by_the_timeout() {
    let chaos = ChaosCache::new(Arc::new(MemoryDistributedCache::new()));
    chaos.set_delay(secs(30));
    let l2: Arc<dyn DistributedCache> = Arc::new(chaos.clone());
    let cache = HybridCache::builder()
        .distributed(l2)
        .l2_timeout(Duration::from_millis(200))
        .build();
    let runs = Arc::new(AtomicU32::new(0));
    let started = tokio::time::Instant::now();
    let value = cache
        .get_or_create("p", &HybridEntryOptions::new(), counting(&runs))
        .await;
    assert_eq!(value.unwrap().id, 1);
    // One L2 read and one L2 write, each cut at 200 ms.
    assert!(started.elapsed() < secs(1), "{:?}", started.elapsed());
    assert_eq!(cache.stats().l2_errors(), 2);
}

#[tokio::test(start_paused = true)]
async fn l1_l2_circuit_breaker_skips_a_failing_l2_then_probes_it() {
    let chaos = ChaosCache::new(Arc::new(MemoryDistributedCache::new()));
    let l2: Arc<dyn DistributedCache> = Arc::new(chaos.clone());
    let cache = HybridCache::builder()
        .distributed(l2)
        .circuit_breaker(3, secs(10))
        .build();
    chaos.fail_with(ErrorKind::Unavailable);
    let options = HybridEntryOptions::new().skip_l1_read().skip_l1_write();
    for i in 0..10 {
        cache
            .get_or_create(&format!("k{i}"), &options, |_| async { Ok::<_, DbDown>(1) })
            .await
            .unwrap();
    }
    // Three failures opened the breaker (the first fetch read the entry and
    // the clear record; the second the entry); the rest never reached L2.
    assert_eq!(chaos.calls(), 3);
    chaos.heal();
    tokio::time::sleep(secs(11)).await;
    cache
        .get_or_create("z", &options, |_| async { Ok::<_, DbDown>(1) })
        .await
        .unwrap();
    settle().await;
    // The half-open probe (the read) succeeded, so the fill went through too.
    assert!(chaos.get("v2:z").await.unwrap().is_some());
}

#[tokio::test(start_paused = true)]
async fn l1_l2_tags_written_by_one_instance_reach_another_through_l2() {
    let l2 = memory_l2();
    let (a, b) = (instance(&l2), instance(&l2));
    let options = HybridEntryOptions::new()
        .with_tags(["products"])
        .with_local_expiration(secs(5));
    let runs = Arc::new(AtomicU32::new(0));
    a.get_or_create("p", &options, counting(&runs))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(5)).await;
    a.remove_by_tag("products").await.unwrap();
    assert!(l2.get("v2#tag:products").await.unwrap().is_some());
    // b has no backplane: it learns of the tag when it reads the entry from L2.
    tokio::time::sleep(Duration::from_millis(5)).await;
    assert_eq!(id(&b, "p", &options, counting(&runs)).await, 2);
    settle().await; // b's fill of L2 follows its answer
    // And a, which removed the tag, rebuilt nothing stale either.
    assert_eq!(id(&a, "p", &options, counting(&runs)).await, 2);
    assert_eq!(runs.load(Ordering::SeqCst), 2);
}

#[tokio::test(start_paused = true)]
async fn l1_l2_clear_reaches_another_instance_through_l2() {
    let l2 = memory_l2();
    let (a, b) = (instance(&l2), instance(&l2));
    let options = HybridEntryOptions::new().with_local_expiration(secs(1));
    a.set("p", product(1), &options).await.unwrap();
    tokio::time::sleep(Duration::from_millis(5)).await;
    a.clear().await.unwrap();
    tokio::time::sleep(Duration::from_millis(5)).await;
    assert_eq!(b.get::<Product>("p").await.unwrap(), None);
}

#[tokio::test(start_paused = true)]
async fn l1_l2_skip_flags_choose_the_layers() {
    let l2 = memory_l2();
    let cache = instance(&l2);
    let runs = Arc::new(AtomicU32::new(0));
    let only_l1 = HybridEntryOptions::new().skip_l2_write();
    cache
        .get_or_create("a", &only_l1, counting(&runs))
        .await
        .unwrap();
    assert_eq!(l2.get("v2:a").await.unwrap(), None);
    let only_l2 = HybridEntryOptions::new().skip_l1_write();
    cache
        .get_or_create("b", &only_l2, counting(&runs))
        .await
        .unwrap();
    settle().await;
    assert!(l2.get("v2:b").await.unwrap().is_some());
    cache
        .get_or_create("b", &only_l2, counting(&runs))
        .await
        .unwrap();
    assert_eq!(cache.stats().l2_hits(), 1);
    let fresh = HybridEntryOptions::new().skip_l1_read().skip_l2_read();
    assert_eq!(id(&cache, "b", &fresh, counting(&runs)).await, 3);
}
