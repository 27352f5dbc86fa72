//! [`Backplane`]: how HybridCache instances tell each other what changed.
//!
//! A backplane carries small [`BackplaneMessage`]s (a key to evict, a tag or the
//! whole cache invalidated, a heartbeat) stamped with the sending instance's id
//! and its own sequence number. It is a tiny publish/subscribe interface,
//! after FusionCache's: Redis pub/sub implements it in `strata-cache-redis`;
//! [`InProcessBackplane`] connects instances inside one process (tests,
//! several caches in one binary).
//!
//! Delivery is at most once. A subscriber that may have missed messages (a
//! dropped connection, a lagging receiver) receives [`BackplaneEvent::Gap`];
//! a hole in a sender's sequence numbers tells the same. Either way the
//! subscriber must treat what it holds locally as suspect.

use async_trait::async_trait;
use tokio::sync::broadcast;

use crate::error::{Error, ErrorKind, Result};

/// What changed, as announced on a backplane.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum BackplaneMessage {
    /// The entry under this key changed or was removed: drop the local copy.
    Evict {
        /// The cache key (without any instance prefix).
        key: String,
    },
    /// Every entry carrying `tag` whose stamp for it is below `stamp` is stale.
    TagInvalidated {
        /// The tag.
        tag: String,
        /// The tag's new stamp, issued by the shared cache; 0 when the sender
        /// has no shared cache (receivers then order it locally).
        stamp: u64,
    },
    /// Every entry whose clear stamp is below `stamp` is stale.
    Cleared {
        /// The new clear stamp; 0 when the sender has no shared cache.
        stamp: u64,
    },
    /// Nothing changed: the sender is alive, and its last sequence number is
    /// the notice's. Lets receivers notice lost messages and silence.
    Heartbeat,
}

/// A message with the id of the instance that sent it and its number.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Notice {
    /// The sender's instance id.
    pub origin: String,
    /// The sender's sequence number: 1 for its first change, one more for each
    /// next; a heartbeat repeats the last. 0 for senders that do not number
    /// their notices (wire format 1).
    pub sequence: u64,
    /// What changed.
    pub message: BackplaneMessage,
}

impl Notice {
    /// A notice from `origin` with its `sequence` number.
    pub fn new(origin: impl Into<String>, sequence: u64, message: BackplaneMessage) -> Self {
        Self {
            origin: origin.into(),
            sequence,
            message,
        }
    }
}

/// What a [`Subscription`] yields.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
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

#[async_trait]
impl<T: Backplane + ?Sized> Backplane for std::sync::Arc<T> {
    async fn publish(&self, notice: &Notice) -> Result<()> {
        (**self).publish(notice).await
    }

    fn subscribe(&self) -> Subscription {
        (**self).subscribe()
    }
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

/// Version byte of the [`Notice`] wire format written by this build.
const WIRE_VERSION: u8 = 2;
/// The first wire format, still read: no sequence numbers, tag and clear
/// invalidations carry a wall time instead of a stamp.
const WIRE_VERSION_1: u8 = 1;

impl Notice {
    /// Encodes the notice for a byte transport (Redis pub/sub and the like).
    ///
    /// Format, version 2: `[2][kind][origin len: u16 BE][origin][sequence: u64
    /// BE][body]` where kind is `E` (body: the key), `T` (body: the stamp as
    /// u64 BE, then the tag), `C` (body: the stamp) or `H` (no body).
    pub fn to_bytes(&self) -> Vec<u8> {
        let origin = self.origin.as_bytes();
        let origin_len = u16::try_from(origin.len()).unwrap_or(u16::MAX);
        let origin = &origin[..usize::from(origin_len)];
        let mut out = Vec::with_capacity(24 + origin.len());
        out.push(WIRE_VERSION);
        let (kind, stamp, text) = match &self.message {
            BackplaneMessage::Evict { key } => (b'E', None, key.as_str()),
            BackplaneMessage::TagInvalidated { tag, stamp } => (b'T', Some(*stamp), tag.as_str()),
            BackplaneMessage::Cleared { stamp } => (b'C', Some(*stamp), ""),
            BackplaneMessage::Heartbeat => (b'H', None, ""),
        };
        out.push(kind);
        out.extend_from_slice(&origin_len.to_be_bytes());
        out.extend_from_slice(origin);
        out.extend_from_slice(&self.sequence.to_be_bytes());
        if let Some(stamp) = stamp {
            out.extend_from_slice(&stamp.to_be_bytes());
        }
        out.extend_from_slice(text.as_bytes());
        out
    }

