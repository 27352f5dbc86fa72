//! [`HybridCacheBuilder`]: every cache-wide setting and its default, in one place.

use std::hash::BuildHasher;
use std::sync::Arc;
use std::time::Duration;

use super::breaker::{Breaker, DEFAULT_BREAKER_COOL_DOWN, DEFAULT_BREAKER_THRESHOLD};
use super::cache::HybridCache;
use super::clock::Clock;
use super::codec::CodecChoice;
use super::engine::{Engine, Settings};
use super::l1::L1;
use super::l2::L2;
use super::notices::Notices;
use super::options::HybridEntryOptions;
use super::order::Order;
use super::propagate::Propagator;
use super::reads::Reads;
use super::stampede::Flights;
use super::stats::Stats;
use super::tasks::Tasks;
use crate::backplane::Backplane;
use crate::distributed::DistributedCache;

/// Default L1 capacity: 128 MiB of weighted entries.
pub const DEFAULT_L1_CAPACITY_BYTES: u64 = 128 * 1024 * 1024;
/// Default maximum key (and tag) length: 1024 bytes.
pub const DEFAULT_MAX_KEY_LENGTH: usize = 1024;
/// Default maximum encoded value size: 8 MiB.
pub const DEFAULT_MAX_PAYLOAD_BYTES: usize = 8 * 1024 * 1024;
/// Default timeout of each L2 and backplane operation, and the budget of one
/// call for all of its waits on them: 1 second.
pub const DEFAULT_L2_TIMEOUT: Duration = Duration::from_secs(1);
/// Default trust window: how long an instance that hears nothing of its own
/// heartbeats keeps trusting L1 (1 second).
pub const DEFAULT_TRUST_WINDOW: Duration = Duration::from_secs(1);

/// Builds a [`HybridCache`].
///
/// Defaults: no L2 (L1 only), no backplane, [`HybridEntryOptions::new`] as
/// entry defaults, L1 of [`DEFAULT_L1_CAPACITY_BYTES`] (128 MiB), a random
/// instance id, keys up to [`DEFAULT_MAX_KEY_LENGTH`] (1024) bytes, values up
/// to [`DEFAULT_MAX_PAYLOAD_BYTES`] (8 MiB) encoded, L2 and backplane calls
/// bounded by [`DEFAULT_L2_TIMEOUT`] (1 s, also the budget of one call for
/// all its waits on them), their circuit breakers opening after 5
/// consecutive failures for 1 s, a trust window of [`DEFAULT_TRUST_WINDOW`]
/// (1 s), the JSON codec, the name `default` (the `cache` label of its
/// metrics).
///
/// # Example
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// use std::sync::{Arc, Weak};
/// use std::time::Duration;
/// use strata_cache::{HybridCache, HybridEntryOptions, InProcessBackplane, MemoryDistributedCache};
///
/// let cache = HybridCache::builder()
///     .distributed(Arc::new(MemoryDistributedCache::new()))
///     .backplane(Arc::new(InProcessBackplane::new()))
///     .default_entry_options(HybridEntryOptions::new().with_expiration(Duration::from_secs(60)))
///     .l1_capacity_bytes(32 * 1024 * 1024)
///     .instance_id("catalog-1")
///     .postcard()
///     .build();
/// assert_eq!(cache.instance_id(), "catalog-1");
/// # });
/// ```
#[must_use]
pub struct HybridCacheBuilder {
    distributed: Option<Arc<dyn DistributedCache>>,
    backplane: Option<Arc<dyn Backplane>>,
    defaults: HybridEntryOptions,
    l1_capacity_bytes: u64,
    instance_id: Option<String>,
    max_key_length: usize,
    max_payload_bytes: usize,
    l2_timeout: Duration,
    breaker_threshold: u32,
    breaker_cool_down: Duration,
    trust_window: Duration,
    clock_offset_ms: i64,
    codec: CodecChoice,
    name: String,
}

