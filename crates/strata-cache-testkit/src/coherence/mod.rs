//! The coherence checker: runs concurrent readers and writers against several
//! instances of a cached system, injects faults, and checks every read
//! against the history of acknowledged writes.
//!
//! The system under test is a [`Subject`]: something that reads a key
//! through instance `i` (returning the version the value carries) and
//! applies a write through instance `i` (a change of the source of truth,
//! then its invalidation), returning once acknowledged. [`hybrid`] provides
//! one for HybridCache instances on a real Redis; the Catalog's tests
//! provide one over HTTP.
//!
//! A read is *stale* when it returns an older version than a write that was
//! acknowledged before the read began. Staleness within the bound of the
//! conditions the write met is expected (a notice takes time to arrive); a
//! stale read beyond its bound is a *violation*. Bounds ([`Bounds`]):
//!
//! - healthy: 50 ms after the write call returned;
//! - while notices are lost, or an instance is cut off: the trust window;
//! - writes made while Redis was unreachable, hung or restarting (or within
//!   the recovery bound after: an instance is still reconnecting then), or
//!   whose call returned `Deferred`: the end of the outage plus reconnect
//!   time plus 1 s.
//!
//! Writes of one key are serialised with their cache call (the checker
//! holds a lock per key, as an application holds a row lock until it has
//! updated the cache): two `set`s of one key racing from two instances end
//! with whichever reached Redis last, whatever order the source of truth
//! committed them in, and no cache can tell. Invalidations (`remove`,
//! `remove_by_tag`) have no such hazard.
//!
//! Reads that overlap a time when the source of truth was down are not
//! judged: fail-safe may serve an older value on purpose; they are counted
//! apart. The [`Report`] has the counts, the worst staleness and the
//! staleness distribution.
//!
//! Layout: this file holds the configuration, the workload and the report;
//! `judge` the history and its verdicts; `hybrid` the HybridCache subject and
//! its fault plan.

pub mod hybrid;
mod judge;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use tokio::time::Instant;

pub use judge::{Bounds, FaultKind, History, Report};

/// What a writer changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Write {
    /// Change the row of a key, then `set` its new value in the cache.
    Set(usize),
    /// Change the row of a key, then `remove` it from the cache.
    Remove(usize),
    /// Change every row of a group, then `remove_by_tag` the group's tag.
    Tag(usize),
}

/// How a write call ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ack {
    /// The new version of each key the write changed.
    pub versions: Vec<(usize, u64)>,
    /// The call said the change was not carried to every layer yet.
    pub deferred: bool,
}

/// A cached system with several instances.
#[async_trait]
pub trait Subject: Send + Sync + 'static {
    /// Number of instances.
    fn instances(&self) -> usize;

    /// Reads `key` through instance `i`: the version of the value returned
    /// (0 for a key never written), or `None` when the read failed.
    async fn read(&self, i: usize, key: usize) -> Option<u64>;

    /// Applies `write` through instance `i` and returns once the call
    /// returned; `None` when it failed.
    async fn write(&self, i: usize, write: Write) -> Option<Ack>;

    /// Factory runs so far, over all instances.
    fn factory_runs(&self) -> u64;
}

/// The workload.
#[derive(Debug, Clone)]
pub struct Config {
    /// Keys in the key space.
    pub keys: usize,
    /// Keys per tag group.
    pub group_size: usize,
    /// Concurrent readers per instance.
    pub readers: usize,
    /// Concurrent writers in all.
    pub writers: usize,
    /// How long readers and writers run.
    pub duration: Duration,
    /// Pause of a reader between two reads: readers are not meant to starve
    /// Redis and the instances' tasks of CPU.
    pub read_pause: Duration,
    /// Pause of a writer between two writes.
    pub write_pause: Duration,
    /// Share of reads and writes whose caller gives up after a random short
    /// time (0 to 1): the call's future is dropped mid-call.
    pub cancel_ratio: f64,
    /// Share of writes followed at once by more writes of the same key or
    /// group (a burst inside one millisecond).
    pub burst_ratio: f64,
    /// Seed of every random choice.
    pub seed: u64,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            keys: 64,
            group_size: 8,
            readers: 4,
            writers: 2,
            duration: Duration::from_secs(20),
            read_pause: Duration::from_millis(1),
            write_pause: Duration::from_millis(20),
            cancel_ratio: 0.02,
            burst_ratio: 0.05,
            seed: 0x5EED,
        }
    }
}

impl Config {
    /// The group (tag) of `key`.
    pub fn group_of(&self, key: usize) -> usize {
        key / self.group_size.max(1)
    }

