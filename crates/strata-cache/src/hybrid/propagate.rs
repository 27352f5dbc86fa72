//! [`Propagator`]: carries this instance's changes to L2 and the backplane,
//! and keeps what could not be carried until it can (auto-recovery).
//!
//! A change (`set`, `remove`, `remove_by_tag`, `clear`) becomes a [`Job`]:
//! its L2 operation (write, tombstone, or stamp advance), then its notice.
//! The caller has already applied it to L1; the job runs in its own task, so
//! a caller that gives up (its budget spent, its future dropped) cancels
//! nothing. The caller waits for the job within its budget and learns whether
//! it completed ([`Propagation`]).
//!
//! Rules:
//!
//! - **Per target, in order.** Jobs of one key (or tag, or `clear`) run one
//!   after the other, in submission order (a fair lock per target), so a
//!   newer write never lands before an older one.
//! - **Nothing dropped.** A job that fails, times out, or meets an open
//!   breaker is queued and replayed in order by one worker as soon as L2 and
//!   the backplane answer (backoff from 50 ms to 1 s between tries). Per
//!   target only the latest job is kept: once a newer one succeeds, older
//!   ones are moot. Past [`MAX_QUEUED`] targets the queue collapses into one
//!   `clear`: every entry becomes stale, which is safe, and bounded.
//! - **A late write is replayed as a removal.** A `set` that did not reach
//!   L2 in time may land, replayed, after a newer write of the key by another
//!   instance (whose caller went on when ours returned `Deferred`): storing
//!   our value then would bring an older value back. So a queued write
//!   becomes a tombstone and its notice: L2 and the peers lose the old value,
//!   and the next read loads the source of truth. This instance keeps the
//!   written value in its own L1.
//! - **Pending means untrusted.** While a job of a key is queued or running,
//!   this instance does not read that key from L2 (see `fetch`); a pending
//!   tag or `clear` is tracked by `order`.
//!
//! A job whose L2 part succeeded and whose notice failed is kept for its
//! notice only.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{Notify, watch};
use tokio::time::Instant;

use super::engine::Engine;
use super::envelope::{Envelope, entry_key};
use super::l2::L2Error;
use super::order::{RECORD_TTL, Scope};
use super::stats::Event;
use crate::backplane::BackplaneMessage;
use crate::options::EntryOptions;

/// Most targets kept for replay before the queue collapses into one `clear`.
pub(crate) const MAX_QUEUED: usize = 100_000;
/// First pause of the replay worker after a failed try.
const RETRY_MIN: Duration = Duration::from_millis(50);
/// Longest pause between tries: a Redis that comes back is used within a second.
const RETRY_MAX: Duration = Duration::from_secs(1);

/// Whether a change reached L2 and the other instances before the call returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Propagation {
    /// L2 holds the change and the backplane carried its notice (or the cache
    /// has neither).
    Complete,
    /// The change is applied here, but L2 or the backplane did not take it
    /// within the call's budget: it finishes in the background or is replayed
    /// as soon as they answer. Other instances may serve the old state until
    /// then; see [`HybridStats::pending_operations`](super::HybridStats::pending_operations).
    Deferred,
}

impl Propagation {
    /// True for [`Propagation::Complete`].
    pub fn is_complete(self) -> bool {
        self == Propagation::Complete
    }
}

/// What a job changes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum Target {
    Key(String),
    Tag(String),
    Clear,
}

/// An entry to write to L2, encoded but for its stamps (taken when the job
/// runs, see `Order::stamps_for`).
#[derive(Debug)]
pub(crate) struct EntryWrite {
    pub(crate) codec: u8,
    pub(crate) payload: Bytes,
    pub(crate) created_ms: u64,
    pub(crate) logical_expiry_ms: u64,
    pub(crate) tags: Vec<String>,
    pub(crate) l2_options: EntryOptions,
}

/// The change of a job.
#[derive(Debug, Clone)]
pub(crate) enum Change {
    /// Write the entry (a `Target::Key`).
    Write(Arc<EntryWrite>),
    /// Remove the entry (a `Target::Key`).
    Remove,
    /// Advance the stamp (a `Target::Tag` or `Target::Clear`).
    Invalidate,
}

