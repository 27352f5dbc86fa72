//! The miss path: what runs when L1 has no fresh value. One fetch per key at a
//! time (see `stampede`) reads L2, else runs the factory, and writes back;
//! fail-safe, factory timeouts and eager refresh are decided here.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;

use super::FactoryContext;
use super::cache::{Inner, check_options};
use super::clock::millis;
use super::envelope::{Envelope, entry_key};
use super::invalidation::ReadMarks;
use super::l1::{Freshness, L1Entry};
use super::l2::L2Failure;
use super::options::HybridEntryOptions;
use super::repr::{Repr, Undecodable, type_mismatch};
use super::stampede::{Fetched, Outcome};
use super::stats::Event;
use super::write::{Times, new_entry, write};
use crate::error::{Error, ErrorKind, Result};

/// What L1 says about a key before a fetch.
enum Local {
    /// Serve it (possibly refreshing in the background).
    Serve(Arc<L1Entry>, bool),
    /// Not servable, but kept as a fail-safe fallback.
    Stale(Arc<L1Entry>),
    Nothing,
}

/// `get_or_create` after an L1 miss on the hit path.
pub(crate) async fn get_or_create_slow<R, E, F, Fut>(
    inner: &Arc<Inner>,
    key: &str,
    options: &HybridEntryOptions,
    factory: F,
) -> Result<R::Value>
where
    R: Repr,
    F: FnOnce(FactoryContext) -> Fut + Send + 'static,
    Fut: Future<Output = std::result::Result<R::Value, E>> + Send + 'static,
    E: std::error::Error + Send + Sync + 'static,
{
    check_options(options)?;
    if let Err(error) = inner.check_key(key) {
        tracing::warn!(key_len = key.len(), %error, "invalid cache key: running the factory uncached");
        inner.stats.record(Event::FactoryRun);
        return factory(FactoryContext::new(key, false))
            .await
            .map_err(|e| Error::factory(key, e));
    }
    let mut stale = None;
    if options.reads_l1() {
        match local::<R>(inner, key) {
            Local::Serve(entry, eager) => {
                if let Some(value) = entry.get::<R>() {
                    inner.stats.l1_hit();
                    if eager && !entry.eager_started.swap(true, Ordering::AcqRel) {
                        tracing::debug!(key, "eager refresh");
                        let (_flight, leader) = inner.flights.join(key, &inner.reads);
                        if let Some(leader) = leader {
                            spawn_fetch::<R, _, _, _>(
                                inner,
                                key,
                                options,
                                factory,
                                Some(entry),
                                true,
                                leader,
                            );
                        }
                    }
                    return Ok(value);
                }
            }
            Local::Stale(entry) => stale = Some(entry),
            Local::Nothing => {}
        }
    }
    let stale = stale.filter(|_| options.fail_safe_max.is_some());
    let (flight, leader) = inner.flights.join(key, &inner.reads);
    if let Some(leader) = leader {
        spawn_fetch::<R, _, _, _>(inner, key, options, factory, stale.clone(), false, leader);
    }
    let waited = flight.wait(key);
    let soft = options.soft_timeout.filter(|_| stale.is_some());
    let fetched = match (soft, options.hard_timeout) {
        (None, None) => waited.await,
        (soft, hard) => {
            let limit = soft.or(hard).unwrap_or(Duration::MAX);
            match tokio::time::timeout(limit, waited).await {
                Ok(outcome) => outcome,
                Err(_) => match stale {
                    Some(entry) => {
                        tracing::debug!(key, "factory timeout: serving the stale value");
                        Ok(Fetched { entry, stale: true })
                    }
                    None => Err(Error::new(
                        ErrorKind::Timeout,
                        format!(
                            "the factory for {key:?} did not finish within {limit:?}; \
                             it goes on in the background"
                        ),
                    )),
                },
            }
        }
    }?;
    if fetched.stale {
        inner.stats.record(Event::StaleServed);
    }
    fetched
        .entry
        .get::<R>()
        .ok_or_else(|| type_mismatch::<R>(key))
}

