//! Redis stopped mid-test: every endpoint keeps answering correctly from
//! PostgreSQL, readiness says `degraded` (200), and when Redis comes back the
//! cache serves hits again without restarting the app.
//!
//! Each test runs its own `redis-server` (testkit `RedisServer`) so that it can
//! kill and restart it without disturbing other tests.

mod common;

use std::time::Duration;

use catalog::CacheMode;
use common::{TestApp, TestDb, assert_problem, config, eventually};
use serde_json::{Value, json};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use strata_cache_testkit::RedisServer;

/// How long the app may take to use Redis again after it restarts: the
/// reconnect, plus HybridCache's circuit-breaker cool-down (1 s), with room
/// for a loaded CI machine.
const RECONNECT_BOUND: Duration = Duration::from_secs(30);

/// True when two reads of `path` in a row cost no database load: a cache hit.
async fn served_from_cache(app: &TestApp, path: &str) -> bool {
    app.get(path).await;
    let before = app.db_loads();
    let ok = app.get(path).await.status().is_success();
    ok && app.db_loads() == before
}

/// True when the readiness check reports Redis up again.
async fn ready_ok(app: &TestApp) -> bool {
    let (status, ready) = app.get_json("/health/ready").await;
    status == 200 && ready["status"] == "ok"
}

async fn outage_and_recovery(mode: CacheMode, db: TestDb) {
    let mut redis = RedisServer::new();
    let name = common::unique_instance_name("outage");
    let config = config(mode, Some(redis.url()), &name);
    // `peer` shares the Redis: what `app` caches there, `peer` reads there.
    let (app, peer) = tokio::join!(TestApp::start(&db, &config), TestApp::start(&db, &config));
    let seeded = app.list().await[3].clone();
    let path = format!("/products/{}", seeded["id"].as_str().unwrap());
    assert!(
        eventually(RECONNECT_BOUND, || served_from_cache(&app, &path))
            .await
            .is_some(),
        "hits with Redis up"
    );
    let (status, ready) = app.get_json("/health/ready").await;
    assert_eq!((status, &ready["status"]), (200, &json!("ok")), "{ready}");
    assert_eq!(ready["checks"]["redis"]["status"], "up");

    redis.stop();

    // Every endpoint still answers, correctly, from the database.
    let list = app.list().await;
    assert_eq!(list.len(), 1000);
    assert_eq!(app.get_json(&path).await, (200, seeded.clone()));
    let response = app
        .post_json(
            "/products",
            &json!({"name": "Outage Widget", "price": "3.00"}),
        )
        .await;
    assert_eq!(response.status(), 201);
    let created: Value = response.json().await.unwrap();
    let created_path = format!("/products/{}", created["id"].as_str().unwrap());
    assert_eq!(app.get_json(&created_path).await, (200, created.clone()));
    assert!(app.list().await.contains(&created), "the write is visible");
    let update = json!({"name": "Outage Widget", "price": "4.00"});
    let response = app.put_json(&created_path, &update).await;
    assert_eq!(response.status(), 200);
    assert_eq!(app.get_json(&created_path).await.1["price"], "4.00");
    assert_eq!(app.delete(&created_path).await.status(), 204);
    assert_problem(app.get(&created_path).await, 404).await;
    assert!(!app.list().await.contains(&created));
    assert_problem(app.get("/products/nope").await, 400).await;
    assert_problem(app.post_json("/products", &json!({})).await, 422).await;
    let (status, ready) = app.get_json("/health/ready").await;
    assert_eq!(status, 200, "Redis down is a degradation: {ready}");
    assert_eq!(ready["status"], "degraded");
    assert_eq!(ready["checks"]["redis"]["status"], "down");
    assert_eq!(ready["checks"]["database"]["status"], "up");
    for path in ["/health/live", "/metrics", "/openapi.json", "/docs"] {
        assert_eq!(app.get(path).await.status(), 200, "{path}");
    }
    assert_problem(app.get("/nope").await, 404).await;

    redis.start();

    // Without restarting the app: readiness recovers, reads hit the cache, and
    // Redis itself serves again (an entry one instance caches, the other
    // reads without touching the database; a new product per attempt, so no
    // L1 copy can stand in for Redis).
    let ready_after = eventually(RECONNECT_BOUND, || ready_ok(&app))
        .await
        .expect("readiness reports Redis up again");
    assert!(
        eventually(RECONNECT_BOUND, || served_from_cache(&app, &path))
            .await
            .is_some(),
        "cache hits resume"
    );
    let ids: Vec<String> = list[100..]
        .iter()
        .map(|p| p["id"].as_str().unwrap().to_owned())
        .collect();
    let mut next = ids.iter();
    let shared = eventually(RECONNECT_BOUND, || {
        let id = next.next().expect("enough products").clone();
        let (app, peer) = (&app, &peer);
        async move {
            // Paced: HybridCache's L2 circuit breaker may stay open for its
            // cool-down (10 s) after the outage; one product per attempt.
            tokio::time::sleep(Duration::from_millis(50)).await;
            let path = format!("/products/{id}");
            app.get(&path).await;
            let before = peer.db_loads();
            let ok = peer.get(&path).await.status() == 200;
            ok && peer.db_loads() == before
        }
    })
    .await
    .expect("Redis serves the other instance again");
    eprintln!("{mode}: ready after {ready_after} probes, Redis shared after {shared} attempts");
}

