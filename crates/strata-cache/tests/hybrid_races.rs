//! The cache-aside race, by topology (L1, L1+L2, L1+L2+backplane): an
//! invalidation that lands while a fetch (or a `get` copying L2 to L1) of the
//! same key runs must not be overwritten by that read's older value.
//!
//! Every test is deterministic: the factory (or an L2 call) is held on a
//! `Notify` while the invalidation happens, then released.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use strata_cache::{
    Bytes, DistributedCache, EntryOptions, FactoryContext, HybridCache, MemoryDistributedCache,
    async_trait,
};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use common::{DbDown, cluster, options, settle};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Row {
    version: u32,
}

/// A factory that reads `version` as the database row, then waits for `release`.
struct Held {
    started: Arc<Notify>,
    release: Arc<Notify>,
    runs: Arc<AtomicU32>,
}

impl Held {
    fn new() -> Self {
        Self {
            started: Arc::new(Notify::new()),
            release: Arc::new(Notify::new()),
            runs: Arc::new(AtomicU32::new(0)),
        }
    }

    /// Starts `get_or_create` of `key` on `cache` with a factory that returns
    /// `Row { version }` once released; returns when the factory is running.
    async fn start(
        &self,
        cache: &HybridCache,
        key: &str,
        version: u32,
        tags: &'static [&'static str],
    ) -> JoinHandle<Row> {
        let (cache, key) = (cache.clone(), key.to_owned());
        let (started, release) = (Arc::clone(&self.started), Arc::clone(&self.release));
        let runs = Arc::clone(&self.runs);
        let task = tokio::spawn(async move {
            cache
                .get_or_create(&key, &options(), move |ctx: FactoryContext| async move {
                    runs.fetch_add(1, Ordering::SeqCst);
                    ctx.add_tags(tags.iter().copied());
                    started.notify_one();
                    release.notified().await;
                    Ok::<_, DbDown>(Row { version })
                })
                .await
                .expect("the factory succeeds")
        });
        self.started.notified().await;
        task
    }

    fn runs(&self) -> u32 {
        self.runs.load(Ordering::SeqCst)
    }
}

/// A factory that returns `Row { version }` at once and counts its runs.
fn ready(
    runs: &Arc<AtomicU32>,
    version: u32,
) -> impl FnOnce(FactoryContext) -> std::future::Ready<Result<Row, DbDown>> + Send + 'static {
    let runs = Arc::clone(runs);
    move |_| {
        runs.fetch_add(1, Ordering::SeqCst);
        std::future::ready(Ok(Row { version }))
    }
}

/// Checks that the next `get_or_create` of "p" on `cache` runs its factory
/// (nothing was cached) and returns the factory's value.
async fn next_call_runs_the_factory(cache: &HybridCache) {
    let runs = Arc::new(AtomicU32::new(0));
    let next = cache.get_or_create("p", &options(), ready(&runs, 2)).await;
    assert_eq!(next.unwrap(), Row { version: 2 });
    assert_eq!(
        runs.load(Ordering::SeqCst),
        1,
        "the next call ran the factory"
    );
}

#[tokio::test(start_paused = true)]
async fn l1_remove_during_a_fetch_keeps_its_old_value_out_of_the_cache() {
    let cache = HybridCache::builder().build();
    let held = Held::new();
    let fetch = held.start(&cache, "p", 1, &[]).await;
    cache.remove("p").await.unwrap();
    held.release.notify_one();
    // The caller asked before the remove: it gets what the factory read.
    assert_eq!(fetch.await.unwrap(), Row { version: 1 });
    assert_eq!(cache.get::<Row>("p").await.unwrap(), None, "not cached");
    next_call_runs_the_factory(&cache).await;
}

#[tokio::test(start_paused = true)]
async fn l1_set_during_a_fetch_is_not_overwritten_by_the_fetch() {
    let cache = HybridCache::builder().build();
    let held = Held::new();
    let fetch = held.start(&cache, "p", 1, &[]).await;
    cache
        .set("p", Row { version: 2 }, &options())
        .await
        .unwrap();
    held.release.notify_one();
    assert_eq!(fetch.await.unwrap(), Row { version: 1 });
    assert_eq!(
        cache.get::<Row>("p").await.unwrap(),
        Some(Row { version: 2 })
    );
}