/// Classifies the L1 entry of `key` for the slow path, re-checking tags when
/// the tag epoch moved.
fn local<R: Repr>(inner: &Inner, key: &str) -> Local {
    let Some(entry) = inner.l1.get(key) else {
        return Local::Nothing;
    };
    let now = inner.clock.now_ms();
    let tag_epoch = inner.tags.epoch();
    if entry.tag_epoch.load(Ordering::Acquire) != tag_epoch {
        if inner.tags.local_stale(entry.created_ms, &entry.tags) {
            inner.l1.remove_if_same(key, &entry);
            return Local::Nothing;
        }
        entry.tag_epoch.store(tag_epoch, Ordering::Release);
    }
    match entry.freshness(now, tag_epoch, inner.gap_epoch.load(Ordering::Acquire)) {
        Freshness::Fresh => Local::Serve(entry, false),
        Freshness::Eager => Local::Serve(entry, true),
        Freshness::Check if entry.is_kept(now) && entry.get::<R>().is_some() => Local::Stale(entry),
        Freshness::Check => {
            inner.l1.remove_if_same(key, &entry);
            Local::Nothing
        }
    }
}

/// Runs one fetch in its own task and publishes the outcome to the flight.
fn spawn_fetch<R, E, F, Fut>(
    inner: &Arc<Inner>,
    key: &str,
    options: &HybridEntryOptions,
    factory: F,
    stale: Option<Arc<L1Entry>>,
    eager: bool,
    leader: super::stampede::Leader,
) where
    R: Repr,
    F: FnOnce(FactoryContext) -> Fut + Send + 'static,
    Fut: Future<Output = std::result::Result<R::Value, E>> + Send + 'static,
    E: std::error::Error + Send + Sync + 'static,
{
    let inner = Arc::clone(inner);
    let key = key.to_owned();
    let options = options.clone();
    tokio::spawn(async move {
        let marks = leader.marks();
        let outcome =
            run::<R, _, _, _>(&inner, &key, &options, factory, stale, eager, &marks).await;
        leader.finish(outcome);
    });
}

/// The body of a fetch: L2, then the factory, then write-back. Nothing is
/// written once `marks` says the key was invalidated during the fetch.
async fn run<R, E, F, Fut>(
    inner: &Arc<Inner>,
    key: &str,
    options: &HybridEntryOptions,
    factory: F,
    l1_stale: Option<Arc<L1Entry>>,
    eager: bool,
    marks: &ReadMarks,
) -> Outcome
where
    R: Repr,
    F: FnOnce(FactoryContext) -> Fut + Send + 'static,
    Fut: Future<Output = std::result::Result<R::Value, E>> + Send + 'static,
    E: std::error::Error + Send + Sync + 'static,
{
    let fail_safe = options.fail_safe_max.is_some();
    let mut stale = l1_stale.filter(|_| fail_safe);
    if options.reads_l2() {
        match inner
            .l2
            .get(&inner.clock, &inner.stats, &entry_key(key))
            .await
        {
            Ok(Some(bytes)) => match read_l2::<R>(inner, key, &bytes, options).await {
                Some((entry, fresh))
                    if fresh && (!eager || inner.clock.now_ms() < entry.eager_at_ms) =>
                {
                    inner.stats.record(Event::L2Hit);
                    let entry = Arc::new(entry);
                    if options.writes_l1() {
                        marks.write_unless_invalidated(&entry.tags, || {
                            inner.l1.insert(key, Arc::clone(&entry));
                        });
                    }
                    return Ok(Fetched {
                        entry,
                        stale: false,
                    });
                }
                Some((entry, _))
                    if fail_safe
                        && stale
                            .as_ref()
                            .is_none_or(|s| s.created_ms < entry.created_ms) =>
                {
                    stale = Some(Arc::new(entry));
                }
                _ => {}
            },
            Ok(None) | Err(L2Failure::Absent | L2Failure::Failed) => {}
        }
    }
    inner.stats.record(Event::Miss);
    // Stamps taken before the factory starts: an invalidation recorded after
    // this point may postdate the data the factory reads, so it must apply.
    let created_ms = inner.creation_stamp();
    let epochs = (inner.tags.epoch(), inner.gap_epoch.load(Ordering::Acquire));
    let context = FactoryContext::new(key, stale.is_some());
    inner.stats.record(Event::FactoryRun);
    tracing::debug!(key, stale = stale.is_some(), eager, "running the factory");
    match factory(context.clone()).await {
        Ok(value) => {
            let changes = context.finish();
            let mut options = options.clone();
            if let Some(expiration) = changes.expiration {
                options.expiration = expiration;
            }
            options.tags.extend(changes.tags);
            options.tags.sort_unstable();
            options.tags.dedup();
            let cache = !changes.dont_cache && !options.expiration.is_zero();
            let entry = write::<R>(
                inner, key, value, &options, created_ms, epochs, cache, marks,
            )
            .await;
            Ok(Fetched {
                entry,
                stale: false,
            })
        }
        Err(error) => {
            let error = Error::factory(key, error);
            let now = inner.clock.now_ms();
            let gap = inner.gap_epoch.load(Ordering::Acquire);
            let throttle = millis(options.fail_safe_throttle);
            let fallback = stale
                .filter(|s| s.is_kept(now))
                .and_then(|s| s.throttled::<R>(now, throttle, gap));
            match fallback {
                Some(entry) => {
                    tracing::warn!(key, %error, "factory failed: fail-safe serves the stale value");
                    let entry = Arc::new(entry);
                    if options.writes_l1() {
                        marks.write_unless_invalidated(&entry.tags, || {
                            inner.l1.insert(key, Arc::clone(&entry));
                        });
                    }
                    Ok(Fetched { entry, stale: true })
                }
                None => {
                    tracing::debug!(key, %error, "factory failed");
                    Err(error)
                }
            }
        }
    }
}

