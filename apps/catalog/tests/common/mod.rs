//! Test support: databases (a fresh PostgreSQL database from `#[sqlx::test]`
//! or a temporary SQLite file), app instances served on 127.0.0.1:0, and a
//! small HTTP client.
//!
//! `#[sqlx::test]` reads `DATABASE_URL`; when the environment does not set it,
//! `apps/catalog/.env` supplies postgres://postgres@127.0.0.1:5432/postgres.

#![allow(dead_code, unreachable_pub, missing_docs)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use catalog::cache::ProductCache;
use catalog::db::{PostgresRepository, ProductRepository, SqliteRepository};
use catalog::{AppState, CacheMode, Config, build_app, serve};
use serde_json::Value;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use tempfile::TempDir;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Where the shared test Redis is: `REDIS_URL`, else the local default.
pub fn redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// A key prefix no other test (or test run) uses, so tests can share Redis.
pub fn unique_instance_name(test: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!(
        "catalog-test:{test}:{}:{}:{}:",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed),
        uuid::Uuid::now_v7().simple()
    )
}

/// A database for one test.
pub enum TestDb {
    /// A fresh PostgreSQL database made by `#[sqlx::test]` (boxed: the
    /// options are large).
    Postgres(Box<(PgPoolOptions, PgConnectOptions)>),
    /// A temporary SQLite file, deleted with the directory.
    Sqlite(TempDir),
}

impl TestDb {
    pub fn postgres(pool: PgPoolOptions, options: PgConnectOptions) -> Self {
        TestDb::Postgres(Box::new((pool, options)))
    }

    pub fn sqlite() -> Self {
        TestDb::Sqlite(tempfile::tempdir().expect("temp dir"))
    }

    /// A new repository (its own pool) on this database, migrated and seeded.
    pub async fn repo(&self) -> Arc<dyn ProductRepository> {
        let repo: Arc<dyn ProductRepository> = match self {
            TestDb::Postgres(postgres) => Arc::new(
                PostgresRepository::connect_with(postgres.0.clone(), postgres.1.clone())
                    .await
                    .expect("postgres"),
            ),
            TestDb::Sqlite(dir) => {
                let url = format!("sqlite://{}", dir.path().join("catalog.db").display());
                Arc::new(SqliteRepository::connect(&url).await.expect("sqlite"))
            }
        };
        repo.seed_if_empty(&catalog::seed::products())
            .await
            .expect("seed");
        repo
    }
}

/// The configuration of a test instance with `mode`, sharing Redis under
/// `instance_name` when `redis_url` is set.
pub fn config(mode: CacheMode, redis_url: Option<String>, instance_name: &str) -> Config {
    Config {
        cache: mode,
        redis_url,
        instance_name: instance_name.into(),
        ..Config::defaults()
    }
}

/// One running instance of the service.
pub struct TestApp {
    pub addr: SocketAddr,
    pub state: AppState,
    pub http: reqwest::Client,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<std::io::Result<()>>>,
}

impl TestApp {
    /// Serves `state` on a free port of 127.0.0.1.
    pub async fn spawn(state: AppState) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (tx, rx) = oneshot::channel::<()>();
        let app = build_app(state.clone());
        let task = tokio::spawn(serve(listener, app, async {
            let _ = rx.await;
        }));
        Self {
            addr,
            state,
            http: reqwest::Client::new(),
            shutdown: Some(tx),
            task: Some(task),
        }
    }

    /// An instance on `db` with the cache `config` describes.
    pub async fn start(db: &TestDb, config: &Config) -> Self {
        let cache = ProductCache::from_config(config).expect("cache");
        Self::spawn(AppState::new(db.repo().await, cache)).await
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub fn db_loads(&self) -> u64 {
        self.state.cache.db_loads()
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.http.get(self.url(path)).send().await.expect("GET")
    }

    pub async fn get_json(&self, path: &str) -> (u16, Value) {
        let response = self.get(path).await;
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    pub async fn post_json(&self, path: &str, body: &Value) -> reqwest::Response {
        self.http
            .post(self.url(path))
            .json(body)
            .send()
            .await
            .expect("POST")
    }

    pub async fn put_json(&self, path: &str, body: &Value) -> reqwest::Response {
        self.http
            .put(self.url(path))
            .json(body)
            .send()
            .await
            .expect("PUT")
    }

    pub async fn delete(&self, path: &str) -> reqwest::Response {
        self.http
            .delete(self.url(path))
            .send()
            .await
            .expect("DELETE")
    }

    /// All products as served by this instance.
    pub async fn list(&self) -> Vec<Value> {
        let (status, body) = self.get_json("/products").await;
        assert_eq!(status, 200, "{body}");
        body.as_array().cloned().expect("an array")
    }

    /// Stops accepting, finishes requests in flight, and waits for the server.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.expect("server task").expect("server");
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// Polls `check` until it returns true or `bound` passes; returns how many
/// checks it took (1: the first one already held), or `None` when none did.
pub async fn eventually<F, Fut>(bound: Duration, mut check: F) -> Option<u32>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    let mut attempts = 0;
    loop {
        attempts += 1;
        if check().await {
            return Some(attempts);
        }
        if start.elapsed() >= bound {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Asserts a problem+json response and returns its body.
pub async fn assert_problem(response: reqwest::Response, status: u16) -> Value {
    assert_eq!(response.status().as_u16(), status, "status");
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert_eq!(content_type, "application/problem+json");
    let body: Value = response.json().await.expect("problem body");
    assert_eq!(body["status"], status);
    assert_eq!(body["type"], "about:blank");
    assert!(body["title"].is_string(), "{body}");
    assert!(body["detail"].is_string(), "{body}");
    assert!(body["instance"].is_string(), "{body}");
    body
}
