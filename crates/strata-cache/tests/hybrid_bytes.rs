//! The raw-bytes API (`get_or_create_bytes`, `get_bytes`, `set_bytes`) by
//! topology: round trips through L1 and L2 without copies, kinds kept apart
//! (a typed read of a raw entry is a miss, and the reverse), and the shared
//! machinery (stampede, tags, fail-safe, backplane, invalidation race).

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use strata_cache::{
    Bytes, DistributedCache, EntryOptions, FactoryContext, HybridCache, HybridEntryOptions,
    MemoryDistributedCache, async_trait,
};
use tokio::sync::Notify;

use common::{Cluster, DbDown, Product, cluster, instance, memory_l2, options, product, settle};

const BODY: &[u8] = br#"[{"id":1},{"id":2}]"#;

/// One minute, with fail-safe: short, so that paused time crosses it quickly.
fn short() -> HybridEntryOptions {
    HybridEntryOptions::new()
        .with_expiration(Duration::from_secs(60))
        .with_fail_safe(Duration::from_secs(600))
}

/// A bytes factory that counts its runs and returns `BODY` plus the run number.
fn counting(
    runs: &Arc<AtomicU32>,
) -> impl FnOnce(FactoryContext) -> std::future::Ready<Result<Bytes, DbDown>> + Send + 'static {
    let runs = Arc::clone(runs);
    move |_| {
        let run = runs.fetch_add(1, Ordering::SeqCst) + 1;
        std::future::ready(Ok(Bytes::from(format!("{run}:{}", "x".repeat(100)))))
    }
}

/// True when `part` lies inside the buffer of `whole` (shares its memory).
fn is_slice_of(part: &Bytes, whole: &Bytes) -> bool {
    let (start, end) = (
        whole.as_ptr() as usize,
        whole.as_ptr() as usize + whole.len(),
    );
    let at = part.as_ptr() as usize;
    !part.is_empty() && at >= start && at + part.len() <= end
}

/// An L2 that hands out clones of what it stores (no copy), and keeps the
/// last value it returned so that tests can look at its buffer.
#[derive(Default)]
struct SharedBuffers {
    inner: MemoryDistributedCache,
    last_get: std::sync::Mutex<Option<Bytes>>,
}

#[async_trait]
impl DistributedCache for SharedBuffers {
    async fn get(&self, key: &str) -> strata_cache::Result<Option<Bytes>> {
        self.inner.get(key).await
    }
    async fn set(
        &self,
        key: &str,
        value: Bytes,
        options: &EntryOptions,
    ) -> strata_cache::Result<()> {
        self.inner.set(key, value, options).await
    }
    async fn refresh(&self, key: &str) -> strata_cache::Result<()> {
        self.inner.refresh(key).await
    }
    async fn remove(&self, key: &str) -> strata_cache::Result<()> {
        self.inner.remove(key).await
    }
    async fn get_versioned(&self, key: &str) -> strata_cache::Result<strata_cache::Versioned> {
        let read = self.inner.get_versioned(key).await?;
        if key.starts_with("v2:") {
            *self.last_get.lock().unwrap() = read.value.clone();
        }
        Ok(read)
    }
    async fn set_if_version(
        &self,
        key: &str,
        value: Bytes,
        options: &EntryOptions,
        expected: &strata_cache::Version,
    ) -> strata_cache::Result<bool> {
        self.inner
            .set_if_version(key, value, options, expected)
            .await
    }
    async fn next_stamp(&self, key: &str, options: &EntryOptions) -> strata_cache::Result<u64> {
        self.inner.next_stamp(key, options).await
    }
}

#[tokio::test(start_paused = true)]
async fn l1_bytes_round_trip_and_hits_share_the_buffer() {
    let cache = HybridCache::builder().build();
    let runs = Arc::new(AtomicU32::new(0));
    let first = cache
        .get_or_create_bytes("page", &options(), counting(&runs))
        .await
        .unwrap();
    let second = cache
        .get_or_create_bytes("page", &options(), counting(&runs))
        .await
        .unwrap();
    assert_eq!(first, second);
    assert_eq!(first.as_ptr(), second.as_ptr(), "an L1 hit copies nothing");
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    cache
        .set_bytes("body", Bytes::from_static(BODY), &options())
        .await
        .unwrap();
    let got = cache.get_bytes("body").await.unwrap().unwrap();
    assert_eq!(
        got.as_ptr(),
        BODY.as_ptr(),
        "set_bytes keeps the caller's buffer in L1"
    );
    assert_eq!(cache.stats().l1_hits(), 2);
    let empty = Bytes::new();
    cache.set_bytes("empty", empty, &options()).await.unwrap();
    assert_eq!(cache.get_bytes("empty").await.unwrap(), Some(Bytes::new()));
}

