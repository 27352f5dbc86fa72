//! Two HybridCache instances over one Redis deployment, with RedisCache as
//! L2 and RedisBackplane: every write path of one instance reaches the
//! other's L1. On the shared Redis by default; `REDIS_URL` runs the same
//! tests on a cluster (`redis+cluster://...`, sharded pub/sub) or on the
//! master the sentinels name (`redis+sentinel://...`), as `.ci/run` does.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use strata_cache::{HybridCache, HybridEntryOptions};
use strata_cache_redis::{RedisCache, RedisCacheOptions};

/// How long a notice may take to reach the other instance.
const BOUND: Duration = Duration::from_secs(10);

/// Two instances of one service: the same instance name, so the same keys
/// and the same backplane channel.
async fn pair(name: &str) -> (HybridCache, HybridCache) {
    let options = RedisCacheOptions::new(common::shared_url())
        .with_instance_name(format!("{}:", common::unique(name)));
    let backplanes = common::subscribed_backplanes(&options).await;
    let [a, b] = backplanes.map(|backplane| {
        HybridCache::builder()
            .distributed(RedisCache::new(&options).expect("valid options"))
            .backplane(backplane)
            .build()
    });
    (a, b)
}

/// An hour in L1 and L2: only a notice can make an instance drop its copy.
fn options() -> HybridEntryOptions {
    HybridEntryOptions::new()
        .with_expiration(Duration::from_secs(3600))
        .with_tags(["products"])
}

/// What `cache` returns for `key`, building `fresh` on a miss.
async fn read(cache: &HybridCache, key: &str, fresh: u32, runs: &Arc<AtomicU32>) -> u32 {
    let runs = Arc::clone(runs);
    cache
        .get_or_create(key, &options(), move |_ctx| async move {
            runs.fetch_add(1, Ordering::SeqCst);
            Ok::<_, std::io::Error>(fresh)
        })
        .await
        .expect("get_or_create")
}

/// Waits until `cache` returns `expected` for `key` (rebuilt as `fresh`).
async fn becomes(cache: &HybridCache, key: &str, fresh: u32, expected: u32) {
    let runs = Arc::new(AtomicU32::new(0));
    common::poll("the other instance sees the change", BOUND, || async {
        (read(cache, key, fresh, &runs).await == expected).then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_value_written_on_one_instance_is_served_from_l2_to_the_other() {
    let (a, b) = pair("hybrid-l2").await;
    let runs = Arc::new(AtomicU32::new(0));
    assert!(a.set("p", 1_u32, &options()).await.unwrap().is_complete());
    assert_eq!(
        read(&b, "p", 2, &runs).await,
        1,
        "b rebuilt instead of reading L2"
    );
    assert_eq!(runs.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn set_and_remove_on_one_instance_reach_the_others_l1() {
    let (a, b) = pair("hybrid-set").await;
    let runs = Arc::new(AtomicU32::new(0));
    for key in ["p", "q"] {
        read(&a, key, 1, &runs).await;
        assert_eq!(read(&b, key, 1, &runs).await, 1);
    }
    assert!(a.set("p", 42_u32, &options()).await.unwrap().is_complete());
    becomes(&b, "p", 0, 42).await;
    assert!(a.remove("q").await.unwrap().is_complete());
    becomes(&b, "q", 7, 7).await;
}

#[tokio::test]
async fn remove_by_tag_and_clear_on_one_instance_reach_the_others_l1() {
    let (a, b) = pair("hybrid-tags").await;
    let runs = Arc::new(AtomicU32::new(0));
    read(&a, "p", 1, &runs).await;
    assert_eq!(read(&b, "p", 1, &runs).await, 1);
    assert!(a.remove_by_tag("products").await.unwrap().is_complete());
    becomes(&b, "p", 2, 2).await;
    assert_eq!(read(&a, "p", 3, &runs).await, 2, "a rebuilt what b rebuilt");

    assert!(a.clear().await.unwrap().is_complete());
    becomes(&b, "p", 4, 4).await;
    assert_eq!(read(&a, "p", 5, &runs).await, 4);
}