impl std::fmt::Debug for HybridCacheBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HybridCacheBuilder")
            .field("distributed", &self.distributed.is_some())
            .field("backplane", &self.backplane.is_some())
            .field("l1_capacity_bytes", &self.l1_capacity_bytes)
            .field("instance_id", &self.instance_id)
            .finish_non_exhaustive()
    }
}

impl Default for HybridCacheBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl HybridCacheBuilder {
    /// A builder with the defaults listed on the type.
    pub fn new() -> Self {
        Self {
            distributed: None,
            backplane: None,
            defaults: HybridEntryOptions::new(),
            l1_capacity_bytes: DEFAULT_L1_CAPACITY_BYTES,
            instance_id: None,
            max_key_length: DEFAULT_MAX_KEY_LENGTH,
            max_payload_bytes: DEFAULT_MAX_PAYLOAD_BYTES,
            l2_timeout: DEFAULT_L2_TIMEOUT,
            breaker_threshold: DEFAULT_BREAKER_THRESHOLD,
            breaker_cool_down: DEFAULT_BREAKER_COOL_DOWN,
            trust_window: DEFAULT_TRUST_WINDOW,
            clock_offset_ms: 0,
            codec: CodecChoice::Json,
            name: "default".to_owned(),
        }
    }

    /// The L2: any [`DistributedCache`] (Redis, memory...), given as it is
    /// (backends are cheap `Clone` handles) or as an `Arc`. Without one the
    /// cache is L1 only.
    pub fn distributed(mut self, cache: impl DistributedCache) -> Self {
        self.distributed = Some(Arc::new(cache));
        self
    }

    /// The backplane that keeps instances' L1 coherent, given as it is or as
    /// an `Arc`.
    pub fn backplane(mut self, backplane: impl Backplane) -> Self {
        self.backplane = Some(Arc::new(backplane));
        self
    }

    /// This cache's name, the `cache` label of its metrics (default
    /// `default`): two caches of one process are told apart by it.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// The options of calls that take none ([`HybridCache::get`] copying an L2
    /// value to L1); callers usually pass
    /// [`HybridCache::default_entry_options`] to the others.
    pub fn default_entry_options(mut self, options: HybridEntryOptions) -> Self {
        self.defaults = options;
        self
    }

    /// L1 capacity in estimated bytes (keys, encoded sizes, tags, ~160 bytes
    /// of overhead per entry). Past it, entries not read lately are evicted.
    /// L1 is split into shards (four per core, 4 to 64), each with its share
    /// of the capacity: an entry heavier than one share is not kept in L1.
    pub fn l1_capacity_bytes(mut self, bytes: u64) -> Self {
        self.l1_capacity_bytes = bytes;
        self
    }

    /// This instance's id on the backplane; must differ between instances.
    pub fn instance_id(mut self, id: impl Into<String>) -> Self {
        self.instance_id = Some(id.into());
        self
    }

    /// Longest accepted key or tag, in bytes.
    pub fn max_key_length(mut self, length: usize) -> Self {
        self.max_key_length = length;
        self
    }

    /// Largest encoded value that is cached, in bytes.
    pub fn max_payload_bytes(mut self, bytes: usize) -> Self {
        self.max_payload_bytes = bytes;
        self
    }

    /// Timeout of each L2 and backplane operation, and the budget of one call
    /// for all of its waits on them: a call never waits longer for Redis,
    /// and what did not finish carries on in the background.
    pub fn l2_timeout(mut self, timeout: Duration) -> Self {
        self.l2_timeout = timeout;
        self
    }

    /// The circuit breakers of L2 and the backplane: open after `threshold`
    /// consecutive failures, skip the layer for `cool_down`, then probe. An
    /// open breaker defers changes, it never drops them.
    pub fn circuit_breaker(mut self, threshold: u32, cool_down: Duration) -> Self {
        self.breaker_threshold = threshold;
        self.breaker_cool_down = cool_down;
        self
    }