/// One change on its way to L2 and the backplane.
#[derive(Debug, Clone)]
pub(crate) struct Job {
    /// Orders the jobs of one target: a later submission has a larger id.
    id: u64,
    target: Target,
    change: Change,
    /// The local sequence number of the change, for the stamps of a written
    /// entry (see `order`).
    seq: u64,
    /// Set once the L2 part succeeded: what the notice carries (a tag's stamp).
    l2_done: Option<u64>,
}

impl Job {
    pub(crate) fn new(target: Target, change: Change, seq: u64) -> Self {
        static NEXT_ID: AtomicU64 = AtomicU64::new(1);
        Self {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            target,
            change,
            seq,
            l2_done: None,
        }
    }
}

/// The state of one target with jobs running or queued.
#[derive(Debug)]
struct Slot {
    running: usize,
    queued: Option<(u64, Job)>,
    /// The newest job id carried through, for waiters.
    done: watch::Sender<u64>,
    /// Serialises the jobs of this target (fair: in submission order).
    lock: Arc<tokio::sync::Mutex<()>>,
}

#[derive(Debug, Default)]
struct Registry {
    targets: HashMap<Target, Slot>,
    /// Queued targets in replay order.
    queue: BTreeMap<u64, Target>,
    next_order: u64,
}

/// A caller's wait for its job.
#[derive(Debug)]
pub(crate) struct Ticket {
    done: watch::Receiver<u64>,
    id: u64,
}

impl Ticket {
    /// Waits until the job (or a newer one of its target) completed, or `deadline`.
    pub(crate) async fn wait(mut self, deadline: Instant) -> Propagation {
        let id = self.id;
        match tokio::time::timeout_at(deadline, self.done.wait_for(|done| *done >= id)).await {
            Ok(Ok(_)) => Propagation::Complete,
            _ => Propagation::Deferred,
        }
    }
}

/// The propagation side of one cache.
#[derive(Debug, Default)]
pub(crate) struct Propagator {
    // A std Mutex: map operations only, never across an await.
    registry: Mutex<Registry>,
    /// Wakes the replay worker when something is queued. In an `Arc` so
    /// that the idle worker waits on it without keeping the cache alive.
    wake: Arc<Notify>,
}

impl Propagator {
    fn lock(&self) -> MutexGuard<'_, Registry> {
        self.registry.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// True while a job of `key` is running or queued.
    pub(crate) fn is_pending_key(&self, key: &str) -> bool {
        let registry = self.lock();
        !registry.targets.is_empty() && registry.targets.contains_key(&Target::Key(key.to_owned()))
    }

    /// Targets with a job running or queued.
    pub(crate) fn pending(&self) -> usize {
        self.lock().targets.len()
    }

    /// Runs `job` for `engine`: at once in its own task when nothing of its
    /// target is queued and L2 is not known down, else through the queue.
    pub(crate) fn submit(engine: &Arc<Engine>, job: Job) -> Ticket {
        let this = &engine.propagator;
        let live = !engine.l2.is_open() && !engine.notices_open();
        let (ticket, lock) = {
            let mut registry = this.lock();
            let slot = registry
                .targets
                .entry(job.target.clone())
                .or_insert_with(|| Slot {
                    running: 0,
                    queued: None,
                    done: watch::Sender::new(0),
                    lock: Arc::default(),
                });
            let ticket = Ticket {
                done: slot.done.subscribe(),
                id: job.id,
            };
            if live && slot.queued.is_none() {
                slot.running += 1;
                (ticket, Some(Arc::clone(&slot.lock)))
            } else {
                drop(registry);
                this.enqueue(engine, job.clone());
                return ticket;
            }
        };
        let Some(lock) = lock else { return ticket };
        let weak = Arc::downgrade(engine);
        tokio::spawn(async move {
            let _turn = lock.lock().await;
            let Some(engine) = weak.upgrade() else { return };
            let mut job = job;
            let outcome = execute(&engine, &mut job).await;
            let this = &engine.propagator;
            match outcome {
                Ok(()) => this.finished(&job),
                Err(()) => this.enqueue(&engine, job.clone()),
            }
            this.release_running(&job.target);
        });
        ticket
    }

