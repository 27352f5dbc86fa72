//! The backplane side of a cache: announcing this instance's writes, and the
//! listener task that applies peers' notices to L1.
//!
//! The listener holds only a `Weak` to the cache and a shutdown receiver whose
//! sender lives in the cache: when the last handle is dropped the task ends at
//! once, even while it waits for a notice.
//!
//! After a [`BackplaneEvent::Gap`] notices may have been lost, so every L1
//! entry is suspect: the gap epoch is bumped, and an entry stamped with an
//! older epoch is not served until it has been read again from L2 (or rebuilt).

use std::sync::Weak;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::oneshot;

use super::cache::Inner;
use super::clock::unix_ms;
use super::l2::Breaker;
use super::stats::Event;
use crate::backplane::{Backplane, BackplaneEvent, BackplaneMessage, Notice, Subscription};
use crate::error::{Error, ErrorKind};

/// Publishes notices with a timeout, through a circuit breaker.
pub(crate) struct Announcer {
    pub(crate) backplane: std::sync::Arc<dyn Backplane>,
    pub(crate) breaker: Breaker,
    pub(crate) timeout: Duration,
}

impl std::fmt::Debug for Announcer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Announcer")
            .field("breaker", &self.breaker)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl Inner {
    /// Tells the peers about a write. Failures are logged and counted, never returned.
    pub(crate) async fn announce(&self, message: BackplaneMessage) {
        let Some(announcer) = &self.announcer else {
            return;
        };
        if !announcer.breaker.allow(self.clock.coarse_ms()) {
            return;
        }
        let notice = Notice {
            origin: self.instance_id.clone(),
            message,
        };
        let published =
            match tokio::time::timeout(announcer.timeout, announcer.backplane.publish(&notice))
                .await
            {
                Ok(result) => result,
                Err(_) => Err(Error::new(
                    ErrorKind::Timeout,
                    "the backplane did not take the notice in time",
                )),
            };
        match published {
            Ok(()) => {
                announcer.breaker.success();
                self.stats.record(Event::BackplaneSent);
            }
            Err(error) => {
                let key = match &notice.message {
                    BackplaneMessage::Evict { key } => key.as_str(),
                    BackplaneMessage::TagInvalidated { tag, .. } => tag.as_str(),
                    BackplaneMessage::Cleared { .. } => "",
                };
                announcer
                    .breaker
                    .failure(self.clock.now_ms(), "publish", key, &error);
            }
        }
    }

    /// Applies one backplane event to this instance.
    pub(crate) fn apply(&self, event: BackplaneEvent) {
        match event {
            BackplaneEvent::Notice(notice) => {
                if notice.origin == self.instance_id {
                    return;
                }
                self.stats.record(Event::BackplaneReceived);
                match notice.message {
                    BackplaneMessage::Evict { key } => {
                        tracing::trace!(key = %key, origin = %notice.origin, "peer evicted key");
                        self.reads.key_changed(&key);
                        self.l1.remove(&key);
                    }
                    BackplaneMessage::TagInvalidated { tag, at } => {
                        tracing::trace!(tag = %tag, origin = %notice.origin, "peer invalidated tag");
                        self.tags.record(&tag, unix_ms(at), 0);
                        self.reads.tag_changed(&tag);
                    }
                    BackplaneMessage::Cleared { at } => {
                        tracing::trace!(origin = %notice.origin, "peer cleared the cache");
                        self.tags.record_clear(unix_ms(at), 0);
                        self.reads.all_changed();
                        self.l1.clear();
                    }
                }
            }
            BackplaneEvent::Gap => {
                tracing::warn!(
                    instance = %self.instance_id,
                    "backplane gap: notices may be lost; L1 entries will be revalidated against L2"
                );
                self.gap_epoch.fetch_add(1, Ordering::AcqRel);
                self.tags.mark_suspect(self.clock.now_ms());
            }
        }
    }
}

/// Spawns the listener task on the current Tokio runtime.
pub(crate) fn spawn(
    cache: Weak<Inner>,
    mut subscription: Subscription,
    shutdown: oneshot::Receiver<()>,
) {
    tokio::spawn(async move {
        let mut shutdown = shutdown;
        loop {
            let event = tokio::select! {
                _ = &mut shutdown => return,
                event = subscription.recv() => event,
            };
            let Some(cache) = cache.upgrade() else { return };
            match event {
                Some(event) => cache.apply(event),
                None => {
                    // The backplane is gone for good: nothing will tell us of
                    // peers' writes any more, so distrust L1 now, once.
                    tracing::error!(
                        instance = %cache.instance_id,
                        "the backplane subscription ended; L1 is no longer kept coherent"
                    );
                    cache.apply(BackplaneEvent::Gap);
                    return;
                }
            }
        }
    });
}
