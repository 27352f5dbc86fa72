//! HybridCache instances sharing an L2 and an InProcessBackplane: every write
//! path reaches the others' L1; a gap makes L1 suspect.

mod common;

use std::sync::Arc;
use std::sync::atomic::AtomicU32;
use std::time::Duration;

use strata_cache::{
    Backplane, BackplaneEvent, BackplaneMessage, HybridCache, HybridEntryOptions,
    InProcessBackplane,
};

use common::{Cluster, Product, cluster, counting, id, instance, product, settle};

/// Long L1 life: only the backplane can make b drop its copy.
fn options() -> HybridEntryOptions {
    common::options().with_tags(["products"])
}

async fn warm(c: &Cluster, runs: &Arc<AtomicU32>) {
    c.a.get_or_create("p", &options(), counting(runs))
        .await
        .unwrap();
    assert_eq!(id(&c.b, "p", &options(), counting(runs)).await, 1);
}

#[tokio::test(start_paused = true)]
async fn l1_l2_backplane_set_on_one_instance_evicts_the_others_l1() {
    let c = cluster();
    let runs = Arc::new(AtomicU32::new(0));
    warm(&c, &runs).await;
    c.a.set("p", product(42), &options()).await.unwrap();
    settle().await;
    assert_eq!(c.b.get::<Product>("p").await.unwrap(), Some(product(42)));
    assert!(c.a.stats().backplane_sent() >= 2);
    assert!(c.b.stats().backplane_received() >= 1);
}

#[tokio::test(start_paused = true)]
async fn l1_l2_backplane_remove_reaches_the_others_l1() {
    let c = cluster();
    let runs = Arc::new(AtomicU32::new(0));
    warm(&c, &runs).await;
    c.a.remove("p").await.unwrap();
    settle().await;
    assert_eq!(c.b.get::<Product>("p").await.unwrap(), None);
}

#[tokio::test(start_paused = true)]
async fn l1_l2_backplane_factory_write_back_evicts_the_others_stale_copy() {
    let c = cluster();
    let runs = Arc::new(AtomicU32::new(0));
    warm(&c, &runs).await;
    // a refreshes the key by skipping its read: its write-back must reach b.
    let refresh = options().skip_l1_read().skip_l2_read();
    assert_eq!(id(&c.a, "p", &refresh, counting(&runs)).await, 2);
    settle().await;
    assert_eq!(c.b.get::<Product>("p").await.unwrap(), Some(product(2)));
}

#[tokio::test(start_paused = true)]
async fn l1_l2_backplane_remove_by_tag_makes_the_others_l1_entries_stale() {
    let c = cluster();
    let runs = Arc::new(AtomicU32::new(0));
    warm(&c, &runs).await;
    tokio::time::sleep(Duration::from_millis(2)).await;
    c.a.remove_by_tags(&["products", "other"]).await.unwrap();
    settle().await;
    assert_eq!(c.b.get::<Product>("p").await.unwrap(), None);
    assert_eq!(id(&c.b, "p", &options(), counting(&runs)).await, 2);
    // Rebuilt after the invalidation: fresh for both.
    assert_eq!(id(&c.a, "p", &options(), counting(&runs)).await, 2);
}

#[tokio::test(start_paused = true)]
async fn l1_l2_backplane_clear_empties_the_others_l1() {
    let c = cluster();
    let runs = Arc::new(AtomicU32::new(0));
    warm(&c, &runs).await;
    tokio::time::sleep(Duration::from_millis(2)).await;
    c.a.clear().await.unwrap();
    settle().await;
    assert_eq!(c.b.get::<Product>("p").await.unwrap(), None);
}

#[tokio::test(start_paused = true)]
async fn l1_l2_backplane_instances_ignore_their_own_notices() {
    let c = cluster();
    let mut sub = c.backplane.subscribe();
    c.a.set("p", product(1), &options()).await.unwrap();
    settle().await;
    // The first notice that is not a heartbeat.
    let notice = loop {
        match sub.recv().await {
            Some(BackplaneEvent::Notice(n)) if n.message != BackplaneMessage::Heartbeat => break n,
            Some(_) => {}
            None => panic!("expected a notice"),
        }
    };
    assert_eq!(notice.origin, "a");
    assert_eq!(notice.message, BackplaneMessage::Evict { key: "p".into() });
    // a kept its own fresh L1 copy.
    assert_eq!(c.a.get::<Product>("p").await.unwrap(), Some(product(1)));
    assert_eq!(c.a.stats().l1_hits(), 1);
    assert_eq!(c.a.stats().backplane_received(), 0);
}

#[tokio::test(start_paused = true)]
async fn l1_l2_backplane_gap_makes_l1_revalidate_against_l2() {
    let c = cluster();
    let runs = Arc::new(AtomicU32::new(0));
    warm(&c, &runs).await;
    // A write whose notice b misses: written to L2 behind b's back.
    let writer = instance(&c.l2);
    writer.set("p", product(99), &options()).await.unwrap();
    assert_eq!(c.b.get::<Product>("p").await.unwrap(), Some(product(1)));
    c.backplane.simulate_gap();
    settle().await;
    // b no longer trusts its L1 copy: it reads L2 again.
    assert_eq!(c.b.get::<Product>("p").await.unwrap(), Some(product(99)));
    let hits = c.b.stats().l1_hits();
    assert_eq!(c.b.get::<Product>("p").await.unwrap(), Some(product(99)));
    assert_eq!(
        c.b.stats().l1_hits(),
        hits + 1,
        "revalidated entries are L1 hits again"
    );
}

#[tokio::test(start_paused = true)]
async fn l1_l2_backplane_listener_ends_with_the_last_clone() {
    let c = cluster();
    assert_eq!(c.backplane.subscriber_count(), 2);
    let clone = c.a.clone();
    drop(c.a);
    settle().await;
    assert_eq!(c.backplane.subscriber_count(), 2, "a clone is still alive");
    drop(clone);
    settle().await;
    assert_eq!(c.backplane.subscriber_count(), 1);
    drop(c.b);
    settle().await;
    assert_eq!(c.backplane.subscriber_count(), 0);
}

#[tokio::test(start_paused = true)]
async fn l1_backplane_without_l2_peers_rerun_their_factory_after_a_write() {
    let backplane = Arc::new(InProcessBackplane::new());
    let build = |id: &str| {
        HybridCache::builder()
            .backplane(Arc::clone(&backplane) as Arc<dyn Backplane>)
            .instance_id(id)
            .build()
    };
    let (a, b) = (build("a"), build("b"));
    let runs = Arc::new(AtomicU32::new(0));
    b.get_or_create("p", &options(), counting(&runs))
        .await
        .unwrap();
    a.set("p", product(7), &options()).await.unwrap();
    settle().await;
    assert_eq!(id(&b, "p", &options(), counting(&runs)).await, 2);
}