#[tokio::test(start_paused = true)]
async fn l1_a_caller_arriving_after_the_remove_does_not_join_the_old_fetch() {
    let cache = HybridCache::builder().build();
    let held = Held::new();
    let old = held.start(&cache, "p", 1, &[]).await;
    cache.remove("p").await.unwrap();
    // Answered by a new fetch while the old one is still held (the timeout
    // turns a caller stuck on the old flight into a failure, not a hang).
    let runs = Arc::new(AtomicU32::new(0));
    let new = tokio::time::timeout(
        Duration::from_secs(10),
        cache.get_or_create("p", &options(), ready(&runs, 2)),
    )
    .await
    .expect("not waiting for the invalidated fetch");
    assert_eq!(new.unwrap(), Row { version: 2 });
    held.release.notify_one();
    assert_eq!(old.await.unwrap(), Row { version: 1 });
    assert_eq!(
        cache.get::<Row>("p").await.unwrap(),
        Some(Row { version: 2 }),
        "the old fetch did not overwrite the new value"
    );
    assert_eq!(held.runs(), 1);
}

#[tokio::test(start_paused = true)]
async fn l1_remove_by_tag_during_a_fetch_covers_tags_the_factory_adds() {
    let cache = HybridCache::builder().build();
    let held = Held::new();
    let tagged = held.start(&cache, "p", 1, &["products"]).await;
    let other = Held::new();
    let untagged = other.start(&cache, "q", 1, &["orders"]).await;
    cache.remove_by_tag("products").await.unwrap();
    held.release.notify_one();
    other.release.notify_one();
    assert_eq!(tagged.await.unwrap(), Row { version: 1 });
    assert_eq!(untagged.await.unwrap(), Row { version: 1 });
    assert_eq!(cache.get::<Row>("p").await.unwrap(), None);
    assert_eq!(
        cache.get::<Row>("q").await.unwrap(),
        Some(Row { version: 1 }),
        "another tag's invalidation does not concern it"
    );
}

#[tokio::test(start_paused = true)]
async fn l1_clear_during_a_fetch_keeps_its_value_out_of_the_cache() {
    let cache = HybridCache::builder().build();
    let held = Held::new();
    let fetch = held.start(&cache, "p", 1, &[]).await;
    cache.clear().await.unwrap();
    held.release.notify_one();
    assert_eq!(fetch.await.unwrap(), Row { version: 1 });
    assert_eq!(cache.get::<Row>("p").await.unwrap(), None);
}

/// An L2 whose next write (`set` or `set_if_version`), or next read
/// (`get_versioned`, after reading), waits at a gate.
struct Gated {
    inner: MemoryDistributedCache,
    hold_set: AtomicBool,
    hold_get: AtomicBool,
    entered: Notify,
    gate: Notify,
}

impl Gated {
    fn new() -> Arc<Self> {
        Arc::new(Self {
            inner: MemoryDistributedCache::new(),
            hold_set: AtomicBool::new(false),
            hold_get: AtomicBool::new(false),
            entered: Notify::new(),
            gate: Notify::new(),
        })
    }

    /// An instance with this L2 and no backplane.
    fn instance(self: &Arc<Self>) -> HybridCache {
        common::instance(&(Arc::clone(self) as Arc<dyn DistributedCache>))
    }
}

#[async_trait]
impl DistributedCache for Gated {
    async fn get(&self, key: &str) -> strata_cache::Result<Option<Bytes>> {
        self.inner.get(key).await
    }
    async fn set(
        &self,
        key: &str,
        value: Bytes,
        options: &EntryOptions,
    ) -> strata_cache::Result<()> {
        if self.hold_set.swap(false, Ordering::SeqCst) {
            self.entered.notify_one();
            self.gate.notified().await;
        }
        self.inner.set(key, value, options).await
    }
    async fn refresh(&self, key: &str) -> strata_cache::Result<()> {
        self.inner.refresh(key).await
    }
    async fn remove(&self, key: &str) -> strata_cache::Result<()> {
        self.inner.remove(key).await
    }
    async fn get_versioned(&self, key: &str) -> strata_cache::Result<strata_cache::Versioned> {
        let read = self.inner.get_versioned(key).await;
        if key.starts_with("v2:") && self.hold_get.swap(false, Ordering::SeqCst) {
            self.entered.notify_one();
            self.gate.notified().await;
        }
        read
    }
    async fn set_if_version(
        &self,
        key: &str,
        value: Bytes,
        options: &EntryOptions,
        expected: &strata_cache::Version,
    ) -> strata_cache::Result<bool> {
        if self.hold_set.swap(false, Ordering::SeqCst) {
            self.entered.notify_one();
            self.gate.notified().await;
        }
        self.inner
            .set_if_version(key, value, options, expected)
            .await
    }
    async fn next_stamp(&self, key: &str, options: &EntryOptions) -> strata_cache::Result<u64> {
        self.inner.next_stamp(key, options).await
    }
}

