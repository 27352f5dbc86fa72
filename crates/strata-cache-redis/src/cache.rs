//! [`RedisCache`]: `strata_cache::DistributedCache` on Redis, in the .NET provider's
//! storage layout (see [`crate::layout`]).
//!
//! Every operation is one round trip: `refresh` runs a server-side script by
//! its SHA (`EVALSHA`), `get` is one `MULTI`/`EXEC` transaction of `HMGET` and
//! that script (the value never passes through Lua), `set` is one
//! `MULTI`/`EXEC` transaction and `remove` one `DEL`. The connection itself is [`crate::link`]'s business.

use std::sync::Arc;
use std::time::SystemTime;

use async_trait::async_trait;
use bytes::Bytes;
use redis::aio::MultiplexedConnection;
use redis::{Cmd, FromRedisValue, RedisResult, Script, ServerErrorKind};
use strata_cache::{DistributedCache, EntryOptions, Error, ErrorKind, Result, validate_key};

use crate::layout::{
    ABSOLUTE_FIELD, DATA_FIELD, MAX_VALUE_LEN, NOT_SET, REFRESH_SCRIPT, SLIDING_FIELD, ticks_of,
    timespan_ticks, ttl_millis,
};
use crate::link::Link;
use crate::options::RedisCacheOptions;

/// A distributed cache on Redis, readable and writable by .NET services that
/// use `Microsoft.Extensions.Caching.StackExchangeRedis` with the same
/// instance name.
///
/// Cheap to clone: clones share one multiplexed connection. Creating one never
/// waits for Redis and never fails because Redis is down: a background task
/// connects and reconnects (backoff up to 1 s), and every call returns within
/// the operation timeout, with [`ErrorKind::Unavailable`] at once while Redis
/// is known to be down, or [`ErrorKind::Timeout`]. Requires Redis 6 or later
/// (RESP3).
///
/// # Example
///
/// ```no_run
/// # async fn demo() -> strata_cache::Result<()> {
/// use std::time::Duration;
/// use strata_cache::{DistributedCache, EntryOptions};
/// use strata_cache_redis::{RedisCache, RedisCacheOptions};
///
/// let cache = RedisCache::new(
///     RedisCacheOptions::new("redis://127.0.0.1:6379/0").with_instance_name("catalog:"),
/// )?;
/// let options = EntryOptions::new().with_sliding_expiration(Duration::from_secs(120));
/// cache.set("product:42", "{...}".into(), &options).await?; // HASH at "catalog:product:42"
/// assert!(cache.get("product:42").await?.is_some());
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct RedisCache {
    inner: Arc<Inner>,
}

struct Inner {
    link: Link,
    options: RedisCacheOptions,
    refresh_script: Script,
}

impl std::fmt::Debug for RedisCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisCache")
            .field("target", &self.inner.link.target())
            .field("instance_name", &self.inner.options.instance_name())
            .field("connected", &self.is_connected())
            .finish()
    }
}

impl RedisCache {
    /// Creates the cache and starts connecting in the background.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidOptions`] for a URL that does not parse or a zero
    /// timeout; [`ErrorKind::Backend`] when called outside a Tokio runtime.
    /// Never because Redis is down.
    pub fn new(options: RedisCacheOptions) -> Result<Self> {
        let (info, target) = options.connection_info()?;
        let link = Link::start(
            info,
            target,
            options.connect_timeout(),
            options.operation_timeout(),
            None,
            None,
        )?;
        Ok(Self {
            inner: Arc::new(Inner {
                link,
                options,
                refresh_script: Script::new(REFRESH_SCRIPT),
            }),
        })
    }

    /// The options the cache was built with.
    pub fn options(&self) -> &RedisCacheOptions {
        &self.inner.options
    }

    /// True while the connection is up. A snapshot, for health pages: a call
    /// made right after may still fail.
    pub fn is_connected(&self) -> bool {
        self.inner.link.is_connected()
    }

    /// Sends `PING`: a readiness probe that takes one round trip.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Unavailable`], [`ErrorKind::Timeout`] or
    /// [`ErrorKind::Authentication`] when Redis cannot serve the cache.
    pub async fn ping(&self) -> Result<()> {
        self.inner
            .link
            .run(|mut conn| async move { redis::cmd("PING").query_async::<()>(&mut conn).await })
            .await
    }

    /// The Redis key of a cache key: the instance name, then the key.
    fn redis_key(&self, key: &str) -> Result<String> {
        validate_key(key)?;
        let prefix = self.inner.options.instance_name();
        let mut full = String::with_capacity(prefix.len() + key.len());
        full.push_str(prefix);
        full.push_str(key);
        Ok(full)
    }
}

/// Runs `script` by its SHA, loading it first when the server does not know
/// it (a fresh or restarted Redis), then runs it again.
async fn eval_sha<T: FromRedisValue>(
    conn: &mut MultiplexedConnection,
    script: &Script,
    key: &str,
    now_ticks: i64,
) -> RedisResult<T> {
    let mut cmd = Cmd::new();
    cmd.arg("EVALSHA")
        .arg(script.get_hash())
        .arg(1)
        .arg(key)
        .arg(now_ticks);
    match cmd.query_async(conn).await {
        Err(e) if e.kind() == redis::ErrorKind::Server(ServerErrorKind::NoScript) => {
            script.load_async(conn).await?;
            cmd.query_async(conn).await
        }
        result => result,
    }
}

