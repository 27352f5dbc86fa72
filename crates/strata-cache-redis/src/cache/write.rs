//! The write path of [`RedisCache`]: `set`, `remove` (a tombstone) and
//! `set_if_version`, and what a failed write leaves behind: never the value
//! it was meant to replace.
//!
//! `set` and `remove` are one `MULTI`/`EXEC` transaction each, which first
//! unlinks the key (with its TTL and any foreign type or extra fields); on a
//! cluster, one script each that does the same
//! ([`WRITE_SCRIPT`](crate::layout::WRITE_SCRIPT)), since the client follows
//! slot redirections of single commands but not of transactions.
//! `set_if_version` is one script. A write refused before it reaches Redis
//! (a value too large, invalid options) removes the key before returning the
//! error, and so does a `set` Redis refuses (out of memory under
//! `noeviction`), so that a caller that ignores cache errors never serves the
//! old value in place of the one it meant to store.

use std::hash::BuildHasher;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use bytes::Bytes;
use redis::{Cmd, Pipeline, RedisError, RedisResult, Script};
use strata_cache::{EntryOptions, Error, ErrorKind, Result, TOMBSTONE_TTL, Version};

use super::{RedisCache, eval_sha};
use crate::layout::{
    ABSOLUTE_FIELD, DATA_FIELD, MAX_VALUE_LEN, NOT_SET, SLIDING_FIELD, VERSION_FIELD, ticks_of,
    timespan_ticks, ttl_millis,
};

