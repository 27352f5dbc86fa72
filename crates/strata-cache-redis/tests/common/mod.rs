//! Helpers shared by the integration tests: where the shared Redis is, raw
//! redis-rs connections, and polling with a bound.

#![allow(dead_code, unreachable_pub)] // each test binary uses its own subset

use std::future::Future;
use std::time::{Duration, Instant};

use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::sentinel::Sentinel;
use redis::{Cmd, Pipeline, RedisFuture, Value};

/// The shared Redis of the development and CI machines; `REDIS_URL` overrides.
pub fn shared_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379/".to_owned())
}

/// A plain redis-rs connection to the deployment of `url` (a single server,
/// a cluster, or the master the sentinels name), to look at what the cache
/// wrote.
pub async fn raw(url: &str) -> Raw {
    let connected = if let Some(rest) = url.strip_prefix("redis+cluster://") {
        let seeds: Vec<String> = rest
            .trim_end_matches('/')
            .split(',')
            .map(|host| format!("redis://{host}"))
            .collect();
        match ClusterClient::new(seeds) {
            Ok(client) => client.get_async_connection().await.map(Raw::Cluster),
            Err(e) => Err(e),
        }
    } else if let Some(rest) = url.strip_prefix("redis+sentinel://") {
        let (hosts, service) = rest
            .split_once('/')
            .expect("redis+sentinel://hosts/service");
        let service = service.split('/').next().unwrap_or(service);
        let sentinels: Vec<String> = hosts.split(',').map(|h| format!("redis://{h}")).collect();
        match Sentinel::build(sentinels) {
            Ok(mut sentinel) => match sentinel.async_master_for(service, None).await {
                Ok(client) => client
                    .get_multiplexed_async_connection()
                    .await
                    .map(Raw::Single),
                Err(e) => Err(e),
            },
            Err(e) => Err(e),
        }
    } else {
        match redis::Client::open(url) {
            Ok(client) => client
                .get_multiplexed_async_connection()
                .await
                .map(Raw::Single),
            Err(e) => Err(e),
        }
    };
    connected.unwrap_or_else(|e| panic!("cannot connect to {url}: {e}"))
}

/// A raw connection to any topology: commands on keys go where the keys
/// live.
#[derive(Clone)]
pub enum Raw {
    Single(MultiplexedConnection),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Raw {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Single(conn) => conn.req_packed_command(cmd),
            Self::Cluster(conn) => conn.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Self::Single(conn) => conn.req_packed_commands(pipeline, offset, count),
            Self::Cluster(conn) => conn.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Single(conn) => conn.get_db(),
            Self::Cluster(conn) => conn.get_db(),
        }
    }
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

/// Two backplanes of one service on the deployment of `options`, both
/// subscribed: a notice sent before the other side subscribed would be lost.
pub async fn subscribed_backplanes(
    options: &strata_cache_redis::RedisCacheOptions,
) -> [strata_cache_redis::RedisBackplane; 2] {
    use strata_cache_redis::RedisBackplane;
    let backplanes = [
        RedisBackplane::new(options).expect("valid options"),
        RedisBackplane::new(options).expect("valid options"),
    ];
    poll(
        "both backplanes subscribe",
        Duration::from_secs(10),
        || async {
            backplanes
                .iter()
                .all(RedisBackplane::is_connected)
                .then_some(())
        },
    )
    .await;
    backplanes
}

/// Runs `f` on the blocking pool (a deployment guard's start or failover);
/// its panic, with every node's log, becomes the test's.
pub async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    match tokio::task::spawn_blocking(f).await {
        Ok(value) => value,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(e) => panic!("a blocking deployment call was cancelled: {e}"),
    }
}

/// Runs a blocking operation on a deployment (a failover, a migration) on
/// the blocking pool, and hands the deployment back.
pub async fn with<D, T>(
    mut deployment: D,
    operation: impl FnOnce(&mut D) -> T + Send + 'static,
) -> (D, T)
where
    D: Send + 'static,
    T: Send + 'static,
{
    blocking(move || {
        let value = operation(&mut deployment);
        (deployment, value)
    })
    .await
}
