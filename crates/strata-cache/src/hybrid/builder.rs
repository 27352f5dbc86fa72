//! [`HybridCacheBuilder`]: every cache-wide setting and its default, in one place.

use std::hash::BuildHasher;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio::sync::oneshot;

use super::cache::{HybridCache, Inner};
use super::clock::Clock;
use super::codec::CodecChoice;
use super::invalidation::Reads;
use super::l1::L1;
use super::l2::{Breaker, DEFAULT_BREAKER_COOL_DOWN, DEFAULT_BREAKER_THRESHOLD, L2};
use super::listener::{self, Announcer};
use super::options::HybridEntryOptions;
use super::stampede::Flights;
use super::stats::{FLUSH_EVERY, Stats};
use super::tags::Tags;
use crate::backplane::Backplane;
use crate::distributed::DistributedCache;

/// Default L1 capacity: 128 MiB of weighted entries.
pub const DEFAULT_L1_CAPACITY_BYTES: u64 = 128 * 1024 * 1024;
/// Default maximum key (and tag) length: 1024 bytes.
pub const DEFAULT_MAX_KEY_LENGTH: usize = 1024;
/// Default maximum encoded value size: 8 MiB.
pub const DEFAULT_MAX_PAYLOAD_BYTES: usize = 8 * 1024 * 1024;
/// Default timeout of each L2 and backplane operation: 1 second.
pub const DEFAULT_L2_TIMEOUT: Duration = Duration::from_secs(1);

/// Builds a [`HybridCache`].
///
/// Defaults: no L2 (L1 only), no backplane, [`HybridEntryOptions::new`] as
/// entry defaults, L1 of [`DEFAULT_L1_CAPACITY_BYTES`] (128 MiB), a random
/// instance id, keys up to [`DEFAULT_MAX_KEY_LENGTH`] (1024) bytes, values up
/// to [`DEFAULT_MAX_PAYLOAD_BYTES`] (8 MiB) encoded, L2 and backplane calls
/// bounded by [`DEFAULT_L2_TIMEOUT`] (1 s), their circuit breakers opening
/// after 5 consecutive failures for 10 s, the JSON codec.
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
    codec: CodecChoice,
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
            codec: CodecChoice::Json,
        }
    }

    /// The L2: any [`DistributedCache`] (Redis, memory...). Without one the
    /// cache is L1 only.
    pub fn distributed(mut self, cache: Arc<dyn DistributedCache>) -> Self {
        self.distributed = Some(cache);
        self
    }

    /// The backplane that keeps instances' L1 coherent. Requires a Tokio
    /// runtime at [`build`](Self::build).
    pub fn backplane(mut self, backplane: Arc<dyn Backplane>) -> Self {
        self.backplane = Some(backplane);
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

    /// Timeout of each L2 and backplane operation.
    pub fn l2_timeout(mut self, timeout: Duration) -> Self {
        self.l2_timeout = timeout;
        self
    }

    /// The circuit breakers of L2 and the backplane: open after `threshold`
    /// consecutive failures, skip the layer for `cool_down`, then probe.
    pub fn circuit_breaker(mut self, threshold: u32, cool_down: Duration) -> Self {
        self.breaker_threshold = threshold;
        self.breaker_cool_down = cool_down;
        self
    }

    /// Encode L2 payloads with [`Json`](crate::Json) (the default).
    pub fn json(mut self) -> Self {
        self.codec = CodecChoice::Json;
        self
    }

    /// Encode L2 payloads with [`Postcard`](crate::Postcard): compact and
    /// faster. Entries written with either codec stay readable.
    pub fn postcard(mut self) -> Self {
        self.codec = CodecChoice::Postcard;
        self
    }

    /// Builds the cache.
    ///
    /// Install the `metrics` recorder before this call: the cache registers
    /// its counters here.
    ///
    /// # Panics
    ///
    /// When a backplane is set and no Tokio runtime is running: the listener
    /// task is spawned here.
    pub fn build(self) -> HybridCache {
        let random = foldhash::fast::RandomState::default();
        let instance_id = self.instance_id.unwrap_or_else(|| {
            format!(
                "{:016x}",
                random.hash_one((std::process::id(), std::time::SystemTime::now()))
            )
        });
        let subscription = self.backplane.as_ref().map(|b| b.subscribe());
        let (shutdown_tx, shutdown_rx) = oneshot::channel();
        let inner = Arc::new(Inner {
            instance_id,
            l1: L1::new(self.l1_capacity_bytes),
            l2: L2::new(
                self.distributed,
                self.l2_timeout,
                Breaker::new("l2", self.breaker_threshold, self.breaker_cool_down),
            ),
            announcer: self.backplane.map(|backplane| Announcer {
                backplane,
                breaker: Breaker::new("backplane", self.breaker_threshold, self.breaker_cool_down),
                timeout: self.l2_timeout,
            }),
            flights: Arc::new(Flights::default()),
            reads: Arc::new(Reads::default()),
            tags: Tags::new(),
            clock: Clock::new(),
            stats: Stats::new(),
            gap_epoch: AtomicU64::new(0),
            codec: self.codec,
            defaults: self.defaults,
            max_key_length: self.max_key_length,
            max_payload_bytes: self.max_payload_bytes,
            random,
            _shutdown: Some(shutdown_tx),
        });
        if let Some(subscription) = subscription {
            listener::spawn(Arc::downgrade(&inner), subscription, shutdown_rx);
        }
        spawn_metrics_flush(Arc::downgrade(&inner));
        HybridCache { inner }
    }
}

/// Adds the L1 hits to the `metrics` counter every [`FLUSH_EVERY`] (the hit
/// path does not touch the metric), until the cache is dropped. Without a
/// runtime, hits reach the metric when the cache is dropped.
fn spawn_metrics_flush(cache: Weak<Inner>) {
    let Ok(handle) = tokio::runtime::Handle::try_current() else {
        return;
    };
    handle.spawn(async move {
        let mut interval = tokio::time::interval(FLUSH_EVERY);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            interval.tick().await;
            let Some(cache) = cache.upgrade() else { return };
            cache.stats.flush_metrics();
        }
    });
}
