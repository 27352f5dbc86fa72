//! The typed layer over any backend: decoding, cache-aside, and riding out a
//! failing cache.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use strata_cache::{
    DistributedCache, DistributedCacheExt, EntryOptions, ErrorKind, MemoryDistributedCache,
    Postcard,
};
use strata_cache_testkit::ChaosCache;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Product {
    id: u32,
    name: String,
    price: String,
}

fn product() -> Product {
    Product {
        id: 42,
        name: "Ergonomic Steel Keyboard".into(),
        price: "49.90".into(),
    }
}

fn text(s: &'static str) -> strata_cache::Bytes {
    strata_cache::Bytes::from_static(s.as_bytes())
}

#[derive(Debug)]
struct DbDown;

impl std::fmt::Display for DbDown {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("database down")
    }
}

impl std::error::Error for DbDown {}

#[tokio::test]
async fn set_value_then_get_value_round_trips_as_json() {
    let cache = MemoryDistributedCache::new();
    cache.set_value("p", &product()).await.unwrap();
    assert_eq!(
        cache.get_value::<Product>("p").await.unwrap(),
        Some(product())
    );
    let raw = cache.get("p").await.unwrap().unwrap();
    assert_eq!(
        &raw[..],
        br#"{"id":42,"name":"Ergonomic Steel Keyboard","price":"49.90"}"#
    );
}

#[tokio::test]
async fn postcard_codec_round_trips() {
    let cache = MemoryDistributedCache::new();
    let typed = cache.with_codec(Postcard);
    typed
        .set_value("p", &product(), &EntryOptions::new())
        .await
        .unwrap();
    assert_eq!(
        typed.get_value::<Product>("p").await.unwrap(),
        Some(product())
    );
}

/// Strings are stored as .NET's `SetString` stores them: raw UTF-8, no JSON.
#[tokio::test]
async fn strings_are_raw_utf8_as_in_dotnet() {
    let cache = MemoryDistributedCache::new();
    let options = EntryOptions::new();
    cache.set_string("s", "Grüße 😀", &options).await.unwrap();
    assert_eq!(cache.get("s").await.unwrap(), Some(text("Grüße 😀")));
    assert_eq!(
        cache.get_string("s").await.unwrap().as_deref(),
        Some("Grüße 😀")
    );
    cache.set_string("empty", "", &options).await.unwrap();
    assert_eq!(
        cache.get_string("empty").await.unwrap().as_deref(),
        Some("")
    );
    assert_eq!(cache.get_string("missing").await.unwrap(), None);
    // Not UTF-8: a miss, and the bytes stay.
    let latin1 = strata_cache::Bytes::from_static(b"Gr\xfc\xdfe");
    cache.set("latin1", latin1.clone(), &options).await.unwrap();
    assert_eq!(cache.get_string("latin1").await.unwrap(), None);
    assert_eq!(cache.get("latin1").await.unwrap(), Some(latin1));
}

/// Undecodable bytes may be another writer's (a .NET service, the other
/// version in a rolling deploy): a typed read is a miss and leaves them.
#[tokio::test]
async fn bytes_that_do_not_decode_are_a_miss_and_stay() {
    let cache = MemoryDistributedCache::new();
    let foreign = strata_cache::Bytes::from_static(b"{not json");
    cache
        .set("p", foreign.clone(), &EntryOptions::new())
        .await
        .unwrap();
    assert_eq!(cache.get_value::<Product>("p").await.unwrap(), None);
    assert_eq!(
        cache.get("p").await.unwrap(),
        Some(foreign),
        "a typed read removed bytes it could not decode"
    );
}

/// The fill of `get_or_set` replaces undecodable bytes (the caller writes),
/// but only if nothing wrote the key since its read.
#[tokio::test]
async fn get_or_set_replaces_undecodable_bytes_only_if_unchanged() {
    let cache = MemoryDistributedCache::new();
    let options = EntryOptions::new();
    cache.set("p", text("v1 text"), &options).await.unwrap();
    let filled: u32 = cache
        .get_or_set("p", &options, || async { Ok::<_, DbDown>(7) })
        .await
        .unwrap();
    assert_eq!(filled, 7);
    assert_eq!(cache.get_value::<u32>("p").await.unwrap(), Some(7));

    cache.set("q", text("v1 text"), &options).await.unwrap();
    let loaded: u32 = cache
        .get_or_set("q", &options, || async {
            // Another writer replaces the bytes while the factory runs.
            cache.set("q", text("v2 text"), &options).await.unwrap();
            Ok::<_, DbDown>(8)
        })
        .await
        .unwrap();
    assert_eq!(loaded, 8);
    assert_eq!(
        cache.get("q").await.unwrap(),
        Some(text("v2 text")),
        "the fill overwrote a write made after its read"
    );
}

