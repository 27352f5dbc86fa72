//! HybridCache with L1 only: hits, expiry, stampede protection, options,
//! fail-safe, timeouts, eager refresh, limits.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use strata_cache::{ErrorKind, FactoryContext, HybridCache, HybridEntryOptions};
use tokio::sync::Notify;

use common::{DbDown, Product, counting, failing, id, options, product, secs};

#[tokio::test(start_paused = true)]
async fn l1_hit_returns_the_cached_value_without_running_the_factory() {
    let cache = HybridCache::builder().build();
    let runs = Arc::new(AtomicU32::new(0));
    let options = HybridEntryOptions::new();
    let first = cache
        .get_or_create("p:1", &options, counting(&runs))
        .await
        .unwrap();
    let second = cache
        .get_or_create("p:1", &options, counting(&runs))
        .await
        .unwrap();
    assert_eq!((first.id, second.id), (1, 1));
    assert_eq!(cache.get::<Product>("p:1").await.unwrap(), Some(product(1)));
    let stats = cache.stats();
    assert_eq!(
        (stats.factory_runs(), stats.l1_hits(), stats.misses()),
        (1, 2, 1)
    );
}

#[tokio::test(start_paused = true)]
async fn l1_entries_expire_after_their_expiration() {
    let cache = HybridCache::builder().build();
    let runs = Arc::new(AtomicU32::new(0));
    let options = HybridEntryOptions::new().with_expiration(secs(60));
    cache
        .get_or_create("p", &options, counting(&runs))
        .await
        .unwrap();
    tokio::time::sleep(secs(59)).await;
    assert_eq!(id(&cache, "p", &options, counting(&runs)).await, 1);
    tokio::time::sleep(secs(2)).await;
    assert_eq!(id(&cache, "p", &options, counting(&runs)).await, 2);
}

