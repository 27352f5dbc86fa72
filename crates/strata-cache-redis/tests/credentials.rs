//! Credentials end to end, on the two high-availability deployments with
//! password-protected data nodes (`RedisCluster::with_password`,
//! `RedisSentinel::with_password`): the URL's password reaches every node
//! the cache talks to, the ones it discovers included (a cluster's other
//! masters and promoted replicas, the master the sentinels name), and a
//! wrong or missing password is reported as `ErrorKind::Authentication` on
//! the first call, not as an outage and not after a timeout.
//!
//! Each test runs its own deployment; starting one, and its failovers, block
//! for seconds, so they run on the blocking pool.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use strata_cache::{DistributedCache, EntryOptions, ErrorKind, HybridCache, HybridEntryOptions};
use strata_cache_redis::{RedisCache, RedisCacheOptions};
use strata_cache_testkit::{RedisCluster, RedisSentinel};

/// The data nodes' password. Plain: what is under test is that it is sent,
/// not how a URL encodes it (the testkit's own tests cover that).
const PASSWORD: &str = "strata-s3cret";
/// A password the nodes refuse.
const WRONG_PASSWORD: &str = "not-the-password";
/// The bound on the calls expected to fail: a refusal must come before it.
const OPERATION_TIMEOUT: Duration = Duration::from_secs(1);
/// What a call may take past its timeout on a busy machine.
const MARGIN: Duration = Duration::from_millis(250);
/// Bound on anything awaited by polling: a connection, a notice, a cache
/// serving a slot again after a failover.
const BOUND: Duration = Duration::from_secs(10);

// ---- Redis Cluster ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_with_password_passes_the_conformance_suite() {
    let cluster = common::blocking(|| RedisCluster::with_password(PASSWORD)).await;
    let cache = RedisCache::new(options(&cluster.url(), "cluster-conformance")).expect("valid");
    strata_cache_testkit::conformance::run_all(&cache).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_with_password_carries_a_set_to_the_other_instances_l1() {
    let cluster = common::blocking(|| RedisCluster::with_password(PASSWORD)).await;
    a_set_reaches_the_other_l1(&cluster.url(), "cluster-hybrid").await;
}

/// One seed in the URL: the two other masters are found in the slot map and
/// must get the password too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_nodes_found_from_one_seed_get_the_password() {
    let cluster = common::blocking(|| RedisCluster::with_password(PASSWORD)).await;
    let masters = cluster.masters();
    let seed = masters[0];
    let url = format!("redis+cluster://:{PASSWORD}@127.0.0.1:{seed}");
    let options = options(&url, "cluster-one-seed");
    let cache = RedisCache::new(&options).expect("valid options");
    for &master in &masters {
        let key = key_on(&cluster, &options, master);
        let value = Bytes::from(format!("on {master}"));
        cache
            .set(&key, value.clone(), &entry_options())
            .await
            .unwrap_or_else(|e| panic!("a write to 127.0.0.1:{master} (seed {seed}): {e}"));
        assert_eq!(cache.get(&key).await.expect("a read"), Some(value.clone()));
        let redis_key = format!("{}{key}", options.instance_name());
        assert_eq!(data_on(master, &redis_key).await, Some(value.to_vec()));
    }
}

/// A wrong or missing password is an Authentication error at once, though
/// redis-rs reports a cluster whose seeds all refuse the connection as one
/// I/O error, the nodes' WRONGPASS or NOAUTH only in its text.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_refuses_a_wrong_or_missing_password_on_the_first_call() {
    let cluster = common::blocking(|| RedisCluster::with_password(PASSWORD)).await;
    assert_refused(&cluster.url()).await;
}