    /// Queues `job` for replay (the latest job of a target wins). A write
    /// that did not reach L2 is replayed as a removal (see the module docs).
    fn enqueue(&self, engine: &Arc<Engine>, mut job: Job) {
        engine.stats.record(Event::Deferred);
        if job.l2_done.is_none() && matches!(job.change, Change::Write(_)) {
            job.change = Change::Remove;
        }
        let overflow = {
            let mut registry = self.lock();
            let order = registry.next_order;
            registry.next_order += 1;
            let Registry { targets, queue, .. } = &mut *registry;
            let slot = targets.entry(job.target.clone()).or_insert_with(|| Slot {
                running: 0,
                queued: None,
                done: watch::Sender::new(0),
                lock: Arc::default(),
            });
            if *slot.done.borrow() >= job.id {
                return; // a newer job of the target already went through
            }
            let older = slot.queued.as_ref().is_some_and(|(_, q)| q.id > job.id);
            if !older {
                if let Some((old_order, _)) = slot.queued.take() {
                    queue.remove(&old_order);
                }
                queue.insert(order, job.target.clone());
                slot.queued = Some((order, job));
            }
            queue.len() > MAX_QUEUED
        };
        if overflow {
            self.collapse(engine);
        }
        engine.stats.set_pending(self.pending());
        self.wake.notify_one();
        Engine::ensure_tasks(engine);
    }

    /// Too much to replay: everything queued is replaced by one `clear`.
    fn collapse(&self, engine: &Arc<Engine>) {
        tracing::error!(
            max = MAX_QUEUED,
            "too many changes are waiting for L2 and the backplane: replacing them with one \
             clear of the whole cache"
        );
        let seq = engine.order.invalidate(Scope::Clear);
        engine.l1.clear();
        let mut registry = self.lock();
        let Registry { targets, queue, .. } = &mut *registry;
        queue.clear();
        targets.retain(|_, slot| {
            slot.queued = None;
            slot.running > 0
        });
        let order = registry.next_order;
        registry.next_order += 1;
        let job = Job::new(Target::Clear, Change::Invalidate, seq);
        registry.queue.insert(order, Target::Clear);
        let slot = registry
            .targets
            .entry(Target::Clear)
            .or_insert_with(|| Slot {
                running: 0,
                queued: None,
                done: watch::Sender::new(0),
                lock: Arc::default(),
            });
        slot.queued = Some((order, job));
    }

    /// `job` went through: its waiters (and those of older jobs of its
    /// target) are told, and an older queued job of the target is dropped.
    fn finished(&self, job: &Job) {
        let mut registry = self.lock();
        let Registry { targets, queue, .. } = &mut *registry;
        if let Some(slot) = targets.get_mut(&job.target) {
            slot.done.send_if_modified(|done| {
                let newer = job.id > *done;
                *done = (*done).max(job.id);
                newer
            });
            if let Some((order, queued)) = &slot.queued
                && queued.id <= job.id
            {
                queue.remove(order);
                slot.queued = None;
            }
        }
    }

    fn release_running(&self, target: &Target) {
        let mut registry = self.lock();
        if let Some(slot) = registry.targets.get_mut(target) {
            slot.running -= 1;
            if slot.running == 0 && slot.queued.is_none() {
                registry.targets.remove(target);
            }
        }
    }

