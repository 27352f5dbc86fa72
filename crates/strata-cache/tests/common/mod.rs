//! Helpers shared by the HybridCache integration tests: the test value and
//! error types, factories, entry options, and builders of instances over a
//! `MemoryDistributedCache` and an `InProcessBackplane`.
//!
//! What is particular to one file (the raw-bytes factory, the gated L2 of the
//! race tests) stays in that file.

// Each test binary compiles this module and uses its own subset of it.
#![allow(dead_code, unreachable_pub)]

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use strata_cache::{
    Backplane, DistributedCache, FactoryContext, HybridCache, HybridEntryOptions,
    InProcessBackplane, MemoryDistributedCache,
};

/// The cached value of most tests.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Product {
    pub id: u32,
    pub name: String,
}

/// The error of a failing factory.
#[derive(Debug, thiserror::Error)]
#[error("database down")]
pub struct DbDown;

pub fn product(id: u32) -> Product {
    Product {
        id,
        name: format!("product {id}"),
    }
}

pub fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

/// One hour: long enough that paused time never expires the entry by itself.
pub fn options() -> HybridEntryOptions {
    HybridEntryOptions::new().with_expiration(secs(3600))
}

/// A factory that counts its runs and returns `product(runs)`.
pub fn counting(
    runs: &Arc<AtomicU32>,
) -> impl FnOnce(FactoryContext) -> std::future::Ready<Result<Product, DbDown>> + Send + 'static {
    let runs = Arc::clone(runs);
    move |_| std::future::ready(Ok(product(runs.fetch_add(1, Ordering::SeqCst) + 1)))
}

/// A factory that fails with `DbDown`.
pub fn failing()
-> impl FnOnce(FactoryContext) -> std::future::Ready<Result<Product, DbDown>> + Send + 'static {
    |_| std::future::ready(Err(DbDown))
}

/// The id of the `Product` that `get_or_create` returns.
///
/// # Panics
///
/// When `get_or_create` fails.
pub async fn id<E, F, Fut>(
    cache: &HybridCache,
    key: &str,
    options: &HybridEntryOptions,
    factory: F,
) -> u32
where
    F: FnOnce(FactoryContext) -> Fut + Send + 'static,
    Fut: Future<Output = Result<Product, E>> + Send + 'static,
    E: std::error::Error + Send + Sync + 'static,
{
    cache
        .get_or_create(key, options, factory)
        .await
        .expect("get_or_create succeeds")
        .id
}

/// A fresh in-process L2, typed as instances take it.
pub fn memory_l2() -> Arc<dyn DistributedCache> {
    Arc::new(MemoryDistributedCache::new())
}

/// An instance with `l2` as its L2 and no backplane.
pub fn instance(l2: &Arc<dyn DistributedCache>) -> HybridCache {
    HybridCache::builder().distributed(Arc::clone(l2)).build()
}

/// Two instances, "a" and "b", sharing one L2 and one backplane.
pub struct Cluster {
    pub l2: Arc<dyn DistributedCache>,
    pub backplane: Arc<InProcessBackplane>,
    pub a: HybridCache,
    pub b: HybridCache,
}

pub fn cluster() -> Cluster {
    let l2 = memory_l2();
    let backplane = Arc::new(InProcessBackplane::new());
    let build = |id: &str| {
        HybridCache::builder()
            .distributed(Arc::clone(&l2))
            .backplane(Arc::clone(&backplane) as Arc<dyn Backplane>)
            .instance_id(id)
            .build()
    };
    let (a, b) = (build("a"), build("b"));
    Cluster {
        l2,
        backplane,
        a,
        b,
    }
}

/// Lets the listener tasks apply what was published.
pub async fn settle() {
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
}
