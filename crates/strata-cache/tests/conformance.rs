//! The shared conformance suite, run against the in-process backend.

use strata_cache::MemoryDistributedCache;

#[tokio::test]
async fn memory_backend_passes_the_conformance_suite() {
    strata_cache_testkit::conformance::run_all(&MemoryDistributedCache::new()).await;
}
