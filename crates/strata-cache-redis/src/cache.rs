//! [`RedisCache`]: `strata_cache::DistributedCache` on Redis, in the .NET provider's
//! storage layout (see [`crate::layout`]).
//!
//! Every operation waits for one round trip: `get` and `get_versioned` are
//! one `HMGET`, `get_many` one pipeline of them (reads, and the renewal of
//! sliding entries that follows them, are `read`'s business); `refresh` runs
//! a server-side script by its SHA (`EVALSHA`); `set` and `remove` are one
//! `MULTI`/`EXEC` transaction each; `set_if_version` and `next_stamp` one
//! script each. The connection itself is [`crate::link`]'s business.

mod read;

use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::SystemTime;

use async_trait::async_trait;
use bytes::Bytes;
use redis::aio::MultiplexedConnection;
use redis::{Cmd, FromRedisValue, Pipeline, RedisError, RedisResult, Script, ServerErrorKind};
use strata_cache::{
    DistributedCache, EntryOptions, Error, ErrorKind, Result, TOMBSTONE_TTL, Version, Versioned,
    validate_key,
};

use crate::layout::{
    ABSOLUTE_FIELD, DATA_FIELD, MAX_VALUE_LEN, NEXT_STAMP_SCRIPT, NOT_SET, REFRESH_SCRIPT,
    SET_IF_VERSION_SCRIPT, SLIDING_FIELD, VERSION_FIELD, ticks_of, timespan_ticks, ttl_millis,
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
                sliding: read::SlidingHints::new(),
                refresh_script: Script::new(REFRESH_SCRIPT),
                set_if_version_script: Script::new(SET_IF_VERSION_SCRIPT),
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

/// A new version token: random, so that no two writes of a key (from any
/// process) share one, never 0.
fn new_version() -> u64 {
    static SEED: OnceLock<foldhash::fast::RandomState> = OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let seed = SEED.get_or_init(foldhash::fast::RandomState::default);
    seed.hash_one(COUNTER.fetch_add(1, Ordering::Relaxed))
        .max(1)
}

/// Runs `cmd` (an `EVALSHA` of `script`), loading the script first when the
/// server does not know it (a fresh or restarted Redis), then runs it again.
async fn eval_sha<T: FromRedisValue>(
    conn: &mut MultiplexedConnection,
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

/// The `absexp`, `sldexp` and TTL of an entry written now with `options`.
fn expiration_fields(options: &EntryOptions) -> Result<(i64, i64, Option<u64>)> {
    let now = SystemTime::now();
    let expiration = options.resolve(now)?;
    let absolute = expiration.absolute().map_or(NOT_SET, ticks_of);
    let sliding = expiration.sliding().map_or(NOT_SET, timespan_ticks);
    let ttl = expiration.time_to_live(now).map(ttl_millis);
    Ok((absolute, sliding, ttl))
}

/// The `absexp`, `sldexp` and value of an entry a script writes.
struct EntryFields<'a> {
    absolute: i64,
    sliding: i64,
    value: &'a Bytes,
}

/// The `EVALSHA` of [`SET_IF_VERSION_SCRIPT`]: writes `fields` (a tombstone
/// when `None`) with `ttl` milliseconds to live, if `key`'s version is
/// `expected` (`""`: the key must not exist).
fn set_if_version_cmd(
    script: &Script,
    key: &str,
    expected: &str,
    fields: Option<EntryFields<'_>>,
    ttl: Option<u64>,
) -> Cmd {
    let mut cmd = Cmd::new();
    cmd.arg("EVALSHA")
        .arg(script.get_hash())
        .arg(1)
        .arg(key)
        .arg(expected)
        .arg(new_version());
    match fields {
        Some(fields) => cmd
            .arg(fields.absolute)
            .arg(fields.sliding)
            .arg(fields.value.as_ref()),
        None => cmd.arg("").arg("").arg(""),
    };
    cmd.arg(ttl.map_or(String::new(), |t| t.to_string()));
    cmd
}

/// The transaction of a removal: the key holds only a new version, for
/// [`TOMBSTONE_TTL`].
fn tombstone(key: &str) -> Pipeline {
    let mut pipe = redis::pipe();
    pipe.atomic();
    pipe.cmd("UNLINK").arg(key).ignore();
    pipe.cmd("HSET")
        .arg(key)
        .arg(VERSION_FIELD)
        .arg(new_version())
        .ignore();
    pipe.cmd("PEXPIRE")
        .arg(key)
        .arg(ttl_millis(TOMBSTONE_TTL))
        .ignore();
    pipe
}

/// True when Redis answered `error` itself (it refused the command), as
/// opposed to a connection that failed or timed out.
fn refused_by_server(error: &RedisError) -> bool {
    matches!(
        error.kind(),
        redis::ErrorKind::Server(_) | redis::ErrorKind::Extension
    )
}

fn warn_not_removed(key: &str, removal: &Error) {
    tracing::warn!(
        key,
        error = %removal,
        "a write failed, and the entry it would have replaced could not be removed: \
         it may be served until it expires"
    );
}

impl RedisCache {
    /// A write of `key` failed with `error` before reaching Redis (its value
    /// too large, its options invalid): what the key held must not be served
    /// in place of the value the caller meant to store, so it is removed as
    /// [`remove`](DistributedCache::remove) does. Returns `error`.
    async fn remove_after_failed_write(&self, key: &str, error: Error) -> Result<()> {
        let pipe = tombstone(key);
        if let Err(removal) = self
            .inner
            .link
            .run(|mut conn| async move { pipe.query_async::<()>(&mut conn).await })
            .await
        {
            warn_not_removed(key, &removal);
        }
        Err(error)
    }

    fn check_size(key: &str, value: &Bytes) -> Result<()> {
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
        Ok(())
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
        let checked = Self::check_size(&key, &value).and_then(|()| expiration_fields(options));
        let (absolute, sliding, ttl) = match checked {
            Ok(fields) => fields,
            Err(error) => return self.remove_after_failed_write(&key, error).await,
        };
        // One transaction: the old entry goes (with its TTL and any foreign
        // type or extra fields), the new one comes with its own TTL or none,
        // and a new version.
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
            .arg(VERSION_FIELD)
            .arg(new_version())
            .ignore();
        if let Some(ttl) = ttl {
            pipe.cmd("PEXPIRE").arg(&key).arg(ttl).ignore();
        }
        self.inner
            .link
            .run(|mut conn| async move {
                let result = pipe.query_async::<()>(&mut conn).await;
                if let Err(error) = &result
                    && refused_by_server(error)
                {
                    // Redis refused the transaction (out of memory under
                    // `noeviction`, say), so the old entry is still there.
                    // UNLINK removes it: Redis runs it even when out of
                    // memory. Its own failure changes nothing to report.
                    let _: RedisResult<()> =
                        redis::cmd("UNLINK").arg(&key).query_async(&mut conn).await;
                }
                result
            })
            .await
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
            .run(|mut conn| async move { eval_sha::<()>(&mut conn, script, &cmd).await })
            .await
    }

    /// Leaves a tombstone: the key holds only a new version for
    /// [`TOMBSTONE_TTL`], and reads as missing (to .NET readers too).
    async fn remove(&self, key: &str) -> Result<()> {
        let key = self.redis_key(key)?;
        let pipe = tombstone(&key);
        self.inner
            .link
            .run(|mut conn| async move { pipe.query_async::<()>(&mut conn).await })
            .await
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
        let expected = match (expected.as_token(), expected.as_absent()) {
            _ if expected.is_expired() => None,
            (Some(token), _) => Some(token.to_string()),
            (None, Some(_)) => Some(String::new()),
            (None, None) => None,
        };
        let checked = Self::check_size(&key, &value).and_then(|()| expiration_fields(options));
        let (absolute, sliding, ttl) = match (checked, expected.as_ref()) {
            (Ok(fields), Some(_)) => fields,
            (Ok(_), None) => return Ok(false),
            (Err(error), None) => return Err(error),
            (Err(error), Some(expected)) => {
                // The write fails; the value it would have replaced goes.
                let cmd = set_if_version_cmd(
                    &self.inner.set_if_version_script,
                    &key,
                    expected,
                    None,
                    Some(ttl_millis(TOMBSTONE_TTL)),
                );
                let script = &self.inner.set_if_version_script;
                if let Err(removal) = self
                    .inner
                    .link
                    .run(|mut conn| async move { eval_sha::<bool>(&mut conn, script, &cmd).await })
                    .await
                {
                    warn_not_removed(&key, &removal);
                }
                return Err(error);
            }
        };
        let script = &self.inner.set_if_version_script;
        let fields = EntryFields {
            absolute,
            sliding,
            value: &value,
        };
        let cmd = set_if_version_cmd(
            script,
            &key,
            expected.as_deref().unwrap_or(""),
            Some(fields),
            ttl,
        );
        self.inner
            .link
            .run(|mut conn| async move { eval_sha::<bool>(&mut conn, script, &cmd).await })
            .await
    }

    async fn next_stamp(&self, key: &str, options: &EntryOptions) -> Result<u64> {
        let key = self.redis_key(key)?;
        let (_, _, ttl) = expiration_fields(options)?;
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
            .run(|mut conn| async move { eval_sha(&mut conn, script, &cmd).await })
            .await?;
        stamp.parse().map_err(|_| {
            Error::new(
                ErrorKind::Backend,
                format!("Redis returned {stamp:?} for the stamp of {key:?}: not a number"),
            )
        })
    }
}
