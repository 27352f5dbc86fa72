//! [`RedisBackplane`]: `strata_cache::Backplane` over Redis pub/sub.
//!
//! One RESP3 connection per backplane both subscribes and publishes (RESP3
//! lets a subscribed connection run commands). The connection is kept by
//! [`crate::link`]: on every new connection it subscribes again before anything
//! else, and, when messages may have been missed (a reconnect, or a first
//! connection that took more than one attempt), every subscriber receives
//! [`BackplaneEvent::Gap`]. Messages are [`Notice::to_bytes`]; anything else
//! on the channel is logged at warn and skipped.

use std::sync::Arc;

use async_trait::async_trait;
use redis::{PushInfo, PushKind, Value};
use strata_cache::{Backplane, BackplaneEvent, Notice, Result, Subscription};
use tokio::sync::broadcast;

use crate::link::{Link, OnConnect, OnPush};
use crate::options::RedisCacheOptions;

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
        let (info, target) = options.connection_info()?;
        let channel = format!("{}{CHANNEL_SUFFIX}", options.instance_name());
        let events = broadcast::channel(CAPACITY).0;
        let on_connect: OnConnect = {
            let channel = channel.clone();
            let events = events.clone();
            Arc::new(move |mut conn, reconnect| {
                let channel = channel.clone();
                let events = events.clone();
                Box::pin(async move {
                    conn.subscribe(&channel).await?;
                    if reconnect {
                        // No subscriber is not an error.
                        let _ = events.send(BackplaneEvent::Gap);
                    }
                    Ok(())
                })
            })
        };
        let on_push: OnPush = {
            let channel = channel.clone();
            let events = events.clone();
            Arc::new(move |push| deliver(&channel, &events, push))
        };
        let link = Link::start(
            info,
            target,
            options.connect_timeout(),
            options.operation_timeout(),
            Some(on_connect),
            Some(on_push),
        )?;
        Ok(Self {
            inner: Arc::new(Inner {
                link,
                channel,
                events,
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

/// Turns one push of the connection into an event; skips foreign messages.
fn deliver(channel: &str, events: &broadcast::Sender<BackplaneEvent>, push: PushInfo) {
    if push.kind != PushKind::Message {
        return; // subscribe confirmations and the like
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

#[async_trait]
impl Backplane for RedisBackplane {
    async fn publish(&self, notice: &Notice) -> Result<()> {
        let bytes = notice.to_bytes();
        let channel = &self.inner.channel;
        self.inner
            .link
            .run("publish", |mut conn| async move {
                redis::cmd("PUBLISH")
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
