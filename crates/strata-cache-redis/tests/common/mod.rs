//! Helpers shared by the integration tests: where the shared Redis is, raw
//! redis-rs connections, and polling with a bound.

#![allow(dead_code, unreachable_pub)] // each test binary uses its own subset

use std::future::Future;
use std::time::{Duration, Instant};

use redis::aio::MultiplexedConnection;

/// The shared Redis of the development and CI machines; `REDIS_URL` overrides.
pub fn shared_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379/".to_owned())
}

/// A plain redis-rs connection, to look at what the cache wrote.
pub async fn raw(url: &str) -> MultiplexedConnection {
    redis::Client::open(url)
        .expect("a valid URL")
        .get_multiplexed_async_connection()
        .await
        .unwrap_or_else(|e| panic!("cannot connect to {url}: {e}"))
}

/// A key no other test run uses.
pub fn unique(name: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("strata-redis-test:{}:{nanos}:{name}", std::process::id())
}

/// Calls `attempt` every 20 ms until it returns `Some`, for at most `bound`.
///
/// # Panics
///
/// When `bound` passes first; the message names `what`.
pub async fn poll<T, F, Fut>(what: &str, bound: Duration, mut attempt: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(value) = attempt().await {
            return value;
        }
        assert!(
            start.elapsed() < bound,
            "{what}: still not the case after {bound:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