/// The killed master's replica is promoted; the cache, which knew it only
/// from the slot map, serves the slot from it with the password.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_serves_a_killed_masters_slot_from_the_promoted_replica() {
    let cluster = common::blocking(|| RedisCluster::with_password(PASSWORD)).await;
    let options = options(&cluster.url(), "cluster-failover");
    let cache = RedisCache::new(&options).expect("valid options");
    let key = "victim";
    let redis_key = format!("{}{key}", options.instance_name());
    let slot = RedisCluster::slot_of(&redis_key);
    let before = Bytes::from_static(b"before");
    works(&cache, key, &before).await;

    let (cluster, killed) = common::with(cluster, move |c| c.kill_master_of_slot(slot)).await;
    let promoted = cluster.master_of_slot(slot);
    assert_ne!(promoted, killed);
    let after = Bytes::from_static(b"after the failover");
    works(&cache, key, &after).await;
    assert_eq!(data_on(promoted, &redis_key).await, Some(after.to_vec()));
}

// ---- Sentinel ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sentinel_with_password_passes_the_conformance_suite() {
    let sentinel = common::blocking(|| RedisSentinel::with_password(PASSWORD)).await;
    let cache = RedisCache::new(options(&sentinel.url(), "sentinel-conformance")).expect("valid");
    strata_cache_testkit::conformance::run_all(&cache).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sentinel_with_password_carries_a_set_to_the_other_instances_l1() {
    let sentinel = common::blocking(|| RedisSentinel::with_password(PASSWORD)).await;
    a_set_reaches_the_other_l1(&sentinel.url(), "sentinel-hybrid").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sentinel_refuses_a_wrong_or_missing_password_on_the_first_call() {
    let sentinel = common::blocking(|| RedisSentinel::with_password(PASSWORD)).await;
    assert_refused(&sentinel.url()).await;
}

/// The sentinels name a new master; the cache connects to it with the
/// password (the announced master and the one asked for both take the URL's
/// credentials).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sentinel_follows_a_killed_master_with_the_password() {
    let sentinel = common::blocking(|| RedisSentinel::with_password(PASSWORD)).await;
    let options = options(&sentinel.url(), "sentinel-failover");
    let cache = RedisCache::new(&options).expect("valid options");
    let key = "victim";
    let redis_key = format!("{}{key}", options.instance_name());
    works(&cache, key, &Bytes::from_static(b"before")).await;

    let (_sentinel, new) = common::with(sentinel, RedisSentinel::kill_master).await;
    let after = Bytes::from_static(b"after the failover");
    works(&cache, key, &after).await;
    assert_eq!(data_on(new, &redis_key).await, Some(after.to_vec()));
}

// ---- Shared checks ----

/// Two HybridCache instances over RedisCache and RedisBackplane on `url`: a
/// `set` on one drops the other's L1 copy (an hour long: only the notice can
/// do it), so the other reads the new value.
async fn a_set_reaches_the_other_l1(url: &str, name: &str) {
    let options = options(url, name);
    let backplanes = common::subscribed_backplanes(&options).await;
    let [a, b] = backplanes.map(|backplane| {
        HybridCache::builder()
            .distributed(RedisCache::new(&options).expect("valid options"))
            .backplane(backplane)
            .build()
    });
    let runs = Arc::new(AtomicU32::new(0));
    // Both hold the entry in L1 (built by either: the write of a's build to
    // L2 may still be under way when b reads).
    assert_eq!(read(&a, "p", 1, &runs).await, 1);
    assert_eq!(read(&b, "p", 1, &runs).await, 1);

    let propagation = a.set("p", 42_u32, &hybrid_options()).await.expect("a set");
    assert!(
        propagation.is_complete(),
        "the set did not reach L2 and the backplane: {propagation:?}"
    );
    common::poll("b sees a's set", BOUND, || async {
        (read(&b, "p", 0, &runs).await == 42).then_some(())
    })
    .await;
}

