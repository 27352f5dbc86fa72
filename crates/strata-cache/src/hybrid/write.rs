//! Writing entries: building an L1 entry from its times and options, and the
//! write-back to L1, L2 (as an envelope) and the backplane shared by `set` and
//! a factory's result.

use std::hash::BuildHasher;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use bytes::Bytes;

use super::cache::Inner;
use super::clock::millis;
use super::codec::too_large;
use super::envelope::{Envelope, entry_key};
use super::invalidation::ReadMarks;
use super::l1::L1Entry;
use super::options::HybridEntryOptions;
use super::repr::Repr;
use crate::backplane::BackplaneMessage;
use crate::error::Result;
use crate::options::EntryOptions;

/// `set`: encodes first (so that a failure leaves the cache as it was), then writes.
pub(crate) async fn set<R: Repr>(
    inner: &Arc<Inner>,
    key: &str,
    value: R::Value,
    options: &HybridEntryOptions,
) -> Result<()> {
    let payload = R::encode(inner.codec, &value)?;
    if payload.1.len() > inner.max_payload_bytes {
        return Err(too_large(key, payload.1.len(), inner.max_payload_bytes));
    }
    // A write is an invalidation of the reads running for this key: their
    // values predate it and must not overwrite it.
    inner.reads.key_changed(key);
    let created_ms = inner.creation_stamp();
    let epochs = (inner.tags.epoch(), inner.gap_epoch.load(Ordering::Acquire));
    write_encoded::<R>(
        inner,
        key,
        value,
        Some(payload),
        options,
        created_ms,
        epochs,
        None,
    )
    .await;
    Ok(())
}

/// Writes a factory's value to L1, L2 and the backplane (when `cache` and
/// `marks` says the key was not invalidated meanwhile), and returns its entry
/// either way.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn write<R: Repr>(
    inner: &Inner,
    key: &str,
    value: R::Value,
    options: &HybridEntryOptions,
    created_ms: u64,
    epochs: (u64, u64),
    cache: bool,
    marks: &ReadMarks,
) -> Arc<L1Entry> {
    let payload = if cache {
        match R::encode(inner.codec, &value) {
            Ok(payload) if payload.1.len() <= inner.max_payload_bytes => Some(payload),
            Ok((_, payload)) => {
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
    write_encoded::<R>(
        inner,
        key,
        value,
        payload,
        options,
        created_ms,
        epochs,
        Some(marks),
    )
    .await
}

/// Writes an encoded value through the layers (nothing when `payload` is
/// `None`). `marks` is the running read the value comes from (`None` for a
/// `set`, which is itself the newest write).
#[allow(clippy::too_many_arguments)]
async fn write_encoded<R: Repr>(
    inner: &Inner,
    key: &str,
    value: R::Value,
    payload: Option<(u8, Bytes)>,
    options: &HybridEntryOptions,
    created_ms: u64,
    epochs: (u64, u64),
    marks: Option<&ReadMarks>,
) -> Arc<L1Entry> {
    let times = Times {
        created_ms,
        logical_expiry_ms: created_ms.saturating_add(millis(options.expiration)),
    };
    let payload_len = payload.as_ref().map_or(0, |(_, p)| p.len() as u64);
    let tags = options.tags.clone();
    let entry = Arc::new(new_entry::<R>(
        inner,
        key,
        value,
        times,
        tags,
        options,
        payload_len,
        epochs,
    ));
    let Some((codec, payload)) = payload else {
        return entry;
    };
    let invalidated = || marks.is_some_and(|m| m.invalidates(&options.tags));
    let write_l1 = || {
        if options.writes_l1() {
            inner.l1.insert(key, Arc::clone(&entry));
        } else {
            inner.l1.remove(key);
        }
    };
    match marks {
        Some(marks) => {
            if !marks.write_unless_invalidated(&options.tags, write_l1) {
                tracing::debug!(key, "invalidated during the fetch: value not cached");
                return entry;
            }
        }
        None => write_l1(),
    }
    if options.writes_l2() {
        let envelope = Envelope {
            codec,
            created_ms,
            logical_expiry_ms: times.logical_expiry_ms,
            tags: options.tags.clone(),
            payload,
        };
        let physical = options
            .fail_safe_max
            .map_or(options.expiration, |m| m.max(options.expiration));
        let mut l2_options = EntryOptions::new().with_relative_expiration(physical);
        if let Some(sliding) = options.sliding {
            l2_options = l2_options.with_sliding_expiration(sliding);
        }
        let bytes = Bytes::from(envelope.encode());
        let l2_key = entry_key(key);
        let _ = inner
            .l2
            .set(&inner.clock, &inner.stats, &l2_key, bytes, &l2_options)
            .await;
        if invalidated() {
            // The invalidation's own L2 removal may have reached L2 before
            // this write did: remove again, so that L2 keeps nothing older
            // than it. (It may drop a newer `set`'s value too: a miss, never
            // a stale read.)
            tracing::debug!(key, "invalidated during the L2 write: removing it again");
            let _ = inner.l2.remove(&inner.clock, &inner.stats, &l2_key).await;
            return entry;
        }
    } else if invalidated() {
        return entry;
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
pub(crate) struct Times {
    pub(crate) created_ms: u64,
    pub(crate) logical_expiry_ms: u64,
}

/// Builds an L1 entry: local expiration (with jitter, capped by the logical
/// expiry), fail-safe retention and eager-refresh point.
#[allow(clippy::too_many_arguments)]
pub(crate) fn new_entry<R: Repr>(
    inner: &Inner,
    key: &str,
    value: R::Value,
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
        tag_epoch: AtomicU64::new(tag_epoch),
        gap_epoch,
        payload_len,
    }
}