    /// The replay worker: runs queued jobs in order until the cache is gone.
    pub(crate) async fn replay(engine: Weak<Engine>, mut shutdown: watch::Receiver<()>) {
        let mut pause = RETRY_MIN;
        loop {
            let Some(strong) = engine.upgrade() else {
                return;
            };
            let this = &strong.propagator;
            let next = {
                let registry = this.lock();
                registry
                    .queue
                    .first_key_value()
                    .and_then(|(order, target)| {
                        let slot = registry.targets.get(target)?;
                        let (_, job) = slot.queued.as_ref()?;
                        Some((*order, job.clone(), Arc::clone(&slot.lock)))
                    })
            };
            let Some((order, mut job, lock)) = next else {
                let wake = Arc::clone(&this.wake);
                drop(strong);
                let woken = wake.notified();
                tokio::select! {
                    () = woken => continue,
                    _ = shutdown.changed() => return,
                }
            };
            let turn = lock.lock().await;
            let outcome = execute(&strong, &mut job).await;
            drop(turn);
            {
                let mut registry = this.lock();
                let Registry { targets, queue, .. } = &mut *registry;
                if let Some(slot) = targets.get_mut(&job.target)
                    && let Some((queued_order, queued)) = &mut slot.queued
                    && *queued_order == order
                {
                    match outcome {
                        Ok(()) => {
                            queue.remove(&order);
                            slot.queued = None;
                            slot.done.send_if_modified(|done| {
                                let newer = job.id > *done;
                                *done = (*done).max(job.id);
                                newer
                            });
                            if slot.running == 0 {
                                targets.remove(&job.target);
                            }
                        }
                        Err(()) => *queued = job.clone(),
                    }
                }
            }
            strong.stats.set_pending(this.pending());
            match outcome {
                Ok(()) => {
                    strong.stats.record(Event::Replayed);
                    pause = RETRY_MIN;
                }
                Err(()) => {
                    drop(strong);
                    tokio::select! {
                        () = tokio::time::sleep(pause) => {}
                        _ = shutdown.changed() => return,
                    }
                    pause = (pause * 2).min(RETRY_MAX);
                }
            }
        }
    }
}

/// Runs one job: its L2 part (unless done), then its notice.
async fn execute(engine: &Engine, job: &mut Job) -> Result<(), ()> {
    if job.l2_done.is_none() {
        job.l2_done = Some(l2_part(engine, job).await?);
    }
    let stamp = job.l2_done.unwrap_or(0);
    let Some(notices) = &engine.notices else {
        return Ok(());
    };
    let message = match &job.target {
        Target::Key(key) => BackplaneMessage::Evict { key: key.clone() },
        Target::Tag(tag) => BackplaneMessage::TagInvalidated {
            tag: tag.clone(),
            stamp,
        },
        Target::Clear => BackplaneMessage::Cleared { stamp },
    };
    notices.publish(message).await.map_err(|_| ())
}

/// The L2 part of a job; returns the stamp a tag or clear notice carries (0
/// without L2).
async fn l2_part(engine: &Engine, job: &Job) -> Result<u64, ()> {
    let l2 = &engine.l2;
    let result = match (&job.target, &job.change) {
        (Target::Key(key), Change::Write(entry)) => {
            let (clear_stamp, tags) = engine.order.stamps_for(&entry.tags, job.seq);
            let envelope = Envelope {
                codec: entry.codec,
                created_ms: entry.created_ms,
                logical_expiry_ms: entry.logical_expiry_ms,
                clear_stamp,
                tags,
                payload: entry.payload.clone(),
            };
            let bytes = Bytes::from(envelope.encode());
            l2.write(&entry_key(key), bytes, &entry.l2_options)
                .await
                .map(|()| 0)
        }
        (Target::Key(key), _) => l2.remove(&entry_key(key)).await.map(|()| 0),
        (Target::Tag(tag), _) => stamp(engine, Scope::Tag(tag), job.seq).await,
        (Target::Clear, _) => stamp(engine, Scope::Clear, job.seq).await,
    };
    match result {
        Ok(stamp) => Ok(stamp),
        Err(L2Error::Absent) => Ok(0),
        Err(L2Error::Skipped | L2Error::Failed) => Err(()),
    }
}

async fn stamp(engine: &Engine, scope: Scope<'_>, seq: u64) -> Result<u64, L2Error> {
    let record = EntryOptions::new().with_relative_expiration(RECORD_TTL);
    let stamp = engine.l2.stamp(&scope.record_key(), &record).await?;
    engine.order.own_stamp(scope, stamp, seq);
    Ok(stamp)
}
