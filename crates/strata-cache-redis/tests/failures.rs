//! How the cache behaves when Redis fails: killed, restarted, not yet
//! started, or refusing the password. Each test runs its own server.
//!
//! Elapsed-time checks are generous bounds (timeout + 1 s) that catch a call
//! hanging, not performance measurements.

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use strata_cache::{DistributedCache, EntryOptions, ErrorKind};
use strata_cache_redis::{RedisCache, RedisCacheOptions};
use strata_cache_testkit::RedisServer;

const OPERATION_TIMEOUT: Duration = Duration::from_millis(500);
const RECOVERY_BOUND: Duration = Duration::from_secs(10);

fn cache_for(url: String) -> RedisCache {
    RedisCache::new(
        RedisCacheOptions::new(url)
            .with_operation_timeout(OPERATION_TIMEOUT)
            .with_connect_timeout(Duration::from_secs(1)),
    )
    .expect("valid options")
}

/// Runs every operation once and checks each fails as "Redis is not there"
/// within the timeout.
async fn every_call_fails_in_time(cache: &RedisCache) {
    let options = EntryOptions::new();
    for op in ["get", "set", "refresh", "remove"] {
        let start = Instant::now();
        let result = match op {
            "get" => cache.get("k").await.map(drop),
            "set" => cache.set("k", Bytes::from_static(b"v"), &options).await,
            "refresh" => cache.refresh("k").await,
            _ => cache.remove("k").await,
        };
        let elapsed = start.elapsed();
        let err = result.expect_err(op);
        assert!(
            matches!(err.kind(), ErrorKind::Unavailable | ErrorKind::Timeout),
            "{op}: {err}"
        );
        assert!(
            elapsed < OPERATION_TIMEOUT + Duration::from_secs(1),
            "{op} took {elapsed:?}"
        );
    }
}

async fn works(cache: &RedisCache) -> bool {
    cache
        .set("probe", Bytes::from_static(b"v"), &EntryOptions::new())
        .await
        .is_ok()
        && cache.get("probe").await.ok().flatten().is_some()
}

