//! The read path of [`RedisCache`]: one `HMGET` per key, and the renewal of
//! sliding entries after it.
//!
//! A read asks for the entry's fields with `HMGET`, as the .NET provider does:
//! an entry without sliding expiration costs exactly that one command. An
//! entry whose `sldexp` says it slides is renewed by the refresh script: sent
//! after the read from a spawned task the caller does not wait for, the first
//! time; and since the cache then remembers the key slides
//! ([`SlidingHints`]), in the same pipeline as the `HMGET` on its next reads,
//! which saves Redis and the client a command's worth of system calls. The
//! renewal needs no atomicity with the read, because the script reads the
//! fields again and computes the TTL from what the key holds when it runs: it
//! never sets a TTL past the entry's absolute expiration, never applies a
//! replaced entry's window to its replacement, never renews a tombstone (which
//! has no `sldexp`) or an entry that no longer slides, and never creates a key
//! (`PEXPIRE` of a missing key does nothing).
//!
//! A key that holds another type than a hash (written by another program) is
//! not an entry: it reads as missing, and is left alone.

use std::hash::BuildHasher;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use futures_util::future::join_all;

use crate::link::Conn;
use bytes::Bytes;
use redis::{Cmd, RedisError, RedisResult, Script, ServerErrorKind};
use strata_cache::{Result, Version, Versioned};

use super::{Inner, RedisCache, eval_sha};
use crate::layout::{ABSOLUTE_FIELD, DATA_FIELD, SLIDING_FIELD, VERSION_FIELD, ticks_of};

/// The fields `get` reads, as `HMGET` returns them: `absexp`, `sldexp`, `data`.
type Fields = (Option<String>, Option<String>, Option<Bytes>);

/// The same and `ver`, for `get_versioned`.
type VersionedFields = (
    Option<String>,
    Option<String>,
    Option<Bytes>,
    Option<String>,
);

/// What a read learned about one key.
struct Read {
    versioned: Versioned,
    /// The entry slides: renew it.
    renew: bool,
}

/// Slots of [`SlidingHints`]: 32 KiB a cache. A hint lost to a collision
/// only costs one renewal sent after its read instead of beside it.
const HINT_SLOTS: usize = 4096;

/// Remembers, per key hash, which keys were sliding entries when last read,
/// so that their next read sends the renewal in the same pipeline as the
/// `HMGET`. A stale hint costs a renewal that finds nothing to renew; a
/// missing one, a renewal sent after the read.
pub(super) struct SlidingHints {
    slots: Box<[AtomicU64]>,
    hasher: foldhash::fast::RandomState,
}

impl SlidingHints {
    pub(super) fn new() -> Self {
        Self {
            slots: (0..HINT_SLOTS).map(|_| AtomicU64::new(0)).collect(),
            hasher: foldhash::fast::RandomState::default(),
        }
    }

    /// The slot of `key` and the tag that says the key slides (never 0).
    fn slot(&self, key: &str) -> (&AtomicU64, u64) {
        let hash = self.hasher.hash_one(key);
        // The modulo keeps the index below HINT_SLOTS.
        #[allow(clippy::cast_possible_truncation)]
        let slot = &self.slots[(hash % HINT_SLOTS as u64) as usize];
        (slot, hash | 1)
    }

    fn slides(&self, key: &str) -> bool {
        let (slot, tag) = self.slot(key);
        slot.load(Ordering::Relaxed) == tag
    }

    fn remember(&self, key: &str, slides: bool) {
        let (slot, tag) = self.slot(key);
        if slides {
            slot.store(tag, Ordering::Relaxed);
        } else if slot.load(Ordering::Relaxed) == tag {
            slot.store(0, Ordering::Relaxed);
        }
    }
}

