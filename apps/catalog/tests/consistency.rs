//! Consistency across instances: three app instances on one PostgreSQL
//! database, as three replicas behind a load balancer.
//!
//! With a shared cache (Redis, or HybridCache with its Redis backplane) a write
//! on any instance is visible on every other at once. With `CACHE=memory` (the
//! article's IMemoryCache setup) the other instances keep serving what they
//! cached: the stale reads this test pins down are why Strata exists.

mod common;

use std::time::Duration;

use catalog::CacheMode;
use common::{TestApp, TestDb, config, eventually};
use serde_json::{Value, json};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use strata_cache_testkit::RedisCluster;

/// How long a change may take to reach the other instances: the backplane is
/// asynchronous, so readers poll; in practice the first read already sees it.
const PROPAGATION_BOUND: Duration = Duration::from_secs(1);

async fn three(db: &TestDb, mode: CacheMode, test: &str) -> [TestApp; 3] {
    let redis = (mode != CacheMode::Memory).then(common::redis_url);
    three_on(db, mode, redis, test).await
}

async fn three_on(db: &TestDb, mode: CacheMode, redis: Option<String>, test: &str) -> [TestApp; 3] {
    let name = common::unique_instance_name(test);
    let config = config(mode, redis, &name);
    let (a, b, c) = tokio::join!(
        TestApp::start(db, &config),
        TestApp::start(db, &config),
        TestApp::start(db, &config)
    );
    [a, b, c]
}

fn product_path(product: &Value) -> String {
    format!("/products/{}", product["id"].as_str().unwrap())
}

/// Warms every instance's cache with the list and one product.
async fn warm(apps: &[TestApp], path: &str) {
    for app in apps {
        for _ in 0..2 {
            app.list().await;
            assert_eq!(app.get(path).await.status(), 200);
        }
    }
}

/// Polls `app` until `check` holds on what it serves at `path`; returns how
/// many reads it took (1: the first read after the write saw it), failing the
/// test past the bound.
async fn sees(app: &TestApp, path: &str, what: &str, check: impl Fn(u16, &Value) -> bool) -> u32 {
    eventually(PROPAGATION_BOUND, || async {
        let (status, body) = app.get_json(path).await;
        check(status, &body)
    })
    .await
    .unwrap_or_else(|| {
        panic!(
            "{} did not see {what} within {PROPAGATION_BOUND:?}",
            app.addr
        )
    })
}

/// POST on A, PUT on B, DELETE on C: every instance sees every change.
async fn consistent_scenario(apps: &[TestApp; 3]) {
    let [a, b, c] = apps;
    let seeded = a.list().await[7].clone();
    let seeded_path = product_path(&seeded);
    warm(apps, &seeded_path).await;
    let mut delays = Vec::new();

    // POST on A: B and C list the new product.
    let response = a
        .post_json(
            "/products",
            &json!({"name": "Consistent Widget", "price": "10.00"}),
        )
        .await;
    assert_eq!(response.status(), 201);
    let created: Value = response.json().await.unwrap();
    let path = product_path(&created);
    for app in [b, c] {
        let d = sees(app, "/products", "the new product", |s, list| {
            s == 200 && list.as_array().unwrap().contains(&created)
        })
        .await;
        delays.push(("POST -> list", d));
        assert_eq!(app.get_json(&path).await, (200, created.clone()));
    }
    warm(apps, &path).await;

    // PUT on B: A and C return the new price, by id and in the list.
    let update = json!({"name": "Consistent Widget", "price": "12.34"});
    assert_eq!(b.put_json(&path, &update).await.status(), 200);
    for app in [a, c] {
        let d = sees(app, &path, "the new price", |s, p| {
            s == 200 && p["price"] == "12.34"
        })
        .await;
        delays.push(("PUT -> get", d));
        let d = sees(app, "/products", "the new price in the list", |_, list| {
            list.as_array()
                .unwrap()
                .iter()
                .any(|p| p["id"] == created["id"] && p["price"] == "12.34")
        })
        .await;
        delays.push(("PUT -> list", d));
    }

    // A seeded product cached everywhere, changed on B.
    let update = json!({"name": seeded["name"], "description": "changed", "price": "1.00"});
    assert_eq!(b.put_json(&seeded_path, &update).await.status(), 200);
    for app in [a, c] {
        let d = sees(
            app,
            &seeded_path,
            "the seeded product's new price",
            |s, p| s == 200 && p["price"] == "1.00",
        )
        .await;
        delays.push(("PUT seeded -> get", d));
    }

    // DELETE on C: 404 on A and B, gone from their lists.
    assert_eq!(c.delete(&path).await.status(), 204);
    for app in [a, b] {
        let d = sees(app, &path, "the deletion", |s, _| s == 404).await;
        delays.push(("DELETE -> get", d));
        let d = sees(app, "/products", "the deletion in the list", |_, list| {
            !list
                .as_array()
                .unwrap()
                .iter()
                .any(|p| p["id"] == created["id"])
        })
        .await;
        delays.push(("DELETE -> list", d));
    }

    // Recorded, not asserted (the bound is): how many reads each instance
    // needed to see each change; 1 means the first read after the write.
    eprintln!("reads needed to see each change: {delays:?}");
    let immediate = delays.iter().filter(|(_, n)| *n == 1).count();
    eprintln!("{immediate} of {} first reads saw the change", delays.len());
}

