//! RedisBackplane against a server of the test's own: delivery between
//! instances, foreign messages, and a Gap after the server comes back.

mod common;

use std::time::{Duration, Instant};

use strata_cache::{Backplane, BackplaneEvent, BackplaneMessage, ErrorKind, Notice, Subscription};
use strata_cache_redis::{RedisBackplane, RedisCacheOptions};
use strata_cache_testkit::RedisServer;

const BOUND: Duration = Duration::from_secs(10);
const OPERATION_TIMEOUT: Duration = Duration::from_millis(500);

fn backplane(server: &RedisServer, instance_name: &str) -> RedisBackplane {
    RedisBackplane::new(
        RedisCacheOptions::new(server.url())
            .with_instance_name(instance_name)
            .with_operation_timeout(OPERATION_TIMEOUT),
    )
    .expect("valid options")
}

fn evict(origin: &str, key: &str) -> Notice {
    Notice::new(origin, 1, BackplaneMessage::Evict { key: key.into() })
}

async fn connected(backplanes: &[&RedisBackplane]) {
    common::poll("the backplanes connect", BOUND, || async {
        backplanes.iter().all(|b| b.is_connected()).then_some(())
    })
    .await;
}

/// The next event within the bound.
async fn next(sub: &mut Subscription) -> BackplaneEvent {
    tokio::time::timeout(BOUND, sub.recv())
        .await
        .expect("no event within the bound")
        .expect("the backplane is gone")
}

/// The next notice, skipping gaps.
async fn next_notice(sub: &mut Subscription) -> Notice {
    loop {
        if let BackplaneEvent::Notice(notice) = next(sub).await {
            return notice;
        }
    }
}

#[tokio::test]
async fn two_instances_see_each_others_notices() {
    let server = RedisServer::new();
    let a = backplane(&server, "app:");
    let b = backplane(&server, "app:");
    let mut a_events = a.subscribe();
    let mut b_events = b.subscribe();
    connected(&[&a, &b]).await;
    assert_eq!(a.channel(), "app:strata:backplane");

    let from_a = evict("a", "product:1");
    a.publish(&from_a).await.unwrap();
    assert_eq!(
        next(&mut b_events).await,
        BackplaneEvent::Notice(from_a.clone())
    );
    assert_eq!(next(&mut a_events).await, BackplaneEvent::Notice(from_a));

    let from_b = Notice::new(
        "b",
        7,
        BackplaneMessage::TagInvalidated {
            tag: "products".into(),
            stamp: 1_764_000_000_123_456,
        },
    );
    b.publish(&from_b).await.unwrap();
    assert_eq!(next(&mut a_events).await, BackplaneEvent::Notice(from_b));
}

#[tokio::test]
async fn other_instance_names_and_foreign_bytes_are_not_delivered() {
    let server = RedisServer::new();
    let mine = backplane(&server, "mine:");
    let theirs = backplane(&server, "theirs:");
    let mut events = mine.subscribe();
    connected(&[&mine, &theirs]).await;

    theirs.publish(&evict("t", "k")).await.unwrap();
    let mut raw = common::raw(&server.url()).await;
    let receivers: i64 = redis::cmd("PUBLISH")
        .arg(mine.channel())
        .arg(&b"not a notice"[..])
        .query_async(&mut raw)
        .await
        .unwrap();
    assert_eq!(receivers, 1, "the backplane is not subscribed");
    let valid = evict("m", "k");
    mine.publish(&valid).await.unwrap();
    // The first event is the valid notice: the foreign bytes and the other
    // instance name's notice were skipped.
    assert_eq!(next(&mut events).await, BackplaneEvent::Notice(valid));
}

#[tokio::test]
async fn a_restart_brings_a_gap_then_notices_again() {
    let mut server = RedisServer::new();
    let publisher = backplane(&server, "app:");
    let subscriber = backplane(&server, "app:");
    let mut events = subscriber.subscribe();
    connected(&[&publisher, &subscriber]).await;
    publisher.publish(&evict("p", "before")).await.unwrap();
    assert_eq!(next_notice(&mut events).await, evict("p", "before"));

    server.stop();
    let start = Instant::now();
    let err = publisher.publish(&evict("p", "lost")).await.unwrap_err();
    assert!(
        matches!(err.kind(), ErrorKind::Unavailable | ErrorKind::Timeout),
        "{err}"
    );
    assert!(start.elapsed() < OPERATION_TIMEOUT + Duration::from_secs(1));

    server.start();
    assert_eq!(
        next(&mut events).await,
        BackplaneEvent::Gap,
        "no gap after the reconnect"
    );
    // The publisher may still be reconnecting: retry until it gets through.
    common::poll("the publisher reconnects", BOUND, || async {
        publisher.publish(&evict("p", "after")).await.ok()
    })
    .await;
    assert_eq!(next_notice(&mut events).await, evict("p", "after"));
}

#[tokio::test]
async fn a_backplane_built_while_redis_is_down_connects_later_with_a_gap() {
    let mut server = RedisServer::new();
    server.stop();
    let subscriber = backplane(&server, "late:");
    let mut events = subscriber.subscribe();
    let err = subscriber.publish(&evict("s", "k")).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    server.start();
    assert_eq!(next(&mut events).await, BackplaneEvent::Gap);
    subscriber.publish(&evict("s", "k")).await.unwrap();
    assert_eq!(next_notice(&mut events).await, evict("s", "k"));
}