#[tokio::test(start_paused = true)]
async fn l1_l2_bytes_are_stored_as_they_are_and_read_back_without_a_copy() {
    let l2 = Arc::new(SharedBuffers::default());
    let build = || {
        HybridCache::builder()
            .distributed(Arc::clone(&l2) as Arc<dyn DistributedCache>)
            .build()
    };
    let (writer, reader) = (build(), build());
    writer
        .set_bytes("body", Bytes::from_static(BODY), &options())
        .await
        .unwrap();
    // The envelope: codec id 0 (raw) after magic and version; the payload as is.
    let stored = l2.inner.get("v2:body").await.unwrap().unwrap();
    assert_eq!(&stored[..6], b"STRH\x02\x00");
    let checksum = 8;
    assert!(stored[..stored.len() - checksum].ends_with(BODY));

    let got = reader.get_bytes("body").await.unwrap().unwrap();
    assert_eq!(&got[..], BODY);
    let buffer = l2.last_get.lock().unwrap().clone().unwrap();
    assert!(
        is_slice_of(&got, &buffer),
        "the L2 hit is a slice of the L2 buffer"
    );
    let runs = Arc::new(AtomicU32::new(0));
    let again = reader
        .get_or_create_bytes("body", &options(), counting(&runs))
        .await
        .unwrap();
    assert_eq!(
        again.as_ptr(),
        got.as_ptr(),
        "then an L1 hit on the same buffer"
    );
    assert_eq!(runs.load(Ordering::SeqCst), 0);

    // A factory's bytes reach the other instance through L2.
    let made = writer
        .get_or_create_bytes("page", &options(), counting(&runs))
        .await
        .unwrap();
    let read = reader
        .get_or_create_bytes("page", &options(), counting(&runs))
        .await
        .unwrap();
    assert_eq!((made, runs.load(Ordering::SeqCst)), (read, 1));
}

#[tokio::test(start_paused = true)]
async fn l1_l2_a_typed_reader_of_a_raw_entry_gets_a_miss_and_the_reverse() {
    let l2 = memory_l2();
    let (a, b) = (instance(&l2), instance(&l2));
    // Valid JSON of a Product, stored raw: still not a typed entry.
    let raw = Bytes::from_static(br#"{"id":1,"name":"product 1"}"#);
    a.set_bytes("p", raw.clone(), &options()).await.unwrap();
    assert_eq!(
        a.get::<Product>("p").await.unwrap(),
        None,
        "L1: another kind"
    );
    assert_eq!(b.get::<Product>("p").await.unwrap(), None, "L2: codec 0");
    assert_eq!(
        b.get::<Bytes>("p").await.unwrap(),
        None,
        "typed Bytes is not raw"
    );
    assert_eq!(b.get_bytes("p").await.unwrap(), Some(raw));
    // A typed get_or_create runs its factory and replaces the raw entry.
    let value = b
        .get_or_create("p", &options(), |_| async { Ok::<_, DbDown>(product(2)) })
        .await
        .unwrap();
    assert_eq!(value, product(2));

    a.set("t", product(3), &options()).await.unwrap();
    assert_eq!(a.get_bytes("t").await.unwrap(), None, "L1: another kind");
    assert_eq!(b.get_bytes("t").await.unwrap(), None, "L2: the JSON codec");
}

#[tokio::test(start_paused = true)]
async fn l1_bytes_share_stampede_tags_and_fail_safe() {
    let cache = HybridCache::builder().build();
    let release = Arc::new(Notify::new());
    let runs = Arc::new(AtomicU32::new(0));
    let mut callers = Vec::new();
    for _ in 0..10 {
        let (cache, release, runs) = (cache.clone(), Arc::clone(&release), Arc::clone(&runs));
        callers.push(tokio::spawn(async move {
            let options = short().with_tags(["pages"]);
            cache
                .get_or_create_bytes("page", &options, move |_| async move {
                    runs.fetch_add(1, Ordering::SeqCst);
                    release.notified().await;
                    Ok::<_, DbDown>(Bytes::from_static(BODY))
                })
                .await
        }));
    }
    for _ in 0..3 {
        tokio::task::yield_now().await;
    }
    release.notify_one();
    for caller in callers {
        assert_eq!(&caller.await.unwrap().unwrap()[..], BODY);
    }
    assert_eq!(
        runs.load(Ordering::SeqCst),
        1,
        "one factory run for ten callers"
    );

    // Past its expiration, a failing factory gets the stale bytes (fail-safe).
    tokio::time::sleep(Duration::from_secs(61)).await;
    let stale = cache
        .get_or_create_bytes("page", &short(), |_| async { Err::<Bytes, _>(DbDown) })
        .await
        .unwrap();
    assert_eq!(&stale[..], BODY);
    assert_eq!(cache.stats().stale_served(), 1);

    cache
        .set_bytes(
            "tagged",
            Bytes::from_static(BODY),
            &options().with_tags(["pages"]),
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(2)).await;
    cache.remove_by_tag("pages").await.unwrap();
    assert_eq!(cache.get_bytes("tagged").await.unwrap(), None);
}

#[tokio::test(start_paused = true)]
async fn l1_l2_backplane_bytes_writes_reach_the_peers_and_race_removes_win() {
    let Cluster { a, b, .. } = cluster();
    a.set_bytes("body", Bytes::from_static(b"old"), &options())
        .await
        .unwrap();
    assert_eq!(b.get_bytes("body").await.unwrap().unwrap(), "old");
    a.set_bytes("body", Bytes::from_static(b"new"), &options())
        .await
        .unwrap();
    settle().await;
    assert_eq!(b.get_bytes("body").await.unwrap().unwrap(), "new");

    // A remove on a peer during b's fetch keeps the fetched bytes out.
    let (started, release) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
    let fetch = {
        let (b, started, release) = (b.clone(), Arc::clone(&started), Arc::clone(&release));
        tokio::spawn(async move {
            b.get_or_create_bytes("fresh", &options(), move |_| async move {
                started.notify_one();
                release.notified().await;
                Ok::<_, DbDown>(Bytes::from_static(b"read before the remove"))
            })
            .await
        })
    };
    started.notified().await;
    a.remove("fresh").await.unwrap();
    settle().await;
    release.notify_one();
    assert_eq!(fetch.await.unwrap().unwrap(), "read before the remove");
    assert_eq!(b.get_bytes("fresh").await.unwrap(), None);
    assert_eq!(a.get_bytes("fresh").await.unwrap(), None);
}
