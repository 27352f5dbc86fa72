//! [`Backplane`]: how HybridCache instances tell each other what changed.
//!
//! A backplane carries small [`BackplaneMessage`]s (a key to evict, a tag or the
//! whole cache invalidated) stamped with the sending instance's id. It is a
//! tiny publish/subscribe interface, after FusionCache's: Redis pub/sub
//! implements it in `strata-cache-redis`; [`InProcessBackplane`] connects instances
//! inside one process (tests, several caches in one binary).
//!
//! Delivery is at most once. A subscriber that may have missed messages (a
//! dropped connection, a lagging receiver) receives [`BackplaneEvent::Gap`] and
//! must treat everything it holds locally as suspect.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use tokio::sync::broadcast;

use crate::error::{Error, ErrorKind, Result};

/// What changed, as announced on a backplane.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BackplaneMessage {
    /// The entry under this key changed or was removed: drop the local copy.
    Evict {
        /// The cache key (without any instance prefix).
        key: String,
    },
    /// Every entry carrying `tag` and created at or before `at` is stale.
    TagInvalidated {
        /// The tag.
        tag: String,
        /// The invalidation time.
        at: SystemTime,
    },
    /// Every entry created at or before `at` is stale.
    Cleared {
        /// The invalidation time.
        at: SystemTime,
    },
}

/// A message with the id of the instance that sent it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    /// The sender's instance id; an instance ignores its own notices.
    pub origin: String,
    /// What changed.
    pub message: BackplaneMessage,
}

/// What a [`Subscription`] yields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BackplaneEvent {
    /// A notice from some instance (possibly this one: filter on `origin`).
    Notice(Notice),
    /// Notices may have been lost (the connection dropped and came back, or
    /// this subscriber fell behind). Local copies may be stale.
    Gap,
}

/// A stream of [`BackplaneEvent`]s for one subscriber.
#[derive(Debug)]
pub struct Subscription {
    receiver: broadcast::Receiver<BackplaneEvent>,
}

impl Subscription {
    /// Wraps the receiving end of a broadcast channel fed by a backplane.
    pub fn new(receiver: broadcast::Receiver<BackplaneEvent>) -> Self {
        Self { receiver }
    }

    /// The next event; `None` once the backplane is gone. A receiver that fell
    /// behind the channel's capacity gets [`BackplaneEvent::Gap`].
    pub async fn recv(&mut self) -> Option<BackplaneEvent> {
        match self.receiver.recv().await {
            Ok(event) => Some(event),
            Err(broadcast::error::RecvError::Lagged(_)) => Some(BackplaneEvent::Gap),
            Err(broadcast::error::RecvError::Closed) => None,
        }
    }
}

/// Carries [`Notice`]s between cache instances.
#[async_trait]
pub trait Backplane: Send + Sync + 'static {
    /// Sends `notice` to every subscriber, this instance's included.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Unavailable`] or [`ErrorKind::Timeout`] when the transport
    /// cannot take the notice now; the caller logs and carries on.
    async fn publish(&self, notice: &Notice) -> Result<()>;

    /// A new subscription that sees every notice published after this call.
    fn subscribe(&self) -> Subscription;
}

/// Capacity of [`InProcessBackplane`]'s channel; a subscriber further behind
/// than this gets a [`BackplaneEvent::Gap`].
const IN_PROCESS_CAPACITY: usize = 4096;

/// A [`Backplane`] inside one process: clones share one broadcast channel.
#[derive(Debug, Clone)]
pub struct InProcessBackplane {
    sender: broadcast::Sender<BackplaneEvent>,
}

impl Default for InProcessBackplane {
    fn default() -> Self {
        Self::new()
    }
}

impl InProcessBackplane {
    /// A new, unconnected backplane.
    #[must_use]
    pub fn new() -> Self {
        Self {
            sender: broadcast::channel(IN_PROCESS_CAPACITY).0,
        }
    }

    /// Delivers [`BackplaneEvent::Gap`] to every subscriber, as a transport
    /// does after a reconnect. For tests of the reaction to lost messages.
    pub fn simulate_gap(&self) {
        // No subscriber is not an error here.
        let _ = self.sender.send(BackplaneEvent::Gap);
    }

    /// Number of live subscriptions. Lets tests check that a subscriber's
    /// task ended (its [`Subscription`] was dropped).
    pub fn subscriber_count(&self) -> usize {
        self.sender.receiver_count()
    }
}

#[async_trait]
impl Backplane for InProcessBackplane {
    async fn publish(&self, notice: &Notice) -> Result<()> {
        // With no subscriber the notice has nobody to reach: that is success.
        let _ = self.sender.send(BackplaneEvent::Notice(notice.clone()));
        Ok(())
    }

    fn subscribe(&self) -> Subscription {
        Subscription::new(self.sender.subscribe())
    }
}

/// Version byte of the [`Notice`] wire format.
const WIRE_VERSION: u8 = 1;