#[sqlx::test(migrations = false)]
async fn redis_outage_falls_back_to_postgres_and_recovers_redis_mode(
    pool: PgPoolOptions,
    options: PgConnectOptions,
) {
    outage_and_recovery(CacheMode::Redis, TestDb::postgres(pool, options)).await;
}

#[sqlx::test(migrations = false)]
async fn redis_outage_falls_back_to_postgres_and_recovers_hybrid_mode(
    pool: PgPoolOptions,
    options: PgConnectOptions,
) {
    outage_and_recovery(CacheMode::Hybrid, TestDb::postgres(pool, options)).await;
}

/// A hung Redis (frozen, connections open) costs a request at most about one
/// `REDIS_TIMEOUT_MS`, however many cache calls the request makes.
async fn a_hung_redis_costs_one_timeout(mode: CacheMode, db: TestDb) {
    let mut redis = RedisServer::new();
    let mut config = config(
        mode,
        Some(redis.url()),
        &common::unique_instance_name("hung"),
    );
    config.redis_timeout_ms = 400;
    let app = TestApp::start(&db, &config).await;
    let product = app.list().await[5].clone();
    let path = format!("/products/{}", product["id"].as_str().unwrap());
    assert_eq!(app.get(&path).await.status(), 200);
    redis.pause();
    // Past one timeout, plus what the database takes on a loaded machine;
    // under two timeouts, which four sequential Redis calls would exceed.
    let bound = Duration::from_millis(780);
    let started = std::time::Instant::now();
    let response = app
        .put_json(&path, &json!({"name": "Hung", "price": "2.00"}))
        .await;
    let put = started.elapsed();
    assert_eq!(response.status(), 200);
    let started = std::time::Instant::now();
    let (status, body) = app.get_json(&path).await;
    let get = started.elapsed();
    assert_eq!((status, body["name"].as_str()), (200, Some("Hung")));
    let started = std::time::Instant::now();
    assert_eq!(app.list().await.len(), 1000);
    let list = started.elapsed();
    redis.resume();
    assert!(put < bound, "{mode:?}: a PUT took {put:?}");
    assert!(get < bound, "{mode:?}: a GET took {get:?}");
    assert!(list < bound, "{mode:?}: the list took {list:?}");
}

#[sqlx::test(migrations = false)]
async fn hybrid_a_hung_redis_costs_a_request_one_timeout(
    pool: PgPoolOptions,
    options: PgConnectOptions,
) {
    a_hung_redis_costs_one_timeout(CacheMode::Hybrid, TestDb::postgres(pool, options)).await;
}

#[sqlx::test(migrations = false)]
async fn redis_a_hung_redis_costs_a_request_one_timeout(
    pool: PgPoolOptions,
    options: PgConnectOptions,
) {
    a_hung_redis_costs_one_timeout(CacheMode::Redis, TestDb::postgres(pool, options)).await;
}
