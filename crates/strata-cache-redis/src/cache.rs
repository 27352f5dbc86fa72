//! [`RedisCache`]: `strata_cache::DistributedCache` on Redis, in the .NET provider's
//! storage layout (see [`crate::layout`]).
//!
//! Every operation waits for one round trip: `get` and `get_versioned` are
//! one `HMGET` (with the renewal script in the same pipeline for a key that
//! slid when last read), `get_many` one pipeline of `HMGET`s (on a cluster,
//! where a pipeline's keys must share a slot, one `HMGET` per key, all sent
//! at once); reads and the renewal of sliding entries are `read`'s business.
//! `refresh` runs a
//! server-side script by its SHA (`EVALSHA`); `set` and `remove` are one
//! `MULTI`/`EXEC` transaction each; `set_if_version` and `next_stamp` one
//! script each. The connection itself is [`crate::link`]'s business.

mod read;
mod write;

use std::sync::Arc;
use std::time::SystemTime;

use crate::link::Conn;
use async_trait::async_trait;
use bytes::Bytes;
use redis::{Cmd, FromRedisValue, RedisResult, Script, ServerErrorKind};
use strata_cache::{
    DistributedCache, EntryOptions, Error, ErrorKind, Result, Version, Versioned, validate_key,
};

use crate::layout::{
    NEXT_STAMP_SCRIPT, REFRESH_SCRIPT, SET_IF_VERSION_SCRIPT, WRITE_SCRIPT, ticks_of,
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
    /// Which keys were sliding when last read (see `read`).
    sliding: read::SlidingHints,
    refresh_script: Script,
    set_if_version_script: Script,
    /// `set` and `remove` on a cluster.
    write_script: Script,
    next_stamp_script: Script,
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
    /// Creates the cache and starts connecting in the background. Takes the
    /// options by value or by reference, as [`RedisBackplane::new`](crate::RedisBackplane::new)
    /// does: one options value usually builds both.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidOptions`] for a URL that does not parse or a zero
    /// timeout; [`ErrorKind::Backend`] when called outside a Tokio runtime.
    /// Never because Redis is down.
    pub fn new(options: impl AsRef<RedisCacheOptions>) -> Result<Self> {
        let options = options.as_ref().clone();
        let (info, target) = options.endpoint()?;
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
                sliding: read::SlidingHints::new(),
                refresh_script: Script::new(REFRESH_SCRIPT),
                set_if_version_script: Script::new(SET_IF_VERSION_SCRIPT),
                write_script: Script::new(WRITE_SCRIPT),
                next_stamp_script: Script::new(NEXT_STAMP_SCRIPT),
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
            .run("ping", |mut conn| async move {
                redis::cmd("PING").query_async::<()>(&mut conn).await
            })
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

/// Runs `cmd` (an `EVALSHA` of `script`), loading the script first when the
/// server does not know it (a fresh or restarted Redis), then runs it again.
async fn eval_sha<T: FromRedisValue>(
    conn: &mut Conn,
    script: &Script,
    cmd: &Cmd,
) -> RedisResult<T> {
    match cmd.query_async(conn).await {
        Err(e) if e.kind() == redis::ErrorKind::Server(ServerErrorKind::NoScript) => {
            script.load_async(conn).await?;
            cmd.query_async(conn).await
        }
        result => result,
    }
}

#[async_trait]
impl DistributedCache for RedisCache {
    async fn get(&self, key: &str) -> Result<Option<Bytes>> {
        let key = self.redis_key(key)?;
        Ok(self.read(key, false).await?.value)
    }

    async fn set(&self, key: &str, value: Bytes, options: &EntryOptions) -> Result<()> {
        let key = self.redis_key(key)?;
        self.write(key, value, options).await
    }

    async fn refresh(&self, key: &str) -> Result<()> {
        let key = self.redis_key(key)?;
        let cmd = read::refresh_cmd(
            &self.inner.refresh_script,
            &key,
            ticks_of(SystemTime::now()),
        );
        let script = &self.inner.refresh_script;
        self.inner
            .link
            .run("refresh", |mut conn| async move {
                eval_sha::<()>(&mut conn, script, &cmd).await
            })
            .await
    }

    /// Leaves a tombstone: the key holds only a new version for
    /// [`TOMBSTONE_TTL`](strata_cache::TOMBSTONE_TTL), and reads as missing
    /// (to .NET readers too).
    async fn remove(&self, key: &str) -> Result<()> {
        let key = self.redis_key(key)?;
        self.write_tombstone(key).await
    }

    async fn get_many(&self, keys: &[&str]) -> Result<Vec<Option<Bytes>>> {
        let keys = keys
            .iter()
            .map(|key| self.redis_key(key))
            .collect::<Result<Vec<_>>>()?;
        self.read_many(keys).await
    }

    async fn get_versioned(&self, key: &str) -> Result<Versioned> {
        let key = self.redis_key(key)?;
        self.read(key, true).await
    }

    async fn set_if_version(
        &self,
        key: &str,
        value: Bytes,
        options: &EntryOptions,
        expected: &Version,
    ) -> Result<bool> {
        let key = self.redis_key(key)?;
        self.write_if_version(key, value, options, expected).await
    }

    async fn next_stamp(&self, key: &str, options: &EntryOptions) -> Result<u64> {
        let key = self.redis_key(key)?;
        let ttl = write::expiration_fields(options)?.ttl;
        let script = &self.inner.next_stamp_script;
        let mut cmd = Cmd::new();
        cmd.arg("EVALSHA")
            .arg(script.get_hash())
            .arg(1)
            .arg(&key)
            .arg(ttl.map_or(String::new(), |t| t.to_string()));
        let stamp: String = self
            .inner
            .link
            .run("next_stamp", |mut conn| async move {
                eval_sha(&mut conn, script, &cmd).await
            })
            .await?;
        stamp.parse().map_err(|_| {
            Error::new(
                ErrorKind::Backend,
                format!("Redis returned {stamp:?} for the stamp of {key:?}: not a number"),
            )
        })
    }
}
