//! The miss path: what runs when L1 has no fresh value. One fetch per key at a
//! time (see `stampede`) reads L2, else runs the factory, and writes back;
//! fail-safe, factory timeouts and eager refresh are decided here.

use std::future::Future;
use std::hash::BuildHasher;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::FactoryContext;
use super::cache::{Inner, check_options};
use super::clock::millis;
use super::codec::{CodecChoice, too_large};
use super::envelope::{Envelope, entry_key};
use super::l1::{Freshness, L1Entry};
use super::l2::L2Failure;
use super::options::HybridEntryOptions;
use super::stampede::{Fetched, Outcome};
use super::stats::Event;
use crate::backplane::BackplaneMessage;
use crate::error::{Error, ErrorKind, Result};
use crate::options::EntryOptions;

/// Bound of every value a caller may want: the type, and what a factory returns.
pub(crate) trait Value:
    Clone + Serialize + DeserializeOwned + Send + Sync + 'static
{
}
impl<T: Clone + Serialize + DeserializeOwned + Send + Sync + 'static> Value for T {}

/// What L1 says about a key before a fetch.
enum Local {
    /// Serve it (possibly refreshing in the background).
    Serve(Arc<L1Entry>, bool),
    /// Not servable, but kept as a fail-safe fallback.
    Stale(Arc<L1Entry>),
    Nothing,
}