impl RedisCache {
    /// Reads `key` (a full Redis key): its value and, with `version`, its
    /// version; renews a sliding entry, in the read's pipeline when the key
    /// slid when last read, else after it.
    pub(super) async fn read(&self, key: String, version: bool) -> Result<Versioned> {
        let mut pipe = redis::pipe();
        let hmget = pipe
            .cmd("HMGET")
            .arg(&key)
            .arg(ABSOLUTE_FIELD)
            .arg(SLIDING_FIELD)
            .arg(DATA_FIELD);
        if version {
            hmget.arg(VERSION_FIELD);
        }
        let now = ticks_of(SystemTime::now());
        let hinted = self.inner.sliding.slides(&key);
        let script = &self.inner.refresh_script;
        if hinted {
            pipe.add_command(refresh_cmd(script, &key, now));
        }
        // The read's answer stands whatever the renewal's is.
        pipe.ignore_errors();
        let (read, renewed) = self
            .inner
            .link
            .run("get", |mut conn| async move {
                let (read, renewed) = if version {
                    let (fields, renewed) = query::<VersionedFields>(&mut conn, &pipe).await?;
                    let read = fields.map(|(a, s, d, v)| interpret(a, s, d, Some(v), now));
                    (read, renewed)
                } else {
                    let (fields, renewed) = query::<Fields>(&mut conn, &pipe).await?;
                    (
                        fields.map(|(a, s, d)| interpret(a, s, d, None, now)),
                        renewed,
                    )
                };
                Ok((read.or_else(foreign_is_missing)?, renewed))
            })
            .await?;
        self.inner.sliding.remember(&key, read.renew);
        match renewed {
            // Not sent, or sent and refused: renew after the read. A server
            // that does not know the script (a fresh or restarted Redis) gets
            // it loaded there.
            None | Some(Err(_)) if read.renew => self.renew_later(vec![key]),
            _ => {}
        }
        Ok(read.versioned)
    }

    /// Reads `keys` (full Redis keys) in one pipeline, one round trip, and
    /// schedules the renewal of the sliding ones.
    pub(super) async fn read_many(&self, keys: Vec<String>) -> Result<Vec<Option<Bytes>>> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let hmget = |key: &String| {
            let mut cmd = redis::cmd("HMGET");
            cmd.arg(key)
                .arg(ABSOLUTE_FIELD)
                .arg(SLIDING_FIELD)
                .arg(DATA_FIELD);
            cmd
        };
        let now = ticks_of(SystemTime::now());
        let keys_ref = &keys;
        let answers = self
            .inner
            .link
            .run("get_many", |mut conn| async move {
                let answers = if conn.is_cluster() {
                    // A pipeline's keys must share a slot: one command per
                    // key, all sent at once, which the cluster connection
                    // writes to each node's connection back to back.
                    join_all(keys_ref.iter().map(|key| {
                        let mut conn = conn.clone();
                        async move { hmget(key).query_async::<Fields>(&mut conn).await }
                    }))
                    .await
                } else {
                    let mut pipe = redis::pipe();
                    // Each key's answer on its own: a key of another type
                    // fails its own `HMGET`, not the batch.
                    pipe.ignore_errors();
                    for key in keys_ref {
                        pipe.add_command(hmget(key));
                    }
                    pipe.query_async::<Vec<RedisResult<Fields>>>(&mut conn)
                        .await?
                };
                answers
                    .into_iter()
                    .map(|answer| {
                        answer
                            .map(|(a, s, d)| interpret(a, s, d, None, now))
                            .or_else(foreign_is_missing)
                    })
                    .collect::<RedisResult<Vec<Read>>>()
            })
            .await?;
        let mut sliding = Vec::new();
        let values = keys
            .into_iter()
            .zip(answers)
            .map(|(key, read)| {
                self.inner.sliding.remember(&key, read.renew);
                if read.renew {
                    sliding.push(key);
                }
                read.versioned.value
            })
            .collect();
        if !sliding.is_empty() {
            self.renew_later(sliding);
        }
        Ok(values)
    }

    /// Renews the sliding expiration of `keys` in a task of its own: the
    /// caller does not wait for it, and a failure only costs the renewal
    /// (logged at debug; the entry then expires a window after its previous
    /// renewal, as if this read had not happened).
    fn renew_later(&self, keys: Vec<String>) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let inner: Arc<Inner> = Arc::clone(&self.inner);
        runtime.spawn(async move {
            let script = &inner.refresh_script;
            // The script's clock is read now, just before it is sent, so the
            // TTL it sets stays within the absolute expiration.
            let now = ticks_of(SystemTime::now());
            let renewed = inner
                .link
                .run("refresh", |mut conn| async move {
                    renew(&mut conn, script, &keys, now).await
                })
                .await;
            if let Err(error) = renewed {
                tracing::debug!(%error, "could not renew sliding entries after a read");
            }
        });
    }
}

