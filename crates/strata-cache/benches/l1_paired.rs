//! Paired L1 hit figures for A/B comparisons between builds: each round times
//! `CALLS` `HashMap` gets, then `CALLS` `get_or_create` hits, on one hot key
//! and then spread over all keys in turn; the medians of the per-round
//! ratios are printed. Rounds alternate the two sides closely, so load that
//! drifts during a run moves both.
//!
//! Unlike `hybrid_l1` (criterion, and a paired loop inside a Tokio
//! `block_on`), the hit's future is created and polled once by hand with a
//! no-op waker: no executor between the caller and the cache. A hit is
//! always ready on its first poll; the bench checks that it is.
//!
//! Run: `taskset -c 0 cargo bench -p strata-cache --bench l1_paired [-- ROUNDS]`.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::hint::black_box;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use strata_cache::{HybridCache, HybridEntryOptions};

mod support;
use support::{HOT, KEYS, Small, small};

const CALLS: usize = 20_000;

/// One hit: the future polled once, and it must be ready. Out of line, as
/// is [`map_get`]: the loops around them are the same code in every build
/// compared, and a profiler can count either function alone.
#[inline(never)]
fn hit(cache: &HybridCache, key: &str, options: &HybridEntryOptions) {
    let future = cache.get_or_create(key, options, |_| async { Ok::<_, Infallible>(small(0)) });
    let mut future = std::pin::pin!(future);
    let poll = future
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()));
    assert!(matches!(poll, Poll::Ready(Ok(_))), "a hit is ready at once");
    drop(black_box(poll));
}

/// A typed hit on a large value cached as an `Arc`: a reference count.
#[inline(never)]
fn arc_hit(cache: &HybridCache, options: &HybridEntryOptions) {
    let future = cache.get_or_create(ARC_KEY, options, |_| async {
        Ok::<_, Infallible>(Arc::new(Vec::<Small>::new()))
    });
    let mut future = std::pin::pin!(future);
    let poll = future
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()));
    assert!(matches!(poll, Poll::Ready(Ok(_))), "a hit is ready at once");
    drop(black_box(poll));
}

/// A raw-bytes hit on the same value, encoded: the reference point of the
/// `Arc` hit.
#[inline(never)]
fn bytes_hit(cache: &HybridCache, options: &HybridEntryOptions) {
    let future = cache.get_or_create_bytes(BYTES_KEY, options, |_| async {
        Ok::<_, Infallible>(bytes::Bytes::new())
    });
    let mut future = std::pin::pin!(future);
    let poll = future
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()));
    assert!(matches!(poll, Poll::Ready(Ok(_))), "a hit is ready at once");
    drop(black_box(poll));
}

/// Keys of the large value: 1,000 products, typed in an `Arc` and as bytes.
const ARC_KEY: &str = "list:arc";
const BYTES_KEY: &str = "list:bytes";

/// The baseline: a `HashMap` get plus a clone of the `Arc`.
#[inline(never)]
fn map_get(map: &Map, key: &str) {
    black_box(map.get(key).cloned());
}

type Map = HashMap<String, Arc<Small>, foldhash::fast::RandomState>;

/// Seconds for `CALLS` calls of `f`.
fn time(mut f: impl FnMut(usize)) -> f64 {
    let start = Instant::now();
    for i in 0..CALLS {
        f(i);
    }
    start.elapsed().as_secs_f64()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let rounds: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(200);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a Tokio runtime");
    let keys: Vec<String> = (0..KEYS).map(|id| format!("product:{id}")).collect();
    let n = keys.len();
    let cache = rt.block_on(async {
        let cache = HybridCache::builder().build();
        let options = HybridEntryOptions::new().with_expiration(Duration::from_secs(3600));
        for (id, key) in (0..).zip(&keys) {
            let _ = cache.set(key, small(id), &options).await.expect("set");
        }
        let list: Vec<Small> = (0..KEYS).map(small).collect();
        let json = serde_json::to_vec(&list).expect("JSON");
        let _ = cache
            .set(ARC_KEY, Arc::new(list), &options)
            .await
            .expect("set");
        let _ = cache
            .set_bytes(BYTES_KEY, bytes::Bytes::from(json), &options)
            .await
            .expect("set");
        // Let the coarse clock's ticker run once, as it does in a service.
        tokio::time::sleep(Duration::from_millis(20)).await;
        cache
    });
    let map: Map = (0..)
        .zip(&keys)
        .map(|(id, key)| (key.clone(), Arc::new(small(id))))
        .collect();
    let options = HybridEntryOptions::new();
    let (mut hot, mut spread, mut map_ns, mut hit_ns) = (vec![], vec![], vec![], vec![]);
    let (mut arc_ratio, mut arc_ns, mut bytes_ns) = (vec![], vec![], vec![]);
    for _ in 0..rounds {
        let arc = time(|_| arc_hit(&cache, &options));
        let raw = time(|_| bytes_hit(&cache, &options));
        arc_ratio.push(arc / raw);
        arc_ns.push(arc * 1e9 / CALLS as f64);
        bytes_ns.push(raw * 1e9 / CALLS as f64);
        let map_hot = time(|_| map_get(&map, black_box(HOT)));
        let hit_hot = time(|_| hit(&cache, black_box(HOT), &options));
        let map_all = time(|i| map_get(&map, black_box(keys[i % n].as_str())));
        let hit_all = time(|i| hit(&cache, black_box(keys[i % n].as_str()), &options));
        hot.push(hit_hot / map_hot);
        spread.push(hit_all / map_all);
        map_ns.push(map_hot * 1e9 / CALLS as f64);
        hit_ns.push(hit_hot * 1e9 / CALLS as f64);
    }
    println!(
        "{rounds} rounds of {CALLS} calls, medians: hot key: HashMap {:.1} ns, hit {:.1} ns, \
         hit / HashMap {:.2}x; all keys in turn: hit / HashMap {:.2}x",
        median(map_ns),
        median(hit_ns),
        median(hot),
        median(spread),
    );
    println!(
        "a 1,000-product list: typed hit of an Arc {:.1} ns, raw-bytes hit {:.1} ns, \
         Arc / bytes {:.2}x",
        median(arc_ns),
        median(bytes_ns),
        median(arc_ratio),
    );
}