/// `get_or_create` after an L1 miss on the hit path.
pub(crate) async fn get_or_create_slow<T, E, F, Fut>(
    inner: &Arc<Inner>,
    key: &str,
    options: &HybridEntryOptions,
    factory: F,
) -> Result<T>
where
    T: Value,
    F: FnOnce(FactoryContext) -> Fut + Send + 'static,
    Fut: Future<Output = std::result::Result<T, E>> + Send + 'static,
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
        match local::<T>(inner, key) {
            Local::Serve(entry, eager) => {
                if let Some(value) = entry.value::<T>() {
                    inner.stats.l1_hit();
                    if eager && !entry.eager_started.swap(true, Ordering::AcqRel) {
                        tracing::debug!(key, "eager refresh");
                        let (_flight, leader) = inner.flights.join(key);
                        if let Some(leader) = leader {
                            spawn_fetch(inner, key, options, factory, Some(entry), true, leader);
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
    let (flight, leader) = inner.flights.join(key);
    if let Some(leader) = leader {
        spawn_fetch(inner, key, options, factory, stale.clone(), false, leader);
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
        .value::<T>()
        .ok_or_else(|| type_mismatch::<T>(key))
}

/// Classifies the L1 entry of `key` for the slow path, re-checking tags when
/// the tag epoch moved.
fn local<T: Value>(inner: &Inner, key: &str) -> Local {
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
        Freshness::Check if entry.is_kept(now) && entry.value::<T>().is_some() => {
            Local::Stale(entry)
        }
        Freshness::Check => {
            inner.l1.remove_if_same(key, &entry);
            Local::Nothing
        }
    }
}

/// Runs one fetch in its own task and publishes the outcome to the flight.
fn spawn_fetch<T, E, F, Fut>(
    inner: &Arc<Inner>,
    key: &str,
    options: &HybridEntryOptions,
    factory: F,
    stale: Option<Arc<L1Entry>>,
    eager: bool,
    leader: super::stampede::Leader,
) where
    T: Value,
    F: FnOnce(FactoryContext) -> Fut + Send + 'static,
    Fut: Future<Output = std::result::Result<T, E>> + Send + 'static,
    E: std::error::Error + Send + Sync + 'static,
{
    let inner = Arc::clone(inner);
    let key = key.to_owned();
    let options = options.clone();
    tokio::spawn(async move {
        let outcome = run(&inner, &key, &options, factory, stale, eager).await;
        leader.finish(outcome);
    });
}

/// The body of a fetch: L2, then the factory, then write-back.
async fn run<T, E, F, Fut>(
    inner: &Arc<Inner>,
    key: &str,
    options: &HybridEntryOptions,
    factory: F,
    l1_stale: Option<Arc<L1Entry>>,
    eager: bool,
) -> Outcome
where
    T: Value,
    F: FnOnce(FactoryContext) -> Fut + Send + 'static,
    Fut: Future<Output = std::result::Result<T, E>> + Send + 'static,
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
            Ok(Some(bytes)) => match read_l2::<T>(inner, key, &bytes, options).await {
                Some((entry, fresh))
                    if fresh && (!eager || inner.clock.now_ms() < entry.eager_at_ms) =>
                {
                    inner.stats.record(Event::L2Hit);
                    let entry = Arc::new(entry);
                    if options.writes_l1() {
                        inner.l1.insert(key, Arc::clone(&entry));
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
            let entry = write(inner, key, value, &options, created_ms, epochs, cache).await;
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
                .and_then(|s| s.throttled::<T>(now, throttle, gap));
            match fallback {
                Some(entry) => {
                    tracing::warn!(key, %error, "factory failed: fail-safe serves the stale value");
                    let entry = Arc::new(entry);
                    if options.writes_l1() {
                        inner.l1.insert(key, Arc::clone(&entry));
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
async fn read_l2<T: Value>(
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
    let codec = CodecChoice::from_id(envelope.codec)?;
    inner
        .tags
        .refresh_from_l2(&envelope.tags, &inner.l2, &inner.clock, &inner.stats)
        .await;
    if inner.tags.local_stale(envelope.created_ms, &envelope.tags) {
        return None;
    }
    let value: T = match codec.decode(&envelope.payload) {
        Ok(value) => value,
        Err(error) => {
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
    let payload_len = envelope.payload.len() as u64;
    let entry = new_entry(
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
pub(crate) async fn get_slow<T: Value>(inner: &Arc<Inner>, key: &str) -> Result<Option<T>> {
    let options = &inner.defaults;
    if let Local::Serve(entry, _) = local::<T>(inner, key)
        && let Some(value) = entry.value::<T>()
    {
        inner.stats.l1_hit();
        return Ok(Some(value));
    }
    let Ok(Some(bytes)) = inner
        .l2
        .get(&inner.clock, &inner.stats, &entry_key(key))
        .await
    else {
        return Ok(None);
    };
    match read_l2::<T>(inner, key, &bytes, options).await {
        Some((entry, true)) => {
            inner.stats.record(Event::L2Hit);
            let value = entry.value::<T>();
            inner.l1.insert(key, Arc::new(entry));
            Ok(value)
        }
        _ => Ok(None),
    }
}

/// `set`: encodes first (so that a failure leaves the cache as it was), then writes.
pub(crate) async fn set<T: Value>(
    inner: &Arc<Inner>,
    key: &str,
    value: T,
    options: &HybridEntryOptions,
) -> Result<()> {
    let payload = inner.codec.encode(&value)?;
    if payload.len() > inner.max_payload_bytes {
        return Err(too_large(key, payload.len(), inner.max_payload_bytes));
    }
    let created_ms = inner.creation_stamp();
    let epochs = (inner.tags.epoch(), inner.gap_epoch.load(Ordering::Acquire));
    write_encoded(
        inner,
        key,
        value,
        Some(payload),
        options,
        created_ms,
        epochs,
        true,
    )
    .await;
    Ok(())
}

/// Writes a factory's value to L1, L2 and the backplane (when `cache`), and
/// returns its entry either way.
async fn write<T: Value>(
    inner: &Inner,
    key: &str,
    value: T,
    options: &HybridEntryOptions,
    created_ms: u64,
    epochs: (u64, u64),
    cache: bool,
) -> Arc<L1Entry> {
    let payload = if cache {
        match inner.codec.encode(&value) {
            Ok(payload) if payload.len() <= inner.max_payload_bytes => Some(payload),
            Ok(payload) => {
                let error = too_large(key, payload.len(), inner.max_payload_bytes);
                tracing::warn!(key, %error, "value not cached");
                None
            }
            Err(error) => {
                tracing::warn!(key, %error, "value not cached");
                None
            }
        }
    } else {
        None
    };
    let cache = payload.is_some();
    write_encoded(
        inner, key, value, payload, options, created_ms, epochs, cache,
    )
    .await
}

#[allow(clippy::too_many_arguments)]
async fn write_encoded<T: Value>(
    inner: &Inner,
    key: &str,
    value: T,
    payload: Option<Vec<u8>>,
    options: &HybridEntryOptions,
    created_ms: u64,
    epochs: (u64, u64),
    cache: bool,
) -> Arc<L1Entry> {
    let times = Times {
        created_ms,
        logical_expiry_ms: created_ms.saturating_add(millis(options.expiration)),
    };
    let payload_len = payload.as_ref().map_or(0, |p| p.len() as u64);
    let tags = options.tags.clone();
    let entry = Arc::new(new_entry(
        inner,
        key,
        value,
        times,
        tags,
        options,
        payload_len,
        epochs,
    ));
    let (Some(payload), true) = (payload, cache) else {
        return entry;
    };
    if options.writes_l1() {
        inner.l1.insert(key, Arc::clone(&entry));
    } else {
        inner.l1.remove(key);
    }
    if options.writes_l2() {
        let envelope = Envelope {
            codec: inner.codec.id(),
            created_ms,
            logical_expiry_ms: times.logical_expiry_ms,
            tags: options.tags.clone(),
            payload: Bytes::from(payload),
        };
        let physical = options
            .fail_safe_max
            .map_or(options.expiration, |m| m.max(options.expiration));
        let mut l2_options = EntryOptions::new().with_relative_expiration(physical);
        if let Some(sliding) = options.sliding {
            l2_options = l2_options.with_sliding_expiration(sliding);
        }
        let bytes = Bytes::from(envelope.encode());
        let _ = inner
            .l2
            .set(
                &inner.clock,
                &inner.stats,
                &entry_key(key),
                bytes,
                &l2_options,
            )
            .await;
    }
    inner
        .announce(BackplaneMessage::Evict {
            key: key.to_owned(),
        })
        .await;
    entry
}

/// How far ahead of this clock a known invalidation time may be and still
/// push a new entry's creation stamp past it (peers' clocks differ a little).
const MAX_CLOCK_SKEW_MS: u64 = 5_000;

impl Inner {
    /// The creation stamp of an entry whose data is read from now on: after
    /// every invalidation this instance knows of, since all of them happened
    /// before the read. This keeps a value rebuilt right after a
    /// `remove_by_tag` (same millisecond, or a peer's clock slightly ahead)
    /// from counting as invalidated by it.
    pub(crate) fn creation_stamp(&self) -> u64 {
        let now = self.clock.now_ms();
        let latest = self.tags.latest_ms();
        if latest >= now && latest - now <= MAX_CLOCK_SKEW_MS {
            latest + 1
        } else {
            now
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Times {
    created_ms: u64,
    logical_expiry_ms: u64,
}

/// Builds an L1 entry: local expiration (with jitter, capped by the logical
/// expiry), fail-safe retention and eager-refresh point.
#[allow(clippy::too_many_arguments)]
fn new_entry<T: Value>(
    inner: &Inner,
    key: &str,
    value: T,
    times: Times,
    tags: Vec<String>,
    options: &HybridEntryOptions,
    payload_len: u64,
    (tag_epoch, gap_epoch): (u64, u64),
) -> L1Entry {
    let now = inner.clock.now_ms();
    let local = options
        .local_expiration
        .map_or(options.expiration, |l| l.min(options.expiration));
    let jitter = options.jitter.map_or(0, |j| {
        let span = millis(j);
        if span == 0 {
            0
        } else {
            inner.random.hash_one((key, now)) % span
        }
    });
    let fresh_cap_ms = now
        .saturating_add(millis(local))
        .min(times.logical_expiry_ms)
        .saturating_add(jitter);
    let sliding_ms = options.sliding.map_or(0, millis);
    let fresh_until_ms = if sliding_ms == 0 {
        fresh_cap_ms
    } else {
        now.saturating_add(sliding_ms).min(fresh_cap_ms)
    };
    let stale_until_ms = options.fail_safe_max.map_or(fresh_cap_ms, |m| {
        times.created_ms.saturating_add(millis(m)).max(fresh_cap_ms)
    });
    let eager_at_ms = options.eager_refresh.map_or(u64::MAX, |threshold| {
        let life = times.logical_expiry_ms.saturating_sub(times.created_ms);
        #[allow(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            clippy::cast_precision_loss
        )]
        let offset = (life as f64 * f64::from(threshold)) as u64;
        times.created_ms.saturating_add(offset)
    });
    L1Entry {
        value: Box::new(value),
        created_ms: times.created_ms,
        logical_expiry_ms: times.logical_expiry_ms,
        fresh_until_ms: AtomicU64::new(fresh_until_ms),
        fresh_cap_ms,
        sliding_ms,
        stale_until_ms,
        eager_at_ms,
        eager_started: AtomicBool::new(false),
        tags: tags.into_boxed_slice(),
        tag_epoch: AtomicU64::new(tag_epoch),
        gap_epoch,
        payload_len,
    }
}

fn type_mismatch<T>(key: &str) -> Error {
    Error::new(
        ErrorKind::Serialization,
        format!(
            "the entry for {key:?} holds another type than {}: use one type per key",
            std::any::type_name::<T>()
        ),
    )
}