    /// The keys of `group`.
    pub fn keys_of(&self, group: usize) -> std::ops::Range<usize> {
        let size = self.group_size.max(1);
        (group * size)..((group + 1) * size).min(self.keys)
    }

    /// Number of groups.
    pub fn groups(&self) -> usize {
        self.keys.div_ceil(self.group_size.max(1))
    }
}

/// A small deterministic random source (xorshift64*), so that a run can be
/// repeated from its seed.
#[derive(Debug)]
pub struct Random(AtomicU64);

impl Random {
    /// A source seeded with `seed`.
    pub fn new(seed: u64) -> Self {
        Self(AtomicU64::new(seed | 1))
    }

    /// The next number.
    pub fn next(&self) -> u64 {
        let mut x = self.0.load(Ordering::Relaxed);
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0.store(x, Ordering::Relaxed);
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number below `n` (n > 0).
    pub fn below(&self, n: usize) -> usize {
        // Casting a u64 below n back to usize is lossless.
        #[allow(clippy::cast_possible_truncation)]
        let pick = (self.next() % n.max(1) as u64) as usize;
        pick
    }

    /// True with probability `p`.
    pub fn chance(&self, p: f64) -> bool {
        #[allow(clippy::cast_precision_loss)]
        let x = (self.next() >> 11) as f64 / (1u64 << 53) as f64;
        x < p
    }
}

/// Runs the workload against `subject` while `history` records reads,
/// writes and (through the subject's fault plan) faults; returns when the
/// configured duration is over and every task ended.
pub async fn run_workload<S: Subject>(subject: Arc<S>, config: &Config, history: Arc<History>) {
    let deadline = Instant::now() + config.duration;
    let mut tasks = Vec::new();
    for i in 0..subject.instances() {
        for r in 0..config.readers {
            let (subject, history, config) =
                (Arc::clone(&subject), Arc::clone(&history), config.clone());
            let random = Random::new(config.seed ^ ((i as u64) << 32) ^ r as u64 ^ 0xA5A5);
            tasks.push(tokio::spawn(async move {
                while Instant::now() < deadline {
                    let key = random.below(config.keys);
                    let started = Instant::now();
                    let read = subject.read(i, key);
                    let version = if random.chance(config.cancel_ratio) {
                        let patience = Duration::from_micros(random.next() % 2_000);
                        match tokio::time::timeout(patience, read).await {
                            Ok(version) => version,
                            Err(_) => continue, // the caller gave up
                        }
                    } else {
                        read.await
                    };
                    if let Some(version) = version {
                        history.read(i, key, started, Instant::now(), version);
                    }
                    tokio::time::sleep(config.read_pause).await;
                }
            }));
        }
    }
    let locks: Arc<Vec<tokio::sync::Mutex<()>>> = Arc::new(
        (0..config.keys)
            .map(|_| tokio::sync::Mutex::new(()))
            .collect(),
    );
    for w in 0..config.writers {
        let (subject, history, config) =
            (Arc::clone(&subject), Arc::clone(&history), config.clone());
        let locks = Arc::clone(&locks);
        let random = Random::new(config.seed ^ 0x5A5A_0000 ^ w as u64);
        tasks.push(tokio::spawn(async move {
            while Instant::now() < deadline {
                let instance = random.below(subject.instances());
                let write = match random.below(10) {
                    0 => Write::Tag(random.below(config.groups())),
                    1..=3 => Write::Remove(random.below(config.keys)),
                    _ => Write::Set(random.below(config.keys)),
                };
                let burst = if random.chance(config.burst_ratio) {
                    3
                } else {
                    1
                };
                let keys = match write {
                    Write::Set(key) | Write::Remove(key) => key..key + 1,
                    Write::Tag(group) => config.keys_of(group),
                };
                // In key order: no two writers wait for each other in a cycle.
                let mut held = Vec::with_capacity(keys.len());
                for key in keys {
                    held.push(locks[key].lock().await);
                }
                for _ in 0..burst {
                    let started = Instant::now();
                    let call = subject.write(instance, write);
                    let ack = if random.chance(config.cancel_ratio) {
                        let patience = Duration::from_micros(random.next() % 2_000);
                        tokio::time::timeout(patience, call).await.ok().flatten()
                    } else {
                        call.await
                    };
                    if let Some(ack) = ack {
                        history.write(write, started, Instant::now(), &ack);
                    }
                }
                drop(held);
                tokio::time::sleep(config.write_pause).await;
            }
        }));
    }
    for task in tasks {
        let _ = task.await;
    }
}