impl Notice {
    /// Encodes the notice for a byte transport (Redis pub/sub and the like).
    ///
    /// Format, version 1: `[1][kind][origin len: u16 BE][origin][body]` where
    /// kind is `E` (body: key), `T` (body: time in ms since the Unix epoch as
    /// u64 BE, then the tag) or `C` (body: the time).
    pub fn to_bytes(&self) -> Vec<u8> {
        let origin = self.origin.as_bytes();
        let origin_len = u16::try_from(origin.len()).unwrap_or(u16::MAX);
        let origin = &origin[..usize::from(origin_len)];
        let mut out = Vec::with_capacity(16 + origin.len());
        out.push(WIRE_VERSION);
        let (kind, at, text) = match &self.message {
            BackplaneMessage::Evict { key } => (b'E', None, key.as_str()),
            BackplaneMessage::TagInvalidated { tag, at } => (b'T', Some(*at), tag.as_str()),
            BackplaneMessage::Cleared { at } => (b'C', Some(*at), ""),
        };
        out.push(kind);
        out.extend_from_slice(&origin_len.to_be_bytes());
        out.extend_from_slice(origin);
        if let Some(at) = at {
            out.extend_from_slice(&unix_millis(at).to_be_bytes());
        }
        out.extend_from_slice(text.as_bytes());
        out
    }

    /// Decodes bytes written by [`to_bytes`](Notice::to_bytes).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Serialization`] for bytes of another version or a truncated
    /// or non-UTF-8 message.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let bad = |why: &str| {
            Error::new(
                ErrorKind::Serialization,
                format!(
                    "not a Strata backplane notice ({why}); is another program publishing on the channel?"
                ),
            )
        };
        let [version, kind, l0, l1, rest @ ..] = bytes else {
            return Err(bad("too short"));
        };
        if *version != WIRE_VERSION {
            return Err(bad("unknown version"));
        }
        let origin_len = usize::from(u16::from_be_bytes([*l0, *l1]));
        if rest.len() < origin_len {
            return Err(bad("truncated origin"));
        }
        let (origin, body) = rest.split_at(origin_len);
        let origin = std::str::from_utf8(origin).map_err(|_| bad("origin is not UTF-8"))?;
        let take_time = |body: &[u8]| -> Result<(SystemTime, Vec<u8>)> {
            let (at, text) = body
                .split_first_chunk::<8>()
                .ok_or_else(|| bad("truncated time"))?;
            Ok((
                UNIX_EPOCH + Duration::from_millis(u64::from_be_bytes(*at)),
                text.to_vec(),
            ))
        };
        let text = |bytes: Vec<u8>| String::from_utf8(bytes).map_err(|_| bad("text is not UTF-8"));
        let message = match kind {
            b'E' => BackplaneMessage::Evict {
                key: text(body.to_vec())?,
            },
            b'T' => {
                let (at, tag) = take_time(body)?;
                BackplaneMessage::TagInvalidated {
                    tag: text(tag)?,
                    at,
                }
            }
            b'C' => BackplaneMessage::Cleared {
                at: take_time(body)?.0,
            },
            _ => return Err(bad("unknown kind")),
        };
        Ok(Self {
            origin: origin.to_owned(),
            message,
        })
    }
}

fn unix_millis(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at() -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(1_764_000_000_123)
    }

    #[test]
    fn notices_round_trip_through_bytes() {
        let messages = [
            BackplaneMessage::Evict {
                key: "product:ü".into(),
            },
            BackplaneMessage::Evict { key: String::new() },
            BackplaneMessage::TagInvalidated {
                tag: "products".into(),
                at: at(),
            },
            BackplaneMessage::Cleared { at: at() },
        ];
        for message in messages {
            let notice = Notice {
                origin: "instance-a".into(),
                message,
            };
            assert_eq!(Notice::from_bytes(&notice.to_bytes()).unwrap(), notice);
        }
    }

    #[test]
    fn version_one_bytes_stay_readable() {
        // Sample bytes of wire version 1: a tag invalidation from "a".
        let bytes = b"\x01T\x00\x01a\x00\x00\x01\x9a\xb6\x97\xe8\x7bproducts";
        let notice = Notice::from_bytes(bytes).unwrap();
        assert_eq!(notice.origin, "a");
        assert_eq!(
            notice.message,
            BackplaneMessage::TagInvalidated {
                tag: "products".into(),
                at: at()
            }
        );
    }

    #[test]
    fn foreign_bytes_are_rejected() {
        for bytes in [
            &b""[..],
            b"hello",
            b"\x02E\x00\x00k",
            b"\x01E\x00\x09ab",
            b"\x01T\x00\x00\x01",
        ] {
            let err = Notice::from_bytes(bytes).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Serialization);
        }
    }

    #[tokio::test]
    async fn in_process_subscribers_see_notices_and_gaps() {
        let backplane = InProcessBackplane::new();
        let mut sub = backplane.subscribe();
        let notice = Notice {
            origin: "a".into(),
            message: BackplaneMessage::Evict { key: "k".into() },
        };
        backplane.publish(&notice).await.unwrap();
        backplane.simulate_gap();
        assert_eq!(sub.recv().await, Some(BackplaneEvent::Notice(notice)));
        assert_eq!(sub.recv().await, Some(BackplaneEvent::Gap));
    }
}
