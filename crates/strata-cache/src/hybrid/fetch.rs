//! The miss path: what runs when the hit path found no fresh L1 value.
//!
//! ```text
//! get_or_create(key)
//!   └─ hit path: L1 entry checked at the current epoch, deadlines hold ─► value
//!   └─ get_or_create_slow
//!        ├─ classify L1 (lookup): serve it / confirm it / keep it for fail-safe
//!        └─ join the key's flight, or lead a new one (stampede)
//!             └─ leader task, in the caller's span:
//!                  load from L2 (entry and due tag records in one round trip;
//!                  a suspect L1 entry is confirmed by its version)
//!                  else run the factory ─► L1 (unless invalidated meanwhile)
//!                  ─► outcome to every waiter
//!                  ─► fill L2 if the key's version is unchanged, then notice
//! ```
//!
//! Fail-safe, factory timeouts and eager refresh are decided here. Every wait
//! for L2 comes out of one budget per call (`l2_timeout`).
//!
//! Tracing: the miss path runs in a `strata.get_or_create` span (fields
//! `cache`, and `layer`: where the value came from, `l1`, `l2`, `factory`,
//! `stale` or `error`), with `strata.l2.get`, `strata.factory` and
//! `strata.l2.fill` spans inside. A hit on the hit path makes no span. No
//! span records a key or a value.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::time::Instant;
use tracing::Instrument;

use super::FactoryContext;
use super::cache::check_options;
use super::clock::millis;
use super::engine::Engine;
use super::envelope::entry_key;
use super::l1::L1Entry;
use super::lookup::{Loaded, Local};
use super::options::HybridEntryOptions;
use super::repr::{Repr, type_mismatch};
use super::stampede::{Fetched, Leader, Outcome, Source};
use super::stats::Event;
use super::write::{NewEntry, Times, fill_bytes, l2_options};
use crate::backplane::BackplaneMessage;
use crate::error::{Error, ErrorKind, Result};

/// What a fetch needs besides the key: the call's options, the factory, and
/// what L1 held.
struct Fetch<F> {
    options: HybridEntryOptions,
    factory: F,
    /// A stale value to fall back on (fail-safe).
    stale: Option<Arc<L1Entry>>,
    /// A suspect L1 entry that L2 may confirm.
    confirm: Option<Arc<L1Entry>>,
    /// An eager refresh: an L2 value past its own refresh point does not do.
    eager: bool,
    deadline: Instant,
}

/// `get_or_create` after an L1 miss on the hit path, in its span.
pub(crate) async fn get_or_create_slow<R, E, F, Fut>(
    engine: &Arc<Engine>,
    key: &str,
    options: &HybridEntryOptions,
    factory: F,
) -> Result<R::Value>
where
    R: Repr,
    F: FnOnce(FactoryContext) -> Fut + Send + 'static,
    Fut: Future<Output = std::result::Result<R::Value, E>> + Send + 'static,
    E: Into<Box<dyn std::error::Error + Send + Sync>> + Send + 'static,
{
    let span = tracing::info_span!(
        "strata.get_or_create",
        cache = %engine.settings.name,
        layer = tracing::field::Empty
    );
    let result = miss_path::<R, _, _, _>(engine, key, options, factory)
        .instrument(span.clone())
        .await;
    if result.is_err() {
        span.record("layer", "error");
    }
    result
}