/// Each undecodable read is logged and counted, by codec.
#[test]
fn undecodable_reads_are_counted_by_codec() {
    use metrics_util::debugging::{DebugValue, DebuggingRecorder};
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    metrics::with_local_recorder(&recorder, || {
        runtime.block_on(async {
            let cache = MemoryDistributedCache::new();
            let options = EntryOptions::new();
            cache
                .set(
                    "bad",
                    strata_cache::Bytes::from_static(b"\xff\xfe"),
                    &options,
                )
                .await
                .unwrap();
            assert_eq!(cache.get_value::<Product>("bad").await.unwrap(), None);
            let typed = cache.with_codec(Postcard);
            assert_eq!(typed.get_value::<Product>("bad").await.unwrap(), None);
            assert_eq!(cache.get_string("bad").await.unwrap(), None);
            assert_eq!(cache.get_value::<Product>("bad").await.unwrap(), None);
        });
    });
    let mut counts: Vec<(String, u64)> = snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .filter(|(key, ..)| key.key().name() == "strata_cache_undecodable_total")
        .map(|(key, _, _, value)| {
            let codec = key
                .key()
                .labels()
                .find(|l| l.key() == "codec")
                .map(|l| l.value().to_owned())
                .unwrap_or_default();
            let DebugValue::Counter(n) = value else {
                panic!("not a counter")
            };
            (codec, n)
        })
        .collect();
    counts.sort();
    assert_eq!(
        counts,
        [
            ("json".to_owned(), 2),
            ("postcard".to_owned(), 1),
            ("utf8".to_owned(), 1)
        ]
    );
}

#[tokio::test]
async fn get_or_set_runs_the_factory_once_then_hits() {
    let cache = MemoryDistributedCache::new();
    let runs = AtomicUsize::new(0);
    for _ in 0..3 {
        let value = cache
            .get_or_set("p", &strata_cache::default_options(), || async {
                runs.fetch_add(1, Ordering::SeqCst);
                Ok::<_, DbDown>(product())
            })
            .await
            .unwrap();
        assert_eq!(value, product());
    }
    assert_eq!(runs.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn get_or_set_returns_the_factory_error_and_caches_nothing() {
    let cache = MemoryDistributedCache::new();
    let result = cache
        .get_or_set("p", &strata_cache::default_options(), || async {
            Err::<Product, _>(DbDown)
        })
        .await;
    assert!(result.is_err());
    assert_eq!(cache.get("p").await.unwrap(), None);
}

#[tokio::test]
async fn get_or_set_survives_a_cache_that_is_down() {
    let chaos = ChaosCache::new(Arc::new(MemoryDistributedCache::new()));
    chaos.fail_with(ErrorKind::Unavailable);
    let value = cache_aside(&chaos).await;
    assert_eq!(value, product());
    // The read was attempted and failed; with no version to guard it, no
    // write follows.
    assert_eq!((chaos.calls(), chaos.injected_failures()), (1, 1));
    chaos.heal();
    assert_eq!(chaos.get_value::<Product>("p").await.unwrap(), None);
}

#[tokio::test]
async fn get_or_set_with_invalid_options_still_returns_the_value() {
    let cache = MemoryDistributedCache::new();
    let zero = EntryOptions::new().with_sliding_expiration(Duration::ZERO);
    let value = cache
        .get_or_set("p", &zero, || async { Ok::<_, DbDown>(product()) })
        .await
        .unwrap();
    assert_eq!(value, product());
    assert_eq!(cache.get("p").await.unwrap(), None);
}

#[test]
fn default_options_slide_30_minutes_capped_at_one_hour() {
    let options = strata_cache::default_options();
    assert_eq!(
        options.sliding_expiration(),
        Some(Duration::from_secs(1800))
    );
    assert_eq!(
        options.relative_expiration(),
        Some(Duration::from_secs(3600))
    );
}

async fn cache_aside(cache: &dyn DistributedCache) -> Product {
    cache
        .get_or_set("p", &strata_cache::default_options(), || async {
            Ok::<_, DbDown>(product())
        })
        .await
        .unwrap()
}

/// The cache-aside race: the factory loads the old row, a writer commits and
/// removes the key before the fill lands. The fill must not put the old row
/// back.
#[tokio::test]
async fn get_or_set_does_not_put_back_a_row_removed_while_its_factory_ran() {
    let cache = MemoryDistributedCache::new();
    let options = EntryOptions::new();
    let loaded: u32 = cache
        .get_or_set("product:7", &options, || async {
            let old_row = 1;
            cache.remove("product:7").await.unwrap(); // the writer's invalidation
            Ok::<_, DbDown>(old_row)
        })
        .await
        .unwrap();
    assert_eq!(loaded, 1, "the caller still gets what it loaded");
    assert_eq!(cache.get_value::<u32>("product:7").await.unwrap(), None);
    let fresh: u32 = cache
        .get_or_set("product:7", &options, || async { Ok::<_, DbDown>(2) })
        .await
        .unwrap();
    assert_eq!(fresh, 2);
    assert_eq!(cache.get_value::<u32>("product:7").await.unwrap(), Some(2));
}

/// After a failed read there is no version to guard the fill: nothing is stored.
#[tokio::test]
async fn get_or_set_does_not_store_without_a_successful_read() {
    let memory = Arc::new(MemoryDistributedCache::new());
    let chaos = ChaosCache::new(memory.clone());
    chaos.fail_next(1, ErrorKind::Timeout);
    let value: u32 = chaos
        .get_or_set("k", &EntryOptions::new(), || async { Ok::<_, DbDown>(5) })
        .await
        .unwrap();
    assert_eq!(value, 5);
    assert_eq!(memory.get("k").await.unwrap(), None);
}