    /// Decodes bytes written by [`to_bytes`](Notice::to_bytes), or by a build
    /// that wrote wire format 1 (read with sequence 0, and stamp 0: its wall
    /// times are not stamps).
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
        if *version != WIRE_VERSION && *version != WIRE_VERSION_1 {
            return Err(bad("unknown version"));
        }
        let origin_len = usize::from(u16::from_be_bytes([*l0, *l1]));
        if rest.len() < origin_len {
            return Err(bad("truncated origin"));
        }
        let (origin, body) = rest.split_at(origin_len);
        let origin = std::str::from_utf8(origin).map_err(|_| bad("origin is not UTF-8"))?;
        let take_u64 = |body: &[u8]| -> Result<(u64, Vec<u8>)> {
            let (n, rest) = body
                .split_first_chunk::<8>()
                .ok_or_else(|| bad("truncated number"))?;
            Ok((u64::from_be_bytes(*n), rest.to_vec()))
        };
        let (sequence, body) = if *version == WIRE_VERSION {
            take_u64(body)?
        } else {
            (0, body.to_vec())
        };
        // Format 1 carried wall times where format 2 carries stamps: a time is
        // no stamp, so it reads as "no stamp" (ordered locally by receivers).
        let stamp = |n: u64| if *version == WIRE_VERSION { n } else { 0 };
        let text = |bytes: Vec<u8>| String::from_utf8(bytes).map_err(|_| bad("text is not UTF-8"));
        let message = match kind {
            b'E' => BackplaneMessage::Evict { key: text(body)? },
            b'T' => {
                let (n, tag) = take_u64(&body)?;
                BackplaneMessage::TagInvalidated {
                    tag: text(tag)?,
                    stamp: stamp(n),
                }
            }
            b'C' => BackplaneMessage::Cleared {
                stamp: stamp(take_u64(&body)?.0),
            },
            b'H' if *version == WIRE_VERSION => BackplaneMessage::Heartbeat,
            _ => return Err(bad("unknown kind")),
        };
        Ok(Self::new(origin, sequence, message))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notices_round_trip_through_bytes() {
        let messages = [
            BackplaneMessage::Evict {
                key: "product:ü".into(),
            },
            BackplaneMessage::Evict { key: String::new() },
            BackplaneMessage::TagInvalidated {
                tag: "products".into(),
                stamp: 1_764_000_000_123_456,
            },
            BackplaneMessage::Cleared { stamp: 7 },
            BackplaneMessage::Heartbeat,
        ];
        for (sequence, message) in messages.into_iter().enumerate() {
            let notice = Notice::new("instance-a", sequence as u64 * 1000, message);
            assert_eq!(Notice::from_bytes(&notice.to_bytes()).unwrap(), notice);
        }
    }

    #[test]
    fn version_two_bytes_stay_readable() {
        // Sample bytes of wire version 2: notice 3 of "a", tag "products" at stamp 42.
        let bytes = b"\x02T\x00\x01a\x00\x00\x00\x00\x00\x00\x00\x03\x00\x00\x00\x00\x00\x00\x00\x2aproducts";
        let notice = Notice::from_bytes(bytes).unwrap();
        let expected = Notice::new(
            "a",
            3,
            BackplaneMessage::TagInvalidated {
                tag: "products".into(),
                stamp: 42,
            },
        );
        assert_eq!(notice, expected);
        assert_eq!(expected.to_bytes(), bytes.to_vec());
    }

    #[test]
    fn version_one_bytes_stay_readable_without_stamps() {
        // Sample bytes of wire version 1: a tag invalidation from "a" (a wall time).
        let bytes = b"\x01T\x00\x01a\x00\x00\x01\x9a\xb6\x97\xe8\x7bproducts";
        let notice = Notice::from_bytes(bytes).unwrap();
        assert_eq!(notice.origin, "a");
        assert_eq!(notice.sequence, 0);
        assert_eq!(
            notice.message,
            BackplaneMessage::TagInvalidated {
                tag: "products".into(),
                stamp: 0
            }
        );
        let evict = Notice::from_bytes(b"\x01E\x00\x01ak").unwrap();
        assert_eq!(evict.message, BackplaneMessage::Evict { key: "k".into() });
    }

    #[test]
    fn foreign_bytes_are_rejected() {
        for bytes in [
            &b""[..],
            b"hello",
            b"\x03E\x00\x00k",
            b"\x01E\x00\x09ab",
            b"\x01T\x00\x00\x01",
            b"\x02E\x00\x00\x01",
            b"\x01H\x00\x00",
        ] {
            let err = Notice::from_bytes(bytes).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Serialization);
        }
    }

    #[tokio::test]
    async fn in_process_subscribers_see_notices_and_gaps() {
        let backplane = InProcessBackplane::new();
        let mut sub = backplane.subscribe();
        let notice = Notice::new("a", 1, BackplaneMessage::Evict { key: "k".into() });
        backplane.publish(&notice).await.unwrap();
        backplane.simulate_gap();
        assert_eq!(sub.recv().await, Some(BackplaneEvent::Notice(notice)));
        assert_eq!(sub.recv().await, Some(BackplaneEvent::Gap));
    }
}
