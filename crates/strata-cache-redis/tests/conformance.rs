//! The shared conformance suite against Redis: the machine's shared server
//! (`REDIS_URL`, default 127.0.0.1:6379) and a server of the test's own.

mod common;

use strata_cache_redis::{RedisCache, RedisCacheOptions};
use strata_cache_testkit::RedisServer;
use strata_cache_testkit::conformance::ForeignWriter;

#[tokio::test]
async fn shared_redis_passes_the_conformance_suite() {
    let cache = RedisCache::new(
        RedisCacheOptions::new(common::shared_url()).with_instance_name("strata-conformance:"),
    )
    .expect("valid options");
    strata_cache_testkit::conformance::run_all(&cache).await;
}

#[tokio::test]
async fn spawned_redis_passes_the_conformance_suite() {
    let server = RedisServer::new();
    let cache = RedisCache::new(RedisCacheOptions::new(server.url())).expect("valid options");
    strata_cache_testkit::conformance::run_all(&cache).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shared_cache_passes_on_a_multi_threaded_runtime_with_a_database_number() {
    let server = RedisServer::new();
    let cache = RedisCache::new(RedisCacheOptions::new(format!("{}5", server.url())))
        .expect("valid options");
    strata_cache_testkit::conformance::run_all(&cache).await;
    let mut raw = common::raw(&format!("{}5", server.url())).await;
    let keys: usize = redis::cmd("DBSIZE").query_async(&mut raw).await.unwrap();
    assert!(keys > 0, "the entries are not in database 5");
}

/// A Redis of 4 MiB with the recommended eviction policy, filled four times
/// over.
#[tokio::test]
async fn a_full_redis_passes_the_capacity_checks() {
    let server =
        RedisServer::with_args(["--maxmemory", "4mb", "--maxmemory-policy", "volatile-lru"]);
    let cache = RedisCache::new(RedisCacheOptions::new(server.url())).expect("valid options");
    strata_cache_testkit::conformance::run_at_capacity(&cache, 4 * 1024 * 1024).await;
    let mut raw = common::raw(&server.url()).await;
    let evicted: String = redis::cmd("INFO")
        .arg("stats")
        .query_async(&mut raw)
        .await
        .unwrap();
    assert!(
        !evicted.contains("evicted_keys:0\r"),
        "Redis evicted nothing: the checks did not fill it"
    );
}

/// Plants plain Redis strings where the cache writes hashes.
struct RawStrings {
    conn: common::Raw,
    prefix: &'static str,
}

#[strata_cache::async_trait]
impl ForeignWriter for RawStrings {
    async fn plant_wrong_type(&self, key: &str) {
        let () = redis::cmd("SET")
            .arg(format!("{}{key}", self.prefix))
            .arg("another program's string")
            .query_async(&mut self.conn.clone())
            .await
            .expect("SET");
    }

    async fn holds_wrong_type(&self, key: &str) -> bool {
        let kind: String = redis::cmd("TYPE")
            .arg(format!("{}{key}", self.prefix))
            .query_async(&mut self.conn.clone())
            .await
            .expect("TYPE");
        kind == "string"
    }
}

#[tokio::test]
async fn keys_of_another_type_pass_the_foreign_checks() {
    let prefix = "strata-conformance-foreign:";
    let url = common::shared_url();
    let cache = RedisCache::new(RedisCacheOptions::new(&url).with_instance_name(prefix))
        .expect("valid options");
    let foreign = RawStrings {
        conn: common::raw(&url).await,
        prefix,
    };
    strata_cache_testkit::conformance::run_with_foreign(&cache, &foreign).await;
}