#[tokio::test(start_paused = true)]
async fn l1_sliding_expiration_drops_idle_entries() {
    let cache = HybridCache::builder().build();
    let runs = Arc::new(AtomicU32::new(0));
    let options = HybridEntryOptions::new()
        .with_expiration(secs(600))
        .with_sliding_expiration(secs(10));
    cache
        .get_or_create("p", &options, counting(&runs))
        .await
        .unwrap();
    for _ in 0..5 {
        tokio::time::sleep(secs(8)).await;
        assert_eq!(id(&cache, "p", &options, counting(&runs)).await, 1);
    }
    tokio::time::sleep(secs(11)).await;
    assert_eq!(id(&cache, "p", &options, counting(&runs)).await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn l1_stampede_runs_the_factory_once_for_a_thousand_callers() {
    let cache = HybridCache::builder().build();
    let runs = Arc::new(AtomicU32::new(0));
    let release = Arc::new(Notify::new());
    let mut callers = Vec::new();
    for _ in 0..1000 {
        let cache = cache.clone();
        let runs = Arc::clone(&runs);
        let release = Arc::clone(&release);
        callers.push(tokio::spawn(async move {
            cache
                .get_or_create("cold", &HybridEntryOptions::new(), move |_| async move {
                    release.notified().await;
                    Ok::<_, DbDown>(product(runs.fetch_add(1, Ordering::SeqCst) + 1))
                })
                .await
        }));
    }
    // Let every caller join the flight, then let the factory finish.
    while cache.stats().factory_runs() == 0 {
        tokio::task::yield_now().await;
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    release.notify_one();
    for caller in callers {
        assert_eq!(caller.await.unwrap().unwrap(), product(1));
    }
    assert_eq!(runs.load(Ordering::SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn l1_stampede_factory_failure_reaches_every_waiter_and_caches_nothing() {
    let cache = HybridCache::builder().build();
    let release = Arc::new(Notify::new());
    let mut callers = Vec::new();
    for _ in 0..10 {
        let cache = cache.clone();
        let release = Arc::clone(&release);
        callers.push(tokio::spawn(async move {
            cache
                .get_or_create("k", &HybridEntryOptions::new(), move |_| async move {
                    release.notified().await;
                    Err::<Product, _>(DbDown)
                })
                .await
        }));
    }
    // On this single-threaded runtime every caller joins the flight before
    // the test task runs again.
    for _ in 0..3 {
        tokio::task::yield_now().await;
    }
    release.notify_one();
    for caller in callers {
        let err = caller.await.unwrap().unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Factory);
        let source = std::error::Error::source(&err).unwrap();
        assert!(source.downcast_ref::<DbDown>().is_some());
    }
    assert_eq!(cache.stats().factory_runs(), 1);
    assert_eq!(cache.get::<Product>("k").await.unwrap(), None);
}

#[tokio::test(start_paused = true)]
async fn l1_dropping_a_caller_does_not_cancel_the_factory_for_the_others() {
    let cache = HybridCache::builder().build();
    let release = Arc::new(Notify::new());
    let factory_release = Arc::clone(&release);
    let first = {
        let cache = cache.clone();
        tokio::spawn(async move {
            cache
                .get_or_create("k", &HybridEntryOptions::new(), move |_| async move {
                    factory_release.notified().await;
                    Ok::<_, DbDown>(product(7))
                })
                .await
        })
    };
    tokio::task::yield_now().await;
    let second = {
        let cache = cache.clone();
        tokio::spawn(async move {
            cache
                .get_or_create("k", &HybridEntryOptions::new(), failing())
                .await
        })
    };
    tokio::task::yield_now().await;
    first.abort();
    release.notify_one();
    assert_eq!(second.await.unwrap().unwrap(), product(7));
    assert_eq!(cache.get::<Product>("k").await.unwrap(), Some(product(7)));
}

#[tokio::test(start_paused = true)]
async fn l1_factory_context_sets_expiration_and_tags_or_declines_to_cache() {
    let cache = HybridCache::builder().build();
    let options = HybridEntryOptions::new().with_expiration(secs(600));
    let runs = Arc::new(AtomicU32::new(0));
    let counted = Arc::clone(&runs);
    let missing: Option<Product> = cache
        .get_or_create("p:404", &options, move |ctx| async move {
            assert_eq!(ctx.key(), "p:404");
            assert!(!ctx.has_stale_value());
            counted.fetch_add(1, Ordering::SeqCst);
            ctx.dont_cache();
            Ok::<_, DbDown>(None)
        })
        .await
        .unwrap();
    assert_eq!(missing, None);
    assert_eq!(cache.get::<Option<Product>>("p:404").await.unwrap(), None);

    cache
        .get_or_create("p:1", &options, |ctx| async move {
            ctx.set_expiration(secs(5));
            ctx.add_tags(["products"]);
            Ok::<_, DbDown>(product(1))
        })
        .await
        .unwrap();
    assert_eq!(cache.get::<Product>("p:1").await.unwrap(), Some(product(1)));
    tokio::time::sleep(secs(6)).await;
    assert_eq!(cache.get::<Product>("p:1").await.unwrap(), None);

    cache
        .get_or_create("p:2", &options, |ctx| async move {
            ctx.add_tags(["products"]);
            Ok::<_, DbDown>(product(2))
        })
        .await
        .unwrap();
    cache.remove_by_tag("products").await.unwrap();
    assert_eq!(cache.get::<Product>("p:2").await.unwrap(), None);
}

#[tokio::test(start_paused = true)]
async fn l1_fail_safe_serves_the_stale_value_and_throttles_retries() {
    let cache = HybridCache::builder().build();
    let options = HybridEntryOptions::new()
        .with_expiration(secs(60))
        .with_fail_safe(secs(3600))
        .with_fail_safe_throttle(secs(30));
    let runs = Arc::new(AtomicU32::new(0));
    cache
        .get_or_create("p", &options, counting(&runs))
        .await
        .unwrap();
    tokio::time::sleep(secs(61)).await;
    let tries = Arc::new(AtomicU32::new(0));
    let failing_counted = |tries: &Arc<AtomicU32>| {
        let tries = Arc::clone(tries);
        move |ctx: FactoryContext| {
            assert!(ctx.has_stale_value());
            tries.fetch_add(1, Ordering::SeqCst);
            std::future::ready(Err::<Product, _>(DbDown))
        }
    };
    assert_eq!(id(&cache, "p", &options, failing_counted(&tries)).await, 1);
    assert_eq!(cache.stats().stale_served(), 1);
    // Throttled: the stale value is served without trying the factory.
    tokio::time::sleep(secs(10)).await;
    assert_eq!(id(&cache, "p", &options, failing_counted(&tries)).await, 1);
    assert_eq!(tries.load(Ordering::SeqCst), 1);
    // After the throttle, the factory is tried again; it recovers.
    tokio::time::sleep(secs(21)).await;
    assert_eq!(id(&cache, "p", &options, counting(&runs)).await, 2);
}

/// Caches a value under `options`, lets `wait` pass, then checks that a
/// failing factory's error reaches the caller (no stale value is served).
async fn factory_error_is_returned_after(options: HybridEntryOptions, wait: Duration) {
    let cache = HybridCache::builder().build();
    cache
        .get_or_create("p", &options, |_| async { Ok::<_, DbDown>(product(1)) })
        .await
        .unwrap();
    tokio::time::sleep(wait).await;
    let err = cache
        .get_or_create("p", &options, failing())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Factory);
}

#[tokio::test(start_paused = true)]
async fn l1_fail_safe_keeps_the_value_at_most_its_max_duration() {
    let options = HybridEntryOptions::new()
        .with_expiration(secs(60))
        .with_fail_safe(secs(120));
    factory_error_is_returned_after(options, secs(121)).await;
}

#[tokio::test(start_paused = true)]
async fn l1_without_fail_safe_a_factory_error_is_returned_after_expiry() {
    let options = HybridEntryOptions::new().with_expiration(secs(60));
    factory_error_is_returned_after(options, secs(61)).await;
}

#[tokio::test(start_paused = true)]
async fn l1_soft_timeout_serves_stale_and_the_factory_refreshes_in_the_background() {
    let cache = HybridCache::builder().build();
    let options = HybridEntryOptions::new()
        .with_expiration(secs(60))
        .with_fail_safe(secs(3600))
        .with_factory_timeouts(Some(Duration::from_millis(100)), Some(secs(10)));
    cache
        .get_or_create("p", &options, |_| async { Ok::<_, DbDown>(product(1)) })
        .await
        .unwrap();
    tokio::time::sleep(secs(61)).await;
    let slow = |_| async {
        tokio::time::sleep(secs(1)).await;
        Ok::<_, DbDown>(product(2))
    };
    let started = tokio::time::Instant::now();
    assert_eq!(id(&cache, "p", &options, slow).await, 1);
    assert!(started.elapsed() < secs(1));
    tokio::time::sleep(secs(2)).await;
    assert_eq!(cache.get::<Product>("p").await.unwrap(), Some(product(2)));
}

#[tokio::test(start_paused = true)]
async fn l1_hard_timeout_without_stale_is_a_timeout_error() {
    let cache = HybridCache::builder().build();
    let options = HybridEntryOptions::new()
        .with_factory_timeouts(Some(Duration::from_millis(10)), Some(secs(1)));
    let err = cache
        .get_or_create("p", &options, |_| async {
            tokio::time::sleep(secs(5)).await;
            Ok::<_, DbDown>(product(1))
        })
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Timeout);
    // The factory went on and cached its value.
    tokio::time::sleep(secs(5)).await;
    assert_eq!(cache.get::<Product>("p").await.unwrap(), Some(product(1)));
}

#[tokio::test(start_paused = true)]
async fn l1_eager_refresh_returns_at_once_and_refreshes_in_the_background_once() {
    let cache = HybridCache::builder().build();
    let options = HybridEntryOptions::new()
        .with_expiration(secs(100))
        .with_eager_refresh(0.8);
    let runs = Arc::new(AtomicU32::new(0));
    cache
        .get_or_create("p", &options, counting(&runs))
        .await
        .unwrap();
    tokio::time::sleep(secs(85)).await;
    let release = Arc::new(Notify::new());
    for _ in 0..5 {
        let runs = Arc::clone(&runs);
        let release = Arc::clone(&release);
        let value = cache
            .get_or_create("p", &options, move |_| async move {
                release.notified().await;
                Ok::<_, DbDown>(product(runs.fetch_add(1, Ordering::SeqCst) + 1))
            })
            .await
            .unwrap();
        assert_eq!(value.id, 1, "served at once, before the refresh ends");
    }
    release.notify_one();
    tokio::time::sleep(secs(1)).await;
    assert_eq!(runs.load(Ordering::SeqCst), 2, "one background refresh");
    assert_eq!(cache.get::<Product>("p").await.unwrap(), Some(product(2)));
}

#[tokio::test(start_paused = true)]
async fn l1_invalid_keys_run_the_factory_uncached() {
    let cache = HybridCache::builder().max_key_length(8).build();
    let runs = Arc::new(AtomicU32::new(0));
    let options = HybridEntryOptions::new();
    for key in ["", "longer-than-eight"] {
        cache
            .get_or_create(key, &options, counting(&runs))
            .await
            .unwrap();
        cache
            .get_or_create(key, &options, counting(&runs))
            .await
            .unwrap();
        assert_eq!(
            cache.get::<Product>(key).await.unwrap_err().kind(),
            ErrorKind::InvalidKey
        );
    }
    assert_eq!(runs.load(Ordering::SeqCst), 4);
}

#[tokio::test(start_paused = true)]
async fn l1_oversize_values_are_returned_but_not_cached() {
    let cache = HybridCache::builder().max_payload_bytes(16).build();
    let runs = Arc::new(AtomicU32::new(0));
    let options = HybridEntryOptions::new();
    cache
        .get_or_create("p", &options, counting(&runs))
        .await
        .unwrap();
    cache
        .get_or_create("p", &options, counting(&runs))
        .await
        .unwrap();
    assert_eq!(runs.load(Ordering::SeqCst), 2);
    let err = cache.set("p", product(1), &options).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::PayloadTooLarge);
}

#[tokio::test(start_paused = true)]
async fn l1_is_bounded_by_weight() {
    let cache = HybridCache::builder().l1_capacity_bytes(64 * 1024).build();
    let options = HybridEntryOptions::new();
    let big = "x".repeat(1000);
    for i in 0..1000 {
        cache
            .set(&format!("k{i}"), big.clone(), &options)
            .await
            .unwrap();
    }
    let mut kept = 0;
    for i in 0..1000 {
        if cache
            .get::<String>(&format!("k{i}"))
            .await
            .unwrap()
            .is_some()
        {
            kept += 1;
        }
    }
    assert!(kept > 0 && kept < 100, "kept {kept}");
}

#[tokio::test(start_paused = true)]
async fn l1_set_remove_and_clear() {
    let cache = HybridCache::builder().build();
    let options = HybridEntryOptions::new();
    cache.set("a", 1_u32, &options).await.unwrap();
    cache.set("b", 2_u32, &options).await.unwrap();
    cache.remove("a").await.unwrap();
    assert_eq!(cache.get::<u32>("a").await.unwrap(), None);
    assert_eq!(cache.get::<u32>("b").await.unwrap(), Some(2));
    cache.clear().await.unwrap();
    assert_eq!(cache.get::<u32>("b").await.unwrap(), None);
    // A write right after a clear is not swallowed by it.
    cache.set("c", 3_u32, &options).await.unwrap();
    assert_eq!(cache.get::<u32>("c").await.unwrap(), Some(3));
    let err = cache
        .set("d", 4_u32, &options.clone().with_expiration(Duration::ZERO))
        .await;
    assert_eq!(err.unwrap_err().kind(), ErrorKind::InvalidOptions);
}

/// L1 hits take no lock: a write on one thread must still reach a thread
/// that served the old value, whichever way the value went.
#[test]
fn l1_writes_reach_a_thread_that_served_the_old_value() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let cache = rt.block_on(async { HybridCache::builder().build() });
    let (ask, asks) = std::sync::mpsc::channel::<()>();
    let (answer, answers) = std::sync::mpsc::channel();
    let reader = {
        let (cache, handle) = (cache.clone(), rt.handle().clone());
        std::thread::spawn(move || {
            for () in asks {
                let value = handle.block_on(cache.get::<u32>("k")).unwrap();
                answer.send(value).unwrap();
            }
        })
    };
    // Twice: a value served once is served again (and then replaced).
    let read_twice = || {
        let values: Vec<Option<u32>> = (0..2)
            .map(|_| {
                ask.send(()).unwrap();
                answers.recv().unwrap()
            })
            .collect();
        assert_eq!(values[0], values[1]);
        values[0]
    };
    let tagged = HybridEntryOptions::new().with_tags(["t"]);
    rt.block_on(cache.set("k", 1_u32, &tagged)).unwrap();
    assert_eq!(read_twice(), Some(1));
    rt.block_on(cache.set("k", 2_u32, &tagged)).unwrap();
    assert_eq!(read_twice(), Some(2), "replaced");
    rt.block_on(cache.remove("k")).unwrap();
    assert_eq!(read_twice(), None, "removed");
    rt.block_on(cache.set("k", 3_u32, &tagged)).unwrap();
    assert_eq!(read_twice(), Some(3));
    rt.block_on(cache.remove_by_tag("t")).unwrap();
    assert_eq!(read_twice(), None, "its tag removed");
    rt.block_on(cache.set("k", 4_u32, &tagged)).unwrap();
    assert_eq!(read_twice(), Some(4));
    rt.block_on(cache.clear()).unwrap();
    assert_eq!(read_twice(), None, "cleared");
    assert!(cache.stats().l1_hits() >= 8);
    drop(ask);
    reader.join().unwrap();
}

/// The factory's error is whatever `?` produces in an application, and the
/// caller gets its own type back.
#[tokio::test]
async fn l1_factories_may_fail_with_any_application_error() {
    let cache = HybridCache::builder().build();
    let boxed = cache
        .get_or_create("a", &options(), |_| async {
            Err::<u32, Box<dyn std::error::Error + Send + Sync>>("no row".into())
        })
        .await
        .unwrap_err();
    assert_eq!(boxed.kind(), strata_cache::ErrorKind::Factory);
    let anyhow = cache
        .get_or_create("b", &options(), |_| async {
            Err::<u32, _>(anyhow::anyhow!("pool timed out"))
        })
        .await
        .unwrap_err();
    let source = std::error::Error::source(&anyhow).map(ToString::to_string);
    assert_eq!(source.as_deref(), Some("pool timed out"));
    let own = cache
        .get_or_create("c", &options(), |_| async { Err::<u32, _>(DbDown) })
        .await
        .unwrap_err();
    assert!(own.factory_error::<DbDown>().is_some());
}

/// A large value cached as an `Arc` is served without a deep copy: every
/// hit hands out the same allocation.
#[tokio::test]
async fn l1_an_arc_value_is_shared_not_cloned() {
    let cache = HybridCache::builder().build();
    let make = |_| async { Ok::<_, DbDown>(std::sync::Arc::new(vec![product(1); 100])) };
    let first = cache.get_or_create("list", &options(), make).await.unwrap();
    let second = cache.get_or_create("list", &options(), make).await.unwrap();
    assert!(std::sync::Arc::ptr_eq(&first, &second));
}
