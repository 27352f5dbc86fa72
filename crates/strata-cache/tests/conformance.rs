//! The shared conformance suite, run against the in-process backend.

use strata_cache::MemoryDistributedCache;

#[tokio::test]
async fn memory_backend_passes_the_conformance_suite() {
    strata_cache_testkit::conformance::run_all(&MemoryDistributedCache::new()).await;
}

/// 4 MiB: four shards, filled four times over.
#[tokio::test]
async fn memory_backend_at_capacity_passes_the_capacity_checks() {
    let capacity = 4 * 1024 * 1024;
    let cache = MemoryDistributedCache::with_capacity(capacity);
    strata_cache_testkit::conformance::run_at_capacity(&cache, capacity).await;
    assert!(cache.used_bytes() <= capacity);
}
