//! Cross-instance invalidation latency of `RedisBackplane`: from `publish` on
//! one backplane to the notice arriving at a subscriber of another.
//!
//! The bench starts its own `redis-server`; run it pinned to one core with
//!
//! ```text
//! taskset -c 0 cargo bench -p strata-cache-redis --bench backplane
//! ```
//!
//! Baseline beside it: a raw redis-rs `PUBLISH` round trip (the publisher's
//! half of the path).

use std::hint::black_box;

use criterion::Criterion;
use strata_cache::{Backplane, BackplaneEvent, BackplaneMessage, Notice};
use strata_cache_redis::{RedisBackplane, RedisCacheOptions};
use strata_cache_testkit::RedisServer;

fn bench(c: &mut Criterion) {
    let server = RedisServer::new();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let options = RedisCacheOptions::new(server.url()).with_instance_name("bench:");
    let (publisher, subscriber, raw) = runtime.block_on(async {
        let publisher = RedisBackplane::new(&options).expect("options");
        let subscriber = RedisBackplane::new(&options).expect("options");
        while !(publisher.is_connected() && subscriber.is_connected()) {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        let raw = redis::Client::open(server.url())
            .expect("URL")
            .get_multiplexed_async_connection()
            .await
            .expect("connect");
        (publisher, subscriber, raw)
    });
    // A Tokio mutex: each iteration's future borrows the subscription across
    // an await.
    let events = tokio::sync::Mutex::new(subscriber.subscribe());
    let notice = Notice::new(
        "instance-a",
        1,
        BackplaneMessage::Evict {
            key: "product:42".into(),
        },
    );
    let bytes = notice.to_bytes();

    let mut group = c.benchmark_group("backplane");
    group.bench_function("publish -> other instance receives", |b| {
        b.to_async(&runtime).iter(|| async {
            publisher.publish(&notice).await.expect("publish");
            match events.lock().await.recv().await {
                Some(BackplaneEvent::Notice(n)) => drop(black_box(n)),
                other => panic!("expected the notice, got {other:?}"),
            }
        });
    });
    group.bench_function("raw PUBLISH round trip", |b| {
        b.to_async(&runtime).iter(|| async {
            let receivers: i64 = redis::cmd("PUBLISH")
                .arg("bench:no-subscriber")
                .arg(&bytes)
                .query_async(&mut raw.clone())
                .await
                .expect("PUBLISH");
            black_box(receivers);
        });
    });
    group.finish();
    drop((publisher, subscriber));
    drop(server);
}

// What `criterion_group!`/`criterion_main!` expand to, minus the undocumented
// public function they add.
fn main() {
    let mut criterion = Criterion::default().configure_from_args();
    bench(&mut criterion);
    criterion.final_summary();
}