/// Runs a read's pipeline: the `HMGET`'s answer, and the renewal's when the
/// pipeline holds one.
async fn query<T: redis::FromRedisValue>(
    conn: &mut Conn,
    pipe: &redis::Pipeline,
) -> RedisResult<(RedisResult<T>, Option<RedisResult<()>>)> {
    let mut answers = pipe
        .query_async::<Vec<redis::Value>>(conn)
        .await?
        .into_iter();
    let fields = answers
        .next()
        .map_or_else(
            || Ok(Err(missing_answer())),
            redis::from_redis_value::<RedisResult<T>>,
        )
        .map_err(RedisError::from)?;
    let renewed = answers
        .next()
        .map(redis::from_redis_value::<RedisResult<redis::Value>>)
        .transpose()
        .map_err(RedisError::from)?
        .map(|answer| answer.map(drop));
    Ok((fields, renewed))
}

fn missing_answer() -> RedisError {
    RedisError::from((
        redis::ErrorKind::Client,
        "Redis sent fewer answers than commands",
    ))
}

/// Runs the refresh script on each of `keys`, in one pipeline; loads the
/// script and runs them again when the server does not know it.
async fn renew(conn: &mut Conn, script: &Script, keys: &[String], now: i64) -> RedisResult<()> {
    if let [key] = keys {
        return eval_sha(conn, script, &refresh_cmd(script, key, now)).await;
    }
    if conn.is_cluster() {
        // A pipeline's keys must share a slot: one script call per key.
        let renewed =
            join_all(
                keys.iter().map(|key| {
                    let mut conn = conn.clone();
                    async move {
                        eval_sha::<()>(&mut conn, script, &refresh_cmd(script, key, now)).await
                    }
                }),
            )
            .await;
        return renewed.into_iter().collect();
    }
    let mut pipe = redis::pipe();
    for key in keys {
        pipe.add_command(refresh_cmd(script, key, now)).ignore();
    }
    match pipe.query_async(conn).await {
        Err(e) if e.kind() == redis::ErrorKind::Server(ServerErrorKind::NoScript) => {
            script.load_async(conn).await?;
            pipe.query_async(conn).await
        }
        result => result,
    }
}

/// The `EVALSHA` of the refresh script for `key`.
pub(super) fn refresh_cmd(script: &Script, key: &str, now_ticks: i64) -> Cmd {
    let mut cmd = Cmd::new();
    cmd.arg("EVALSHA")
        .arg(script.get_hash())
        .arg(1)
        .arg(key)
        .arg(now_ticks);
    cmd
}

/// A key of another type (`WRONGTYPE`) is not an entry: a miss, with a
/// version no version-checked write matches, so that only an explicit write
/// replaces it. Other errors stay errors.
fn foreign_is_missing(error: RedisError) -> RedisResult<Read> {
    if error.code() == Some("WRONGTYPE") {
        return Ok(Read {
            versioned: Versioned::new(None, Version::unversioned()),
            renew: false,
        });
    }
    Err(error)
}

/// What one entry's fields mean at `now_ticks`: the value (none for a missing
/// key, a tombstone, or a sliding entry past its absolute expiration on our
/// clock), the version when it was asked for (`version` is `Some`), and
/// whether the entry slides.
fn interpret(
    absolute: Option<String>,
    sliding: Option<String>,
    data: Option<Bytes>,
    version: Option<Option<String>>,
    now_ticks: i64,
) -> Read {
    let version = match version.flatten().as_deref().map(str::parse::<u64>) {
        Some(Ok(token)) => Version::token(token),
        // Written by someone who does not version (a .NET service).
        Some(Err(_)) => Version::unversioned(),
        None if data.is_some() => Version::unversioned(),
        None => Version::absent(0),
    };
    // Lua's `tonumber`: a field that is missing or not a number is not set.
    let number = |field: Option<String>| field.and_then(|f| f.trim().parse::<i64>().ok());
    let Some(sliding) = number(sliding).filter(|&s| s > 0) else {
        return Read {
            versioned: Versioned::new(data, version),
            renew: false,
        };
    };
    let left = match number(absolute).filter(|&a| a > 0) {
        Some(absolute) => sliding.min(absolute.saturating_sub(now_ticks)),
        None => sliding,
    };
    if left <= 0 || data.is_none() {
        return Read {
            versioned: Versioned::new(None, version),
            renew: false,
        };
    }
    Read {
        versioned: Versioned::new(data, version),
        renew: true,
    }
}
