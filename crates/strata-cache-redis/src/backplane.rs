//! [`RedisBackplane`]: `strata_cache::Backplane` over Redis pub/sub.
//!
//! One RESP3 connection per backplane both subscribes and publishes (RESP3
//! lets a subscribed connection run commands). The connection is kept by
//! [`crate::link`]: on every new connection it subscribes again before anything
//! else, and, when messages may have been missed (a reconnect, or a first
//! connection that took more than one attempt), every subscriber receives
//! [`BackplaneEvent::Gap`]. Messages are [`Notice::to_bytes`]; anything else
//! on the channel is logged at warn and skipped.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use async_trait::async_trait;
use redis::{PushInfo, PushKind, RedisResult, Value};
use strata_cache::{Backplane, BackplaneEvent, Notice, Result, Subscription};
use tokio::sync::broadcast;
use tokio::task::JoinHandle;

use crate::link::{Conn, Link, OnConnect, OnPush};
use crate::options::{Endpoint, RedisCacheOptions};

/// Capacity of the channel between the connection and the subscribers; a
/// subscriber further behind gets [`BackplaneEvent::Gap`].
const CAPACITY: usize = 4096;
/// The channel's name after the instance name.
const CHANNEL_SUFFIX: &str = "strata:backplane";

/// A [`Backplane`] on Redis pub/sub, on the channel
/// `{instance_name}strata:backplane`.
///
/// Cheap to clone; clones share one connection. Like
/// [`RedisCache`](crate::RedisCache), creating one never fails because Redis
/// is down, and [`publish`](Backplane::publish) returns within the operation
/// timeout.
///
/// # Example
///
/// ```no_run
/// # async fn demo() -> strata_cache::Result<()> {
/// use strata_cache::{Backplane, BackplaneMessage, Notice};
/// use strata_cache_redis::{RedisBackplane, RedisCacheOptions};
///
/// let backplane = RedisBackplane::new(RedisCacheOptions::new("redis://127.0.0.1/"))?;
/// let mut events = backplane.subscribe();
/// let notice = Notice::new("instance-a", 1, BackplaneMessage::Evict { key: "k".into() });
/// backplane.publish(&notice).await?;
/// let _event = events.recv().await; // the notice, or Gap after a reconnect
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct RedisBackplane {
    inner: Arc<Inner>,
}

struct Inner {
    link: Link,
    channel: String,
    events: broadcast::Sender<BackplaneEvent>,
    /// True when the channel is a shard channel (`SPUBLISH`).
    sharded: Arc<AtomicBool>,
    /// Set when a cluster node's connection dropped or the channel's slot
    /// moved: the subscription must be made again where the slot lives now.
    resubscribe: Arc<AtomicBool>,
    /// On a cluster: the task that keeps the subscription on the node that
    /// owns the channel's slot (see [`follow_the_channel`]).
    follower: Option<JoinHandle<()>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(follower) = &self.follower {
            follower.abort();
        }
    }
}

impl std::fmt::Debug for RedisBackplane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisBackplane")
            .field("target", &self.inner.link.target())
            .field("channel", &self.inner.channel)
            .field("connected", &self.is_connected())
            .finish()
    }
}