/// Decodes an L2 value into an L1 entry, with whether it is logically fresh.
/// `None` for anything unusable: not an envelope, unknown codec, tag-stale,
/// undecodable as `T`.
async fn read_l2<R: Repr>(
    inner: &Inner,
    key: &str,
    bytes: &Bytes,
    options: &HybridEntryOptions,
) -> Option<(L1Entry, bool)> {
    let epochs = (inner.tags.epoch(), inner.gap_epoch.load(Ordering::Acquire));
    let Some(envelope) = Envelope::decode(bytes) else {
        tracing::warn!(
            key,
            "the L2 value is not a Strata envelope: treated as a miss"
        );
        return None;
    };
    inner
        .tags
        .refresh_from_l2(&envelope.tags, &inner.l2, &inner.clock, &inner.stats)
        .await;
    if inner.tags.local_stale(envelope.created_ms, &envelope.tags) {
        return None;
    }
    let payload_len = envelope.payload.len() as u64;
    // Zero copy for raw bytes: the payload is a slice of the L2 buffer.
    let value = match R::decode(envelope.codec, envelope.payload) {
        Ok(value) => value,
        Err(Undecodable::OtherCodec(codec)) => {
            tracing::debug!(
                key,
                codec,
                "the L2 value has another codec than asked for: treated as a miss"
            );
            return None;
        }
        Err(Undecodable::Invalid(error)) => {
            tracing::warn!(key, %error, "the L2 value does not decode: treated as a miss");
            return None;
        }
    };
    let now = inner.clock.now_ms();
    let fresh = now < envelope.logical_expiry_ms;
    let times = Times {
        created_ms: envelope.created_ms,
        logical_expiry_ms: envelope.logical_expiry_ms,
    };
    let entry = new_entry::<R>(
        inner,
        key,
        value,
        times,
        envelope.tags,
        options,
        payload_len,
        epochs,
    );
    Some((entry, fresh))
}

/// `get` after an L1 miss: L2 only.
pub(crate) async fn get_slow<R: Repr>(inner: &Arc<Inner>, key: &str) -> Result<Option<R::Value>> {
    let options = &inner.defaults;
    if let Local::Serve(entry, _) = local::<R>(inner, key)
        && let Some(value) = entry.get::<R>()
    {
        inner.stats.l1_hit();
        return Ok(Some(value));
    }
    if !inner.l2.is_configured() {
        return Ok(None);
    }
    // Registered before the L2 read: a remove landing after it keeps the
    // value read from L2 out of L1.
    let read = inner.reads.start(key);
    let Ok(Some(bytes)) = inner
        .l2
        .get(&inner.clock, &inner.stats, &entry_key(key))
        .await
    else {
        return Ok(None);
    };
    match read_l2::<R>(inner, key, &bytes, options).await {
        Some((entry, true)) => {
            inner.stats.record(Event::L2Hit);
            let value = entry.get::<R>();
            let entry = Arc::new(entry);
            read.marks().write_unless_invalidated(&entry.tags, || {
                inner.l1.insert(key, Arc::clone(&entry));
            });
            Ok(value)
        }
        _ => Ok(None),
    }
}