/// `url` (which carries [`PASSWORD`]) with a wrong password, then without
/// one: each time a new cache fails its first call with `Authentication`.
/// Both cases are tried before the assertion, so a failure tells of both.
async fn assert_refused(url: &str) {
    let cases = [
        ("a wrong password", url.replace(PASSWORD, WRONG_PASSWORD)),
        ("no password", url.replace(&format!(":{PASSWORD}@"), "")),
    ];
    let mut failures = Vec::new();
    for (what, url) in cases {
        if let Err(failure) = refusal(&url).await {
            failures.push(format!("{what}: {failure}"));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

/// Whether a cache on `url` fails its first call with `Authentication`,
/// before the operation timeout, and says nothing of the password it was
/// given.
async fn refusal(url: &str) -> Result<(), String> {
    let options = RedisCacheOptions::new(url).with_operation_timeout(OPERATION_TIMEOUT);
    let cache = RedisCache::new(options).expect("valid options");
    let started = Instant::now();
    let outcome = cache.get("any").await;
    let took = started.elapsed();
    let Err(err) = outcome else {
        return Err("the first call succeeded".to_owned());
    };
    if err.kind() != ErrorKind::Authentication {
        return Err(format!(
            "the first call failed with {:?}, not Authentication, after {took:?}: {err}; \
             source: {:?}",
            err.kind(),
            std::error::Error::source(&err).map(ToString::to_string),
        ));
    }
    if took >= OPERATION_TIMEOUT + MARGIN {
        return Err(format!("refused after {took:?}"));
    }
    let shown = format!("{err} {err:?}");
    if shown.contains(WRONG_PASSWORD) {
        return Err(format!("the error shows the password: {shown}"));
    }
    Ok(())
}

/// Waits until `value` can be written at `key` and read back.
async fn works(cache: &RedisCache, key: &str, value: &Bytes) {
    common::poll("the cache writes and reads", BOUND, || async {
        cache.set(key, value.clone(), &entry_options()).await.ok()?;
        (cache.get(key).await.ok()?.as_ref() == Some(value)).then_some(())
    })
    .await;
}

/// What `cache` returns for `key`, building `fresh` on a miss.
async fn read(cache: &HybridCache, key: &str, fresh: u32, runs: &Arc<AtomicU32>) -> u32 {
    let runs = Arc::clone(runs);
    cache
        .get_or_create(key, &hybrid_options(), move |_ctx| async move {
            runs.fetch_add(1, Ordering::SeqCst);
            Ok::<_, std::io::Error>(fresh)
        })
        .await
        .expect("get_or_create")
}

/// A cache key whose Redis key lives on the master on `port`.
fn key_on(cluster: &RedisCluster, options: &RedisCacheOptions, port: u16) -> String {
    (0..)
        .map(|i| format!("key:{i}"))
        .find(|key| {
            let slot = RedisCluster::slot_of(&format!("{}{key}", options.instance_name()));
            cluster.master_of_slot(slot) == port
        })
        .expect("some key hashes to every master")
}

/// The `data` field of an entry on one node, read without the cache, with
/// the password.
async fn data_on(port: u16, redis_key: &str) -> Option<Vec<u8>> {
    let url = format!("redis://:{PASSWORD}@127.0.0.1:{port}/");
    let mut conn = redis::Client::open(url)
        .expect("a valid URL")
        .get_multiplexed_async_connection()
        .await
        .unwrap_or_else(|e| panic!("cannot connect to 127.0.0.1:{port}: {e}"));
    redis::cmd("HGET")
        .arg(redis_key)
        .arg("data")
        .query_async(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("127.0.0.1:{port} refused HGET: {e}"))
}

fn options(url: &str, name: &str) -> RedisCacheOptions {
    RedisCacheOptions::new(url).with_instance_name(format!("{}:", common::unique(name)))
}

/// Ten minutes in Redis: longer than any test.
fn entry_options() -> EntryOptions {
    EntryOptions::new().with_relative_expiration(Duration::from_secs(600))
}

/// An hour in L1 and L2: only a notice can make an instance drop its copy.
fn hybrid_options() -> HybridEntryOptions {
    HybridEntryOptions::new().with_expiration(Duration::from_secs(3600))
}
