//! Looking a key up on the slow path: what L1 holds ([`Engine::classify`])
//! and what L2 holds ([`Engine::load`]), each checked against the
//! invalidation order.
//!
//! An L1 entry is served when its deadlines hold and nothing invalidated it
//! since its read; one that is only *suspect* (last confirmed before a gap,
//! or this instance is cut off) is served once L2 shows the same version. An
//! L2 entry is used when its envelope is intact, its stamps are current and
//! its value decodes; a damaged one is counted and treated as a miss.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use tokio::time::Instant;
use tracing::Instrument;

use super::engine::Engine;
use super::envelope::{Envelope, Unreadable, entry_key};
use super::l1::{L1Entry, UNCHECKED, Verdict};
use super::options::HybridEntryOptions;
use super::order::{L1Check, L2Check, Scope};
use super::reads::ReadMark;
use super::repr::{Repr, Undecodable};
use super::stats::Event;
use super::write::{NewEntry, Times};
use crate::distributed::Version;

/// What L1 holds for a key, for the slow path.
pub(crate) enum Local {
    /// Serve it; `refresh`: and refresh it in the background (eager refresh).
    Serve {
        entry: Arc<L1Entry>,
        refresh: bool,
    },
    /// Current by what this instance knows, but suspect: serve it if L2
    /// confirms its version.
    Confirm(Arc<L1Entry>),
    /// Not servable, but kept as a fail-safe fallback.
    Stale(Arc<L1Entry>),
    Nothing,
}

/// What L2 holds for a key.
pub(crate) enum Loaded {
    /// A current, fresh value, now in L1 (unless the read was invalidated).
    Hit(Arc<L1Entry>),
    /// L2 holds the version of the suspect L1 entry: it is confirmed.
    Confirmed(Arc<L1Entry>),
    /// Nothing usable. `version` is the key's version as read (for a fill),
    /// `None` when L2 could not be read or must not be trusted for the key;
    /// `expired` is a current value past its logical expiry (fail-safe).
    Miss {
        version: Option<Version>,
        expired: Option<Arc<L1Entry>>,
    },
}

impl Engine {
    /// Classifies the L1 entry of `key` for the slow path.
    pub(crate) fn classify<R: Repr>(&self, key: &str) -> Local {
        let Some(entry) = self.l1.get(key) else {
            return Local::Nothing;
        };
        let now = self.clock.now_ms();
        let epoch = self.order.epoch();
        let check = self.order.check_l1(
            entry.read_seq,
            entry.confirmed_seq.load(Ordering::Acquire),
            &entry.tags,
        );
        let verdict = entry.verdict_by_time(now);
        // A change of ours to this key is still on its way to L2: L1 holds
        // what came after it, and L2 cannot confirm anything newer.
        let ours = self.propagator.is_pending_key(key);
        match (check, verdict) {
            (L1Check::Stale, _) => {
                self.l1.remove_if_same(key, &entry);
                Local::Nothing
            }
            (_, Verdict::Revalidate) => {
                if entry.is_kept(now) && entry.get::<R>().is_some() {
                    Local::Stale(entry)
                } else {
                    self.l1.remove_if_same(key, &entry);
                    Local::Nothing
                }
            }
            (L1Check::Suspect, _) if !ours => Local::Confirm(entry),
            (L1Check::Current, _) if !ours && self.is_cut_off() => Local::Confirm(entry),
            (L1Check::Current | L1Check::Suspect, verdict) => {
                entry.checked.store(epoch, Ordering::Release);
                Local::Serve {
                    entry,
                    refresh: verdict == Verdict::ServeAndRefresh,
                }
            }
        }
    }

    /// True when L2 may be read for `key`: configured, the call reads it, and
    /// no change of this instance to the key (or a `clear`) is still on its
    /// way there.
    pub(crate) fn l2_trusted_for(&self, key: &str, options: &HybridEntryOptions) -> bool {
        options.reads_l2()
            && self.l2.is_configured()
            && !self.order.is_pending(Scope::Clear)
            && !self.propagator.is_pending_key(key)
    }

