//! A cache's life beyond one call: the factory keeps the caller's span, and
//! a cache keeps working (clock, backplane listener) after the runtime that
//! built it is gone.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use strata_cache::{Backplane, HybridCache, HybridEntryOptions, InProcessBackplane};
use tracing::Instrument;
use tracing_subscriber::registry::LookupSpan;

use common::{DbDown, counting, memory_l2, options, product};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime")
}

/// The names of the current span and its parents, innermost first.
fn span_chain() -> Vec<String> {
    let Some(id) = tracing::Span::current().id() else {
        return Vec::new();
    };
    tracing::dispatcher::get_default(|dispatch| {
        let registry = dispatch
            .downcast_ref::<tracing_subscriber::Registry>()
            .expect("the registry");
        registry.span(&id).map_or_else(Vec::new, |span| {
            span.scope().map(|s| s.name().to_owned()).collect()
        })
    })
}

#[tokio::test]
async fn the_factory_runs_in_the_callers_span() {
    let _subscriber = tracing::subscriber::set_default(tracing_subscriber::registry());
    let cache = HybridCache::builder().build();
    let span = tracing::info_span!("request", id = 7);
    let chain: Vec<String> = cache
        .get_or_create("k", &options(), |_| async { Ok::<_, DbDown>(span_chain()) })
        .instrument(span)
        .await
        .unwrap();
    assert_eq!(
        chain,
        ["strata.factory", "strata.get_or_create", "request"],
        "the factory's span is a child of the caller's"
    );
}

#[test]
fn entries_still_expire_after_the_runtime_that_built_the_cache_is_gone() {
    let first = runtime();
    let cache = first.block_on(async {
        let cache = HybridCache::builder().build();
        // Let the clock's ticker run in this runtime.
        tokio::time::sleep(Duration::from_millis(20)).await;
        cache
    });
    drop(first);
    let second = runtime();
    second.block_on(async {
        let short = HybridEntryOptions::new().with_expiration(Duration::from_millis(100));
        let runs = Arc::new(AtomicU32::new(0));
        cache
            .get_or_create("k", &short, counting(&runs))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        cache
            .get_or_create("k", &short, counting(&runs))
            .await
            .unwrap();
        assert_eq!(runs.load(Ordering::SeqCst), 2, "the entry expired");
    });
}

#[test]
fn a_cache_hears_its_peers_after_the_runtime_that_built_it_is_gone() {
    let l2 = memory_l2();
    let backplane = Arc::new(InProcessBackplane::new());
    let build = |id: &str| {
        HybridCache::builder()
            .distributed(Arc::clone(&l2))
            .backplane(Arc::clone(&backplane) as Arc<dyn Backplane>)
            .instance_id(id)
            .build()
    };
    let first = runtime();
    let a = first.block_on(async {
        let a = build("a");
        a.set("p", product(1), &options()).await.unwrap();
        a
    });
    drop(first); // a's listener went with it
    let second = runtime();
    second.block_on(async {
        let b = build("b");
        b.set("p", product(2), &options()).await.unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(
            a.get::<common::Product>("p").await.unwrap(),
            Some(product(2)),
            "a missed b's notice while it had no listener: its L1 copy is suspect"
        );
        b.set("p", product(3), &options()).await.unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(
            a.get::<common::Product>("p").await.unwrap(),
            Some(product(3)),
            "and it listens again"
        );
    });
}
