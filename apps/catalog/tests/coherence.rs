//! The coherence checker against three Catalog instances over HTTP, on one
//! PostgreSQL database and one Redis of their own, in the `hybrid` and
//! `redis` cache modes, while Redis hangs and is restarted empty. Every read
//! (a product, or a page of the list) is judged against the history of
//! acknowledged writes (`PUT`s): none may be stale beyond five times its bound
//! (`strata_cache_testkit::coherence`). `memory` mode is stale by design and
//! not checked here (`consistency.rs` pins that down).

mod common;

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use catalog::CacheMode;
use common::{TestApp, TestDb, config};
use serde_json::{Value, json};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use strata_cache_testkit::RedisServer;
use strata_cache_testkit::coherence::{
    Ack, Bounds, Config, FaultKind, History, Report, Subject, Write, run_workload,
};
use tokio::time::Instant;

/// Products the workload reads and writes: the first of the seeded list.
const KEYS: usize = 24;

/// Three instances and what the checker's keys are to them.
struct Catalog {
    apps: Vec<TestApp>,
    /// Each key's product id and its position in the list.
    products: Vec<(String, usize)>,
    /// Gives every write a version above all earlier ones.
    next_version: Mutex<u64>,
}

/// The version a product's name carries (`coh-<version>`); 0 for a seeded name.
fn version_of(product: &Value) -> u64 {
    product["name"]
        .as_str()
        .and_then(|n| n.strip_prefix("coh-"))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

#[async_trait]
impl Subject for Catalog {
    fn instances(&self) -> usize {
        self.apps.len()
    }

    async fn read(&self, i: usize, key: usize) -> Option<u64> {
        let (id, position) = &self.products[key];
        let app = &self.apps[i];
        // Odd keys through the list (tag-invalidated), even ones directly.
        let path = if key % 2 == 1 {
            format!("/products?limit=1&offset={position}")
        } else {
            format!("/products/{id}")
        };
        let response = app.http.get(app.url(&path)).send().await.ok()?;
        if response.status() != 200 {
            return None;
        }
        let body: Value = response.json().await.ok()?;
        let product = if key % 2 == 1 { &body[0] } else { &body };
        Some(version_of(product))
    }

    async fn write(&self, i: usize, write: Write) -> Option<Ack> {
        // Every write of the Catalog is a PUT: it invalidates the product and
        // the list's tag.
        let key = match write {
            Write::Set(key) | Write::Remove(key) => key,
            Write::Tag(group) => group % KEYS,
        };
        let version = {
            let mut next = self
                .next_version
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            *next += 1;
            *next
        };
        let (id, _) = &self.products[key];
        let app = &self.apps[i];
        let body = json!({"name": format!("coh-{version}"), "price": "1.00"});
        let response = app
            .http
            .put(app.url(&format!("/products/{id}")))
            .json(&body)
            .send()
            .await
            .ok()?;
        (response.status() == 200).then(|| Ack {
            versions: vec![(key, version)],
            deferred: false,
        })
    }

    fn factory_runs(&self) -> u64 {
        self.apps.iter().map(TestApp::db_loads).sum()
    }
}

/// Hangs Redis, then kills and restarts it empty, with calm before and after.
async fn fault_plan(server: Arc<Mutex<RedisServer>>, history: Arc<History>) {
    let with_server = |f: fn(&mut RedisServer)| {
        let server = Arc::clone(&server);
        tokio::task::spawn_blocking(move || {
            f(&mut server.lock().unwrap_or_else(PoisonError::into_inner))
        })
    };
    tokio::time::sleep(Duration::from_secs(3)).await;
    let start = Instant::now();
    let _ = with_server(RedisServer::pause).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let _ = with_server(RedisServer::resume).await;
    history.fault(FaultKind::RedisHung, start, Instant::now());
    tokio::time::sleep(Duration::from_secs(3)).await;
    let start = Instant::now();
    let _ = with_server(RedisServer::stop).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let _ = with_server(RedisServer::start).await;
    history.fault(FaultKind::RedisRestart, start, Instant::now());
}

async fn check(mode: CacheMode, pool: PgPoolOptions, options: PgConnectOptions) -> Report {
    let db = TestDb::postgres(pool, options);
    let server = Arc::new(Mutex::new(RedisServer::new()));
    let url = server.lock().unwrap_or_else(PoisonError::into_inner).url();
    let mut config = config(mode, Some(url), &common::unique_instance_name("coherence"));
    config.redis_timeout_ms = 250;
    let apps = vec![
        TestApp::start(&db, &config).await,
        TestApp::start(&db, &config).await,
        TestApp::start(&db, &config).await,
    ];
    let listed = apps[0].list().await;
    let products = listed
        .iter()
        .take(KEYS)
        .enumerate()
        .map(|(position, p)| (p["id"].as_str().expect("an id").to_owned(), position))
        .collect();
    let subject = Arc::new(Catalog {
        apps,
        products,
        next_version: Mutex::new(0),
    });
    let workload = Config {
        keys: KEYS,
        group_size: KEYS,
        readers: 2,
        writers: 2,
        duration: Duration::from_secs(14),
        write_pause: Duration::from_millis(30),
        cancel_ratio: 0.0,
        ..Config::default()
    };
    let history = Arc::new(History::default());
    let plan = tokio::spawn(fault_plan(Arc::clone(&server), Arc::clone(&history)));
    run_workload(Arc::clone(&subject), &workload, Arc::clone(&history)).await;
    let _ = plan.await;
    history.judge(Bounds::default(), subject.factory_runs())
}

fn assert_coherent(mode: &str, report: &Report) {
    println!("{mode}:\n{report}");
    assert_eq!(report.faults.len(), 2, "{mode}: both faults were injected");
    assert!(report.judged > 500, "{mode}: the readers ran:\n{report}");
    assert!(report.writes > 50, "{mode}: the writers ran:\n{report}");
    assert_eq!(
        report.violations, 0,
        "{mode}: stale reads beyond 5x their bound:\n{report}"
    );
}

#[sqlx::test(migrations = false)]
async fn three_hybrid_instances_stay_coherent_through_redis_faults(
    pool: PgPoolOptions,
    options: PgConnectOptions,
) {
    let report = check(CacheMode::Hybrid, pool, options).await;
    assert_coherent("hybrid", &report);
}

#[sqlx::test(migrations = false)]
async fn three_redis_instances_stay_coherent_through_redis_faults(
    pool: PgPoolOptions,
    options: PgConnectOptions,
) {
    let report = check(CacheMode::Redis, pool, options).await;
    assert_coherent("redis", &report);
}