impl RedisCache {
    /// `set` of `key` (a full Redis key).
    pub(super) async fn write(
        &self,
        key: String,
        value: Bytes,
        options: &EntryOptions,
    ) -> Result<()> {
        let checked = check_size(&key, &value).and_then(|()| expiration_fields(options));
        let ExpirationFields {
            absolute,
            sliding,
            ttl,
        } = match checked {
            Ok(fields) => fields,
            Err(error) => return self.remove_after_failed_write(&key, error).await,
        };
        // One transaction (a script on a cluster): the old entry goes, the
        // new one comes with a new version.
        let version = new_version();
        let fields = EntryFields {
            absolute,
            sliding,
            value: &value,
        };
        let script = &self.inner.write_script;
        self.inner
            .link
            .run("set", |mut conn| async move {
                let result = if conn.is_cluster() {
                    let cmd = entry_cmd(script, &key, None, version, Some(fields), ttl);
                    eval_sha::<()>(&mut conn, script, &cmd).await
                } else {
                    entry(&key, version, &fields, ttl)
                        .query_async::<()>(&mut conn)
                        .await
                };
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

    /// `remove` of `key` (a full Redis key): a tombstone.
    pub(super) async fn write_tombstone(&self, key: String) -> Result<()> {
        self.tombstone(&key).await
    }

    /// Replaces whatever `key` held by a tombstone.
    async fn tombstone(&self, key: &str) -> Result<()> {
        let version = new_version();
        let script = &self.inner.write_script;
        self.inner
            .link
            .run("remove", |mut conn| async move {
                if conn.is_cluster() {
                    let ttl = Some(ttl_millis(TOMBSTONE_TTL));
                    let cmd = entry_cmd(script, key, None, version, None, ttl);
                    eval_sha::<()>(&mut conn, script, &cmd).await
                } else {
                    tombstone(key, version).query_async::<()>(&mut conn).await
                }
            })
            .await
    }

    /// `set_if_version` of `key` (a full Redis key).
    pub(super) async fn write_if_version(
        &self,
        key: String,
        value: Bytes,
        options: &EntryOptions,
        expected: &Version,
    ) -> Result<bool> {
        let expected = match (expected.as_token(), expected.as_absent()) {
            _ if expected.is_expired() => None,
            (Some(token), _) => Some(token.to_string()),
            (None, Some(_)) => Some(String::new()),
            (None, None) => None,
        };
        let checked = check_size(&key, &value).and_then(|()| expiration_fields(options));
        let ExpirationFields {
            absolute,
            sliding,
            ttl,
        } = match (checked, expected.as_ref()) {
            (Ok(fields), Some(_)) => fields,
            (Ok(_), None) => return Ok(false),
            (Err(error), None) => return Err(error),
            (Err(error), Some(expected)) => {
                // The write fails; the value it would have replaced goes.
                let cmd = entry_cmd(
                    &self.inner.set_if_version_script,
                    &key,
                    Some(expected),
                    new_version(),
                    None,
                    Some(ttl_millis(TOMBSTONE_TTL)),
                );
                let script = &self.inner.set_if_version_script;
                if let Err(removal) = self
                    .inner
                    .link
                    .run("set_if_version", |mut conn| async move {
                        eval_sha::<bool>(&mut conn, script, &cmd).await
                    })
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
        let cmd = entry_cmd(
            script,
            &key,
            Some(expected.as_deref().unwrap_or("")),
            new_version(),
            Some(fields),
            ttl,
        );
        self.inner
            .link
            .run("set_if_version", |mut conn| async move {
                eval_sha::<bool>(&mut conn, script, &cmd).await
            })
            .await
    }

    /// A write of `key` failed with `error` before reaching Redis (its value
    /// too large, its options invalid): what the key held must not be served
    /// in place of the value the caller meant to store, so it is removed as
    /// [`remove`](strata_cache::DistributedCache::remove) does. Returns `error`.
    async fn remove_after_failed_write(&self, key: &str, error: Error) -> Result<()> {
        if let Err(removal) = self.tombstone(key).await {
            warn_not_removed(key, &removal);
        }
        Err(error)
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

/// Rejects a value Redis cannot store.
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

/// How an entry written now with some options expires, in the layout's
/// terms.
pub(super) struct ExpirationFields {
    /// `absexp`: .NET ticks, or [`NOT_SET`].
    absolute: i64,
    /// `sldexp`: .NET ticks, or [`NOT_SET`].
    sliding: i64,
    /// The key's TTL in milliseconds; `None` for no expiration.
    pub(super) ttl: Option<u64>,
}

/// The expiration fields of an entry written now with `options`.
pub(super) fn expiration_fields(options: &EntryOptions) -> Result<ExpirationFields> {
    let now = SystemTime::now();
    let expiration = options.resolve(now)?;
    Ok(ExpirationFields {
        absolute: expiration.absolute().map_or(NOT_SET, ticks_of),
        sliding: expiration.sliding().map_or(NOT_SET, timespan_ticks),
        ttl: expiration.time_to_live(now).map(ttl_millis),
    })
}

/// The `absexp`, `sldexp` and value of an entry a script writes.
struct EntryFields<'a> {
    absolute: i64,
    sliding: i64,
    value: &'a Bytes,
}

/// The `EVALSHA` of an entry-writing script: [`WRITE_SCRIPT`](crate::layout::WRITE_SCRIPT)
/// when `expected` is `None`, [`SET_IF_VERSION_SCRIPT`](crate::layout::SET_IF_VERSION_SCRIPT)
/// (`expected` the version `key` must hold, `""`: none) otherwise. `key`
/// gets `fields` (a tombstone when `None`) with `version`, for `ttl`
/// milliseconds (for ever when `None`).
fn entry_cmd(
    script: &Script,
    key: &str,
    expected: Option<&str>,
    version: u64,
    fields: Option<EntryFields<'_>>,
    ttl: Option<u64>,
) -> Cmd {
    let mut cmd = Cmd::new();
    cmd.arg("EVALSHA").arg(script.get_hash()).arg(1).arg(key);
    if let Some(expected) = expected {
        cmd.arg(expected);
    }
    cmd.arg(version);
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

/// The transaction of a `set`: the old entry goes (with its TTL and any
/// foreign type or extra fields), the new one comes with `version` and its
/// own TTL or none.
fn entry(key: &str, version: u64, fields: &EntryFields<'_>, ttl: Option<u64>) -> Pipeline {
    let mut pipe = redis::pipe();
    pipe.atomic();
    pipe.cmd("UNLINK").arg(key).ignore();
    pipe.cmd("HSET")
        .arg(key)
        .arg(ABSOLUTE_FIELD)
        .arg(fields.absolute)
        .arg(SLIDING_FIELD)
        .arg(fields.sliding)
        .arg(DATA_FIELD)
        .arg(fields.value.as_ref())
        .arg(VERSION_FIELD)
        .arg(version)
        .ignore();
    if let Some(ttl) = ttl {
        pipe.cmd("PEXPIRE").arg(key).arg(ttl).ignore();
    }
    pipe
}

/// The transaction of a removal: the key holds only `version`, for
/// [`TOMBSTONE_TTL`].
fn tombstone(key: &str, version: u64) -> Pipeline {
    let mut pipe = redis::pipe();
    pipe.atomic();
    pipe.cmd("UNLINK").arg(key).ignore();
    pipe.cmd("HSET")
        .arg(key)
        .arg(VERSION_FIELD)
        .arg(version)
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

/// Logs that a failed write could not remove the entry it meant to replace.
fn warn_not_removed(key: &str, removal: &Error) {
    tracing::warn!(
        key,
        error = %removal,
        "a write failed, and the entry it would have replaced could not be removed: \
         it may be served until it expires"
    );
}