#[tokio::test(start_paused = true)]
async fn l1_l2_remove_during_a_fetch_keeps_its_old_value_out_of_l2() {
    let l2 = Gated::new();
    let cache = l2.instance();
    let held = Held::new();
    let fetch = held.start(&cache, "p", 1, &[]).await;
    cache.remove("p").await.unwrap();
    held.release.notify_one();
    assert_eq!(fetch.await.unwrap(), Row { version: 1 });
    assert_eq!(l2.inner.get("v2:p").await.unwrap(), None);
    let fresh = l2.instance();
    assert_eq!(fresh.get::<Row>("p").await.unwrap(), None);
}

#[tokio::test(start_paused = true)]
async fn l1_l2_remove_that_reaches_l2_before_the_write_back_is_not_undone() {
    let l2 = Gated::new();
    let cache = l2.instance();
    let runs = Arc::new(AtomicU32::new(0));
    // The write-back's L2 set is held; the remove overtakes it in L2.
    l2.hold_set.store(true, Ordering::SeqCst);
    let fetch = {
        let (cache, runs) = (cache.clone(), Arc::clone(&runs));
        tokio::spawn(async move { cache.get_or_create("p", &options(), ready(&runs, 1)).await })
    };
    l2.entered.notified().await;
    cache.remove("p").await.unwrap();
    l2.gate.notify_one();
    assert_eq!(fetch.await.unwrap().unwrap(), Row { version: 1 });
    assert_eq!(
        l2.inner.get("v2:p").await.unwrap(),
        None,
        "the late write-back was removed again"
    );
    assert_eq!(cache.get::<Row>("p").await.unwrap(), None);
}

#[tokio::test(start_paused = true)]
async fn l1_l2_remove_while_get_copies_l2_to_l1_keeps_l1_clean() {
    let l2 = Gated::new();
    let writer = l2.instance();
    writer
        .set("p", Row { version: 1 }, &options())
        .await
        .unwrap();
    let reader = l2.instance();
    // The reader's L2 read returns the old value, then is held.
    l2.hold_get.store(true, Ordering::SeqCst);
    let get = {
        let reader = reader.clone();
        tokio::spawn(async move { reader.get::<Row>("p").await })
    };
    l2.entered.notified().await;
    reader.remove("p").await.unwrap();
    l2.gate.notify_one();
    assert_eq!(get.await.unwrap().unwrap(), Some(Row { version: 1 }));
    assert_eq!(
        reader.get::<Row>("p").await.unwrap(),
        None,
        "not copied to L1"
    );
}

#[tokio::test(start_paused = true)]
async fn l1_l2_backplane_a_peers_remove_during_a_fetch_keeps_its_old_value_out() {
    let c = cluster();
    let held = Held::new();
    let fetch = held.start(&c.a, "p", 1, &[]).await;
    c.b.remove("p").await.unwrap();
    settle().await;
    held.release.notify_one();
    assert_eq!(fetch.await.unwrap(), Row { version: 1 });
    assert_eq!(c.l2.get("v2:p").await.unwrap(), None, "not in L2");
    assert_eq!(c.a.get::<Row>("p").await.unwrap(), None, "not in a's L1");
    next_call_runs_the_factory(&c.a).await;
}

#[tokio::test(start_paused = true)]
async fn l1_l2_backplane_a_peers_set_during_a_fetch_wins() {
    let c = cluster();
    let held = Held::new();
    let fetch = held.start(&c.a, "p", 1, &[]).await;
    c.b.set("p", Row { version: 2 }, &options()).await.unwrap();
    settle().await;
    held.release.notify_one();
    assert_eq!(fetch.await.unwrap(), Row { version: 1 });
    for cache in [&c.a, &c.b] {
        assert_eq!(
            cache.get::<Row>("p").await.unwrap(),
            Some(Row { version: 2 })
        );
    }
}

#[tokio::test(start_paused = true)]
async fn l1_l2_backplane_a_peers_tag_removal_during_a_fetch_keeps_its_value_out() {
    let c = cluster();
    let held = Held::new();
    let fetch = held.start(&c.a, "p", 1, &["products"]).await;
    c.b.remove_by_tag("products").await.unwrap();
    settle().await;
    held.release.notify_one();
    assert_eq!(fetch.await.unwrap(), Row { version: 1 });
    assert_eq!(c.l2.get("v2:p").await.unwrap(), None);
    assert_eq!(c.a.get::<Row>("p").await.unwrap(), None);
}