    /// How long this instance trusts its L1 without hearing its own
    /// heartbeats back on the backplane (heartbeats go out four times per
    /// window). Past it, L1 entries are served only once L2 confirms them,
    /// which bounds how stale a cut-off instance can be. With a backplane only.
    pub fn trust_window(mut self, window: Duration) -> Self {
        self.trust_window = window.max(Duration::from_millis(4));
        self
    }

    /// Shifts this instance's clock by `offset_ms` milliseconds (ahead when
    /// positive): fault injection, for tests of clock skew between machines.
    /// The clock decides expirations only, never the order of invalidations.
    pub fn clock_offset_ms(mut self, offset_ms: i64) -> Self {
        self.clock_offset_ms = offset_ms;
        self
    }

    /// Encode L2 payloads with [`Json`](crate::Json) (the default).
    ///
    /// HybridCache writes with one of the two codecs it knows, JSON or
    /// Postcard, chosen here: an L2 entry names its codec by a number, so
    /// instances configured differently still read each other's entries, and
    /// a [`Codec`](crate::Codec) of your own cannot be plugged in (its
    /// entries would be unreadable to instances without it). For another
    /// format, encode the value yourself and use the raw-bytes operations
    /// ([`get_or_create_bytes`](HybridCache::get_or_create_bytes),
    /// [`set_bytes`](HybridCache::set_bytes)): the bytes are stored and
    /// served as they are.
    pub fn json(mut self) -> Self {
        self.codec = CodecChoice::Json;
        self
    }

    #[cfg(feature = "postcard")]
    /// Encode L2 payloads with [`Postcard`](crate::Postcard): compact and
    /// faster. Entries written with either codec stay readable.
    pub fn postcard(mut self) -> Self {
        self.codec = CodecChoice::Postcard;
        self
    }

    /// Builds the cache. Its background tasks start on the current Tokio
    /// runtime, or on the runtime of its first call when built outside one.
    /// Building cannot fail: nothing is connected or validated here that a
    /// call would not meet anyway (L2 and the backplane connect on their own,
    /// invalid entry options are rejected by the calls that use them).
    pub fn build(self) -> HybridCache {
        let random = foldhash::fast::RandomState::default();
        let id = self.instance_id.unwrap_or_else(|| {
            format!(
                "{:016x}",
                random.hash_one((std::process::id(), std::time::SystemTime::now()))
            )
        });
        let clock = Clock::with_offset(self.clock_offset_ms);
        let stats = Arc::new(Stats::new(self.name.clone()));
        let with_l2 = self.distributed.is_some();
        let with_backplane = self.backplane.is_some();
        let notices = self.backplane.map(|backplane| {
            Notices::new(
                backplane,
                id.clone(),
                self.l2_timeout,
                Breaker::new("backplane", self.breaker_threshold, self.breaker_cool_down),
                self.trust_window,
                clock.clone(),
                Arc::clone(&stats),
            )
        });
        let engine = Arc::new(Engine {
            id,
            settings: Settings {
                name: self.name,
                codec: self.codec,
                defaults: self.defaults,
                max_key_length: self.max_key_length,
                max_payload_bytes: self.max_payload_bytes,
                random,
            },
            l1: L1::new(self.l1_capacity_bytes),
            l2: L2::new(
                self.distributed,
                self.l2_timeout,
                Breaker::new("l2", self.breaker_threshold, self.breaker_cool_down),
                clock.clone(),
                Arc::clone(&stats),
            ),
            order: Order::new(with_l2, with_backplane),
            reads: Arc::new(Reads::default()),
            flights: Arc::new(Flights::default()),
            propagator: Propagator::default(),
            notices,
            tasks: Tasks::new(tracing::Span::current()),
            clock,
            stats,
        });
        Engine::ensure_tasks(&engine);
        HybridCache { engine }
    }
}
