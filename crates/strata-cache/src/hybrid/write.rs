//! Writing: building L1 entries ([`NewEntry`]), putting them in L1 unless
//! the read that produced them was invalidated ([`Engine::insert_l1`]), and
//! the explicit changes `set`, `remove`, `remove_by_tag` and `clear`, which
//! apply to L1 at once and leave L2 and the backplane to a propagation job.
//!
//! A change is local first: once the call has applied it, this instance
//! reads its own writes, whatever happens to L2. The job then carries it out
//! (see `propagate`); the caller waits for it at most one `l2_timeout`.

use std::hash::BuildHasher;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use bytes::Bytes;

use super::clock::millis;
use super::codec::too_large;
use super::engine::Engine;
use super::l1::{L1Entry, UNCHECKED};
use super::options::HybridEntryOptions;
use super::order::Scope;
use super::propagate::{Change, EntryWrite, Job, Propagation, Propagator, Target};
use super::reads::ReadMark;
use super::repr::Repr;
use crate::error::Result;
use crate::options::EntryOptions;

/// When a value was stored, and until when it is logically fresh.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Times {
    pub(crate) created_ms: u64,
    pub(crate) logical_expiry_ms: u64,
}

impl Times {
    /// A value stored at `now_ms` under `options`: expiration counts from the
    /// store, not from when its factory started.
    pub(crate) fn stored_at(now_ms: u64, options: &HybridEntryOptions) -> Self {
        Self {
            created_ms: now_ms,
            logical_expiry_ms: now_ms.saturating_add(millis(options.expiration)),
        }
    }
}

/// What an L1 entry is built from, besides its value.
#[derive(Debug)]
pub(crate) struct NewEntry<'a> {
    pub(crate) key: &'a str,
    pub(crate) options: &'a HybridEntryOptions,
    pub(crate) times: Times,
    pub(crate) tags: Vec<String>,
    /// The sequence number the read that produced the value began at.
    pub(crate) read_seq: u64,
    pub(crate) l2_version: Option<u64>,
    pub(crate) payload_len: u64,
}