impl RedisBackplane {
    /// Creates the backplane for the Redis of `options` (URL, instance name,
    /// timeouts) and starts connecting and subscribing in the background.
    /// Takes the options by value or by reference, as
    /// [`RedisCache::new`](crate::RedisCache::new) does.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidOptions`](strata_cache::ErrorKind::InvalidOptions) for a
    /// URL that does not parse or a zero timeout;
    /// [`ErrorKind::Backend`](strata_cache::ErrorKind::Backend) outside a Tokio
    /// runtime. Never because Redis is down.
    pub fn new(options: impl AsRef<RedisCacheOptions>) -> Result<Self> {
        let options = options.as_ref();
        let (endpoint, target) = options.endpoint()?;
        let cluster = matches!(endpoint, Endpoint::Cluster(_));
        let resubscribe = Arc::new(AtomicBool::new(false));
        let channel = format!("{}{CHANNEL_SUFFIX}", options.instance_name());
        let events = broadcast::channel(CAPACITY).0;
        let sharded = Arc::new(AtomicBool::new(false));
        let on_connect: OnConnect = {
            let channel = channel.clone();
            let events = events.clone();
            let sharded = Arc::clone(&sharded);
            Arc::new(move |conn, reconnect| {
                let channel = channel.clone();
                let events = events.clone();
                let sharded = Arc::clone(&sharded);
                Box::pin(async move {
                    sharded.store(subscribe(conn, &channel).await?, Ordering::Release);
                    if reconnect {
                        // No subscriber is not an error.
                        let _ = events.send(BackplaneEvent::Gap);
                    }
                    Ok(())
                })
            })
        };
        let on_push: OnPush = {
            let listener = Listener {
                channel: channel.clone(),
                events: events.clone(),
                confirmations: AtomicU64::new(0),
                resubscribe: Arc::clone(&resubscribe),
            };
            Arc::new(move |push| listener.deliver(push))
        };
        let link = Link::start(
            endpoint,
            target,
            options.connect_timeout(),
            options.operation_timeout(),
            Some(on_connect),
            Some(on_push),
        )?;
        Ok(Self {
            inner: Arc::new_cyclic(|inner| Inner {
                link,
                channel,
                events,
                sharded,
                resubscribe,
                follower: cluster.then(|| tokio::spawn(follow_the_channel(inner.clone()))),
            }),
        })
    }

    /// The pub/sub channel.
    pub fn channel(&self) -> &str {
        &self.inner.channel
    }

    /// True while connected and subscribed.
    pub fn is_connected(&self) -> bool {
        self.inner.link.is_connected()
    }
}

/// How often a backplane on a cluster checks where its channel lives.
const FOLLOW_INTERVAL: Duration = Duration::from_millis(500);

/// Keeps a cluster subscription on the node that owns the channel's slot.
///
/// When a node's connection drops or the channel's slot moves, the
/// subscription made on the old owner is gone, and the cluster connection
/// does not reliably make it again on the new one (it learns the new owner
/// only when a command meets the moved slot). Every [`FOLLOW_INTERVAL`] this
/// task runs a cheap command on the channel's own slot, which makes the
/// connection refresh its slot map when the owner changed, and, once told
/// the subscription was lost, subscribes again until that succeeds. The new
/// subscription's confirmation reports a gap to the subscribers.
async fn follow_the_channel(inner: Weak<Inner>) {
    loop {
        tokio::time::sleep(FOLLOW_INTERVAL).await;
        let Some(inner) = inner.upgrade() else {
            return;
        };
        let channel = inner.channel.as_str();
        let lost = inner.resubscribe.swap(false, Ordering::AcqRel);
        let followed = inner
            .link
            .run("ssubscribe", |mut conn| async move {
                redis::cmd("EXISTS")
                    .arg(channel)
                    .query_async::<()>(&mut conn)
                    .await?;
                if lost {
                    subscribe(conn, channel).await?;
                }
                Ok(())
            })
            .await;
        if followed.is_err() && lost {
            // Not yet: the slot's new owner is not known or not up.
            inner.resubscribe.store(true, Ordering::Release);
        }
    }
}

/// Subscribes `conn` to `channel`: sharded (`SSUBSCRIBE`) on a cluster
/// whose servers know it (Redis 7 and later), so that a notice travels only
/// to the nodes of the channel's shard; plain `SUBSCRIBE` otherwise. Returns
/// whether the subscription is sharded.
async fn subscribe(conn: Conn, channel: &str) -> RedisResult<bool> {
    match conn {
        Conn::Single(mut conn) => conn.subscribe(channel).await.map(|()| false),
        Conn::Cluster(mut conn) => match conn.ssubscribe(channel).await {
            Ok(()) => Ok(true),
            // An unknown command: a server older than Redis 7.
            Err(e) if matches!(e.kind(), redis::ErrorKind::Server(_)) => {
                tracing::info!(channel, error = %e, "no sharded pub/sub on this cluster; the backplane uses plain pub/sub");
                conn.subscribe(channel).await.map(|()| false)
            }
            Err(e) => Err(e),
        },
    }
}