/// Reads an entry and renews its sliding expiration in one atomic round trip:
/// `MULTI`, `HMGET absexp sldexp data`, the refresh script, `EXEC`; the expiry
/// check below mirrors the script's, so an entry past its absolute expiration
/// reads as missing.
///
/// Why not one script that also returns the value: a value returned through Lua is copied into a
/// Lua string and back, which for a 300 KB value costs Redis about 0.9 ms per
/// call against 11 us for an `HGET` (measured with `INFO commandstats`, Redis
/// 7.0). Here the value never enters Lua, and arrives as redis-rs parsed it:
/// one allocation, moved into the `Bytes` without a copy.
async fn read_and_slide(
    conn: &mut MultiplexedConnection,
    script: &Script,
    key: &str,
    now_ticks: i64,
) -> RedisResult<Option<Bytes>> {
    let mut pipe = redis::pipe();
    pipe.atomic();
    pipe.cmd("HMGET")
        .arg(key)
        .arg(ABSOLUTE_FIELD)
        .arg(SLIDING_FIELD)
        .arg(DATA_FIELD);
    pipe.cmd("EVALSHA")
        .arg(script.get_hash())
        .arg(1)
        .arg(key)
        .arg(now_ticks)
        .ignore();
    type Fields = (Option<String>, Option<String>, Option<Bytes>);
    let ((absolute, sliding, data),): (Fields,) = match pipe.query_async(conn).await {
        // A fresh or restarted Redis does not know the script: the read part
        // ran, the renewal did not. Load it and run both again.
        Err(e) if e.kind() == redis::ErrorKind::Server(ServerErrorKind::NoScript) => {
            script.load_async(conn).await?;
            pipe.query_async(conn).await?
        }
        result => result?,
    };
    // Lua's `tonumber`: a field that is missing or not a number is not set.
    let number = |field: Option<String>| field.and_then(|f| f.trim().parse::<i64>().ok());
    if let Some(sliding) = number(sliding).filter(|&s| s > 0) {
        let left = match number(absolute).filter(|&a| a > 0) {
            Some(absolute) => sliding.min(absolute.saturating_sub(now_ticks)),
            None => sliding,
        };
        // Past its absolute expiry on our clock: the script did not renew it.
        if left <= 0 {
            return Ok(None);
        }
    }
    Ok(data)
}

#[async_trait]
impl DistributedCache for RedisCache {
    async fn get(&self, key: &str) -> Result<Option<Bytes>> {
        let key = self.redis_key(key)?;
        let now = ticks_of(SystemTime::now());
        let script = &self.inner.refresh_script;
        self.inner
            .link
            .run(|mut conn| async move { read_and_slide(&mut conn, script, &key, now).await })
            .await
    }

    async fn set(&self, key: &str, value: Bytes, options: &EntryOptions) -> Result<()> {
        let key = self.redis_key(key)?;
        if value.len() > MAX_VALUE_LEN {
            return Err(Error::new(
                ErrorKind::PayloadTooLarge,
                format!(
                    "the value for {key:?} is {} bytes, over Redis' limit of 512 MiB: \
                     store it in smaller parts or outside the cache",
                    value.len()
                ),
            ));
        }
        let now = SystemTime::now();
        let expiration = options.resolve(now)?;
        let absolute = expiration.absolute().map_or(NOT_SET, ticks_of);
        let sliding = expiration.sliding().map_or(NOT_SET, timespan_ticks);
        let ttl = expiration.time_to_live(now).map(ttl_millis);
        // One transaction: the old entry goes (with its TTL and any foreign
        // type or extra fields), the new one comes with its own TTL or none.
        let mut pipe = redis::pipe();
        pipe.atomic();
        pipe.cmd("UNLINK").arg(&key).ignore();
        pipe.cmd("HSET")
            .arg(&key)
            .arg(ABSOLUTE_FIELD)
            .arg(absolute)
            .arg(SLIDING_FIELD)
            .arg(sliding)
            .arg(DATA_FIELD)
            .arg(value.as_ref())
            .ignore();
        if let Some(ttl) = ttl {
            pipe.cmd("PEXPIRE").arg(&key).arg(ttl).ignore();
        }
        self.inner
            .link
            .run(|mut conn| async move { pipe.query_async::<()>(&mut conn).await })
            .await
    }

    async fn refresh(&self, key: &str) -> Result<()> {
        let key = self.redis_key(key)?;
        let now = ticks_of(SystemTime::now());
        let script = &self.inner.refresh_script;
        self.inner
            .link
            .run(|mut conn| async move { eval_sha::<()>(&mut conn, script, &key, now).await })
            .await
    }

    async fn remove(&self, key: &str) -> Result<()> {
        let key = self.redis_key(key)?;
        self.inner
            .link
            .run(|mut conn| async move {
                redis::cmd("DEL")
                    .arg(&key)
                    .query_async::<()>(&mut conn)
                    .await
            })
            .await
    }
}