async fn miss_path<R, E, F, Fut>(
    engine: &Arc<Engine>,
    key: &str,
    options: &HybridEntryOptions,
    factory: F,
) -> Result<R::Value>
where
    R: Repr,
    F: FnOnce(FactoryContext) -> Fut + Send + 'static,
    Fut: Future<Output = std::result::Result<R::Value, E>> + Send + 'static,
    E: Into<Box<dyn std::error::Error + Send + Sync>> + Send + 'static,
{
    check_options(options)?;
    if let Err(error) = engine.check_key(key) {
        tracing::warn!(key_len = key.len(), %error, "invalid cache key: running the factory uncached");
        engine.stats.record(Event::FactoryRun);
        return factory(FactoryContext::new(key, false))
            .await
            .map_err(|e| Error::factory(key, e));
    }
    Engine::ensure_tasks(engine);
    let deadline = engine.budget();
    let (mut stale, mut confirm) = (None, None);
    if options.reads_l1() {
        match engine.classify::<R>(key) {
            Local::Serve { entry, refresh } => {
                if let Some(value) = entry.get::<R>() {
                    engine.stats.l1_hit();
                    tracing::Span::current().record("layer", "l1");
                    if refresh && !entry.eager_started.swap(true, Ordering::AcqRel) {
                        tracing::debug!(key, "eager refresh");
                        let fetch = Fetch {
                            options: options.clone(),
                            factory,
                            stale: Some(entry),
                            confirm: None,
                            eager: true,
                            deadline: engine.budget(),
                        };
                        let tags = &options.tags;
                        if let (_, Some(leader)) =
                            engine.flights.join(key, tags, &engine.reads, &engine.order)
                        {
                            spawn_fetch::<R, _, _, _>(engine, key, fetch, leader);
                        }
                    }
                    return Ok(value);
                }
            }
            Local::Confirm(entry) => confirm = Some(entry),
            Local::Stale(entry) => stale = Some(entry),
            Local::Nothing => {}
        }
    }
    let stale = stale.filter(|_| options.fail_safe_max.is_some());
    let (flight, leader) = engine
        .flights
        .join(key, &options.tags, &engine.reads, &engine.order);
    if let Some(leader) = leader {
        let fetch = Fetch {
            options: options.clone(),
            factory,
            stale: stale.clone(),
            confirm,
            eager: false,
            deadline,
        };
        spawn_fetch::<R, _, _, _>(engine, key, fetch, leader);
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
                        Ok(Fetched {
                            entry,
                            stale: true,
                            source: Source::Factory,
                        })
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
    let layer = match (fetched.stale, fetched.source) {
        (true, _) => "stale",
        (false, Source::L2) => "l2",
        (false, Source::Factory) => "factory",
    };
    tracing::Span::current().record("layer", layer);
    if fetched.stale {
        engine.stats.record(Event::StaleServed);
    }
    fetched
        .entry
        .get::<R>()
        .ok_or_else(|| type_mismatch::<R>(key))
}

/// Runs one fetch in its own task, in the caller's span, and publishes the
/// outcome to the flight.
fn spawn_fetch<R, E, F, Fut>(engine: &Arc<Engine>, key: &str, fetch: Fetch<F>, leader: Leader)
where
    R: Repr,
    F: FnOnce(FactoryContext) -> Fut + Send + 'static,
    Fut: Future<Output = std::result::Result<R::Value, E>> + Send + 'static,
    E: Into<Box<dyn std::error::Error + Send + Sync>> + Send + 'static,
{
    let engine = Arc::clone(engine);
    let key = key.to_owned();
    tokio::spawn(
        async move { run::<R, _, _, _>(&engine, &key, fetch, leader).await }
            .instrument(tracing::Span::current()),
    );
}

/// The body of a fetch: L2, then the factory, then L1, the waiters, and the
/// L2 fill.
async fn run<R, E, F, Fut>(engine: &Arc<Engine>, key: &str, fetch: Fetch<F>, leader: Leader)
where
    R: Repr,
    F: FnOnce(FactoryContext) -> Fut + Send + 'static,
    Fut: Future<Output = std::result::Result<R::Value, E>> + Send + 'static,
    E: Into<Box<dyn std::error::Error + Send + Sync>> + Send + 'static,
{
    let Fetch {
        options,
        factory,
        stale,
        confirm,
        eager,
        deadline,
    } = fetch;
    let read_seq = leader.read_seq();
    let mark = leader.mark();
    let fail_safe = options.fail_safe_max.is_some();
    let mut stale = stale.filter(|_| fail_safe);
    let loaded = engine
        .load::<R>(key, &options, read_seq, &mark, confirm.as_ref(), deadline)
        .await;
    let version = match loaded {
        Loaded::Hit(entry) | Loaded::Confirmed(entry)
            if !eager || engine.clock.now_ms() < entry.eager_at_ms =>
        {
            engine.stats.record(Event::L2Hit);
            return leader.finish(Ok(Fetched {
                entry,
                stale: false,
                source: Source::L2,
            }));
        }
        Loaded::Hit(_) | Loaded::Confirmed(_) => None,
        Loaded::Miss { version, expired } => {
            if let Some(expired) = expired
                && fail_safe
                && stale
                    .as_ref()
                    .is_none_or(|s| s.created_ms < expired.created_ms)
            {
                stale = Some(expired);
            }
            version
        }
    };
    engine.stats.record(Event::Miss);
    // The factory reads from here on: an invalidation learned before this
    // point (a record read during the L2 load, say) is older than its value.
    let read_seq = engine.order.begin_read();
    let context = FactoryContext::new(key, stale.is_some());
    engine.stats.record(Event::FactoryRun);
    tracing::debug!(key, stale = stale.is_some(), eager, "running the factory");
    let value = match factory(context.clone())
        .instrument(tracing::info_span!("strata.factory"))
        .await
    {
        Ok(value) => value,
        Err(error) => {
            let error = Error::factory(key, error);
            return leader.finish(fail_safe_fallback::<R>(engine, key, &options, stale, error));
        }
    };
    let changes = context.finish();
    let mut options = options;
    if let Some(expiration) = changes.expiration {
        options.expiration = expiration;
    }
    options.tags.extend(changes.tags);
    options.tags.sort_unstable();
    options.tags.dedup();
    let cache = !changes.dont_cache && !options.expiration.is_zero();
    let encoded = if cache {
        encode::<R>(engine, key, &value)
    } else {
        None
    };
    let times = Times::stored_at(engine.clock.now_ms(), &options);
    let entry = Arc::new(engine.build_entry::<R>(
        value,
        NewEntry {
            key,
            options: &options,
            times,
            tags: options.tags.clone(),
            read_seq,
            l2_version: None,
            payload_len: encoded.as_ref().map_or(0, |(_, p)| p.len() as u64),
        },
    ));
    let cached =
        encoded.is_some() && options.writes_l1() && engine.insert_l1(key, &entry, Some(&mark));
    let invalidated = mark.is_set() || engine.order.changed_since(read_seq, &options.tags);
    leader.finish(Ok(Fetched {
        entry,
        stale: false,
        source: Source::Factory,
    }));
    if invalidated {
        tracing::debug!(
            key,
            cached,
            "invalidated during the fetch: value not cached"
        );
        return;
    }
    let Some((codec, payload)) = encoded else {
        return;
    };
    // The fill is checked against the version the load read. A call that
    // skipped the L2 read (a forced refresh) overwrites instead; a load that
    // failed leaves nothing to check against, and L2 is left alone.
    let skipped_read = !options.reads_l2() && engine.l2.is_configured();
    if options.writes_l2()
        && (version.is_some() || skipped_read)
        && !engine.propagator.is_pending_key(key)
    {
        let bytes = fill_bytes(engine, codec, payload, times, &options.tags, read_seq);
        let l2_key = entry_key(key);
        let l2_options = l2_options(&options);
        let landed = async {
            match &version {
                Some(version) => {
                    engine
                        .l2
                        .write_if(&l2_key, bytes, &l2_options, version)
                        .await
                }
                None => engine
                    .l2
                    .write(&l2_key, bytes, &l2_options)
                    .await
                    .map(|()| true),
            }
        }
        .instrument(tracing::info_span!("strata.l2.fill"))
        .await;
        match landed {
            Ok(true) => {
                if let Some(notices) = &engine.notices {
                    let evict = BackplaneMessage::Evict {
                        key: key.to_owned(),
                    };
                    // A fill changes nothing peers must know: a lost notice is fine.
                    let _ = notices.publish(evict).await;
                }
            }
            Ok(false) => tracing::debug!(key, "the key changed in L2 during the fetch: not filled"),
            Err(_) => {}
        }
    }
}

/// Encodes a factory's value for L2; `None` (logged) when it does not encode
/// or is over the payload limit: the value is then served but not cached.
fn encode<R: Repr>(engine: &Engine, key: &str, value: &R::Value) -> Option<(u8, bytes::Bytes)> {
    match R::encode(engine.settings.codec, value) {
        Ok((codec, payload)) if payload.len() <= engine.settings.max_payload_bytes => {
            Some((codec, payload))
        }
        Ok((_, payload)) => {
            let error =
                super::codec::too_large(key, payload.len(), engine.settings.max_payload_bytes);
            tracing::warn!(key, %error, "value not cached");
            None
        }
        Err(error) => {
            tracing::warn!(key, %error, "value not cached");
            None
        }
    }
}

/// A failed factory: the stale value when fail-safe keeps one (throttled in
/// L1 so the factory is not hammered), else the error.
fn fail_safe_fallback<R: Repr>(
    engine: &Engine,
    key: &str,
    options: &HybridEntryOptions,
    stale: Option<Arc<L1Entry>>,
    error: Error,
) -> Outcome {
    let now = engine.clock.now_ms();
    let throttle = millis(options.fail_safe_throttle);
    let epoch = engine.order.epoch();
    let fallback = stale
        .filter(|s| s.is_kept(now))
        .and_then(|s| s.throttled::<R>(now, throttle, epoch));
    match fallback {
        Some(entry) => {
            tracing::warn!(key, %error, "factory failed: fail-safe serves the stale value");
            let entry = Arc::new(entry);
            if options.writes_l1() {
                engine.insert_l1(key, &entry, None);
            }
            Ok(Fetched {
                entry,
                stale: true,
                source: Source::Factory,
            })
        }
        None => {
            tracing::debug!(key, %error, "factory failed");
            Err(error)
        }
    }
}

/// `get` after an L1 miss: L2 only.
pub(crate) async fn get_slow<R: Repr>(engine: &Arc<Engine>, key: &str) -> Result<Option<R::Value>> {
    Engine::ensure_tasks(engine);
    let deadline = engine.budget();
    let options = &engine.settings.defaults;
    let confirm = match engine.classify::<R>(key) {
        Local::Serve { entry, .. } => {
            if let Some(value) = entry.get::<R>() {
                engine.stats.l1_hit();
                return Ok(Some(value));
            }
            None
        }
        Local::Confirm(entry) => Some(entry),
        Local::Stale(_) | Local::Nothing => None,
    };
    // Registered before the L2 read: a remove landing after it keeps the
    // value read from L2 out of L1.
    let read = engine.reads.start(key);
    let read_seq = engine.order.begin_read();
    match engine
        .load::<R>(
            key,
            options,
            read_seq,
            read.mark(),
            confirm.as_ref(),
            deadline,
        )
        .await
    {
        Loaded::Hit(entry) | Loaded::Confirmed(entry) => {
            engine.stats.record(Event::L2Hit);
            Ok(entry.get::<R>())
        }
        Loaded::Miss { .. } => Ok(None),
    }
}