/// The production topology: every instance has its own L1, and the Redis
/// backplane evicts the others' copies on each write.
#[sqlx::test(migrations = false)]
async fn three_instances_on_hybrid_with_backplane_stay_consistent(
    pool: PgPoolOptions,
    options: PgConnectOptions,
) {
    let db = TestDb::postgres(pool, options);
    let apps = three(&db, CacheMode::Hybrid, "three-hybrid").await;
    consistent_scenario(&apps).await;
    // L1 did the serving: the consistency is not bought by skipping the cache.
    for app in &apps {
        let stats = app.state.cache.hybrid().unwrap().stats();
        assert!(stats.l1_hits() > 0, "{stats:?}");
        assert!(stats.backplane_received() > 0, "{stats:?}");
    }
}

/// The same on a Redis Cluster (3 masters, 3 replicas): keys spread over the
/// masters, notices on sharded pub/sub, consistent as on one Redis.
#[sqlx::test(migrations = false)]
async fn three_instances_on_a_redis_cluster_stay_consistent(
    pool: PgPoolOptions,
    options: PgConnectOptions,
) {
    let cluster = tokio::task::spawn_blocking(RedisCluster::new)
        .await
        .unwrap();
    let db = TestDb::postgres(pool, options);
    let apps = three_on(&db, CacheMode::Hybrid, Some(cluster.url()), "three-cluster").await;
    consistent_scenario(&apps).await;
    for app in &apps {
        let stats = app.state.cache.hybrid().unwrap().stats();
        assert!(stats.l1_hits() > 0, "{stats:?}");
        assert!(stats.backplane_received() > 0, "{stats:?}");
        assert_eq!(stats.l2_errors(), 0, "{stats:?}");
    }
}

#[sqlx::test(migrations = false)]
async fn three_instances_on_redis_cache_stay_consistent(
    pool: PgPoolOptions,
    options: PgConnectOptions,
) {
    let db = TestDb::postgres(pool, options);
    let apps = three(&db, CacheMode::Redis, "three-redis").await;
    consistent_scenario(&apps).await;
}

/// The article's IMemoryCache setup behind a load balancer: each instance
/// keeps its own copy, so a write on one leaves the others stale until their
/// entries expire (2 to 30 minutes). Pinned here as the problem Strata solves.
#[sqlx::test(migrations = false)]
async fn three_instances_on_memory_cache_serve_stale_reads(
    pool: PgPoolOptions,
    options: PgConnectOptions,
) {
    let db = TestDb::postgres(pool, options);
    let apps = three(&db, CacheMode::Memory, "three-memory").await;
    let [a, b, c] = &apps;
    let seeded = a.list().await[7].clone();
    let seeded_path = product_path(&seeded);
    warm(&apps, &seeded_path).await;
    let truth = TestApp::start(&db, &config(CacheMode::None, None, "truth:")).await;

    // POST on A: A lists it, B and C keep serving their cached list.
    let response = a
        .post_json(
            "/products",
            &json!({"name": "Stale Widget", "price": "10.00"}),
        )
        .await;
    let created: Value = response.json().await.unwrap();
    assert!(a.list().await.contains(&created));
    assert!(truth.list().await.contains(&created));
    tokio::time::sleep(Duration::from_millis(200)).await;
    for app in [b, c] {
        let list = app.list().await;
        assert_eq!(list.len(), 1000, "stale: the new product is missing");
        assert!(!list.contains(&created));
    }

    // PUT on B: B serves the new price, A and C the old one.
    let update = json!({"name": seeded["name"], "description": "changed", "price": "1.00"});
    assert_eq!(b.put_json(&seeded_path, &update).await.status(), 200);
    assert_eq!(b.get_json(&seeded_path).await.1["price"], "1.00");
    assert_eq!(truth.get_json(&seeded_path).await.1["price"], "1.00");
    for app in [a, c] {
        assert_eq!(
            app.get_json(&seeded_path).await,
            (200, seeded.clone()),
            "stale price"
        );
    }

    // DELETE on C: the product is gone, yet A and B still serve it.
    assert_eq!(c.delete(&seeded_path).await.status(), 204);
    assert_eq!(truth.get(&seeded_path).await.status(), 404);
    assert_eq!(c.get(&seeded_path).await.status(), 404);
    assert_eq!(
        a.get_json(&seeded_path).await,
        (200, seeded.clone()),
        "a deleted product"
    );
    assert_eq!(
        b.get_json(&seeded_path).await.1["price"],
        "1.00",
        "a deleted product"
    );
}