    /// Reads `key` from L2 by `deadline` (with the records its tags need, in
    /// the same round trip), and turns what it finds into an L1 entry. The
    /// read began at `read_seq` (a confirmation counts from then); `mark`
    /// tells whether the key changed since.
    pub(crate) async fn load<R: Repr>(
        &self,
        key: &str,
        options: &HybridEntryOptions,
        read_seq: u64,
        mark: &ReadMark,
        confirm: Option<&Arc<L1Entry>>,
        deadline: Instant,
    ) -> Loaded {
        let miss = |version| Loaded::Miss {
            version,
            expired: None,
        };
        if !self.l2_trusted_for(key, options) {
            return miss(None);
        }
        let due = self.order.due_records(&options.tags, self.clock.now_ms());
        let entry_key = entry_key(key);
        let (read, ()) = async {
            tokio::join!(
                self.l2.read(&entry_key, deadline),
                self.read_records(due, deadline)
            )
        }
        .instrument(tracing::info_span!("strata.l2.get"))
        .await;
        let Ok(read) = read else {
            return miss(None);
        };
        if let Some(entry) = confirm
            && entry.l2_version.is_some()
            && entry.l2_version == read.version.as_token()
        {
            entry.confirmed_seq.fetch_max(read_seq, Ordering::AcqRel);
            let checked = if self.is_cut_off() {
                UNCHECKED
            } else {
                self.order.epoch()
            };
            entry.checked.store(checked, Ordering::Release);
            return Loaded::Confirmed(Arc::clone(entry));
        }
        let version = Some(read.version.clone());
        let Some(bytes) = read.value else {
            return miss(version);
        };
        let Some(entry) = self
            .decode_l2::<R>(key, &bytes, &read.version, options, deadline)
            .await
        else {
            return miss(version);
        };
        let entry = Arc::new(entry);
        if self.clock.now_ms() >= entry.logical_expiry_ms {
            return Loaded::Miss {
                version,
                expired: Some(entry),
            };
        }
        if options.writes_l1() {
            self.insert_l1(key, &entry, Some(mark));
        }
        Loaded::Hit(entry)
    }

    /// Reads stamp records and applies them (failures keep what is known).
    pub(crate) async fn read_records(&self, keys: Vec<String>, deadline: Instant) {
        if keys.is_empty() {
            return;
        }
        let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
        let read_seq = self.order.begin_read();
        if let Ok(values) = self.l2.read_many(&refs, deadline).await {
            self.order
                .apply_records(&keys, &values, self.clock.now_ms(), read_seq);
        }
    }

    /// Decodes an L2 value into an L1 entry, when it is intact, current by its
    /// stamps, and of representation `R`.
    ///
    /// The entry counts as read when its stamps were found current: every
    /// invalidation known then (records read during this load included) is
    /// older than the entry, every one learned later is newer.
    async fn decode_l2<R: Repr>(
        &self,
        key: &str,
        bytes: &Bytes,
        version: &Version,
        options: &HybridEntryOptions,
        deadline: Instant,
    ) -> Option<L1Entry> {
        let envelope = match Envelope::decode(bytes) {
            Ok(envelope) => envelope,
            Err(Unreadable::Foreign) => {
                tracing::debug!(
                    key,
                    "the L2 value is not a Strata envelope of this format: a miss"
                );
                return None;
            }
            Err(Unreadable::Damaged) => {
                self.stats.record(Event::Corrupt);
                tracing::warn!(
                    key,
                    len = bytes.len(),
                    "the L2 value is truncated or fails its checksum: treated as a miss"
                );
                return None;
            }
        };
        let mut read_seq = self.order.begin_read();
        let mut check =
            self.order
                .check_l2(envelope.clear_stamp, &envelope.tags, self.clock.now_ms());
        if let L2Check::Unknown(records) = check {
            self.read_records(records, deadline).await;
            read_seq = self.order.begin_read();
            check = self
                .order
                .check_l2(envelope.clear_stamp, &envelope.tags, self.clock.now_ms());
        }
        if check != L2Check::Current {
            tracing::debug!(
                key,
                "the L2 value predates an invalidation of its tags: a miss"
            );
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
                    "the L2 value has another codec than asked for: a miss"
                );
                return None;
            }
            Err(Undecodable::Invalid(error)) => {
                tracing::warn!(key, %error, "the L2 value does not decode: treated as a miss");
                return None;
            }
        };
        let tags = envelope.tags.into_iter().map(|(tag, _)| tag).collect();
        Some(self.build_entry::<R>(
            value,
            NewEntry {
                key,
                options,
                times: Times {
                    created_ms: envelope.created_ms,
                    logical_expiry_ms: envelope.logical_expiry_ms,
                },
                tags,
                read_seq,
                l2_version: version.as_token(),
                payload_len,
            },
        ))
    }
}