/// Waits until `cache` works, for at most `RECOVERY_BOUND`.
///
/// # Panics
///
/// When the bound passes first; the message names `what`.
async fn until_it_works(cache: &RedisCache, what: &str) {
    common::poll(what, RECOVERY_BOUND, || async {
        works(cache).await.then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_killed_server_fails_every_call_within_the_timeout() {
    let mut server = RedisServer::new();
    let cache = cache_for(server.url());
    assert!(works(&cache).await);
    server.stop();
    // Several rounds: the first finds the dead connection, later ones find
    // the cache reconnecting or known to be down.
    for _ in 0..3 {
        every_call_fails_in_time(&cache).await;
    }
}

#[tokio::test]
async fn the_same_cache_works_again_after_a_restart_on_the_same_port() {
    let mut server = RedisServer::new();
    let cache = cache_for(server.url());
    assert!(works(&cache).await);
    server.stop();
    every_call_fails_in_time(&cache).await;
    server.start();
    until_it_works(&cache, "the cache works after the restart").await;
}

#[tokio::test]
async fn an_idle_cache_reconnects_by_itself() {
    let mut server = RedisServer::new();
    let cache = cache_for(server.url());
    assert!(works(&cache).await);
    server.stop();
    // No call in between: the connection's own loss report drives the reconnect.
    common::poll(
        "the loss is noticed without a call",
        RECOVERY_BOUND,
        || async { (!cache.is_connected()).then_some(()) },
    )
    .await;
    server.start();
    common::poll("reconnected without a call", RECOVERY_BOUND, || async {
        cache.is_connected().then_some(())
    })
    .await;
    assert!(
        works(&cache).await,
        "the first call after the reconnect failed"
    );
}

#[tokio::test]
async fn a_server_not_yet_started_fails_fast_then_serves() {
    let mut server = RedisServer::new();
    server.stop();
    let cache = cache_for(server.url());
    let start = Instant::now();
    let err = cache.get("k").await.expect_err("nothing listens");
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    assert!(
        start.elapsed() < OPERATION_TIMEOUT,
        "a refused connection took {:?}",
        start.elapsed()
    );
    assert!(
        err.message()
            .contains(&format!("127.0.0.1:{}", server.port())),
        "{err}"
    );
    every_call_fails_in_time(&cache).await;
    server.start();
    until_it_works(&cache, "the cache works once Redis starts").await;
}

#[tokio::test]
async fn a_wrong_or_missing_password_is_an_authentication_error() {
    let server = RedisServer::with_args(["--requirepass", "secret"]);
    let port = server.port();
    for (url, hint) in [
        (format!("redis://:wrong@127.0.0.1:{port}/"), "password"),
        (format!("redis://127.0.0.1:{port}/"), "requires a password"),
    ] {
        let cache = cache_for(url);
        let start = Instant::now();
        let err = cache.get("k").await.expect_err("bad credentials");
        assert_eq!(err.kind(), ErrorKind::Authentication, "{err}");
        assert!(err.message().contains(hint), "{err}");
        assert!(
            !err.to_string().contains("wrong"),
            "the password leaked: {err}"
        );
        assert!(
            start.elapsed() < OPERATION_TIMEOUT,
            "took {:?}",
            start.elapsed()
        );
    }
    assert!(
        works(&cache_for(server.url())).await,
        "the right password failed"
    );
}

#[tokio::test]
async fn a_user_and_password_from_the_url_authenticate_with_acl() {
    let server = RedisServer::with_args([
        "--user", "default", "off", "--user", "app", "on", ">s3cret", "~*", "&*", "+@all",
    ]);
    let cache = cache_for(format!("redis://app:s3cret@127.0.0.1:{}/", server.port()));
    assert!(works(&cache).await);
}

#[tokio::test]
async fn a_stalled_server_is_a_timeout_not_a_hang() {
    let server = RedisServer::with_args(["--enable-debug-command", "yes"]);
    let cache = cache_for(server.url());
    assert!(works(&cache).await);
    let mut raw = redis::Client::open(server.url())
        .unwrap()
        .get_multiplexed_async_connection_with_config(
            &redis::AsyncConnectionConfig::new().set_response_timeout(None),
        )
        .await
        .unwrap();
    // DEBUG SLEEP blocks the whole server, as a stalled Redis does.
    let stall = tokio::spawn(async move {
        let () = redis::cmd("DEBUG")
            .arg("SLEEP")
            .arg(2)
            .query_async(&mut raw)
            .await
            .expect("DEBUG SLEEP");
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let start = Instant::now();
    let err = cache.get("k").await.expect_err("the server is asleep");
    assert_eq!(err.kind(), ErrorKind::Timeout, "{err}");
    assert!(start.elapsed() < OPERATION_TIMEOUT + Duration::from_secs(1));
    stall.await.unwrap();
    assert!(
        works(&cache).await,
        "the cache did not recover from a stall"
    );
}

#[tokio::test]
async fn bad_options_fail_at_construction() {
    let err = RedisCache::new(RedisCacheOptions::new("memcached://localhost")).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidOptions, "{err}");
}

#[test]
fn construction_outside_a_runtime_says_so() {
    let err = RedisCache::new(RedisCacheOptions::default()).unwrap_err();
    assert!(err.message().contains("Tokio runtime"), "{err}");
}

#[tokio::test]
async fn a_tls_url_against_a_plain_server_fails_without_hanging() {
    let server = RedisServer::new();
    let cache = cache_for(format!("rediss://127.0.0.1:{}/", server.port()));
    let start = Instant::now();
    let err = cache.get("k").await.expect_err("no TLS there");
    assert!(
        matches!(err.kind(), ErrorKind::Unavailable | ErrorKind::Timeout),
        "{err}"
    );
    assert!(start.elapsed() < OPERATION_TIMEOUT + Duration::from_secs(1));
}

/// A Redis out of memory under `noeviction` refuses writes. A refused
/// overwrite must not leave the old value to be served: the cache removes it
/// (UNLINK, which Redis runs even when out of memory).
#[tokio::test]
async fn an_overwrite_refused_for_lack_of_memory_leaves_the_key_missing() {
    let server = RedisServer::with_args(["--maxmemory", "2mb", "--maxmemory-policy", "noeviction"]);
    let cache = cache_for(server.url());
    let options = EntryOptions::new();
    cache
        .set("kept", Bytes::from_static(b"old"), &options)
        .await
        .expect("an empty server takes a small write");
    let filler = Bytes::from(vec![b'x'; 64 * 1024]);
    let mut refused = None;
    for i in 0..1_000 {
        if let Err(error) = cache
            .set(&format!("filler-{i}"), filler.clone(), &options)
            .await
        {
            refused = Some(error);
            break;
        }
    }
    let refused = refused.expect("a 2 MB server refuses writes once full");
    assert_eq!(refused.kind(), ErrorKind::Backend, "{refused}");
    let error = cache
        .set("kept", filler, &options)
        .await
        .expect_err("a full server refuses the overwrite too");
    assert!(
        error.message().contains("out of memory"),
        "the message says why: {error}"
    );
    // Reads still work while Redis is out of memory.
    assert_eq!(
        cache.get("kept").await.unwrap(),
        None,
        "the old value survived an overwrite Redis refused"
    );
}