impl Engine {
    /// Builds an L1 entry: local expiration (with jitter, capped by the
    /// logical expiry), fail-safe retention and eager-refresh point.
    pub(crate) fn build_entry<R: Repr>(&self, value: R::Value, new: NewEntry<'_>) -> L1Entry {
        let NewEntry {
            key,
            options,
            times,
            tags,
            read_seq,
            l2_version,
            payload_len,
        } = new;
        let now = self.clock.now_ms();
        let local = options
            .local_expiration
            .map_or(options.expiration, |l| l.min(options.expiration));
        let jitter = options.jitter.map_or(0, |j| match millis(j) {
            0 => 0,
            span => self.settings.random.hash_one((key, now)) % span,
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
            value: R::store(value),
            created_ms: times.created_ms,
            logical_expiry_ms: times.logical_expiry_ms,
            fresh_until_ms: AtomicU64::new(fresh_until_ms),
            fresh_cap_ms,
            sliding_ms,
            stale_until_ms,
            eager_at_ms,
            eager_started: AtomicBool::new(false),
            tags: tags.into_boxed_slice(),
            read_seq,
            checked: AtomicU64::new(UNCHECKED),
            confirmed_seq: AtomicU64::new(read_seq),
            l2_version,
            payload_len,
        }
    }

    /// Puts `entry` in L1 unless its key (`mark`) or one of its tags was
    /// invalidated since its read began; true when it did. The entry is
    /// checked as of the epoch read before that test, so an invalidation
    /// landing right after it still reaches the entry on its next hit.
    pub(crate) fn insert_l1(
        &self,
        key: &str,
        entry: &Arc<L1Entry>,
        mark: Option<&ReadMark>,
    ) -> bool {
        let epoch = self.order.epoch();
        let current = || !self.order.changed_since(entry.read_seq, &entry.tags);
        let insert = || {
            let checked = if self.is_cut_off() { UNCHECKED } else { epoch };
            entry.checked.store(checked, Ordering::Release);
            self.l1.insert(key, Arc::clone(entry));
        };
        match mark {
            Some(mark) => mark.write_unless_set(current, insert),
            None if current() => {
                insert();
                true
            }
            None => false,
        }
    }
}

/// `set`: applies the value to L1 and hands L2 and the backplane to a job.
/// A value that does not encode (or is too large) removes the key instead,
/// and the error is returned: after a failed `set` the key reads as missing,
/// never as the value it held before.
pub(crate) async fn set<R: Repr>(
    engine: &Arc<Engine>,
    key: &str,
    value: R::Value,
    options: &HybridEntryOptions,
) -> Result<Propagation> {
    let deadline = engine.budget();
    Engine::ensure_tasks(engine);
    let encoded = R::encode(engine.settings.codec, &value).and_then(|(codec, payload)| {
        if payload.len() > engine.settings.max_payload_bytes {
            Err(too_large(
                key,
                payload.len(),
                engine.settings.max_payload_bytes,
            ))
        } else {
            Ok((codec, payload))
        }
    });
    let (codec, payload) = match encoded {
        Ok(encoded) => encoded,
        Err(error) => {
            tracing::warn!(key, %error, "set failed: removing the key so that its old value is not served");
            let _ = remove(engine, key).await;
            return Err(error);
        }
    };
    // A write is an invalidation of the reads running for this key: their
    // values predate it and must not overwrite it.
    engine.reads.key_changed(key);
    let seq = engine.order.begin_read();
    let times = Times::stored_at(engine.clock.now_ms(), options);
    if options.writes_l1() {
        let entry = Arc::new(engine.build_entry::<R>(
            value,
            NewEntry {
                key,
                options,
                times,
                tags: options.tags.clone(),
                read_seq: seq,
                l2_version: None,
                payload_len: payload.len() as u64,
            },
        ));
        engine.insert_l1(key, &entry, None);
    } else {
        engine.l1.remove(key);
    }
    let change = if options.writes_l2() {
        Change::Write(Arc::new(EntryWrite {
            codec,
            payload,
            created_ms: times.created_ms,
            logical_expiry_ms: times.logical_expiry_ms,
            tags: options.tags.clone(),
            l2_options: l2_options(options),
        }))
    } else {
        // Not written to L2: the old L2 value must not outlive this write.
        Change::Remove
    };
    let ticket = Propagator::submit(engine, Job::new(Target::Key(key.to_owned()), change, seq));
    Ok(ticket.wait(deadline).await)
}

/// The L2 options of an entry: the physical TTL covers fail-safe.
pub(crate) fn l2_options(options: &HybridEntryOptions) -> EntryOptions {
    let physical = options
        .fail_safe_max
        .map_or(options.expiration, |m| m.max(options.expiration));
    let mut l2 = EntryOptions::new().with_relative_expiration(physical);
    if let Some(sliding) = options.sliding {
        l2 = l2.with_sliding_expiration(sliding);
    }
    l2
}

/// `remove`: drops the key from L1 and hands the rest to a job.
pub(crate) async fn remove(engine: &Arc<Engine>, key: &str) -> Propagation {
    let deadline = engine.budget();
    Engine::ensure_tasks(engine);
    // Mark first, then remove: a running read either sees the mark or wrote
    // L1 before it (and that copy goes now).
    engine.reads.key_changed(key);
    engine.l1.remove(key);
    let seq = engine.order.begin_read();
    let job = Job::new(Target::Key(key.to_owned()), Change::Remove, seq);
    Propagator::submit(engine, job).wait(deadline).await
}

/// `remove_by_tag` and `clear`: a new invalidation in the local order (every
/// L1 entry of the scope is stale from now on), then a job for its stamp and
/// notice.
pub(crate) async fn invalidate(engine: &Arc<Engine>, scope: Scope<'_>) -> Propagation {
    let deadline = engine.budget();
    Engine::ensure_tasks(engine);
    let seq = engine.order.invalidate(scope);
    let target = match scope {
        Scope::Tag(tag) => Target::Tag(tag.to_owned()),
        Scope::Clear => {
            engine.l1.clear();
            Target::Clear
        }
    };
    let job = Job::new(target, Change::Invalidate, seq);
    Propagator::submit(engine, job).wait(deadline).await
}

/// The L2 bytes of a value for a fill: its envelope with the stamps known as
/// of `read_seq`.
pub(crate) fn fill_bytes(
    engine: &Engine,
    codec: u8,
    payload: Bytes,
    times: Times,
    tags: &[String],
    read_seq: u64,
) -> Bytes {
    let (clear_stamp, tags) = engine.order.stamps_for(tags, read_seq);
    let envelope = super::envelope::Envelope {
        codec,
        created_ms: times.created_ms,
        logical_expiry_ms: times.logical_expiry_ms,
        clear_stamp,
        tags,
        payload,
    };
    Bytes::from(envelope.encode())
}