/// Turns the pushes of the connection into events.
struct Listener {
    channel: String,
    events: broadcast::Sender<BackplaneEvent>,
    /// Subscription confirmations seen for the channel: on a cluster, every
    /// one after the first is a resubscription after a lost node or a moved
    /// slot, and notices may have been missed in between.
    confirmations: AtomicU64,
    /// Shared with [`follow_the_channel`]: set when the subscription may be
    /// lost.
    resubscribe: Arc<AtomicBool>,
}

impl Listener {
    fn deliver(&self, push: PushInfo) {
        let channel = self.channel.as_str();
        let events = &self.events;
        match push.kind {
            PushKind::Message | PushKind::SMessage => {}
            // A cluster connection lost a node, or the channel's slot moved:
            // notices may be lost until the cluster connection subscribes
            // again, which it does by itself.
            PushKind::Disconnection | PushKind::SUnsubscribe => {
                self.resubscribe.store(true, Ordering::Release);
                let _ = events.send(BackplaneEvent::Gap);
                return;
            }
            PushKind::SSubscribe => {
                if self.confirmations.fetch_add(1, Ordering::AcqRel) > 0 {
                    let _ = events.send(BackplaneEvent::Gap);
                }
                return;
            }
            _ => return, // other confirmations and the like
        }
        let [from, payload] = push.data.as_slice() else {
            tracing::warn!(?push, "malformed pub/sub push from Redis; skipped");
            return;
        };
        if !matches!(from, Value::BulkString(name) if name.as_slice() == channel.as_bytes()) {
            return;
        }
        let Value::BulkString(bytes) = payload else {
            tracing::warn!(
                channel,
                "non-binary message on the backplane channel; skipped"
            );
            return;
        };
        match Notice::from_bytes(bytes) {
            // No subscriber is not an error.
            Ok(notice) => drop(events.send(BackplaneEvent::Notice(notice))),
            Err(error) => {
                tracing::warn!(channel, %error, len = bytes.len(), "malformed message on the backplane channel; skipped");
            }
        }
    }
}

#[async_trait]
impl Backplane for RedisBackplane {
    async fn publish(&self, notice: &Notice) -> Result<()> {
        let bytes = notice.to_bytes();
        let channel = &self.inner.channel;
        let sharded = self.inner.sharded.load(Ordering::Acquire);
        self.inner
            .link
            .run("publish", |mut conn| async move {
                let publish = if sharded { "SPUBLISH" } else { "PUBLISH" };
                redis::cmd(publish)
                    .arg(channel)
                    .arg(bytes)
                    .query_async::<()>(&mut conn)
                    .await
            })
            .await
    }

    fn subscribe(&self) -> Subscription {
        Subscription::new(self.inner.events.subscribe())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use strata_cache::BackplaneMessage;

    fn push(kind: PushKind, channel: &str, payload: &[u8]) -> PushInfo {
        PushInfo {
            kind,
            data: vec![
                Value::BulkString(channel.as_bytes().to_vec()),
                Value::BulkString(payload.to_vec()),
            ],
        }
    }

    #[test]
    fn delivers_notices_and_skips_everything_else() {
        let (events, mut rx) = broadcast::channel(16);
        let listener = Listener {
            channel: "ch".to_owned(),
            events,
            confirmations: AtomicU64::new(0),
            resubscribe: Arc::new(AtomicBool::new(false)),
        };
        let deliver = |_: &str, _: &broadcast::Sender<BackplaneEvent>, push| listener.deliver(push);
        let events = listener.events.clone();
        let notice = Notice::new("a", 1, BackplaneMessage::Evict { key: "k".into() });
        deliver("ch", &events, push(PushKind::Message, "ch", b"garbage"));
        deliver(
            "ch",
            &events,
            push(PushKind::Message, "other", &notice.to_bytes()),
        );
        deliver(
            "ch",
            &events,
            push(PushKind::Subscribe, "ch", &notice.to_bytes()),
        );
        deliver(
            "ch",
            &events,
            push(PushKind::Message, "ch", &notice.to_bytes()),
        );
        assert_eq!(rx.try_recv().ok(), Some(BackplaneEvent::Notice(notice)));
        assert!(rx.try_recv().is_err());
    }
}
